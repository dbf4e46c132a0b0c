import Dispatch
import Foundation
import Glibc
import Protocols
import Reactor
import Synchronization
import TestSupport
import Testing

/// Every mode `serve proxy` runs in.
let proxyModes: [[String]] = [
    ["--mode", "reactor"], ["--mode", "reactor", "--loops", "2"], ["--mode", "threading"], ["--mode", "forking"],
    ["--mode", "sequential"],
]

/// An upstream the test controls: a listening socket on 127.0.0.1 whose accepted connections `serve` runs on a
/// thread each. ``close()`` waits for those threads before it closes their sockets (a socket closed by two threads at
/// once is a data race).
final class TestUpstream: @unchecked Sendable {
    let listener: Socket
    let port: Int
    private let accepted = Mutex<[Socket]>([])
    private let serving = DispatchGroup()

    init(_ serve: @escaping @Sendable (Socket) -> Void) throws {
        listener = try Socket(
            binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream, nonBlocking: false)
        try listener.listen(backlog: 16)
        port = listener.localAddress!.port!
        Thread.detachNewThread { [self] in
            while let (socket, _) = try? listener.accept() {
                accepted.withLock { $0.append(socket) }
                serving.enter()
                Thread.detachNewThread { [serving] in
                    serve(socket)
                    serving.leave()
                }
            }
        }
    }

    /// Stops accepting (the accept thread ends), waits (15 s at most) for the connections' threads, and closes what
    /// was accepted.
    func close() {
        listener.interrupt()
        _ = serving.wait(timeout: .now() + 15)
        for socket in accepted.withLock({ $0 }) { socket.close() }
    }
}

/// Starts `sockserv serve proxy` with `arguments`, returns it and its address.
private func startProxy(_ arguments: [String]) throws -> (SockservProcess, SocketAddress) {
    let proxy = try SockservProcess(["serve", "proxy"] + arguments)
    let line = proxy.readFirstLine()
    guard let port = proxy.port else { throw TestFailure("no listening line: \(line)") }
    return (proxy, try SocketAddress(ipv4: "127.0.0.1", port: port))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Reads until the peer closes or resets (or 5 s pass): what came, and whether it ended within the time.
private func readUntilClosed(_ socket: Socket) -> (bytes: [UInt8], closed: Bool) {
    socket.timeout = .seconds(5)
    var bytes: [UInt8] = []
    while true {
        do {
            let chunk = try socket.receive(maxCount: 65536)
            if chunk.isEmpty { return (bytes, true) }
            bytes += chunk
        } catch ReactorError.timedOut {
            return (bytes, false)
        } catch {
            return (bytes, true)  // reset
        }
    }
}

@Suite(.serialized) struct ProxyTests {
    /// Lines through the proxy to an echo server and back; the client's half-close reaches the upstream, whose close
    /// comes back; with --send-proxy v2 the echo returns the header, which names the client's port.
    @Test(arguments: proxyModes)
    func relaysBothWaysAndPassesHalfCloses(mode: [String]) throws {
        let echo = try SockservProcess(["serve", "echo"])
        _ = echo.readFirstLine()
        let (proxy, address) = try startProxy(
            mode + ["--upstream", "127.0.0.1:\(try #require(echo.port))", "--send-proxy", "v2"])
        var total = 0
        for _ in 0..<3 {
            let client = try connectedClient(address)
            let lines = String(repeating: "through the proxy\n", count: 1000)
            try client.sendAll(Array(lines.utf8))
            try client.shutdown(.write)
            let (bytes, closed) = readUntilClosed(client)
            #expect(closed, "the upstream's close came back after the client's half-close")
            let parsed = try bytes.withUnsafeBytes { try ProxyProtocol.parse($0) }
            let (header, length) = try #require(parsed)
            guard case .proxied(let source, let destination) = header else {
                Issue.record("not a proxied header: \(header)")
                continue
            }
            #expect(source.port == client.localAddress?.port && source.host == "127.0.0.1")
            #expect(destination.port == address.port)
            #expect(bytes.count == length + lines.utf8.count)
            #expect(Array(bytes[length...]) == Array(lines.utf8))
            total += bytes.count - length
            client.close()
        }
        #expect(proxy.stop() == 0)
        #expect(proxy.standardError.contains("3 connections, 3 requests"), "\(proxy.standardError)")
        #expect(echo.stop() == 0)
        let echoed = echo.standardError
        // Each v2 header holds newlines of its own (its signature has three): lines of their own to the echo server.
        #expect((requestsInSummary(echoed) ?? 0) >= 3000, "\(echoed)")
        #expect(total == 3 * 18_000)
    }

    /// The upstream half-closes first: its end reaches the client, which goes on sending; the upstream reads that
    /// after its own end, and its close ends the client's connection.
    @Test(arguments: proxyModes)
    func upstreamHalfCloseFirst(mode: [String]) throws {
        let heard = Mutex<[UInt8]>([])
        let upstream = try TestUpstream { socket in
            socket.timeout = .seconds(10)
            try? socket.sendAll(Array("bye\n".utf8))
            try? socket.shutdown(.write)
            while let chunk = try? socket.receive(maxCount: 4096), !chunk.isEmpty {
                heard.withLock { $0 += chunk }
            }
        }
        defer { upstream.close() }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(upstream.port)"])
        let client = try connectedClient(address)
        var got: [UInt8] = []
        while let chunk = try? client.receive(maxCount: 100), !chunk.isEmpty { got += chunk }
        #expect(got == Array("bye\n".utf8), "the upstream's reply, then its end")
        try client.sendAll(Array("still here\n".utf8))
        try client.shutdown(.write)
        #expect(readUntilClosed(client).closed)
        // The proxy may close the client as soon as both ends have ended, while the upstream's thread still reads.
        #expect(eventually(within: .seconds(5)) { heard.withLock { $0 } == Array("still here\n".utf8) })
        client.close()
        #expect(proxy.stop() == 0)
    }

    /// A client that half-closes and then resets while the upstream is silent: the relay idles (poll would report
    /// the reset on every pass of a socket it no longer reads, and spin, were that socket not left out).
    @Test(arguments: [["--mode", "threading"], ["--mode", "reactor"]])
    func resetAfterHalfCloseDoesNotSpin(mode: [String]) throws {
        let ended = Mutex(false)
        let upstream = try TestUpstream { socket in
            socket.timeout = .seconds(10)
            while let chunk = try? socket.receive(maxCount: 4096), !chunk.isEmpty {}
            ended.withLock { $0 = true }
        }
        defer { upstream.close() }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(upstream.port)"])
        let client = try connectedClient(address)
        try client.sendAll(Array("hello\n".utf8))
        try client.shutdown(.write)
        #expect(eventually(within: .seconds(5)) { ended.withLock { $0 } }, "the half-close reached the upstream")
        reset(client)
        let before = proxy.cpuSeconds
        usleep(1_000_000)  // a measurement window, not a synchronization
        #expect(proxy.cpuSeconds - before < 0.3, "the proxy idles once the client is gone")
        #expect(proxy.stop() == 0)
    }

    /// --max-connections with --proxy-protocol: checked as each connection is accepted, so N are served at once.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "threading"], ["--mode", "forking"]])
    func connectionLimitCountsRightWithProxyProtocol(mode: [String]) throws {
        let server = try SockservProcess(["serve", "echo", "--proxy-protocol", "--max-connections", "1"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let header = Array("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".utf8)
        let first = try connectedClient(address)
        try first.sendAll(header + Array("one\n".utf8))
        #expect(try first.receive(maxCount: 100) == Array("one\n".utf8), "the one connection allowed is served")
        let second = try connectedClient(address)
        try? second.sendAll(header + Array("two\n".utf8))
        #expect(readUntilClosed(second) == ([], true), "a second one, while the first is open, is refused")
        second.close()
        first.close()
        #expect(server.stop() == 0)
        #expect(server.standardError.contains("(1 connection limit)"), "\(server.standardError)")
    }

    /// An upstream that refuses, a name that does not resolve, and an address that never answers: the client is
    /// closed, the reason logged and counted, and the proxy serves the next client.
    @Test(arguments: proxyModes)
    func unreachableUpstreamClosesTheClientWithAReason(mode: [String]) throws {
        let closedPort = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream)
        let port = closedPort.localAddress!.port!
        closedPort.close()
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(port)", "--upstream-timeout", "1"])
        for _ in 0..<2 {
            let client = try connectedClient(address)
            try client.sendAll(Array("lost\n".utf8))
            let (bytes, closed) = readUntilClosed(client)
            #expect(closed && bytes.isEmpty)
            client.close()
        }
        #expect(proxy.waitForStandardError(containing: "upstream: cannot reach upstream 127.0.0.1:\(port)"))
        #expect(proxy.standardErrorSoFar.contains("Connection refused"), "\(proxy.standardErrorSoFar)")
        #expect(proxy.stop() == 0)
        #expect(proxy.standardError.contains("2 closed by the server (2 upstream)"), "\(proxy.standardError)")
    }

    @Test(arguments: [["--mode", "reactor"], ["--mode", "threading"]])
    func nameThatDoesNotResolveIsCounted(mode: [String]) throws {
        let (proxy, address) = try startProxy(
            mode + ["--upstream", "no-such-host.invalid:80", "--upstream-timeout", "1"])
        let started = ContinuousClock.now
        let client = try connectedClient(address)
        let (_, closed) = readUntilClosed(client)
        #expect(closed && ContinuousClock.now - started < .seconds(4))
        client.close()
        #expect(proxy.waitForStandardError(containing: "cannot reach upstream no-such-host.invalid:80"))
        #expect(proxy.stop() == 0)
        #expect(proxy.standardError.contains("(1 upstream)"), "\(proxy.standardError)")
    }

    /// The upstream drops SYNs (its accept queue is full): the connect timeout closes the client.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "forking"]])
    func silentUpstreamTimesOut(mode: [String]) throws {
        let full = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream, nonBlocking: false)
        try full.listen(backlog: 0)
        let port = full.localAddress!.port!
        let filler = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: port))
        defer {
            filler.close()
            full.close()
        }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(port)", "--upstream-timeout", "0.5"])
        let started = ContinuousClock.now
        let client = try connectedClient(address)
        let (_, closed) = readUntilClosed(client)
        #expect(closed && ContinuousClock.now - started < .seconds(3))
        client.close()
        #expect(proxy.waitForStandardError(containing: "cannot reach upstream 127.0.0.1:\(port)"))
        #expect(proxy.standardErrorSoFar.contains("timed out"), "\(proxy.standardErrorSoFar)")
        #expect(proxy.stop() == 0)
    }

    /// The upstream answers, then resets mid-stream: the client's connection closes and the reset is counted.
    @Test(arguments: proxyModes)
    func upstreamResetClosesTheClient(mode: [String]) throws {
        let upstream = try TestUpstream { socket in
            _ = try? socket.receive(maxCount: 100)
            try? socket.sendAll(Array("partial reply\n".utf8))
            reset(socket)
        }
        defer { upstream.close() }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(upstream.port)"])
        let client = try connectedClient(address)
        try client.sendAll(Array("request\n".utf8))
        let (bytes, closed) = readUntilClosed(client)
        #expect(closed)
        #expect(bytes.isEmpty || bytes == Array("partial reply\n".utf8), "what came before the reset, if anything")
        client.close()
        #expect(proxy.waitForStandardError(containing: "upstream 127.0.0.1:\(upstream.port) reset the connection"))
        #expect(proxy.stop() == 0)
        #expect(proxy.standardError.contains("(1 upstream)"), "\(proxy.standardError)")
    }

    /// A client that resets: the upstream's connection ends too, and the proxy holds no descriptor for either.
    @Test(arguments: proxyModes)
    func clientResetEndsTheUpstreamAndLeavesNoDescriptor(mode: [String]) throws {
        let ended = Mutex(0)
        let upstream = try TestUpstream { socket in
            socket.timeout = .seconds(10)
            while let chunk = try? socket.receive(maxCount: 4096), !chunk.isEmpty {}
            ended.withLock { $0 += 1 }
        }
        defer { upstream.close() }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(upstream.port)"])
        let pid = proxy.process.processIdentifier
        let baseline = descriptorCount(of: pid)
        for round in 1...3 {
            let client = try connectedClient(address)
            try client.sendAll(Array("hello\n".utf8))
            usleep(50_000)  // not a synchronization: the reset may come before or after the upstream connects
            reset(client)
            #expect(eventually(within: .seconds(5)) { ended.withLock { $0 } == round }, "round \(round)")
        }
        #expect(eventually(within: .seconds(5)) { descriptorCount(of: pid) <= baseline })
        #expect(proxy.stop() == 0)
    }

    /// Backpressure both ways: a client that does not read, and an upstream that does not read, each stop the other
    /// side from being read once the buffers between are full; the proxy's memory stays flat.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "threading"]])
    func slowReaderOnEitherSideBoundsMemory(mode: [String]) throws {
        let pushed = Atomic<Int>(0)
        let upstreamReads = Atomic<Bool>(true)
        // The upstream pushes as much as it can (the client does not read), or reads nothing (the client pushes).
        let upstream = try TestUpstream { socket in
            let chunk = [UInt8](repeating: 0x61, count: 65536)
            socket.timeout = .seconds(2)
            if upstreamReads.load(ordering: .relaxed) {
                while (try? socket.sendAll(chunk)) != nil { pushed.add(chunk.count, ordering: .relaxed) }
            } else {
                usleep(3_000_000)
            }
        }
        defer { upstream.close() }
        let (proxy, address) = try startProxy(mode + ["--upstream", "127.0.0.1:\(upstream.port)"])
        let before = proxy.residentKiB

        // A client that never reads: the upstream's sends stall after a few MiB of kernel buffers.
        let reader = try Socket(family: .ipv4, kind: .stream)
        try reader.setOption(level: SOL_SOCKET, name: SO_RCVBUF, value: 64 * 1024)
        try reader.connect(to: address)
        try reader.sendAll(Array("go\n".utf8))
        var last = -1
        #expect(
            eventually(within: .seconds(10)) {
                let now = pushed.load(ordering: .relaxed)
                defer { last = now }
                usleep(200_000)
                return now > 0 && now == last
            }, "the upstream's sends stalled")
        let stalledAt = pushed.load(ordering: .relaxed)
        #expect(stalledAt < 32 << 20, "the upstream pushed \(stalledAt) bytes into a client that reads nothing")
        let afterDownstream = proxy.residentKiB

        // A client that pushes 32 MiB to an upstream that reads nothing: its sends stall too.
        upstreamReads.store(false, ordering: .relaxed)
        let writer = try connectedClient(address)
        writer.timeout = .seconds(2)
        let chunk = [UInt8](repeating: 0x62, count: 65536)
        var sent = 0
        while sent < 32 << 20, (try? writer.sendAll(chunk)) != nil { sent += chunk.count }
        #expect(sent < 32 << 20, "the client pushed \(sent) bytes into an upstream that reads nothing")
        let afterUpstream = proxy.residentKiB
        if measuresMemory {
            #expect(afterDownstream - before < 8 * 1024, "RSS \(before) KiB -> \(afterDownstream) KiB")
            #expect(afterUpstream - before < 8 * 1024, "RSS \(before) KiB -> \(afterUpstream) KiB")
        }
        reader.close()
        writer.close()
        // The upstream first: the proxy's connection to it still holds what the writer sent, unread; closed, it ends.
        upstream.close()
        #expect(proxy.stop() == 0)
    }

    @Test func proxyOptionsAreValidated() throws {
        for (arguments, message) in [
            (["serve", "proxy"], "proxy needs --upstream HOST:PORT"),
            (["serve", "echo", "--upstream", "127.0.0.1:1"], "--upstream is for proxy only"),
            (["serve", "resp", "--send-proxy", "v1"], "--send-proxy is for proxy only"),
            (["serve", "proxy", "--upstream", "nohost"], "--upstream"),
            (
                ["serve", "proxy", "--upstream", "127.0.0.1:1", "--max-line", "10"],
                "--max-line does not apply to proxy"
            ),
            (["serve", "proxy", "--upstream", "127.0.0.1:1", "--upstream-timeout", "0"], "--upstream-timeout must be"),
        ] {
            let process = try SockservProcess(arguments)
            #expect(process.waitForExit() == 64, "\(arguments)")
            #expect(process.standardError.contains(message), "\(arguments): \(process.standardError)")
        }
    }

    /// --send-proxy into --proxy-protocol: the http server behind the proxy logs the real client (its port is the
    /// client's own), and a connection without a header is closed and counted.
    @Test(arguments: ["v1", "v2"])
    func proxyProtocolCarriesTheClientThrough(version: String) throws {
        let http = try SockservProcess(["serve", "http", "--proxy-protocol"])
        _ = http.readFirstLine()
        let httpPort = try #require(http.port)
        // The client comes over IPv6, the proxy goes on over IPv4: only the header can tell the server "::1".
        let proxy = try SockservProcess(
            ["serve", "proxy", "--host", "::1", "--upstream", "127.0.0.1:\(httpPort)", "--send-proxy", version])
        _ = proxy.readFirstLine()
        let client = try connectedClient(try SocketAddress(ipv6: "::1", port: try #require(proxy.port)))
        try client.sendAll(Array("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        let (reply, closed) = readUntilClosed(client)
        #expect(closed && String(decoding: reply, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        client.close()
        // Straight to the http server, without a header: refused as such.
        let bare = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: httpPort))
        try bare.sendAll(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(readUntilClosed(bare) == ([], true))
        bare.close()
        #expect(proxy.stop() == 0)
        #expect(http.stop() == 0)
        let log = http.standardError
        #expect(log.contains("] ::1 - - ["), "the access log names the client behind the proxy: \(log)")
        #expect(log.contains("proxy header: no valid PROXY protocol header"), "\(log)")
        #expect(log.contains("(1 proxy header)"), "\(log)")
    }
}
