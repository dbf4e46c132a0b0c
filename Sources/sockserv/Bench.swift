import ArgumentParser
import Foundation
import Glibc
import Reactor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the concurrency modes side by side: each mode's server as a child process, driven by a closed-loop load.",
        discussion: """
            Every run is bounded: a server that cannot keep up (sequential with many connections, forking with a \
            thousand) is reported with its errors and the requests it did serve, not waited for.
            """
    )

    @Option(help: "Comma-separated connection counts.")
    var connections = "1,10,100"

    @Option(help: "Seconds of load per run.")
    var duration = 2.0

    @Option(help: "Request size in bytes (echo).")
    var payload = 32

    @Option(help: "Requests sent back to back per connection before waiting for the replies.")
    var pipeline = 1

    @Flag(name: .customLong("connect-per-request"), help: "Open a new connection for every request (the accept-heavy workload).")
    var connectPerRequest = false

    @Option(help: "Comma-separated modes.")
    var modes = "sequential,threading,forking,reactor"

    @Option(name: .customLong("protocol"), help: "echo, resp or http.")
    var service: Service = .echo

    @Option(help: "Directory for results.json and chart.svg.")
    var output = "bench-results"

    func validate() throws {
        guard !connectionCounts.isEmpty, connectionCounts.allSatisfy({ $0 > 0 && $0 <= 5000 }) else {
            throw ValidationError("--connections takes counts from 1 to 5000, e.g. 1,10,100")
        }
        guard !modeList.isEmpty else { throw ValidationError("--modes takes sequential, threading, forking, reactor") }
        guard duration > 0, duration <= 600 else { throw ValidationError("--duration must be 0-600 seconds") }
        guard payload >= 2, payload <= 1 << 20 else { throw ValidationError("--payload must be 2 bytes to 1 MiB") }
        guard pipeline >= 1, pipeline <= 1024 else { throw ValidationError("--pipeline must be 1-1024") }
    }

    var connectionCounts: [Int] { connections.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    var modeList: [Mode] { modes.split(separator: ",").compactMap { Mode(rawValue: $0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        let loop = try EventLoop()
        var results: [BenchResult] = []
        let runs = modeList.flatMap { mode in connectionCounts.map { (mode, $0) } }
        let progress = Progress(total: runs.count, duration: duration)
        for (index, (mode, count)) in runs.enumerated() {
            progress.begin(run: index, label: "\(mode.rawValue) \(count) conn")
            results.append(try measure(mode: mode, connections: count, loop: loop, progress: progress))
        }
        progress.end()
        let report = BenchReport(
            results: results, protocolName: service.rawValue, duration: duration, payload: payload, pipeline: pipeline,
            connectPerRequest: connectPerRequest)
        print(report.table())
        let directory = URL(fileURLWithPath: output)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let json = directory.appendingPathComponent("results.json")
        let svg = directory.appendingPathComponent("chart.svg")
        try report.json().write(to: json)
        try Data(report.svg().utf8).write(to: svg)
        print("results: \(json.path)")
        print("chart:   \(svg.path)")
    }

    /// One mode at one connection count: start the server, load it, sample it, stop it.
    private func measure(mode: Mode, connections: Int, loop: EventLoop, progress: Progress) throws -> BenchResult {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Bench.executablePath)
        server.arguments = ["serve", service.rawValue, "--mode", mode.rawValue]
        let stdout = Pipe()
        server.standardOutput = stdout
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning {
                kill(server.processIdentifier, SIGTERM)
                let deadline = ContinuousClock.now + .seconds(10)
                while server.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
                if server.isRunning { kill(server.processIdentifier, SIGKILL) }
            }
        }
        guard let port = Bench.readPort(stdout.fileHandleForReading.fileDescriptor) else {
            throw ValidationError("the \(mode.rawValue) server did not report its port")
        }
        let pid = server.processIdentifier
        let workload = LoadGenerator.Workload(
            address: try SocketAddress(ipv4: "127.0.0.1", port: port), request: request, framer: framer,
            connections: connections, pipeline: pipeline, connectPerRequest: connectPerRequest)
        let generator = LoadGenerator(loop: loop, workload: workload)
        let sampler = PeakSampler(pid: pid)
        let cpuBefore = ProcessSample.read(pid).cpuSeconds
        let started = ContinuousClock.now
        loop.takeOwnership()
        generator.start()
        let ticker = loop.scheduleRepeating(every: .milliseconds(200)) { _ in
            progress.update(elapsed: ContinuousClock.now - started)
        }
        loop.schedule(after: .milliseconds(Int(duration * 1000))) { loop.stop() }
        try loop.run()
        ticker.cancel()
        let elapsed = ContinuousClock.now - started
        let cpuAfter = ProcessSample.read(pid).cpuSeconds
        generator.stop()
        try loop.runOnce(timeout: .zero)
        let peaks = sampler.stop()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let histogram = generator.histogram
        var notes: [String] = []
        if generator.connected < connections && !connectPerRequest {
            notes.append("only \(generator.connected) of \(connections) connected")
        }
        if generator.completed == 0 {
            notes.append("no reply in \(duration) s")
        } else if !connectPerRequest && generator.answeredClients < connections {
            notes.append("only \(generator.answeredClients) of \(connections) connections got a reply")
        }
        return BenchResult(
            mode: mode.rawValue, connections: connections,
            requestsPerSecond: Double(generator.completed) / seconds,
            p50: Double(histogram.valueAtPercentile(50)) / 1000,
            p99: Double(histogram.valueAtPercentile(99)) / 1000,
            p999: Double(histogram.valueAtPercentile(99.9)) / 1000,
            cpuMicrosecondsPerRequest: generator.completed > 0 ? (cpuAfter - cpuBefore) * 1e6 / Double(generator.completed) : nil,
            peakMemory: peaks.memory, threads: peaks.threads, processes: peaks.processes,
            errors: generator.errors, note: notes.joined(separator: "; "))
    }

    private var request: [UInt8] {
        switch service {
        case .echo: return [UInt8](repeating: UInt8(ascii: "x"), count: payload - 1) + [10]
        case .resp: return Array("*1\r\n$4\r\nPING\r\n".utf8)
        case .http: return Array("GET / HTTP/1.1\r\nHost: bench\r\n\r\n".utf8)
        }
    }

    private var framer: ReplyFramer {
        switch service {
        case .echo: return .fixed(payload)
        case .resp: return .line
        case .http: return .http
        }
    }

    /// This program, to start servers from.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Reads `listening on HOST:PORT` from a server's standard output, waiting up to 10 s.
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
        return Int(String(decoding: line, as: UTF8.self).split(separator: ":").last ?? "")
    }
}

/// A progress bar on standard error, drawn only when it is a terminal.
final class Progress {
    private let total: Int
    private let duration: Double
    private var run = 0
    private var label = ""
    private let enabled = isatty(2) != 0

    init(total: Int, duration: Double) {
        self.total = total
        self.duration = duration
    }

    func begin(run: Int, label: String) {
        self.run = run
        self.label = label
        update(elapsed: .zero)
    }

    func update(elapsed: Duration) {
        guard enabled else { return }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let fraction = min(1, (Double(run) + min(1, seconds / duration)) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        writeToStandardError("\r[\(bar)] \(Int(fraction * 100))%  run \(run + 1)/\(total): \(label)".padding(toLength: 72, withPad: " ", startingAt: 0))
    }

    func end() {
        if enabled { writeToStandardError("\r" + String(repeating: " ", count: 72) + "\r") }
    }
}
