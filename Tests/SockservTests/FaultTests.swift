import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// The complete lines at the start of `bytes`, and whether anything follows the last newline.
func completeLines(_ bytes: [UInt8]) -> (lines: [String], partial: Bool) {
    let end = (bytes.lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1
    let lines = bytes[..<end].split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
    return (lines, end < bytes.count)
}

/// Waits (up to 30 s) until replies are waiting unread on `client` and have stopped growing for half a
/// second: the server is blocked writing to it, not just slow.
func waitUntilRepliesStall(_ client: Socket) {
    var unread: Int32 = -1
    var stableSamples = 0
    let deadline = ContinuousClock.now + .seconds(30)
    while stableSamples < 5 && ContinuousClock.now < deadline {
        usleep(100_000)
        var now: Int32 = 0
        _ = ioctl(client.fileDescriptor, UInt(FIONREAD), &now)
        stableSamples = now == unread && now > 0 ? stableSamples + 1 : 0
        unread = now
    }
}

/// The requests count from the server's summary line.
func requestsInSummary(_ stderr: String) -> Int? {
    guard let range = stderr.range(of: #"(\d+) requests"#, options: .regularExpression) else { return nil }
    return Int(stderr[range].split(separator: " ")[0])
}

/// The modes that serve many connections at once, with the reactor's two handler faces.
let concurrentModes: [[String]] = [
    ["--mode", "reactor"], ["--mode", "reactor", "--handler", "async"], ["--mode", "threading"], ["--mode", "forking"],
]

@Suite struct FaultTests {
    /// SIGTERM while 1,000 pipelined requests are in flight: every reply the server counted arrives
    /// whole, no connection gets half a reply, new connections are refused, exit 0.
    @Test(arguments: concurrentModes)
    func gracefulShutdownLosesNothing(mode: [String]) throws {
        let slowLines = 140
        let server = try SockservProcess(["serve", "echo", "--grace", "20"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        // A client that asks for 8 MiB of echo and does not read yet: it holds the server in its grace period.
        // Its receive buffer is kept small: Linux grows it up to tcp_rmem's maximum (32 MiB on some kernels),
        // which would swallow every reply and leave the server nothing to wait for.
        let slow = try Socket(family: .ipv4, kind: .stream)
        try slow.setOption(level: SOL_SOCKET, name: SO_RCVBUF, value: 64 * 1024)
        slow.timeout = .seconds(20)
        try slow.connect(to: address)
        let bigLine = String(repeating: "s", count: 60_000) + "\n"
        let slowSender = Thread { _ = try? slow.sendAll(Array(String(repeating: bigLine, count: slowLines).utf8)) }
        slowSender.start()
        waitUntilRepliesStall(slow)
        // Ten clients pipeline 100 requests each.
        var clients: [Socket] = []
        var sent: [[String]] = []
        for client in 0..<10 {
            let socket = try connectedClient(address, timeout: .seconds(20))
            let lines = (0..<100).map { "client \(client) request \($0)" }
            try socket.sendAll(Array(lines.map { $0 + "\n" }.joined().utf8))
            clients.append(socket)
            sent.append(lines)
        }
        // In flight for sure: every client has been accepted and has its first reply.
        var early: [[UInt8]] = []
        for client in clients {
            var bytes: [UInt8] = []
            while !bytes.contains(UInt8(ascii: "\n")), let chunk = try? client.receive(maxCount: 64), !chunk.isEmpty {
                bytes += chunk
            }
            early.append(bytes)
        }
        #expect(kill(server.process.processIdentifier, SIGTERM) == 0)
        // New connections are refused once the server stops accepting (it is still running: the slow client).
        let refused = eventually(within: .seconds(10)) {
            guard let probe = try? Socket(family: .ipv4, kind: .stream) else { return false }
            do { try probe.connect(to: address) } catch let error as IOError {
                return error.errnoCode == ECONNREFUSED
            } catch {}
            return false
        }
        #expect(refused, "new connections are refused during the grace period")
        #expect(server.process.isRunning, "the slow client keeps the server in its grace period")
        var received = 0
        for (index, client) in clients.enumerated() {
            let (lines, partial) = completeLines(early[index] + readToEnd(client))
            #expect(!partial, "client \(index) got half a reply")
            #expect(lines == Array(sent[index].prefix(lines.count)), "client \(index) got its replies in order")
            received += lines.count
        }
        let (slowReplies, slowPartial) = completeLines(readToEnd(slow))
        #expect(!slowPartial)
        received += slowReplies.count
        #expect(server.waitForExit() == 0)
        let stderr = server.standardError
        let counted = try #require(requestsInSummary(stderr), "\(stderr)")
        #expect(received == counted, "every request the server read was answered in full: \(received) of \(counted)")
        print(
            "graceful shutdown \(mode): \(received) requests answered of \(10 * 100 + slowLines) sent, new connections refused, exit 0"
        )
    }

    /// A client that never reads holds its connection past the grace period: the server cuts it off,
    /// says so, and exits 1 soon after.
    @Test(arguments: concurrentModes)
    func aStuckClientIsCutOffAfterTheGracePeriod(mode: [String]) throws {
        let server = try SockservProcess(["serve", "echo", "--grace", "0.5"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let stuck = try connectedClient(address)
        let line = String(repeating: "x", count: 60_000) + "\n"
        // Send until one 60 kB send takes 2 s: only a server blocked on its replies stops reading that long.
        stuck.timeout = .seconds(2)
        var sent = 0
        while sent < 64 << 20, (try? stuck.sendAll(Array(line.utf8))) != nil { sent += line.utf8.count }
        waitUntilRepliesStall(stuck)
        let start = ContinuousClock.now
        #expect(server.stop(with: SIGTERM) == 1)
        #expect(ContinuousClock.now - start < .seconds(8))
        let stderr = server.standardError
        #expect(stderr.contains("sockserv: cut off 1 requests in progress after the 0.5 s grace period"))
        #expect(stderr.contains("1 closed by the server (1 grace period)"), "\(stderr)")
    }

    /// A client that never reads while the server echoes 40 MiB to it: the server's memory stays
    /// within its write watermark (backpressure reaches the handler), then every byte arrives.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "reactor", "--handler", "async"], ["--mode", "threading"]])
    func backpressureBoundsTheServersMemory(mode: [String]) throws {
        let total = max(scaled(40), 12) << 20  // well past where the sender stalls (6 to 8 MiB)
        let server = try SockservProcess(["serve", "echo"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let client = try connectedClient(address, timeout: .seconds(60))
        let baseline = server.residentKiB
        let line = Array((String(repeating: "b", count: 1023) + "\n").utf8)
        let sent = Atomic<Int>(0)
        let sender = Thread {
            var chunk: [UInt8] = []
            for _ in 0..<64 { chunk += line }
            while sent.load(ordering: .relaxed) < total {
                guard (try? client.sendAll(chunk)) != nil else { return }
                sent.add(chunk.count, ordering: .relaxed)
            }
        }
        sender.start()
        // The sender blocks once every buffer on the way is full; watch the server meanwhile.
        var peak = baseline
        var lastSent = -1
        var stalledSamples = 0
        let deadline = ContinuousClock.now + .seconds(20)
        while stalledSamples < 10 && ContinuousClock.now < deadline {
            usleep(50_000)
            peak = max(peak, server.residentKiB)
            let now = sent.load(ordering: .relaxed)
            stalledSamples = now == lastSent ? stalledSamples + 1 : 0
            lastSent = now
        }
        let stalledAt = sent.load(ordering: .relaxed)
        #expect(stalledAt < total, "the sender stalled: the server stopped reading")
        // Now read everything back.
        var received = 0
        while received < total {
            guard let chunk = try? client.receive(maxCount: 256 * 1024), !chunk.isEmpty else { break }
            received += chunk.count
            if received % (8 << 20) < chunk.count { peak = max(peak, server.residentKiB) }
        }
        #expect(received == total)
        let growth = peak - baseline
        #expect(
            growth < 32 * 1024 || !measuresMemory,
            "the server grew \(growth) KiB while holding a client that did not read")
        print(
            "backpressure \(mode): sender stalled after \(stalledAt >> 20) MiB; server RSS \(baseline) KiB -> peak \(peak) KiB; \(received >> 20) MiB echoed"
        )
        client.close()
        #expect(server.stop() == 0)
    }

    /// Out of descriptors: new connections wait in the backlog, the loop does not spin, and service
    /// resumes by itself when descriptors free up.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "threading"]])
    func descriptorExhaustionDefersAndRecovers(mode: [String]) throws {
        let server = try SockservProcess(["serve", "echo"] + mode, fileLimit: 40)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        // Open more connections than the server has descriptors; each asks for one echo.
        var clients: [Socket] = []
        for index in 0..<60 {
            let client = try connectedClient(address, timeout: .seconds(10))
            try client.sendAll(Array("client \(index)\n".utf8))
            clients.append(client)
        }
        var served: [Int] = []
        var waiting: [Int] = []
        for (index, client) in clients.enumerated() {
            client.timeout = .milliseconds(served.isEmpty ? 2000 : 200)
            if let reply = try? client.receive(maxCount: 100), !reply.isEmpty {
                served.append(index)
            } else {
                waiting.append(index)
            }
        }
        #expect(!served.isEmpty && !waiting.isEmpty, "some served, some deferred: \(served.count) / \(waiting.count)")
        // At the limit the server waits; it does not spin.
        let cpuBefore = server.cpuSeconds
        let wall = ContinuousClock.now
        usleep(1_000_000)
        let cpu = server.cpuSeconds - cpuBefore
        let elapsed = Double((ContinuousClock.now - wall).components.seconds)
        #expect(cpu < 0.5 * max(elapsed, 1), "the server used \(cpu) s of CPU in \(elapsed) s while out of descriptors")
        // Free the served clients' descriptors: the deferred ones are served without any help.
        for index in served { clients[index].close() }
        var recovered = 0
        var failures: [String] = []
        for index in waiting {
            clients[index].timeout = .seconds(10)
            do {
                let reply = try clients[index].receive(maxCount: 100)
                if reply == Array("client \(index)\n".utf8) {
                    recovered += 1
                } else {
                    failures.append("\(index): \(reply)")
                }
                clients[index].close()  // each one served frees a place for the next
            } catch {
                failures.append("\(index): \(error)")
            }
        }
        #expect(recovered == waiting.count, "\(failures)")
        print(
            "descriptor exhaustion \(mode): RLIMIT_NOFILE 40, \(served.count) served at once, \(waiting.count) deferred and then served, \(String(format: "%.2f", cpu)) s CPU while waiting"
        )
        for client in clients { client.close() }
        #expect(server.stop() == 0)
        if recovered != waiting.count { print(server.standardError) }
    }

    /// `--max-connections N` holds exactly: N are served, the next ones are closed unanswered, and a
    /// place freed is taken again.
    @Test(arguments: [["--mode", "reactor"], ["--mode", "threading"], ["--mode", "forking"]])
    func maxConnectionsHoldsExactly(mode: [String]) throws {
        let server = try SockservProcess(["serve", "echo", "--max-connections", "10"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        var open: [Socket] = []
        for index in 0..<10 {
            let client = try connectedClient(address)
            try client.sendAll(Array("\(index)\n".utf8))
            #expect(try client.receive(maxCount: 10) == Array("\(index)\n".utf8))
            open.append(client)
        }
        var refused = 0
        for _ in 0..<5 {
            let extra = try connectedClient(address, timeout: .seconds(5))
            try? extra.sendAll(Array("x\n".utf8))
            if closedByServer(extra) { refused += 1 }
        }
        #expect(refused == 5)
        open.removeFirst().close()
        let served = eventually(within: .seconds(5)) {
            guard let client = try? connectedClient(address, timeout: .seconds(2)) else { return false }
            try? client.sendAll(Array("again\n".utf8))
            return (try? client.receive(maxCount: 10)) == Array("again\n".utf8)
        }
        #expect(served, "a freed place is served again")
        for client in open { client.close() }
        #expect(server.stop() == 0)
        let stderr = server.standardError
        // 6: one retry met a full server.
        #expect(stderr.contains(" 5 refused") || stderr.contains(" 6 refused"), "\(stderr)")
    }

    /// `--max-connections 3` serves exactly 3 of a burst of 6 connections, round after round: the count is
    /// taken at accept, not when a request's thread or child starts (threading mode served up to 6).
    @Test(arguments: ["reactor", "threading", "forking"])
    func maxConnectionsHoldsInABurst(mode: String) throws {
        let metered = try MeteredServer(["echo", "--mode", mode, "--max-connections", "3"])
        let pid = metered.server.process.processIdentifier
        let threads = { ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).count }
        let idleThreads = threads()
        var served: [Int] = []
        for _ in 0..<5 {
            // All six wait in the backlog before the server looks at the first.
            let burst = try (0..<6).map { _ in try connectedClient(metered.address, timeout: .seconds(5)) }
            served.append(burst.filter { (try? echoes($0, "x\n")) == true }.count)
            for client in burst { client.close() }
            // Empty again before the next burst: no connection open, and (threading) every request thread gone,
            // which ends after the request has left the library's count.
            _ = try metered.scrape { $0["sockserv_connections_open"] == 0 }
            #expect(eventually(within: .seconds(10)) { threads() <= idleThreads }, "request threads end")
        }
        #expect(served == [3, 3, 3, 3, 3], "\(mode)")
        #expect(metered.server.stop() == 0)
        #expect(metered.server.standardError.contains(" 15 refused"), "\(metered.server.standardError)")
    }

    /// Only clients in an `--allow` range are served.
    @Test func allowListServesOnlyItsRanges() throws {
        for (range, served) in [("10.0.0.0/8", false), ("127.0.0.0/8", true), ("::ffff:127.0.0.1/128", true)] {
            let server = try SockservProcess(["serve", "echo", "--allow", range, "--allow", "192.0.2.0/24"])
            _ = server.readFirstLine()
            let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
            try? client.sendAll(Array("hi\n".utf8))
            let reply = (try? client.receive(maxCount: 10)) ?? []
            #expect((reply == Array("hi\n".utf8)) == served, "\(range)")
            #expect(server.stop() == 0)
            let stderr = server.standardError
            #expect(stderr.contains("notice sockserv: [sockserv] refused 127.0.0.1:") != served, "\(stderr)")
            #expect(stderr.contains(served ? "0 refused" : "1 refused (1 allow list)"), "\(stderr)")
        }
        let bad = try SockservProcess(["serve", "echo", "--allow", "10.0.0.0/33"])
        #expect(bad.waitForExit() != 0)
        #expect(bad.standardError.contains("--allow invalid address range: 10.0.0.0/33"))
    }

    /// A Unix socket file gets the mode asked (0600 by default), and a symlink at the path is never followed.
    @Test func unixSocketFilesAreOwnerOnlyAndNeverFollowSymlinks() throws {
        let directory = NSTemporaryDirectory() + "sockserv-unix-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func mode(_ path: String) -> mode_t {
            var info = stat()
            lstat(path, &info)
            return info.st_mode & 0o777
        }
        let path = directory + "/s"
        for (arguments, expected) in [([String](), mode_t(0o600)), (["--unix-mode", "660"], mode_t(0o660))] {
            let server = try SockservProcess(["serve", "echo", "--unix", path] + arguments)
            #expect(server.readFirstLine() == "listening on unix:\(path)")
            #expect(mode(path) == expected)
            // A second server on a live socket is refused.
            let second = try SockservProcess(["serve", "echo", "--unix", path])
            #expect(second.waitForExit() != 0)
            #expect(second.standardError.contains("another socket is listening there"))
            #expect(server.stop() == 0)
            #expect(!FileManager.default.fileExists(atPath: path), "the socket file is removed on exit")
        }
        // A symlink planted at the path: refused, and its target keeps its mode.
        let target = directory + "/target"
        _ = FileManager.default.createFile(
            atPath: target, contents: Data("keep".utf8), attributes: [.posixPermissions: 0o644])
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: target)
        let server = try SockservProcess(["serve", "echo", "--unix", path])
        #expect(server.waitForExit() != 0)
        #expect(server.standardError.contains("is not a socket"))
        #expect(mode(target) == 0o644)
        #expect(FileManager.default.contents(atPath: target) == Data("keep".utf8))
    }

    /// Input over a limit gets a protocol error and only that connection is closed.
    @Test func inputOverALimitClosesOnlyThatConnection() throws {
        for (service, limit, request, expected) in [
            ("echo", ["--max-line", "100"], String(repeating: "x", count: 200) + "\n", ""),
            (
                "resp", ["--max-bulk", "10"],
                "*2\r\n$4\r\nECHO\r\n$20\r\n" + String(repeating: "y", count: 20) + "\r\n",
                "-ERR Protocol error: invalid bulk length\r\n"
            ),
            (
                "http", ["--max-head", "100"],
                "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "z", count: 200) + "\r\n\r\n", "HTTP/1.1 431 "
            ),
            (
                "http", ["--max-request", "10"], "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
                "HTTP/1.1 413 "
            ),
        ] {
            let server = try SockservProcess(["serve", service] + limit)
            _ = server.readFirstLine()
            let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
            let bystander = try connectedClient(address)
            let offender = try connectedClient(address)
            try offender.sendAll(Array(request.utf8))
            offender.timeout = .seconds(5)
            let reply = String(decoding: readToEnd(offender), as: UTF8.self)
            #expect(reply.hasPrefix(expected), "\(service) \(limit): \(reply.prefix(80))")
            #expect(closedByServer(offender), "\(service) \(limit): the offending connection is closed")
            let ping = service == "echo" ? "ok\n" : service == "resp" ? "PING\r\n" : "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
            try bystander.sendAll(Array(ping.utf8))
            #expect(!(try bystander.receive(maxCount: 4096)).isEmpty, "the other connection is still served")
            #expect(server.stop() == 0)
        }
    }
}
