import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// A listener on `[::1]:port` whose accept queue is full, so the kernel drops every further SYN: an address that
/// never answers (as a firewall that drops does), without leaving loopback.
final class SYNDroppingListener {
    let socket: Socket
    let filler: Socket
    let port: Int

    init() throws {
        socket = try Socket(binding: try SocketAddress(ipv6: "::1", port: 0), kind: .stream, nonBlocking: false)
        try socket.listen(backlog: 0)
        port = socket.localAddress!.port!
        filler = try connectedClient(try SocketAddress(ipv6: "::1", port: port))  // the one the queue holds
    }

    deinit {
        filler.close()
        socket.close()
    }
}

@Suite struct HappyEyeballsTests {
    private func resolver(on loop: EventLoop, hosts: String, dns: TestDNSServer? = nil) throws -> Resolver {
        let nameserver = try dns?.address ?? SilentNameserver().address
        return try Resolver(on: loop, nameservers: [nameserver], hostsFile: hosts, queryTimeout: .seconds(2))
    }

    /// `[::1]` refuses (nothing listens there on the port): the IPv4 address is tried at once, not 250 ms later.
    @Test(arguments: Face.allCases)
    func refusedFirstAddressFallsBackAtOnce(face: Face) throws {
        let hosts = try hostsFile("::1 dual.test\n127.0.0.1 dual.test\n")
        defer { unlink(hosts) }
        let before = openDescriptorCount()
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) {
                serveEcho($0, face: .callback)
            }
            let port = listener.localAddress.port!
            let resolver = try resolver(on: loop, hosts: hosts)
            let started = ContinuousClock.now
            let check: (Connection) -> Void = { connection in
                #expect(connection.remoteAddress?.description == "127.0.0.1:\(port)")
                #expect(ContinuousClock.now - started < .milliseconds(200), "a refusal starts the next attempt at once")
                connection.close()
                listener.close()
            }
            switch face {
            case .callback:
                Connection.connect(host: "dual.test", port: port, on: loop, resolver: resolver) { result in
                    switch result {
                    case .success(let connection): check(connection)
                    case .failure(let error): Issue.record("connect failed: \(error)")
                    }
                    loop.stop()
                }
            case .async:
                loop.test {
                    check(try await Connection.connect(host: "dual.test", port: port, on: loop, resolver: resolver))
                }
            }
        }
        #expect(openDescriptorCount() <= before)
    }

    /// The first address drops SYNs, the second answers: connected once the attempt delay (250 ms) passes, well
    /// before any connect timeout; the dropped attempt's socket is closed.
    @Test func silentFirstAddressCostsTheAttemptDelay() throws {
        let dropping = try SYNDroppingListener()
        let hosts = try hostsFile("::1 slow.test\n127.0.0.1 slow.test\n")
        defer { unlink(hosts) }
        let before = openDescriptorCount()
        var elapsed: Duration?
        try runLoop { loop in
            let listener = try Listener(address: try SocketAddress(ipv4: "127.0.0.1", port: dropping.port), on: loop) {
                serveEcho($0, face: .callback)
            }
            let resolver = try resolver(on: loop, hosts: hosts)
            loop.test {
                let started = ContinuousClock.now
                let connection = try await Connection.connect(
                    host: "slow.test", port: dropping.port, on: loop, timeout: .seconds(5), resolver: resolver)
                elapsed = ContinuousClock.now - started
                #expect(connection.remoteAddress?.host == "127.0.0.1")
                try await connection.write("ping\n")
                #expect(try await connection.readLine() == Array("ping\n"))
                connection.close()
                listener.close()
            }
        }
        if let elapsed {
            #expect(elapsed >= .milliseconds(250), "IPv6 was tried first and given its 250 ms: \(elapsed)")
            #expect(elapsed < .milliseconds(350), "connected within 350 ms: \(elapsed)")
        }
        #expect(openDescriptorCount() <= before, "the abandoned attempt's socket is closed")
    }

    /// The nameserver answers A at once and AAAA only after 400 ms: the IPv4 address is tried after the 50 ms
    /// resolution delay, without waiting for AAAA.
    @Test func slowIPv6AnswerIsNotWaitedFor() throws {
        let dns = try TestDNSServer([
            "late.test": .init(ipv4: ["127.0.0.1"], ipv6: ["::1"], ipv6Delay: .milliseconds(400))
        ])
        defer { dns.stop() }
        var elapsed: Duration?
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) {
                serveEcho($0, face: .callback)
            }
            let resolver = try resolver(on: loop, hosts: try hostsFile(""), dns: dns)
            loop.test {
                let started = ContinuousClock.now
                let connection = try await Connection.connect(
                    host: "late.test", port: listener.localAddress.port!, on: loop, resolver: resolver)
                elapsed = ContinuousClock.now - started
                #expect(connection.remoteAddress?.host == "127.0.0.1")
                connection.close()
                listener.close()
            }
        }
        if let elapsed {
            #expect(elapsed >= .milliseconds(50), "the A answer waited the resolution delay: \(elapsed)")
            #expect(elapsed < .milliseconds(400), "and not for AAAA: \(elapsed)")
        }
    }

    @Test func everyAddressRefusingNamesEachAttempt() throws {
        let hosts = try hostsFile("::1 closed.test\n127.0.0.1 closed.test\n")
        defer { unlink(hosts) }
        let port = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream).localAddress!.port!
        try runLoop { loop in
            let resolver = try resolver(on: loop, hosts: hosts)
            loop.test {
                do {
                    _ = try await Connection.connect(host: "closed.test", port: port, on: loop, resolver: resolver)
                    Issue.record("connected to a closed port")
                } catch let error as ConnectError {
                    #expect(error.attempts.map(\.address.description) == ["[::1]:\(port)", "127.0.0.1:\(port)"])
                    #expect(error.attempts.allSatisfy { ($0.error as? IOError)?.errnoCode == ECONNREFUSED })
                    #expect(!error.timedOut)
                    #expect("\(error)".hasPrefix("cannot connect to closed.test:\(port): every address failed ([::1]"))
                }
            }
        }
    }

    @Test func unknownNameIsAResolutionError() throws {
        let dns = try TestDNSServer([:])
        defer { dns.stop() }
        try runLoop { loop in
            let resolver = try resolver(on: loop, hosts: try hostsFile(""), dns: dns)
            loop.test {
                await #expect(throws: ResolutionError(host: "nowhere.test", reason: .nameNotFound)) {
                    _ = try await Connection.connect(host: "nowhere.test", port: 80, on: loop, resolver: resolver)
                }
            }
        }
    }

    /// A nameserver that never answers: the connect timeout ends it, not the resolver's 2 s per query.
    @Test func timeoutCoversResolution() throws {
        let silent = try SilentNameserver()
        try runLoop { loop in
            let resolver = try Resolver(on: loop, nameservers: [silent.address])
            loop.test {
                let started = ContinuousClock.now
                do {
                    _ = try await Connection.connect(
                        host: "silent.test", port: 80, on: loop, timeout: .milliseconds(300), resolver: resolver)
                    Issue.record("connected")
                } catch let error as ConnectError {
                    #expect(error.timedOut && error.attempts.isEmpty)
                    #expect("\(error)" == "cannot connect to silent.test:80: timed out")
                }
                #expect(ContinuousClock.now - started < .seconds(2))
            }
        }
    }

    /// Cancelled while its first attempt waits on a dropping address: completion with CancellationError, at
    /// once; its sockets closed.
    @Test(arguments: Face.allCases)
    func cancelAbandonsEverything(face: Face) throws {
        let dropping = try SYNDroppingListener()
        let hosts = try hostsFile("::1 drop.test\n")
        defer { unlink(hosts) }
        let before = openDescriptorCount()
        try runLoop { loop in
            let resolver = try resolver(on: loop, hosts: hosts)
            switch face {
            case .callback:
                var calls = 0
                let request = Connection.connect(host: "drop.test", port: dropping.port, on: loop, resolver: resolver) {
                    result in
                    calls += 1
                    #expect(throws: CancellationError.self) { try result.get() }
                }
                try loop.schedule(after: .milliseconds(100)) {
                    #expect(request.isPending)
                    request.cancel()
                    #expect(calls == 1 && !request.isPending)
                    loop.stop()
                }
            case .async:
                let box = Handover<Resolver>()
                box.value = resolver
                let port = dropping.port
                loop.test {
                    let task = Task(executorPreference: loop) {
                        _ = try await Connection.connect(host: "drop.test", port: port, on: loop, resolver: box.value!)
                    }
                    // A loop timer, not Task.sleep: Dispatch's timer is a descriptor that would count as left.
                    try loop.schedule(after: .milliseconds(100)) { task.cancel() }
                    await #expect(throws: CancellationError.self) { try await task.value }
                }
            }
        }
        #expect(openDescriptorCount() <= before)
    }

    /// TLS on top: the certificate is verified against the host name asked for.
    @Test func tlsVerifiesTheHostName() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let hosts = try hostsFile("127.0.0.1 localhost wrong.test\n")
        defer { unlink(hosts) }
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                serveEcho($0, face: .callback)
            }
            let port = listener.localAddress.port!
            let resolver = try resolver(on: loop, hosts: hosts)
            loop.test {
                let connection = try await Connection.connect(
                    host: "localhost", port: port, on: loop, tls: client, resolver: resolver)
                #expect(connection.tlsInfo?.peerSubject == "CN=localhost")
                try await connection.write("secret\n")
                #expect(try await connection.readLine() == Array("secret\n"))
                connection.close()
                do {
                    _ = try await Connection.connect(
                        host: "wrong.test", port: port, on: loop, tls: client, resolver: resolver)
                    Issue.record("a certificate for localhost passed for wrong.test")
                } catch {
                    #expect("\(error)".contains("certificate verify failed"), "\(error)")
                }
                listener.close()
            }
        }
    }
}
