import ArgumentParser
import Foundation
import Glibc
import Reactor

struct Bench: ParsableCommand {
    static let maximumConnections = 5000
    static let maximumDuration = 600.0

    static let configuration = CommandConfiguration(
        abstract:
            "Compare the concurrency modes side by side: each mode's server as a child process, driven by a closed-loop load.",
        discussion: """
            Every run is bounded: a server that cannot keep up (sequential with many connections, forking with a \
            thousand) is reported with the connections it left unanswered, not waited for.

            Progress: a line per finished run on standard output (and a progress bar when it is a terminal). \
            SIGINT or SIGTERM stops the load, stops and reaps the server, writes what was measured so far and \
            exits 130 or 143.
            """
    )

    @Option(help: "Comma-separated connection counts, each 1 to \(maximumConnections).")
    var connections = "1,10,100"

    @Option(help: "Seconds of load per run, more than 0 and at most \(Int(maximumDuration)).")
    var duration = 2.0

    @Option(help: "Request size in bytes (echo), 2 to 1048576.")
    var payload = 32

    @Option(help: "Requests sent back to back per connection before waiting for the replies, 1 to 1024.")
    var pipeline = 1

    @Flag(
        name: .customLong("connect-per-request"),
        help: "Open a new connection for every request (the accept-heavy workload).")
    var connectPerRequest = false

    @Option(
        help:
            "Comma-separated modes: sequential, threading, forking, reactor, and reactor-pool (reactor mode with a blocking pool of --blocking-threads; with --mixed, plain reactor runs the blocking call on its loop)."
    )
    var modes = "sequential,threading,forking,reactor"

    @Option(
        help: ArgumentHelp(
            "resp only: every Nth request a connection sends (2 to 1000000) is DEBUG SLEEP 0.01, 10 ms of blocking work; the rest PING.",
            valueName: "N"))
    var mixed: Int?

    @Option(
        name: .customLong("blocking-threads"),
        help: "reactor-pool's blocking threads, 1 to 1024 (default 32: sized for --mixed's sleeps, not for the cores).")
    var blockingThreads = 32

    @Option(
        name: .customLong("protocol"),
        help:
            "echo, resp, http, or proxy (echo through `serve proxy` in each mode to a reactor echo server started for each run; the upstream's count of lines is the served count, the CPU is the proxy's)."
    )
    var service: Service = .echo

    @Option(help: "Directory for results.json and chart.svg, created if missing and checked before the first run.")
    var output = "bench-results"

    @Flag(
        help: """
            Serve and load over TLS: each server gets a throwaway ECDSA P-256 certificate (made with the openssl \
            command) and the load verifies it; with --connect-per-request every request is a full handshake.
            """)
    var tls = false

    func validate() throws {
        let counts = connections.split(separator: ",", omittingEmptySubsequences: false)
        guard
            counts.allSatisfy({
                Int($0.trimmingCharacters(in: .whitespaces)).map { 1...Self.maximumConnections ~= $0 } ?? false
            })
        else {
            throw ValidationError(
                "--connections takes counts from 1 to \(Self.maximumConnections), e.g. 1,10,100 (got '\(connections)')")
        }
        for name in modes.split(separator: ",", omittingEmptySubsequences: false)
        where server(String(name.trimmingCharacters(in: .whitespaces))) == nil {
            throw ValidationError(
                "--modes takes sequential, threading, forking, reactor and reactor-pool (got '\(name)')")
        }
        if let mixed {
            guard (2...1_000_000).contains(mixed) else {
                throw ValidationError("--mixed must be 2 to 1000000 (got \(mixed))")
            }
            guard service == .resp, pipeline == 1, !connectPerRequest else {
                throw ValidationError("--mixed is for --protocol resp, one request per round trip, connections kept")
            }
        }
        guard (1...1024).contains(blockingThreads) else {
            throw ValidationError("--blocking-threads must be 1 to 1024 (got \(blockingThreads))")
        }
        guard duration > 0, duration <= Self.maximumDuration else {
            throw ValidationError(
                "--duration must be more than 0 and at most \(Int(Self.maximumDuration)) seconds (got \(duration))")
        }
        guard payload >= 2, payload <= 1 << 20 else {
            throw ValidationError("--payload must be 2 to 1048576 bytes (got \(payload))")
        }
        guard pipeline >= 1, pipeline <= 1024 else {
            throw ValidationError("--pipeline must be 1 to 1024 (got \(pipeline))")
        }
    }

    var connectionCounts: [Int] {
        connections.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }
    var modeList: [BenchServer] {
        modes.split(separator: ",").compactMap { server(String($0.trimmingCharacters(in: .whitespaces))) }
    }

    /// What a run serves with: a mode, and for the reactor where its blocking work runs.
    struct BenchServer {
        let name: String
        let mode: Mode
        let arguments: [String]
    }

    /// The server `name` stands for in `--modes`; `nil` for no mode.
    func server(_ name: String) -> BenchServer? {
        if name == "reactor-pool" {
            return BenchServer(name: name, mode: .reactor, arguments: ["--blocking-threads", "\(blockingThreads)"])
        }
        guard let mode = Mode(rawValue: name) else { return nil }
        let onTheLoop = mode == .reactor && mixed != nil
        return BenchServer(name: name, mode: mode, arguments: onTheLoop ? ["--blocking-work", "loop"] : [])
    }

    /// What a run sends, for the report's header.
    var workload: String {
        let request: String
        switch service {
        case .echo: request = "\(payload)-byte lines"
        case .resp: request = mixed.map { "PING, every \($0)th request DEBUG SLEEP 0.01" } ?? "PING"
        case .http: request = "GET /"
        case .proxy: request = "\(payload)-byte lines through the proxy to a reactor echo server"
        }
        let perTrip = pipeline == 1 ? "one request per round trip" : "\(pipeline) requests pipelined per round trip"
        let connecting = connectPerRequest ? ", a new connection per request" : ""
        let overTLS = tls ? ", over TLS" : ""
        return
            "\(service.rawValue): \(request), \(perTrip)\(connecting)\(overTLS), \(duration.formatted(.number.grouping(.never))) s per run"
    }

    func run() throws {
        let directory = URL(fileURLWithPath: output)
        try Self.checkWritable(directory)
        let certificate = try tls ? BenchCertificate() : nil
        defer { certificate?.remove() }
        let loop = try EventLoop()
        loop.takeOwnership()
        // SIGINT or SIGTERM: stop the run in progress (or the next one, if it comes between runs).
        let interruption = Interruption()
        let watchers = try [SIGINT, SIGTERM].map { signal in
            try loop.onSignal(signal) { signal in
                interruption.signal = signal
                loop.stop()
            }
        }
        defer { for watcher in watchers { watcher.cancel() } }
        Interruption.unblock()

        var results: [BenchResult] = []
        let runs = modeList.flatMap { mode in connectionCounts.map { (mode, $0) } }
        let progress = Progress(total: runs.count, duration: duration)
        for (index, (mode, count)) in runs.enumerated() {
            progress.begin(run: index, label: "\(mode.name), \(BenchReport.connections(count))")
            let result = try measure(
                mode: mode, connections: count, loop: loop, certificate: certificate, progress: progress,
                interruption: interruption)
            if let result { results.append(result) }
            progress.finished(run: index, result: result)
            if interruption.signal != nil { break }
        }
        progress.end()
        let report = BenchReport(
            results: results, workload: workload, protocolName: service.rawValue, settings: settings)
        var text = BenchReport.wrapped(BenchReport.legend, width: 110) + "\n\n" + report.table() + "\n"
        let json = directory.appendingPathComponent("results.json")
        let svg = directory.appendingPathComponent("chart.svg")
        try report.json().write(to: json)
        try Data(report.svg().utf8).write(to: svg)
        text += "results: \(json.path)\nchart:   \(svg.path)\n"
        if let signal = interruption.signal {
            text += "interrupted by signal \(signal): \(results.count) of \(runs.count) runs written\n"
        }
        writeToStandardOutput(text)
        if let signal = interruption.signal { throw ExitCode(128 + signal) }
    }

    private var settings: BenchReport.Settings {
        .init(
            duration: duration, payload: payload, pipeline: pipeline, connectPerRequest: connectPerRequest, tls: tls)
    }

    /// Creates `directory` if needed and proves it writable, so a bad `--output` fails before any run.
    static func checkWritable(_ directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw BenchError.output(directory.path, (error as NSError).localizedFailureReason ?? "\(error)")
        }
        let probe = directory.appendingPathComponent(".sockserv-bench-\(getpid())").path
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError.output(directory.path, String(cString: strerror(errno))) }
        close(fd)
        unlink(probe)
    }

    /// One mode at one connection count: start the server, load it, sample it, stop it. `nil` when a signal
    /// came before any load ran.
    private func measure(
        mode: BenchServer, connections: Int, loop: EventLoop, certificate: BenchCertificate?, progress: Progress,
        interruption: Interruption
    ) throws -> BenchResult? {
        // proxy: the upstream first, an echo server of its own for the run, whose count of lines is the served count.
        var upstream: (process: Process, log: ServerLog, port: Int)?
        if service == .proxy {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Bench.executablePath)
            process.arguments = ["serve", "echo", "--mode", "reactor"]
            let stdout = Pipe()
            process.standardOutput = stdout
            let log = try ServerLog()
            process.standardError = log.handle
            try process.run()
            guard let port = Bench.readPort(stdout.fileHandleForReading.fileDescriptor) else {
                Bench.stopAndReap(process)
                throw BenchError.serverDidNotStart("the proxy's upstream")
            }
            upstream = (process, log, port)
        }
        defer { if let upstream { Bench.stopAndReap(upstream.process) } }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Bench.executablePath)
        server.arguments =
            ["serve", service.rawValue, "--mode", mode.mode.rawValue] + mode.arguments
            + (upstream.map { ["--upstream", "127.0.0.1:\($0.port)"] } ?? [])
            + (certificate?.serverArguments ?? [])
        let stdout = Pipe()
        server.standardOutput = stdout
        // Its summary, read after it exits, is an independent count of requests and CPU.
        let log = try ServerLog()
        server.standardError = log.handle
        try server.run()
        defer { Bench.stopAndReap(server) }
        guard let port = Bench.readPort(stdout.fileHandleForReading.fileDescriptor) else {
            throw BenchError.serverDidNotStart(mode.name)
        }
        let pid = server.processIdentifier
        var workload = LoadGenerator.Workload(
            address: try SocketAddress(ipv4: "127.0.0.1", port: port), request: request, framer: framer,
            connections: connections, pipeline: pipeline, connectPerRequest: connectPerRequest, tls: certificate?.client
        )
        if let mixed { workload.slow = (Array("*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$4\r\n0.01\r\n".utf8), mixed) }
        let generator = LoadGenerator(loop: loop, workload: workload)
        let sampler = PeakSampler(pid: pid)
        let cpuBefore = ProcessSample.read(pid).cpuSeconds
        let started = LoadGenerator.now()
        generator.start()
        let ticker = try loop.scheduleRepeating(every: .milliseconds(200)) { _ in
            progress.update(elapsed: Double(LoadGenerator.now() - started) / 1e9)
        }
        let deadline = try loop.schedule(after: .nanoseconds(Int64(duration * 1e9))) { loop.stop() }
        try loop.run()
        ticker.cancel()
        deadline.cancel()
        let end = LoadGenerator.now()
        let cpuAfter = ProcessSample.read(pid).cpuSeconds
        generator.finish(at: end, elapsed: end - started)
        generator.stop()
        try loop.runOnce(timeout: .zero)
        let peaks = sampler.stop()
        Bench.stopAndReap(server)
        let summary = log.summary()
        var served = summary.requests
        if let upstream {
            Bench.stopAndReap(upstream.process)
            served = upstream.log.summary().requests
        }
        let seconds = Double(end - started) / 1e9
        if interruption.signal != nil && generator.completed == 0 { return nil }
        let histogram = generator.histogram
        let requests = generator.completed
        return BenchResult(
            mode: mode.name, connections: connections, seconds: seconds, requests: requests,
            requestsPerSecond: Double(requests) / seconds,
            connectionsOpened: generator.opened, connectionsAnswered: generator.answeredClients,
            p50: Double(histogram.valueAtPercentile(50)) / 1000,
            p99: Double(histogram.valueAtPercentile(99)) / 1000,
            p999: Double(histogram.valueAtPercentile(99.9)) / 1000,
            slowestFirstReply: Double(generator.slowestFirstReply) / 1e6,
            cpuSeconds: cpuAfter - cpuBefore,
            cpuMicrosecondsPerRequest: requests > 0 ? (cpuAfter - cpuBefore) * 1e6 / Double(requests) : nil,
            peakMemory: peaks.memory, threads: peaks.threads, processes: peaks.processes,
            errors: generator.errors, interrupted: interruption.signal != nil,
            serverRequests: served, serverLifetimeCPUSeconds: summary.cpuSeconds)
    }

    private var request: [UInt8] {
        switch service {
        case .resp: return Array("*1\r\n$4\r\nPING\r\n".utf8)
        case .http: return Array("GET / HTTP/1.1\r\nHost: bench\r\n\r\n".utf8)
        case .echo, .proxy: return [UInt8](repeating: UInt8(ascii: "x"), count: payload - 1) + [10]
        }
    }

    private var framer: ReplyFramer {
        switch service {
        case .echo, .proxy: return .fixed(payload)
        case .resp: return .line
        case .http: return .http
        }
    }

    /// This program, to start servers from.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Stops a server with SIGTERM (SIGKILL after 10 s) and waits until it has been reaped. `waitUntilExit()` also
    /// when it had exited already: Foundation lets go of a `Process` there (polling `isRunning` alone leaves it in
    /// a reference cycle, which LeakSanitizer reports).
    static func stopAndReap(_ server: Process) {
        if server.isRunning {
            kill(server.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + .seconds(10)
            while server.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
            if server.isRunning { kill(server.processIdentifier, SIGKILL) }
        }
        server.waitUntilExit()
    }

    /// Reads `listening on HOST:PORT` (and ` (tls)`) from a server's standard output, waiting up to 10 s.
    static func readPort(_ fd: Int32) -> Int? {
        var line: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { return nil }
            if byte == 10 { break }
            line.append(byte)
        }
        return port(inListeningLine: String(decoding: line, as: UTF8.self))
    }

    /// The port of a `listening on HOST:PORT` line (followed by ` (tls)` with TLS); `nil` for a Unix path.
    static func port(inListeningLine line: String) -> Int? {
        let address = line.split(separator: " ").dropFirst(2).first
        return Int(address?.split(separator: ":").last ?? "")
    }
}

/// `--tls`: a throwaway self-signed ECDSA P-256 certificate for 127.0.0.1, made with the `openssl` command in a
/// temporary directory, and a client context that trusts exactly it.
final class BenchCertificate {
    let directory: String
    let client: TLSContext

    var certificate: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }
    var serverArguments: [String] { ["--tls-cert", certificate, "--tls-key", key] }

    init() throws {
        var template = Array("/tmp/sockserv-bench-tls-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw BenchError.tls("mkdtemp: \(String(cString: strerror(errno)))") }
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        do {
            try openssl.run()
            openssl.waitUntilExit()
        } catch {
            throw BenchError.tls("the openssl command is needed for --tls: \(error)")
        }
        guard openssl.terminationStatus == 0 else { throw BenchError.tls("openssl req failed making a certificate") }
        client = try TLSContext(client: .client(trustRoots: .file(directory + "/cert.pem")))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A server's standard error, in an unlinked temporary file (a pipe nobody reads could fill up and block it).
final class ServerLog {
    let handle: FileHandle

    init() throws {
        var template = Array("/tmp/sockserv-bench-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw BenchError.output("/tmp", String(cString: strerror(errno))) }
        unlink(template)
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// The requests and CPU seconds of the server's exit summary (`..., N requests, ..., X s CPU`).
    func summary() -> (requests: Int?, cpuSeconds: Double?) {
        var text = ""
        if lseek(handle.fileDescriptor, 0, SEEK_SET) == 0, let data = try? handle.readToEnd() {
            text = String(decoding: data, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").last(where: { $0.hasSuffix(" s CPU") }) else { return (nil, nil) }
        let words = line.split(separator: " ")
        let requests = words.firstIndex(where: { $0.hasPrefix("requests") }).flatMap { Int(words[$0 - 1]) }
        return (requests, words.count >= 3 ? Double(words[words.count - 3]) : nil)
    }
}

enum BenchError: Error, CustomStringConvertible {
    case output(String, String)
    case serverDidNotStart(String)
    case tls(String)

    var description: String {
        switch self {
        case .output(let path, let reason): return "cannot write results to --output \(path): \(reason)"
        case .serverDidNotStart(let mode): return "the \(mode) server did not report its port within 10 s"
        case .tls(let reason): return "--tls: \(reason)"
        }
    }
}

/// The signal that interrupted the bench, set on the loop's thread.
final class Interruption {
    var signal: Int32?

    /// A parent may have started us with SIGINT and SIGTERM blocked (a test runner's threads often do).
    static func unblock() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

/// Progress on standard output: a line per finished run, and on a terminal a bar below them.
final class Progress {
    private let total: Int
    private let duration: Double
    private var run = 0
    private var label = ""
    private let terminal = isatty(1) != 0
    private let width = 78

    init(total: Int, duration: Double) {
        self.total = total
        self.duration = duration
    }

    func begin(run: Int, label: String) {
        self.run = run
        self.label = label
        update(elapsed: 0)
    }

    /// Redraws the bar, `elapsed` seconds into the current run.
    func update(elapsed: Double) {
        guard terminal else { return }
        let fraction = min(1, (Double(run) + min(1, elapsed / duration)) / Double(total))
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
        writeToStandardOutput(
            "\r"
                + "[\(bar)] \(Int(fraction * 100))%  run \(run + 1)/\(total): \(label)".padding(
                    toLength: width, withPad: " ", startingAt: 0))
    }

    func finished(run: Int, result: BenchResult?) {
        let summary = result.map(BenchReport.summary) ?? "\(label): interrupted before the load started"
        writeToStandardOutput(
            (terminal ? "\r" + String(repeating: " ", count: width) + "\r" : "") + "[\(run + 1)/\(total)] \(summary)\n")
    }

    func end() {
        if terminal { writeToStandardOutput("\r" + String(repeating: " ", count: width) + "\r") }
    }
}

/// Writes `text` to standard output at once (progress must not wait in a buffer when the output is a pipe).
func writeToStandardOutput(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
