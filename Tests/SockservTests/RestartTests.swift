import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// Whether the process `pid` has exited (gone, or a zombie no one reaped: the old process's child, which is not
/// ours to wait for).
private func hasExited(_ pid: pid_t) -> Bool {
    guard let stat = fileText("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(close, offsetBy: 2)] == "Z"
}

/// The pid of the process a restart started, from the old process's log line `SIGUSR2: pid N serves`.
private func newPID(_ server: SockservProcess) -> pid_t? {
    guard server.waitForStandardError(containing: "serves; finishing the requests in progress here") else {
        return nil
    }
    let log = server.standardErrorSoFar
    guard let range = log.range(of: "SIGUSR2: pid ") else { return nil }
    return pid_t(log[range.upperBound...].prefix { $0.isNumber })
}

/// Stops the new process with SIGTERM and waits up to 10 s for it to exit.
private func stop(_ pid: pid_t) -> Bool {
    kill(pid, SIGTERM)
    return eventually(within: .seconds(10)) { hasExited(pid) }
}

/// One GET over a new connection: the status code, or `nil`.
private func status(_ address: SocketAddress, _ path: String) -> Int? {
    guard let client = try? connectedClient(address) else { return nil }
    defer { client.close() }
    try? client.sendAll(Array("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
    let reply = String(decoding: readToEnd(client), as: UTF8.self)
    return reply.split(separator: " ").dropFirst().first.flatMap { Int($0) }
}

/// SIGUSR2 restarts `sockserv serve` without losing a client: a new process takes over the listening sockets, the
/// old one drains and exits 0; a restart that fails leaves the old one serving.
@Suite(.serialized) struct RestartTests {
    /// Under `wrk -c20` keep-alive load: no refused connection, no failed response, at most one read or write error
    /// per 10,000 requests; the old process exits 0 within its grace period and the new one serves.
    @Test(arguments: ["threading", "forking", "reactor"])
    func aRestartUnderLoadLosesNothing(mode: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else {
            print("skipped: wrk is not installed")
            return
        }
        let root = temporaryPath("site")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(FileManager.default.createFile(atPath: root + "/page.txt", contents: Data("a page\n".utf8)))
        // No access lines (standard error is a pipe this test reads only now and then); the restart's are notices.
        let server = try SockservProcess([
            "serve", "http", "--mode", mode, "--root", root, "--grace", "5", "--log-level", "notice",
            "--metrics-address", "127.0.0.1:0",
        ])
        _ = server.readFirstLine()
        let port = try #require(server.port)
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        let metricsLine = server.readLine() ?? ""
        let metricsPort = try #require(Int(metricsLine.split(separator: ":").last?.prefix { $0.isNumber } ?? ""))
        let metrics = try SocketAddress(ipv4: "127.0.0.1", port: metricsPort)
        /// Requests served so far, from `/metrics` (of whichever process serves it).
        func served() -> Int {
            guard let client = try? connectedClient(metrics) else { return 0 }
            defer { client.close() }
            try? client.sendAll(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            let text = String(decoding: readToEnd(client), as: UTF8.self)
            let line = text.split(separator: "\n").first { $0.hasPrefix("sockserv_requests_total") } ?? ""
            return Int(line.split(separator: " ").last ?? "") ?? 0
        }
        let load = Mutex<(status: Int32, output: String)?>(nil)
        let loaded = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let result = try? runClient("wrk", ["-t1", "-c20", "-d3s", "http://127.0.0.1:\(port)/page.txt"])
            load.withLock { $0 = result }
            loaded.signal()
        }
        // Once requests are being served, the restart.
        guard eventually({ served() > 0 }) else {
            kill(server.process.processIdentifier, SIGKILL)
            Issue.record("\(mode): no request served within 5 s; the server said: \(server.standardError)")
            return
        }
        let started = ContinuousClock.now
        kill(server.process.processIdentifier, SIGUSR2)
        let replacement = newPID(server)
        defer { if let replacement, !hasExited(replacement) { kill(replacement, SIGKILL) } }
        #expect(replacement != nil, "\(mode): the new process serves")
        #expect(server.waitForExit() == 0, "\(mode): the old process drains and exits 0")
        #expect(ContinuousClock.now - started < .seconds(7), "\(mode): within its grace period")
        #expect(loaded.wait(timeout: .now() + 30) == .success)
        let output = try #require(load.withLock { $0 }?.output)
        let requests =
            Int(
                output.split(separator: "\n").first { $0.contains("requests in") }?
                    .split(separator: " ").first ?? "") ?? 0
        var errors: [String: Int] = [:]
        if let line = output.split(separator: "\n").first(where: { $0.contains("Socket errors:") }) {
            for part in line.split(separator: ":", maxSplits: 1)[1].split(separator: ",") {
                let words = part.split(separator: " ")
                errors[String(words[0])] = Int(words[1])
            }
        }
        #expect(requests > 0, "\(mode): \(output)")
        #expect(errors["connect", default: 0] == 0 && errors["timeout", default: 0] == 0, "\(mode): \(output)")
        #expect(
            (errors["read", default: 0] + errors["write", default: 0]) * 10_000 <= max(requests, 10_000),
            "\(mode): \(output)")
        #expect(!output.contains("Non-2xx"), "\(mode): \(output)")
        // The new process's log is on the same standard error as the old one's, which it inherited.
        #expect(
            status(address, "/page.txt") == 200, "\(mode): the new process serves; the log: \(server.standardError)")
        // Counted as the access log line is written, after the response: the count may trail the reply a moment
        // (a ThreadSanitizer run's new process served none of wrk's requests, then scraped before counting this one).
        #expect(eventually { served() > 0 }, "\(mode): and its /metrics, on the socket it was passed")
        if let replacement { #expect(stop(replacement), "\(mode): the new process stops on SIGTERM") }
        print("restart under load \(mode): \(requests) requests, socket errors \(errors), old process exit 0")
    }

    /// A new process that cannot start (its program is gone) leaves the old one serving, which says why.
    @Test func aFailedRestartKeepsServing() throws {
        let directory = temporaryPath("bin")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let program = directory + "/sockserv"
        #expect(symlink(sockservPath, program) == 0)
        let server = try SockservProcess(["serve", "echo"], executable: program)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        unlink(program)
        kill(server.process.processIdentifier, SIGUSR2)
        #expect(server.waitForStandardError(containing: "still serving"))
        #expect(
            server.standardErrorSoFar.contains("exited before serving (exit status 127)"),
            "\(server.standardErrorSoFar)")
        let client = try connectedClient(address)
        #expect(try echoes(client, "still here\n"))
        client.close()
        #expect(server.stop() == 0)
    }

    /// A Unix socket's file stays through a restart (the old process does not remove it as it closes), and the
    /// new process serves on it.
    @Test func aUnixSocketSurvivesARestart() throws {
        let path = temporaryPath("sock")
        defer { unlink(path) }
        let server = try SockservProcess(["serve", "echo", "--unix", path, "--grace", "2"])
        #expect(server.readFirstLine() == "listening on unix:\(path)")
        let address = try SocketAddress(unixPath: path)
        let before = try connectedClient(address)
        #expect(try echoes(before, "before\n"))
        kill(server.process.processIdentifier, SIGUSR2)
        let replacement = newPID(server)
        defer { if let replacement, !hasExited(replacement) { kill(replacement, SIGKILL) } }
        #expect(replacement != nil)
        #expect(closedByServer(before), "the old process closes its connections as it drains")
        #expect(server.waitForExit() == 0)
        #expect(access(path, F_OK) == 0, "the socket file is still there")
        let after = try connectedClient(address)
        #expect(try echoes(after, "after\n"), "the new process serves on it")
        after.close()
        if let replacement { #expect(stop(replacement)) }
    }
}
