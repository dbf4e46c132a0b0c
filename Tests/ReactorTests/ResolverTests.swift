import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// A UDP socket bound on 127.0.0.1 and never read: a nameserver that never answers.
final class SilentNameserver {
    let descriptor: Int32
    let address: SocketAddress

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.descriptor = descriptor
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
            }
        }
        address = try SocketAddress(ipv4: "127.0.0.1", port: Int(UInt16(bigEndian: local.sin_port)))
    }

    deinit { close(descriptor) }
}

/// Writes a hosts file for a test and returns its path.
func hostsFile(_ lines: String) throws -> String {
    let path = temporaryPath("hosts")
    try lines.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite struct ResolverTests {
    /// Runs `body` in a task on a new loop with a resolver asking `nameserver`.
    private func withResolver(
        nameserver: SocketAddress, hosts: String? = nil, queryTimeout: Duration = .seconds(2),
        _ body: @escaping (Resolver) async throws -> Void
    ) throws {
        try runLoop { loop in
            let resolver = try Resolver(
                on: loop, nameservers: [nameserver], hostsFile: hosts, queryTimeout: queryTimeout, attempts: 1)
            loop.test { try await body(resolver) }
        }
    }

    @Test func literalsAnswerWithoutAsking() throws {
        let dns = try TestDNSServer([:])
        defer { dns.stop() }
        try withResolver(nameserver: dns.address) { resolver in
            let v4 = try await resolver.resolve(host: "127.0.0.1", port: 80)
            let v6 = try await resolver.resolve(host: "::1", port: 80)
            let bracketed = try await resolver.resolve(host: "[::1]", port: 81)
            #expect(v4.map(\.description) == ["127.0.0.1:80"])
            #expect(v6.map(\.description) == ["[::1]:80"])
            #expect(bracketed.map(\.description) == ["[::1]:81"])
        }
        #expect(dns.received.isEmpty)
    }

    @Test func completionComesAfterResolveReturns() throws {
        try runLoop { loop in
            var returned = false
            loop.resolver.resolve(host: "127.0.0.1", port: 1) { result in
                #expect(returned, "the completion ran inside resolve()")
                #expect((try? result.get()) == [try! SocketAddress(ipv4: "127.0.0.1", port: 1)])
                loop.stop()
            }
            returned = true
        }
    }

    @Test func asksForBothFamiliesIPv6First() throws {
        let dns = try TestDNSServer([
            "dual.test": .init(ipv4: ["127.0.0.1", "127.0.0.2"], ipv6: ["::1"]),
            "four.test": .init(ipv4: ["127.0.0.3"]),
        ])
        defer { dns.stop() }
        try withResolver(nameserver: dns.address) { resolver in
            let dual = try await resolver.resolve(host: "dual.test", port: 7)
            #expect(dual.map(\.description) == ["[::1]:7", "127.0.0.1:7", "127.0.0.2:7"])
            let four = try await resolver.resolve(host: "Four.Test", port: 7)
            #expect(four.map(\.description) == ["127.0.0.3:7"], "a family without addresses is no error")
        }
        #expect(dns.received.sorted() == ["dual.test A", "dual.test AAAA", "four.test A", "four.test AAAA"])
    }

    @Test func unknownNameIsNameNotFound() throws {
        let dns = try TestDNSServer(["empty.test": .init()])
        defer { dns.stop() }
        try withResolver(nameserver: dns.address) { resolver in
            await #expect(throws: ResolutionError(host: "nowhere.test", reason: .nameNotFound)) {
                try await resolver.resolve(host: "nowhere.test", port: 7)
            }
            let error = ResolutionError(host: "nowhere.test", reason: .nameNotFound)
            #expect(error.description == "cannot resolve nowhere.test: name not found")
            // evdns reports a name with no address as it reports a failed server.
            let failure = ResolutionError(
                host: "empty.test", reason: .failed("non-recoverable failure in name resolution"))
            await #expect(throws: failure) { try await resolver.resolve(host: "empty.test", port: 7) }
        }
    }

    @Test func hostsFileAnswersWithoutANameserver() throws {
        let dns = try TestDNSServer([:])
        defer { dns.stop() }
        let hosts = try hostsFile("127.0.0.1 one.test\n::1 both.test\n127.0.0.1 both.test\n")
        defer { unlink(hosts) }
        try withResolver(nameserver: dns.address, hosts: hosts) { resolver in
            let one = try await resolver.resolve(host: "one.test", port: 5)
            let both = try await resolver.resolve(host: "both.test", port: 5)
            #expect(one.map(\.description) == ["127.0.0.1:5"])
            #expect(both.map(\.description) == ["[::1]:5", "127.0.0.1:5"])
        }
        #expect(dns.received.isEmpty, "a name in the hosts file is not asked for its other family: \(dns.received)")
    }

    @Test func systemResolverReadsTheHostsFile() throws {
        try runLoop { loop in
            loop.test {
                let addresses = try await loop.resolver.resolve(host: "localhost", port: 9, timeout: .seconds(10))
                #expect(!addresses.isEmpty)
                #expect(
                    addresses.allSatisfy { $0.host == "127.0.0.1" || $0.host == "::1" }, "\(addresses)")
            }
        }
    }

    /// The nameserver never answers: the lookup fails at its deadline, and meanwhile the loop serves its other
    /// clients as before (getaddrinfo on the loop would hold it for the resolver's whole timeout).
    @Test func silentNameserverTimesOutWhileTheLoopServes() throws {
        let silent = try SilentNameserver()
        let before = openDescriptorCount()
        var roundTrips: [Duration] = []
        try runLoop { loop in
            let resolver = try Resolver(on: loop, nameservers: [silent.address], queryTimeout: .seconds(5))
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) {
                serveEcho($0, face: .callback)
            }
            let started = ContinuousClock.now
            var pingerDone = false
            resolver.resolve(host: "silent.test", port: 80, timeout: .milliseconds(600)) { result in
                #expect(throws: ResolutionError(host: "silent.test", reason: .timedOut)) { try result.get() }
                #expect(ContinuousClock.now - started < .seconds(2))
                listener.close()
                if pingerDone { loop.stop() }
                pingerDone = true
            }
            let address = listener.localAddress
            let measured = Handover<([Duration]) -> Void>()
            measured.value = { trips in
                roundTrips = trips
                if pingerDone { loop.stop() }
                pingerDone = true
            }
            Thread.detachNewThread {
                var trips: [Duration] = []
                defer {
                    let trips = trips
                    loop.execute { measured.value!(trips) }
                }
                if let client = try? connectedClient(address) {
                    for _ in 0..<20 {
                        let sent = ContinuousClock.now
                        guard (try? echoes(client, "ping")) == true else { break }
                        trips.append(ContinuousClock.now - sent)
                        usleep(10_000)
                    }
                    client.close()
                }
            }
        }
        #expect(roundTrips.count == 20, "every ping was answered while the lookup waited")
        let sorted = roundTrips.sorted()
        if !sorted.isEmpty {
            #expect(sorted[sorted.count / 2] < .milliseconds(10), "median round trip \(sorted[sorted.count / 2])")
            #expect(sorted.last! < .milliseconds(300), "longest round trip \(sorted.last!)")
        }
        #expect(openDescriptorCount() <= before, "the resolver's sockets are closed with it")
    }

    @Test(arguments: Face.allCases)
    func cancelledLookupCompletesWithCancellation(face: Face) throws {
        let silent = try SilentNameserver()
        try runLoop { loop in
            let resolver = try Resolver(on: loop, nameservers: [silent.address])
            switch face {
            case .callback:
                var calls = 0
                let request = resolver.resolve(host: "silent.test", port: 80) { result in
                    calls += 1
                    #expect(throws: CancellationError.self) { try result.get() }
                }
                #expect(request.isPending)
                try loop.schedule(after: .milliseconds(50)) {
                    request.cancel()
                    request.cancel()
                    #expect(calls == 1 && !request.isPending)
                    loop.stop()
                }
            case .async:
                loop.test {
                    let box = Handover<Resolver>()
                    box.value = resolver
                    let task = Task(executorPreference: loop) {
                        try await box.value!.resolve(host: "silent.test", port: 80)
                    }
                    try loop.schedule(after: .milliseconds(50)) { task.cancel() }
                    await #expect(throws: CancellationError.self) { try await task.value }
                }
            }
        }
    }
}
