import CoreMetrics
import Foundation
import Glibc
import Logging
import Reactor
import SocketServer
import SocketServerHTTP
import Synchronization

/// `serve`'s metrics in the Prometheus text format (version 0.0.4): every family with its `# HELP` and
/// `# TYPE` lines, always in the same order, every label value always present. The counts are the series of
/// ``SharedMetrics``, the swift-metrics backend `serve` bootstraps: the tool's own and the library's
/// `socketserver_*` families of every server, forked children's counts included; then the process's figures.
enum MetricsText {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition now. `startTime` is the process's start, in seconds since the epoch.
    static func render(_ stats: SharedCounters, startTime: Double) -> String {
        var text = stats.metrics.exposition(help: SharedCounters.help.merging(ServerMetrics.help) { tool, _ in tool })
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { text += "\(name)\(sample.labels) \(sample.value)\n" }
        }
        func one(_ name: String, _ type: String, _ help: String, _ value: Int) {
            family(name, type, help, [("", String(value))])
        }
        let process = ProcessFigures.now()
        family(
            "process_cpu_seconds_total", "counter", "User and system CPU time of the server process, in seconds.",
            [("", decimal(process.cpuSeconds))])
        family(
            "sockserv_children_cpu_seconds_total", "counter",
            "User and system CPU time of the forked children that have ended, in seconds.",
            [("", decimal(process.childrenCPUSeconds))])
        one("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.", process.residentBytes)
        one("process_open_fds", "gauge", "Open file descriptors.", process.openDescriptors)
        one("process_max_fds", "gauge", "The most file descriptors the process may open.", process.maxDescriptors)
        family(
            "process_start_time_seconds", "gauge", "When the process started, in seconds since the Unix epoch.",
            [("", decimal(startTime))])
        return text
    }

    private static func decimal(_ value: Double) -> String { String(format: "%.6f", value) }
}

/// What the kernel says about this process now.
struct ProcessFigures {
    var cpuSeconds = 0.0
    var childrenCPUSeconds = 0.0
    var residentBytes = 0
    var openDescriptors = 0
    var maxDescriptors = 0

    static func now() -> ProcessFigures {
        var figures = ProcessFigures()
        figures.cpuSeconds = CPUTime.of(RUSAGE_SELF).total
        figures.childrenCPUSeconds = CPUTime.of(RUSAGE_CHILDREN).total
        // statm: sizes in pages; the second is the resident set.
        if let statm = ProcessSample.readProcFile("/proc/self/statm"),
            let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        {
            figures.residentBytes = pages * sysconf(Int32(_SC_PAGESIZE))
        }
        figures.openDescriptors = openDescriptorCount()
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        figures.maxDescriptors = Int(limit.rlim_cur)
        return figures
    }

    /// The entries of `/proc/self/fd`, less the one reading it.
    static func openDescriptorCount() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { count += 1 }
        }
        return count - 1
    }

    /// When this process started, in seconds since the epoch: its start in clock ticks after boot
    /// (`/proc/self/stat`, field 22) plus the boot time (`btime` in `/proc/stat`).
    static func startTime() -> Double {
        guard let stat = ProcessSample.readProcFile("/proc/self/stat"), let fields = ProcessSample.statFields(stat),
            fields.count > 22 - 3, let ticks = Double(fields[22 - 3]),
            let boot = ProcessSample.readProcFile("/proc/stat")?.split(separator: "\n").first(where: {
                $0.hasPrefix("btime ")
            }).flatMap({ Double($0.dropFirst(6)) })
        else { return Date().timeIntervalSince1970 }
        return boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// `GET /metrics` (and HEAD); anything else is 404. Scrapes are logged at debug level.
final class MetricsHandler: BaseHTTPRequestHandler {
    let stats: SharedCounters
    let startTime: Double

    init(stats: SharedCounters, startTime: Double) {
        self.stats = stats
        self.startTime = startTime
        super.init()
    }

    required init() { preconditionFailure("MetricsHandler is made with its counters") }

    override var serverVersion: String { "sockserv-metrics" }
    override var sysVersion: String { "(SocketServerHTTP)" }
    override var protocolVersion: String { "HTTP/1.1" }
    override var timeout: Duration? { .seconds(10) }

    override func doGET() throws { try send(body: true) }
    override func doHEAD() throws { try send(body: false) }

    private func send(body: Bool) throws {
        guard path == "/metrics" || path.hasPrefix("/metrics?") else {
            return try sendError(404, "Not Found", explain: "The metrics are at /metrics")
        }
        let text = Array(MetricsText.render(stats, startTime: startTime).utf8)
        sendResponse(200)
        sendHeader("Content-Type", MetricsText.contentType)
        sendHeader("Content-Length", "\(text.count)")
        try endHeaders()
        if body { try wfile.write(text) }
    }

    override func logRequest(code: Int?, size: Int?) {
        logMessage("\"\(requestline)\" \(code.map(String.init) ?? "-") \(size.map(String.init) ?? "-")", level: .debug)
    }
}

/// `--metrics-address`: an HTTP server for `/metrics` on a thread and loop of its own, so that it answers
/// while the servers are busy, in every mode (a sequential server blocks its loop for each connection).
final class MetricsEndpoint: Sendable {
    private let server: HTTPServer
    /// Whether the endpoint runs a thread of its own (else it serves on a loop another thread runs).
    private let ownThread: Bool
    private let done = DispatchSemaphore(value: 0)
    /// The listening descriptor, which a forked child closes (``closeInForkedChild()``).
    private static let listeningFD = Atomic<Int32>(-1)

    /// Closes the endpoint's listening socket in a forked child, which must not keep it open (nor serve it): call
    /// once the child's loop is its own (after `event_reinit`, which re-adds every event of the loop: a socket
    /// closed before it, at the fork, made libevent warn "Epoll ADD ... Bad file descriptor" in every child).
    static func closeInForkedChild() {
        let fd = listeningFD.exchange(-1, ordering: .relaxed)
        if fd >= 0 { close(fd) }
    }

    var address: SocketAddress { server.serverAddress }

    /// Binds `address` and starts serving: on a thread and loop of its own, or on `loop`, whose thread runs it
    /// (call on that thread). Forking mode passes its serving loop, free between accepts, so that the process
    /// it forks from runs one thread: a child then cannot inherit a lock another thread held at the fork.
    /// - Throws: the `IOError` of a failed bind or listen.
    /// With `adopting`, serves on that listening socket (passed by the process this one replaces) instead.
    init(
        _ address: SocketAddress, adopting socket: Socket? = nil, stats: SharedCounters, startTime: Double,
        on loopGiven: EventLoop? = nil
    ) throws {
        let mixIn = ReactorMixIn()
        mixIn.blockOnClose = false
        let loop = try loopGiven ?? EventLoop()
        let handler: @Sendable () -> BaseHTTPRequestHandler = { MetricsHandler(stats: stats, startTime: startTime) }
        if let socket {
            server = try HTTPServer(adopting: socket, mixIn: mixIn, loop: loop, handler: handler)
        } else {
            server = try HTTPServer(address, mixIn: mixIn, loop: loop, handler: handler)
        }
        // Scrapes are not what the metrics count.
        server.metrics = ServerMetrics(dimensions: [], factory: NOOPMetricsHandler.instance)
        ownThread = loopGiven == nil
        Self.listeningFD.store(server.fileno, ordering: .relaxed)
        guard ownThread else {
            do {
                try server.startServing(pollInterval: .milliseconds(250))
            } catch {
                server.serverClose()
                throw error
            }
            return
        }
        let server = self.server
        let done = self.done
        Thread.detachNewThread {
            do {
                try server.serveForever(pollInterval: .milliseconds(250))
            } catch {
                serveLogger.error("the metrics endpoint stopped: \(error)")
            }
            MetricsEndpoint.listeningFD.store(-1, ordering: .relaxed)
            server.serverClose()
            done.signal()
        }
    }

    /// The listening socket, to pass to the process that replaces this one (SIGUSR2).
    var socket: Socket { server.socket }

    /// Stops serving and closes the socket; on a shared loop, call on its thread while it does not run.
    func stop() {
        guard ownThread else {
            MetricsEndpoint.listeningFD.store(-1, ordering: .relaxed)
            server.serverClose()
            return
        }
        server.requestShutdown()
        done.wait()
    }
}
