import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

@testable import sockserv

/// The samples of a Prometheus text exposition, by name with labels (`name{reason="x"}`).
func metricSamples(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        if parts.count == 2, let value = Double(parts[1]) { samples[String(parts[0])] = value }
    }
    return samples
}

/// `GET path` on a fresh connection; the status and the body.
func httpGet(_ address: SocketAddress, _ path: String) throws -> (status: Int, body: String) {
    let client = try connectedClient(address)
    defer { client.close() }
    try client.sendAll(Array("GET \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".utf8))
    var response: [UInt8] = []
    while true {
        let chunk = try client.receive(maxCount: 64 * 1024)
        if chunk.isEmpty { break }
        response += chunk
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let end = text.range(of: "\r\n\r\n") else { return (0, text) }
    let status = Int(text[..<end.lowerBound].split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, String(text[end.upperBound...]))
}

/// The number of open descriptors of `pid`, from outside.
func openDescriptors(_ pid: pid_t) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

/// The soft `RLIMIT_NOFILE` of `pid`, from `/proc/PID/limits`.
func fileLimit(_ pid: pid_t) -> Int? {
    let limits = ProcessSample.readProcFile("/proc/\(pid)/limits") ?? ""
    let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
    return line.split(separator: " ").dropFirst(3).first.flatMap { Int($0) }
}

/// A started `sockserv serve` with `--metrics-address 127.0.0.1:0`: its stream and metrics addresses.
struct MeteredServer {
    let server: SockservProcess
    let address: SocketAddress
    let metrics: SocketAddress

    init(_ arguments: [String]) throws {
        server = try SockservProcess(["serve"] + arguments + ["--metrics-address", "127.0.0.1:0"])
        _ = server.readFirstLine()
        address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let line = try #require(server.readLine(), "the metrics line")
        #expect(line.hasPrefix("metrics on http://127.0.0.1:") && line.hasSuffix("/metrics"), "\(line)")
        let port = Int(line.dropLast("/metrics".count).split(separator: ":").last ?? "")
        metrics = try SocketAddress(ipv4: "127.0.0.1", port: try #require(port))
    }

    /// Scrapes `/metrics`: the text and its samples.
    func scrape() throws -> (text: String, samples: [String: Double]) {
        let (status, body) = try httpGet(metrics, "/metrics")
        #expect(status == 200)
        return (body, metricSamples(body))
    }

    /// Scrapes until `condition` holds for the samples (up to 10 s); the last scrape.
    func scrape(until condition: ([String: Double]) -> Bool) throws -> (text: String, samples: [String: Double]) {
        var last = try scrape()
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition(last.samples) && ContinuousClock.now < deadline {
            usleep(20_000)
            last = try scrape()
        }
        return last
    }
}

@Suite struct MetricsEndpointTests {
    /// `/metrics` in every mode: what clients sent and received, the connections and the process's figures,
    /// each against an independent count; the text passes `promtool check metrics`.
    @Test(arguments: ["reactor", "threading", "forking", "sequential"])
    func metricsMatchWhatClientsAndTheKernelSaw(mode: String) throws {
        let before = Date().timeIntervalSince1970
        let metered = try MeteredServer(["echo", "--mode", mode])
        let started = Date().timeIntervalSince1970
        let pid = metered.server.process.processIdentifier
        var sent = 0
        var received = 0
        for index in 0..<5 {
            let client = try connectedClient(metered.address)
            for line in 0...index {
                let bytes = Array("client \(index) line \(line)\n".utf8)
                try client.sendAll(bytes)
                var reply: [UInt8] = []
                while reply.count < bytes.count { reply += try client.receive(maxCount: 100) }
                sent += bytes.count
                received += reply.count
            }
            client.close()
        }
        // Forking mode: the children's count of open connections falls as each ends, the library's as the parent
        // reaps them (each poll interval).
        let inProgress = "socketserver_requests_in_progress{server=\"\(metered.address)\"}"
        let (text, samples) = try metered.scrape { $0["sockserv_connections_open"] == 0 && $0[inProgress] == 0 }
        #expect(samples["sockserv_connections_accepted_total"] == 5, "\(text)")
        #expect(samples["sockserv_connections_open"] == 0)
        #expect(samples["sockserv_requests_total"] == 15, "1 + 2 + 3 + 4 + 5 lines")
        #expect(samples["sockserv_handler_errors_total"] == 0)
        // The library's figures for the server, counted by its ServerMetrics into the tool's backend (forked
        // children's bytes included): the bytes are theirs alone.
        func library(_ name: String) -> Double? { samples["socketserver_\(name){server=\"\(metered.address)\"}"] }
        #expect(library("requests_accepted_total") == 5, "\(text)")
        #expect(library("requests_refused_total") == 0)
        #expect(library("requests_in_progress") == 0)
        #expect(library("requests_finished_total") == 5)
        #expect(library("handler_errors_total") == 0)
        #expect(library("bytes_received_total") == Double(sent))
        #expect(library("bytes_sent_total") == Double(received))
        #expect(library("drain_finished_total") == 0)
        #expect(library("drain_cut_total") == 0)
        // Each accept is a callback of the loop, at least (the count is reported every poll interval).
        let callbacks = "socketserver_loop_callbacks_total{server=\"\(metered.address)\"}"
        #expect(try metered.scrape { ($0[callbacks] ?? 0) >= 5 }.samples[callbacks] ?? 0 >= 5)
        #expect(!text.contains("server=\"\(metered.metrics)\""), "the scrapes are not counted")
        for reason in ["connection_limit", "allow_list"] {
            #expect(samples[#"sockserv_connections_refused_total{reason="\#(reason)"}"#] == 0)
        }
        for reason in ["idle_timeout", "input_limit", "protocol_error", "tls_handshake", "grace_period", "error"] {
            #expect(samples[#"sockserv_connections_closed_total{reason="\#(reason)"}"#] == 0)
        }

        // The process, against /proc read around a scrape.
        let cpuBefore = ProcessSample.cpuTimes(pid)
        let descriptorsBefore = openDescriptors(pid)
        let process = try metered.scrape().samples
        let cpuAfter = ProcessSample.cpuTimes(pid)
        let runTimeAfter = ProcessSample.cpuSeconds(pid)
        let descriptorsAfter = openDescriptors(pid)
        let resident = Double(metered.server.residentKiB * 1024)
        let cpu = try #require(process["process_cpu_seconds_total"])
        // /proc/PID/stat gives user and system time each rounded down to a clock tick (10 ms), so their sum may
        // lag by up to two ticks; the threads' run time (schedstat, nanoseconds) is exact only for the live ones:
        // a thread that served a connection and ended took its exact time out of the sum (a CI run: 0.272 s at
        // the scrape, 0.26 s from both after it).
        #expect(
            cpu >= cpuBefore.own.total - 0.011 && cpu <= max(runTimeAfter, cpuAfter.own.total) + 0.021,
            "\(cpu) vs \(cpuBefore.own.total) before, \(cpuAfter.own.total) and \(runTimeAfter) after")
        // The reaped children's ticks (cutime + cstime) are rounded down per child: up to a tick each of the 5.
        let children = try #require(process["sockserv_children_cpu_seconds_total"])
        let reapedBound = mode == "forking" ? 0.011 * 6 : 0.011
        #expect(
            children >= cpuBefore.reapedChildren.total - 0.011
                && children <= cpuAfter.reapedChildren.total + reapedBound,
            "\(children) vs \(cpuAfter.reapedChildren.total)")
        let memory = try #require(process["process_resident_memory_bytes"])
        #expect(abs(memory - resident) <= max(2 * 1024 * 1024, resident / 10), "\(memory) vs VmRSS \(resident)")
        // During the scrape the server also held the scrape's connection.
        let descriptors = try #require(process["process_open_fds"])
        #expect(
            descriptors >= Double(min(descriptorsBefore, descriptorsAfter))
                && descriptors <= Double(max(descriptorsBefore, descriptorsAfter) + 1),
            "\(descriptors) vs \(descriptorsBefore) and \(descriptorsAfter) seen from outside")
        #expect(process["process_max_fds"] == fileLimit(pid).map(Double.init))
        let start = try #require(process["process_start_time_seconds"])
        #expect(start >= before - 1 && start <= started + 1, "\(start) not in \(before)...\(started)")

        if let check = try runClient("promtool", ["check", "metrics"], input: text) {
            #expect(check.status == 0, "promtool: \(check.output)")
        } else {
            print("skipped: promtool is not installed (apt-get install prometheus)")
        }
        #expect(try httpGet(metered.metrics, "/other").status == 404)
        #expect(metered.server.stop() == 0)
    }

    /// Two scrapes list the same families in the same order, each with HELP and TYPE first.
    @Test func familiesAreStableAndDescribed() throws {
        let metered = try MeteredServer(["resp"])
        func families(_ text: String) -> [String] {
            text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) }
        }
        let first = try metered.scrape().text
        let client = try connectedClient(metered.address)
        try client.sendAll(Array("PING\r\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        client.close()
        let second = try metered.scrape().text
        #expect(families(first) == families(second))
        #expect(families(first).count >= 14)
        let lines = first.split(separator: "\n")
        for (index, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
            let name = line.split(separator: " ")[2]
            #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "HELP before TYPE for \(name)")
        }
        #expect(metered.server.stop() == 0)
    }

    /// SIGUSR1 without any option prints the metrics on standard error, and serving goes on.
    @Test(arguments: ["reactor", "threading"])
    func sigusr1PrintsTheMetricsAndNeverKills(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--mode", mode])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        for _ in 0..<3 {
            let client = try connectedClient(address)
            try client.sendAll(Array("hello\n".utf8))
            #expect(try client.receive(maxCount: 100) == Array("hello\n".utf8))
            client.close()
        }
        kill(server.process.processIdentifier, SIGUSR1)
        let client = try connectedClient(address)
        try client.sendAll(Array("still\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("still\n".utf8), "serving goes on after the dump")
        client.close()
        #expect(server.stop() == 0)
        let samples = metricSamples(server.standardError)
        #expect(samples["sockserv_requests_total"] == 3 || samples["sockserv_requests_total"] == 4)
        let received = samples["socketserver_bytes_received_total{server=\"\(address)\"}"]
        #expect(received == 18 || received == 24, "\(server.standardError)")
    }

    /// In forking mode the metrics endpoint is served by the accepting loop, so the server forks from a process
    /// with one thread; a forked child does not keep the metrics socket (nor the server's) open.
    @Test func forkedChildrenCloseTheListeningSockets() throws {
        let metered = try MeteredServer(["echo", "--mode", "forking"])
        let pid = metered.server.process.processIdentifier
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count
        // ThreadSanitizer's runtime may run a thread of its own.
        #expect(threads == 1 || sanitizer == "thread", "the forking server runs \(threads) threads")
        let client = try connectedClient(metered.address)
        #expect(try echoes(client, "held\n"))
        let child = try #require(ProcessSample.children(of: pid).first)
        func sockets(_ pid: pid_t) -> Set<String> {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            return Set(
                fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
                    .filter { $0.hasPrefix("socket:") })
        }
        // The inodes of the two listening sockets, from /proc/net/tcp (state 0A: LISTEN; the port in hex).
        let ports = [metered.address.port, metered.metrics.port].compactMap { $0 }.map { String(format: "%04X", $0) }
        let table = ProcessSample.readProcFile("/proc/net/tcp") ?? ""
        var listening: Set<String> = []
        for row in table.split(separator: "\n") {
            let fields = row.split(separator: " ").map(String.init)
            guard fields.count > 9, fields[3] == "0A" else { continue }
            if ports.contains(where: { fields[1].hasSuffix(":" + $0) }) {
                listening.insert("socket:[" + fields[9] + "]")
            }
        }
        #expect(listening.count == 2, "\(table)")
        #expect(sockets(pid).isSuperset(of: listening))
        #expect(sockets(child).isDisjoint(with: listening), "the child holds neither: \(sockets(child))")
        client.close()
        #expect(metered.server.stop() == 0)
        // The child closes the metrics socket once its loop is its own: libevent warned of every child's before.
        #expect(!metered.server.standardError.contains("[warn]"), "\(metered.server.standardError)")
    }

    /// A metrics address in use is a clear error at start.
    @Test func aMetricsAddressInUseIsAnError() throws {
        let taken = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream)
        try taken.listen(backlog: 1)
        let port = try #require(taken.localAddress?.port)
        let server = try SockservProcess(["serve", "echo", "--metrics-address", "127.0.0.1:\(port)"])
        #expect(server.waitForExit() == 1)
        #expect(server.standardError.contains("--metrics-address"), "\(server.standardError)")
    }
}

@Suite struct CloseReasonTests {
    /// Every close by the server is logged once with its reason, and counted by reason in the summary
    /// and the metrics; at the limit resp says Redis's words.
    @Test(arguments: ["reactor", "threading", "forking"])
    func respClosesAreLoggedAndCounted(mode: String) throws {
        let metered = try MeteredServer(["resp", "--mode", mode, "--max-connections", "1", "--idle-timeout", "0.5"])
        let holder = try connectedClient(metered.address)
        try holder.sendAll(Array("PING\r\n".utf8))
        #expect(try holder.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        let refused = try connectedClient(metered.address)
        var refusal: [UInt8] = []
        while let chunk = try? refused.receive(maxCount: 100), !chunk.isEmpty { refusal += chunk }
        #expect(String(decoding: refusal, as: UTF8.self) == "-ERR max number of clients reached\r\n")
        #expect(closedByServer(holder), "the holder is closed after 0.5 s idle")
        _ = try metered.scrape { $0["sockserv_connections_open"] == 0 }
        for (input, reply) in [
            ("*1\r\n$99999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
            ("*1\r\nx\r\n", "-ERR Protocol error: expected '$', got 'x'\r\n"),
        ] {
            let client = try connectedClient(metered.address)
            try client.sendAll(Array(input.utf8))
            var answer: [UInt8] = []
            while let chunk = try? client.receive(maxCount: 100), !chunk.isEmpty { answer += chunk }
            #expect(String(decoding: answer, as: UTF8.self) == reply)
            _ = try metered.scrape { $0["sockserv_connections_open"] == 0 }
        }
        let samples = try metered.scrape().samples
        #expect(samples[#"sockserv_connections_refused_total{reason="connection_limit"}"#] == 1)
        #expect(samples[#"sockserv_connections_closed_total{reason="idle_timeout"}"#] == 1)
        #expect(samples[#"sockserv_connections_closed_total{reason="input_limit"}"#] == 1)
        #expect(samples[#"sockserv_connections_closed_total{reason="protocol_error"}"#] == 1)
        #expect(samples["socketserver_requests_refused_total{server=\"\(metered.address)\"}"] == 1, "the library's too")
        #expect(samples["socketserver_requests_accepted_total{server=\"\(metered.address)\"}"] == 4)
        #expect(metered.server.stop() == 0)
        let log = metered.server.standardError
        let lines = log.split(separator: "\n")
        func count(_ text: String) -> Int { lines.filter { $0.contains(text) }.count }
        #expect(count("warning sockserv: [sockserv] refused 127.0.0.1:") == 1, "\(log)")
        #expect(count(": connection limit: --max-connections 1 reached") == 1)
        #expect(count("info sockserv: [sockserv] closed 127.0.0.1:") == 1, "the idle timeout, at info")
        #expect(count(": idle timeout: no input for 0.5 seconds") == 1)
        #expect(count(": input limit: Protocol error: invalid bulk length") == 1)
        #expect(count(": protocol error: Protocol error: expected '$', got 'x'") == 1)
        #expect(
            log.contains(
                "0 errors, 1 refused (1 connection limit), 3 closed by the server (1 idle timeout, 1 input limit, 1 protocol error)"
            ), "\(log)")
    }

    /// redis-cli at the limit shows Redis's error, as with redis-server.
    @Test func redisCLIAtTheLimitSeesRedisError() throws {
        let server = try SockservProcess(["serve", "resp", "--max-connections", "1"])
        _ = server.readFirstLine()
        let holder = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        try holder.sendAll(Array("PING\r\n".utf8))
        #expect(try holder.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        defer { #expect(server.stop() == 0) }
        guard let result = try runClient("redis-cli", ["-p", String(server.port ?? 0), "PING"]) else {
            print("skipped: redis-cli is not installed (apt-get install redis-tools)")
            return
        }
        #expect(result.output.contains("ERR max number of clients reached"), "\(result.output)")
    }

    /// http at the limit answers 503; an oversized head is 431 and counted as an input limit; keep-alive
    /// connections idle past --idle-timeout are closed and counted.
    @Test(arguments: ["reactor", "threading"])
    func httpClosesAreLoggedAndCounted(mode: String) throws {
        let metered = try MeteredServer([
            "http", "--mode", mode, "--max-connections", "1", "--idle-timeout", "0.5", "--max-head", "1024",
        ])
        let holder = try connectedClient(metered.address)
        try holder.sendAll(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(String(decoding: try holder.receive(maxCount: 4096), as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        let refused = try httpGet(metered.address, "/")
        #expect(refused.status == 503)
        #expect(refused.body.contains("connection limit"))
        #expect(closedByServer(holder), "idle past the keep-alive timeout")
        _ = try metered.scrape { $0["sockserv_connections_open"] == 0 }
        let big = try httpGet(metered.address, "/" + String(repeating: "a", count: 2000))
        #expect(big.status == 414 || big.status == 431)
        let samples = try metered.scrape { $0["sockserv_connections_open"] == 0 }.samples
        #expect(samples[#"sockserv_connections_refused_total{reason="connection_limit"}"#] == 1)
        #expect(samples[#"sockserv_connections_closed_total{reason="idle_timeout"}"#] == 1)
        #expect(samples[#"sockserv_connections_closed_total{reason="input_limit"}"#] == 1)
        #expect(metered.server.stop() == 0)
        let log = metered.server.standardError
        #expect(log.contains(": connection limit: --max-connections 1 reached"), "\(log)")
        #expect(log.contains(": idle timeout: no next request in time"), "\(log)")
        #expect(log.contains("1 refused (1 connection limit), 2 closed by the server (1 idle timeout, 1 input limit)"))
    }

    /// --log-level warning hides the routine closes (info) and keeps the limits (warning).
    @Test func logLevelChoosesWhichClosesShow() throws {
        let server = try SockservProcess([
            "serve", "echo", "--idle-timeout", "0.2", "--max-line", "4", "--log-level", "warning",
        ])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let idle = try connectedClient(address)
        #expect(closedByServer(idle))
        let long = try connectedClient(address)
        try long.sendAll(Array("too long\n".utf8))
        #expect(closedByServer(long))
        #expect(server.stop() == 0)
        let log = server.standardError
        #expect(!log.contains("idle timeout: "), "\(log)")
        #expect(log.contains("input limit: a line longer than 4 bytes"), "\(log)")
        #expect(log.contains("2 closed by the server (1 idle timeout, 1 input limit)"), "counted whatever the level")
    }
}

@Suite struct SystemdTests {
    /// `systemd-socket-activate` listens, starts sockserv on the first connection with the socket as
    /// descriptor 3 (LISTEN_FDS=1), and sockserv serves it, and the connection that woke it, in every mode.
    @Test(arguments: ["reactor", "threading", "forking", "sequential"])
    func socketActivationOverTCP(mode: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate") else {
            print("skipped: systemd-socket-activate is not installed (apt-get install systemd)")
            return
        }
        let port = try freePort()
        let server = try SockservProcess(
            ["serve", "echo", "--mode", mode],
            launcher: ["/usr/bin/systemd-socket-activate", "-l", "127.0.0.1:\(port)", "--fdname", "echo"])
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        let client = try #require(connectWhenListening(address))
        try client.sendAll(Array("woke it\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("woke it\n".utf8))
        #expect(server.readFirstLine() == "listening on 127.0.0.1:\(port)")
        client.close()  // a sequential server serves one connection at a time
        let second = try connectedClient(address)
        try second.sendAll(Array("again\n".utf8))
        #expect(try second.receive(maxCount: 100) == Array("again\n".utf8))
        second.close()
        #expect(server.stop() == 0)
        #expect(server.standardError.contains("sockserv: 2 connections, 2 requests"), "\(server.standardError)")
    }

    /// The same over a Unix socket: sockserv does not remove the file systemd made.
    @Test func socketActivationOverUnix() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate") else {
            print("skipped: systemd-socket-activate is not installed (apt-get install systemd)")
            return
        }
        let path = temporaryPath("activated.sock")
        defer { unlink(path) }
        let server = try SockservProcess(
            ["serve", "resp"], launcher: ["/usr/bin/systemd-socket-activate", "-l", path])
        let address = try SocketAddress(unixPath: path)
        let client = try #require(connectWhenListening(address))
        try client.sendAll(Array("PING\r\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        #expect(server.readFirstLine() == "listening on unix:\(path)")
        client.close()
        #expect(server.stop() == 0)
        #expect(access(path, F_OK) == 0, "the socket file belongs to systemd")
    }

    /// A passed descriptor that is not a listening socket is a clear error, and --port with passed sockets
    /// a usage error.
    @Test func badPassedSocketsAreClearErrors() throws {
        let passOne = ["/bin/sh", "-c", #"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@" 3</dev/null"#]
        let notASocket = try SockservProcess(["serve", "echo"], launcher: passOne)
        #expect(notASocket.waitForExit() == 1)
        #expect(
            notASocket.standardError.contains("the socket systemd passed (descriptor 3"), "\(notASocket.standardError)")
        let withPort = try SockservProcess(["serve", "echo", "--port", "80"], launcher: passOne)
        #expect(withPort.waitForExit() == 64)
        #expect(withPort.standardError.contains("--port does not apply"), "\(withPort.standardError)")
    }

    /// NOTIFY_SOCKET gets READY=1 with a STATUS once listening, WATCHDOG=1 at half of WATCHDOG_USEC, and
    /// STOPPING=1 on SIGTERM.
    @Test func readinessWatchdogAndStoppingNotifications() throws {
        let path = temporaryPath("notify.sock")
        let notify = try Socket(binding: try SocketAddress(unixPath: path), kind: .datagram, nonBlocking: false)
        notify.timeout = .seconds(10)
        defer { notify.close() }
        let server = try SockservProcess(
            ["serve", "echo"], environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"])
        let line = server.readFirstLine()
        func next() throws -> String { String(decoding: try notify.receive(maxCount: 4096), as: UTF8.self) }
        let ready = try next()
        #expect(ready == "READY=1\nSTATUS=\(line)", "\(ready)")
        #expect(try next() == "WATCHDOG=1")
        #expect(try next() == "WATCHDOG=1")
        kill(server.process.processIdentifier, SIGTERM)
        var stopping = ""
        while !stopping.hasPrefix("STOPPING=1") { stopping = try next() }
        #expect(stopping.hasPrefix("STOPPING=1\nSTATUS="))
        #expect(server.waitForExit() == 0)
    }

    /// The example units under Examples/systemd verify, and their ExecStart line serves under socket
    /// activation with NOTIFY_SOCKET as systemd would run it.
    @Test func theExampleUnitsWork() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate") else {
            print("skipped: systemd is not installed (apt-get install systemd)")
            return
        }
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Examples/systemd")
        let service = try String(contentsOf: examples.appendingPathComponent("sockserv-resp.service"), encoding: .utf8)
        let socket = try String(contentsOf: examples.appendingPathComponent("sockserv-resp.socket"), encoding: .utf8)
        let execStart = try #require(service.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        var arguments = execStart.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)
        #expect(arguments.removeFirst() == "/usr/local/bin/sockserv")
        // systemd-analyze verify, with the binary where the unit expects it replaced by the built one.
        let directory = temporaryPath("units")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try service.replacingOccurrences(of: "/usr/local/bin/sockserv", with: sockservPath)
            .write(toFile: directory + "/sockserv-resp.service", atomically: true, encoding: .utf8)
        try socket.write(toFile: directory + "/sockserv-resp.socket", atomically: true, encoding: .utf8)
        if let verify = try runClient(
            "systemd-analyze", ["verify", directory + "/sockserv-resp.socket", directory + "/sockserv-resp.service"])
        {
            #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
        }
        // The ExecStart line under socket activation (free ports instead of the unit's).
        arguments = arguments.map { $0.hasPrefix("127.0.0.1:") ? "127.0.0.1:0" : $0 }
        let notifyPath = temporaryPath("notify.sock")
        let notify = try Socket(binding: try SocketAddress(unixPath: notifyPath), kind: .datagram, nonBlocking: false)
        notify.timeout = .seconds(10)
        let port = try freePort()
        // systemd-socket-activate passes on only the variables named with -E.
        let server = try SockservProcess(
            arguments,
            launcher: [
                "/usr/bin/systemd-socket-activate", "-l", "127.0.0.1:\(port)", "--fdname", "resp",
                "-E", "NOTIFY_SOCKET=\(notifyPath)", "-E", "WATCHDOG_USEC=10000000",
            ])
        let client = try #require(connectWhenListening(try SocketAddress(ipv4: "127.0.0.1", port: port)))
        try client.sendAll(Array("PING\r\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        #expect(String(decoding: try notify.receive(maxCount: 4096), as: UTF8.self).hasPrefix("READY=1\n"))
        client.close()
        #expect(server.stop() == 0)
    }

    /// A client connected once something listens on `address` (up to 10 s).
    func connectWhenListening(_ address: SocketAddress) -> Socket? {
        var client: Socket?
        _ = eventually(within: .seconds(10)) {
            client = try? connectedClient(address)
            return client != nil
        }
        return client
    }

    /// A port picked free by the kernel (bound, then closed).
    func freePort() throws -> Int {
        let probe = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream)
        defer { probe.close() }
        return try #require(probe.localAddress?.port)
    }
}
