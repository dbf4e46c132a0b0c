import ArgumentParser
import CoreMetrics
import Foundation
import Glibc
import Logging
import Protocols
import Reactor
import SocketServer
import SocketServerHTTP
import Synchronization

/// The concurrency modes, as the command line names them.
enum Mode: String, CaseIterable, ExpressibleByArgument {
    case sequential, threading, forking, reactor

    func makeMixIn() -> ProcessingMixIn {
        switch self {
        case .sequential:
            return ProcessingMixIn()
        case .threading:
            let mixIn = ThreadingMixIn()
            mixIn.blockOnClose = false  // `serve` waits for its threads itself, with a deadline
            return mixIn
        case .forking:
            let mixIn = ForkingMixIn()
            mixIn.blockOnClose = false
            return mixIn
        case .reactor:
            let mixIn = ReactorMixIn()
            mixIn.blockOnClose = false
            return mixIn
        }
    }
}

/// Reactor mode's two handler faces.
enum HandlerStyle: String, CaseIterable, ExpressibleByArgument {
    case callback, async
}

/// The protocols `serve` speaks.
enum Service: String, CaseIterable, ExpressibleByArgument {
    case echo, resp, http, proxy
}

/// `--send-proxy`'s values.
enum ProxyVersion: String, CaseIterable, ExpressibleByArgument {
    case v1, v2

    var number: Int { self == .v1 ? 1 : 2 }
}

/// `--log-level`'s values: swift-log's levels.
enum LogLevel: String, CaseIterable, ExpressibleByArgument {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

/// `--backend`'s values, one spelling each.
/// Where reactor mode runs a session's blocking work (`--blocking-work`).
enum BlockingWorkOption: String, CaseIterable, ExpressibleByArgument {
    case pool, loop
}

enum BackendOption: String, CaseIterable, ExpressibleByArgument {
    case auto, epoll, poll, select

    var backend: EventLoop.Backend {
        switch self {
        case .auto: return .automatic
        case .epoll: return .epoll
        case .poll: return .poll
        case .select: return .select
        }
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve echo, a mini Redis (resp) or HTTP in one concurrency mode.",
        discussion: """
            The first line on standard output is `listening on ADDRESS`. SIGINT or SIGTERM closes the listening \
            socket (new connections are refused), answers every request already read, closes each connection \
            once its replies are sent, prints a summary on standard error and exits 0. Connections still busy \
            after --grace seconds are cut off and the exit status is 1.

            The default address is loopback; serving other hosts takes an explicit --host (0.0.0.0 or ::), best \
            with --allow. Input over a limit (--max-line, --max-head, --max-bulk, --max-request) gets a protocol \
            error and that connection is closed.

            resp keeps one store for all connections in reactor, threading and sequential modes; in forking mode \
            each child process has its own store, so keys set on one connection are not seen by another.

            With --tls-cert and --tls-key every stream mode serves TLS (1.2 at least) and the first line says \
            `listening on ADDRESS (tls)`. A bad file is an error at start (exit 1). SIGHUP reloads the files for \
            new connections; a bad file then is logged and the old certificates stay.

            With --metrics-address, the next line is `metrics on http://ADDRESS/metrics`: Prometheus text format, \
            forked children's counts included (in forking mode it is served by the loop that accepts, so the \
            server forks from a process with one thread). SIGUSR1 prints the same text on standard error. Every connection \
            the server refuses or closes (a limit, an idle timeout, a protocol error, the grace period) is logged \
            once with its reason and counted by reason in the summary and the metrics.

            SIGUSR2 restarts without losing a client: a new sockserv with the same arguments is handed the \
            listening sockets (as socket activation does) and, once it serves, this one drains as on SIGTERM and \
            exits; if the new one fails to start, this one logs why and keeps serving.

            Started by systemd socket activation (LISTEN_FDS), it serves the socket it was given instead of \
            binding one; with NOTIFY_SOCKET it reports READY=1 and STOPPING=1, and pings the watchdog when \
            WATCHDOG_USEC is set. An option that does not apply to the chosen protocol or mode is a usage \
            error (exit 64).
            """
    )

    @Argument(help: "The protocol: echo, resp, http, or proxy (bytes both ways to --upstream).")
    var service: Service

    @Option(help: "How requests are processed: sequential, threading, forking or reactor.")
    var mode: Mode = .reactor

    @Option(
        help: ArgumentHelp(
            "Reactor mode's handler for echo and resp: callback (no task per connection, the default) or async (a task per connection). http runs a task per connection.",
            valueName: "style"))
    var handler: HandlerStyle?

    @Option(
        name: .customLong("loops"), parsing: .unconditional,
        help: ArgumentHelp(
            "Reactor mode over streams: serve the connections on a group of this many loops (1-64, default 1), each on a thread of its own; the main thread's loop accepts and hands each connection to them in turn.",
            valueName: "loops"))
    var loopsOption: Int?
    var loops: Int { loopsOption ?? 1 }

    @Option(
        name: .customLong("blocking-work"),
        help: ArgumentHelp(
            "Reactor mode: where a blocking call (resp's DEBUG SLEEP) runs: pool (the loop's blocking pool, the default) or loop (on the loop thread, stalling its other clients: for comparison).",
            valueName: "where"))
    var blockingWork: BlockingWorkOption?

    @Option(
        name: .customLong("blocking-threads"), parsing: .unconditional,
        help: ArgumentHelp(
            "Reactor mode: the blocking pool's threads (1-1024, default one per core). Size it for the blocking calls: about their rate times their duration, plus headroom.",
            valueName: "threads"))
    var blockingThreads: Int?

    @Option(help: "The address to listen on: a name, an IPv4 address or an IPv6 address (brackets optional).")
    var host = "127.0.0.1"

    @Option(parsing: .unconditional, help: "The port (0-65535); 0 picks a free one.")
    var port = 0

    @Option(help: "Listen on this Unix socket path instead of host and port.")
    var unix: String?

    @Flag(help: "Serve datagrams (echo only): UDP, or Unix datagrams with --unix.")
    var udp = false

    @Option(help: "The event backend: auto, epoll, poll or select.")
    var backend: BackendOption = .auto

    @Option(
        name: .customLong("idle-timeout"), parsing: .unconditional,
        help: ArgumentHelp("Stream servers: close connections idle this many seconds.", valueName: "seconds"))
    var idleTimeout: Double?

    @Option(
        name: .customLong("max-connections"), parsing: .unconditional,
        help: ArgumentHelp(
            "Stream servers: refuse connections beyond this many open ones (resp answers -ERR max number of clients reached, http 503).",
            valueName: "count"))
    var maxConnections: Int?

    @Option(
        help: ArgumentHelp(
            "http: serve the files under this directory, as Python's SimpleHTTPRequestHandler (listings, index.html, ranges, 304s), streamed with sendfile. Without it, / answers one line of text and everything else is 404.",
            valueName: "directory"))
    var root: String?

    @Option(
        name: .customLong("open-files"), parsing: .unconditional,
        help: ArgumentHelp(
            "http with --root: files kept open for their next request (default 64; 0 opens each file for each request). A kept file is used only while its path names it unchanged.",
            valueName: "count"))
    var openFiles: Int?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            "The least severe log lines shown on standard error: trace, debug, info (http's access log), notice, warning, error or critical.",
            valueName: "level"))
    var logLevel: LogLevel = .info

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp(
            "Serve the metrics over HTTP at http://HOST:PORT/metrics, in Prometheus text format (port 0 picks one).",
            valueName: "host:port"))
    var metricsAddress: String?

    @Option(
        name: .customLong("tls-cert"),
        help: ArgumentHelp(
            "Serve TLS with this certificate chain (PEM: the certificate, then its intermediates); needs --tls-key.",
            valueName: "file"))
    var tlsCert: String?

    @Option(
        name: .customLong("tls-key"),
        help: ArgumentHelp("The private key of --tls-cert (PEM, unencrypted).", valueName: "file"))
    var tlsKey: String?

    @Option(
        name: .customLong("tls-client-ca"),
        help: ArgumentHelp(
            "Require a client certificate signed by a CA in this PEM file (mutual TLS).", valueName: "file"))
    var tlsClientCA: String?

    @Option(
        name: .customLong("tls-handshake-timeout"), parsing: .unconditional,
        help: ArgumentHelp(
            "Close a connection whose TLS handshake takes longer, in seconds (default 10); needs --tls-cert.",
            valueName: "seconds"))
    var tlsHandshakeTimeoutOption: Double?
    var tlsHandshakeTimeout: Double { tlsHandshakeTimeoutOption ?? 10 }

    @Option(
        parsing: .unconditional,
        help: "Seconds (0-86400) to let requests in progress finish after SIGINT or SIGTERM before cutting them off.")
    var grace: Double = 5

    @Option(
        help: ArgumentHelp(
            "Serve only clients in this CIDR range (repeatable), e.g. 10.0.0.0/8 or ::1/128.", valueName: "cidr"))
    var allow: [String] = []

    @Option(
        name: .customLong("unix-mode"),
        help: ArgumentHelp("With --unix: the socket file's permissions, in octal (default 600).", valueName: "mode"))
    var unixMode: String?

    @Option(
        name: .customLong("max-line"), parsing: .unconditional,
        help: ArgumentHelp(
            "echo and resp over streams: the longest line or inline RESP command, in bytes (default \(Limits.default.lineLength)).",
            valueName: "bytes"))
    var maxLine: Int?

    @Option(
        name: .customLong("max-head"), parsing: .unconditional,
        help: ArgumentHelp(
            "http: the longest request head, in bytes (default \(Limits.default.headLength); over it: 431).",
            valueName: "bytes"))
    var maxHead: Int?

    @Option(
        name: .customLong("max-bulk"), parsing: .unconditional,
        help: ArgumentHelp(
            "resp: the largest bulk argument, in bytes (default \(Limits.default.bulkLength)).", valueName: "bytes"))
    var maxBulk: Int?

    @Option(
        name: .customLong("max-request"), parsing: .unconditional,
        help: ArgumentHelp(
            "resp and http: the largest command or HTTP body, in bytes (default \(Limits.default.requestLength); http over it: 413).",
            valueName: "bytes"))
    var maxRequest: Int?

    @Option(
        help: ArgumentHelp(
            "proxy: where to pass each connection, HOST:PORT (a name, resolved per connection, or an IP address).",
            valueName: "host:port"))
    var upstream: String?

    @Option(
        name: .customLong("upstream-timeout"), parsing: .unconditional,
        help: ArgumentHelp(
            "proxy: how long reaching the upstream may take, in seconds (default 5): in reactor mode resolution and every address together, in the blocking modes each address's connect.",
            valueName: "seconds"))
    var upstreamTimeout: Double?

    @Option(
        name: .customLong("send-proxy"),
        help: ArgumentHelp(
            "proxy: send the client's address upstream first in a PROXY protocol header, version v1 (text) or v2 (binary), as haproxy's send-proxy does.",
            valueName: "version"))
    var sendProxy: ProxyVersion?

    @Flag(
        name: .customLong("proxy-protocol"),
        help: ArgumentHelp(
            "Streams: read a PROXY protocol header (v1 or v2, as haproxy's send-proxy writes) at the start of each connection; the client it names is the one logged, checked by --allow and seen by the handler. A connection without a valid header within 3 s is closed and counted (proxy_header). Only for a server reachable by the balancer alone."
        ))
    var proxyProtocol = false

    /// `--upstream` and its options; `nil` for the other protocols.
    func proxyConfiguration() throws -> ProxyConfiguration? {
        guard service == .proxy, let upstream else { return nil }
        guard case .success(let (host, port)) = HostPort.hostAndPort(upstream, option: "--upstream") else {
            throw ValidationError("--upstream must be HOST:PORT, got \(upstream)")
        }
        return ProxyConfiguration(
            host: host, port: port, connectTimeout: .milliseconds(Int((upstreamTimeout ?? 5) * 1000)),
            sendProxy: sendProxy?.number)
    }

    func validate() throws {
        try Self.range("--port", port, "0-65535", (0...65535).contains(port))
        if let loopsOption { try Self.range("--loops", loopsOption, "1-64", (1...64).contains(loopsOption)) }
        if let idleTimeout {
            try Self.range(
                "--idle-timeout", idleTimeout, "more than 0 and at most 86400 seconds",
                idleTimeout > 0 && idleTimeout <= 86_400)
        }
        if let maxConnections {
            try Self.range("--max-connections", maxConnections, "1-1000000", (1...1_000_000).contains(maxConnections))
        }
        try Self.range("--grace", grace, "0-86400 seconds", grace >= 0 && grace <= 86_400)
        if let tlsHandshakeTimeoutOption {
            try Self.range(
                "--tls-handshake-timeout", tlsHandshakeTimeoutOption, "more than 0 and at most 3600 seconds",
                tlsHandshakeTimeoutOption > 0 && tlsHandshakeTimeoutOption <= 3600)
        }
        for (name, value) in [
            ("--max-line", maxLine), ("--max-head", maxHead), ("--max-bulk", maxBulk), ("--max-request", maxRequest),
        ] {
            if let value { try Self.range(name, value, "at least 1 byte", value > 0) }
        }
        if case .failure(let error) = HostPort.host(host) { throw ValidationError(error.description) }
        if let metricsAddress,
            case .failure(let error) = HostPort.hostAndPort(metricsAddress, option: "--metrics-address")
        {
            throw ValidationError(error.description)
        }

        // Options that do not apply to the protocol, the mode or the transport chosen.
        if udp && service != .echo { throw ValidationError("--udp serves echo only") }
        if service == .proxy {
            guard let upstream else { throw ValidationError("proxy needs --upstream HOST:PORT") }
            if case .failure(let error) = HostPort.hostAndPort(upstream, option: "--upstream") {
                throw ValidationError(error.description)
            }
            if let upstreamTimeout {
                try Self.range(
                    "--upstream-timeout", upstreamTimeout, "more than 0 and at most 3600 seconds",
                    upstreamTimeout > 0 && upstreamTimeout <= 3600)
            }
        } else {
            for (name, given) in [
                ("--upstream", upstream != nil), ("--upstream-timeout", upstreamTimeout != nil),
                ("--send-proxy", sendProxy != nil),
            ] where given {
                throw ValidationError("\(name) is for proxy only")
            }
        }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key")
        }
        if tlsHandshakeTimeoutOption != nil && tlsCert == nil {
            throw ValidationError("--tls-handshake-timeout needs --tls-cert")
        }
        if udp && proxyProtocol { throw ValidationError("--proxy-protocol is for stream servers (not --udp)") }
        if udp && tlsCert != nil {
            throw ValidationError(
                "--tls-cert is for stream servers: TLS over UDP would be DTLS, which sockserv does not speak")
        }
        if udp {
            for (name, given) in [
                ("--max-connections", maxConnections != nil), ("--idle-timeout", idleTimeout != nil),
                ("--max-line", maxLine != nil),
            ] where given {
                throw ValidationError("\(name) is for stream servers: --udp has no connections")
            }
        }
        if root != nil && service != .http { throw ValidationError("--root is for http only") }
        if let openFiles {
            if root == nil { throw ValidationError("--open-files is for http with --root") }
            try Self.range("--open-files", openFiles, "0-100000", (0...100_000).contains(openFiles))
        }
        if maxLine != nil && service == .http {
            throw ValidationError("--max-line is for echo and resp (http has --max-head)")
        }
        if maxHead != nil && service != .http { throw ValidationError("--max-head is for http only") }
        if maxBulk != nil && service != .resp { throw ValidationError("--max-bulk is for resp only") }
        if maxRequest != nil && service == .echo {
            throw ValidationError("--max-request is for resp and http (echo has --max-line)")
        }
        if service == .proxy {
            for (name, given) in [
                ("--max-line", maxLine != nil), ("--max-bulk", maxBulk != nil), ("--max-request", maxRequest != nil),
                ("--blocking-work", blockingWork != nil), ("--handler", handler != nil),
            ] where given {
                throw ValidationError("\(name) does not apply to proxy: it passes bytes, whatever they say")
            }
        }
        if handler != nil && (service == .http || mode != .reactor || udp) {
            throw ValidationError(
                "--handler is for echo and resp over streams in reactor mode (the mode is \(mode.rawValue))")
        }
        if loopsOption != nil && (mode != .reactor || udp) {
            throw ValidationError("--loops is for reactor mode over streams")
        }
        if let blockingThreads {
            try Self.range("--blocking-threads", blockingThreads, "1-1024", (1...1024).contains(blockingThreads))
            if mode != .reactor { throw ValidationError("--blocking-threads is for reactor mode") }
        }
        if blockingWork != nil && mode != .reactor {
            throw ValidationError(
                "--blocking-work is for reactor mode (the other modes block their own thread or child)")
        }
        if unixMode != nil && unix == nil { throw ValidationError("--unix-mode is for --unix sockets") }
        if Systemd.wasPassedSockets && !Restart.isReplacement {
            for (name, given) in [
                ("--host", host != "127.0.0.1"), ("--port", port != 0), ("--unix", unix != nil),
            ] where given {
                throw ValidationError("\(name) does not apply: systemd passed the sockets to serve (LISTEN_FDS)")
            }
        }
        if !allow.isEmpty && unix != nil {
            throw ValidationError("--allow is for IP addresses; a Unix socket has --unix-mode")
        }
        if let root {
            guard directoryExists(root) else { throw ValidationError("--root \(root) is not a directory") }
        }
        _ = try allowedRanges()
        guard let permissions = mode_t(unixMode ?? "600", radix: 8), permissions <= 0o777 else {
            throw ValidationError("--unix-mode must be octal 0-777, got \(unixMode ?? "")")
        }
    }

    /// A usage error unless `valid`: `--port must be 0-65535, got -1`.
    private static func range(_ option: String, _ value: Any, _ bounds: String, _ valid: Bool) throws {
        if !valid { throw ValidationError("\(option) must be \(bounds), got \(value)") }
    }

    /// `--unix-mode` as permission bits (validated).
    var unixPermissions: mode_t { mode_t(unixMode ?? "600", radix: 8) ?? 0o600 }

    /// The `--allow` ranges, `nil` when none is given.
    func allowedRanges() throws -> [AddressRange]? {
        guard !allow.isEmpty else { return nil }
        return try allow.map { range in
            do { return try AddressRange(range) } catch { throw ValidationError("--allow \(error)") }
        }
    }

    /// The TLS context from --tls-cert, --tls-key and --tls-client-ca, read now; `nil` without them.
    /// - Throws: `TLSError.configuration` naming the file that could not be used.
    func makeTLSContext() throws -> TLSContext? {
        guard let tlsCert, let tlsKey else { return nil }
        var configuration = TLSConfiguration.server(certificateChain: tlsCert, privateKey: tlsKey)
        if let tlsClientCA { configuration.clientAuthentication = .required(caFile: tlsClientCA) }
        configuration.handshakeTimeout = .milliseconds(Int(tlsHandshakeTimeout * 1000))
        if service == .http { configuration.applicationProtocols = ["http/1.1"] }
        return try TLSContext(server: configuration)
    }

    /// The input limits from the options.
    var limits: Limits {
        var limits = Limits()
        if let maxLine { limits.lineLength = maxLine }
        if let maxHead { limits.headLength = maxHead }
        if let maxBulk { limits.bulkLength = maxBulk }
        if let maxRequest { limits.requestLength = maxRequest }
        return limits
    }

    func run() throws {
        let startTime = ProcessFigures.startTime()
        let level = logLevel.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let tls: TLSContext?
        do {
            tls = try makeTLSContext()
        } catch {
            writeToStandardError("sockserv: \(error)\n")
            throw ExitCode(1)
        }
        let wake = try installStopSignals()
        // Every count, the library's included, in memory shared with forked children: mapped now, before any fork.
        let sharedMetrics = try SharedMetrics()
        MetricsSystem.bootstrap(sharedMetrics)
        let stats = SharedCounters(metrics: sharedMetrics)
        var passedMetrics: Systemd.PassedSocket?
        let makeSession = sessionMaker()
        let idle = idleTimeout.map { Duration.milliseconds(Int($0 * 1000)) }
        // One loop accepts (the main thread's); with --loops, a group's loops serve the connections.
        let loop: EventLoop
        let group: LoopGroup?
        do {
            let threads = blockingThreads ?? BlockingPool.defaultThreadCount
            if loops > 1 {
                loop = try EventLoop(backend: backend.backend)
                group = try LoopGroup(loops: loops, backend: backend.backend, blockingThreads: threads)
            } else {
                let pool = blockingThreads.map { BlockingPool(threads: $0, name: "pool") } ?? .shared
                loop = try EventLoop(backend: backend.backend, blockingPool: pool)
                group = nil
            }
        } catch {
            writeToStandardError("sockserv: \(error)\n")
            throw ExitCode(1)
        }
        let context = ServeContext(
            makeSession: makeSession, idleTimeout: idle, stats: stats, blockingWorkOnLoop: blockingWork == .loop,
            proxy: try proxyConfiguration())
        var servers: [TCPServer] = []
        do {
            let allPassed = Systemd.passedSockets()
            Systemd.forgetPassedSockets()
            // A restart passes --metrics-address's socket too, by name.
            passedMetrics = allPassed.first { $0.name == "metrics" }
            let passed = allPassed.filter { $0.name != "metrics" }
            if !passed.isEmpty {
                for socket in passed {
                    servers.append(try adoptServer(socket, loop: loop, group: group, context: context))
                }
            } else {
                servers.append(try makeServer(try listenAddress(), loop: loop, group: group, context: context))
            }
        } catch {
            for server in servers { server.serverClose() }
            group?.shutdown()
            writeToStandardError("sockserv: \(error)\n")
            throw ExitCode(1)
        }
        for server in servers {
            server.tls = tls
            _ = server.metrics  // its series made now: before the first scrape, and before any fork
        }
        let metricsEndpoint: MetricsEndpoint?
        do {
            metricsEndpoint = try metricsAddress.map { text in
                guard case .success(let (host, port)) = HostPort.hostAndPort(text, option: "--metrics-address"),
                    let address = try SocketAddress.resolve(host: host, port: port).first
                else { throw ValidationError("--metrics-address \(text) does not resolve") }
                let socket = try passedMetrics.map { try Socket(adoptingBound: $0.fileDescriptor, kind: .stream) }
                return try MetricsEndpoint(
                    address, adopting: socket, stats: stats, startTime: startTime,
                    on: mode == .forking ? loop : nil)
            }
        } catch {
            for server in servers { server.serverClose() }
            group?.shutdown()
            writeToStandardError("sockserv: --metrics-address: \(error)\n")
            throw ExitCode(1)
        }
        let listening = Set(servers.map { "\($0.serverAddress)" }).sorted()
        for address in listening { print("listening on \(address)\(tls != nil ? " (tls)" : "")") }
        if let metricsEndpoint { print("metrics on http://\(metricsEndpoint.address)/metrics") }
        fflush(nil)

        let notifier = try Systemd.Notifier()
        // A replacement is the service's main process from now on (systemd accepts that with NotifyAccess=all).
        let mainPID = Restart.isReplacement ? "MAINPID=\(getpid())\n" : ""
        notifier?.notify("\(mainPID)READY=1\nSTATUS=listening on \(listening.joined(separator: ", "))")
        Restart.signalReady()
        let watchdog = try notifier?.watchdogInterval.map { interval in
            try loop.scheduleRepeating(every: interval) { _ in notifier?.notify("WATCHDOG=1") }
        }
        let restart = Restart(loop: loop) { _ in
            // The new process serves on the same sockets: this one's closing must not remove a Unix socket's file.
            for server in servers { server.socket.keepUnixSocketFile() }
            for server in servers { server.requestShutdown() }
        }
        let stopWatcher = try IOWatcher(fileDescriptor: wake, events: .readable, on: loop) { _ in
            var byte: UInt8 = 0
            var stop = false
            var dump = false
            var reload = false
            var replace = false
            while read(wake, &byte, 1) > 0 {
                switch WakeReason(rawValue: byte) {
                case .metrics: dump = true
                case .reload: reload = true
                case .restart: replace = true
                default: stop = true
                }
            }
            if dump { writeToStandardError(MetricsText.render(stats, startTime: startTime)) }
            if reload { reloadTLS(servers) }
            if stop {
                notifier?.notify("STOPPING=1\nSTATUS=stopping: finishing the requests in progress")
                for server in servers { server.requestShutdown() }
            } else if replace {
                restart.start(
                    servers.map { (name: "serve", descriptor: $0.fileno) }
                        + (metricsEndpoint.map { [(name: "metrics", descriptor: $0.socket.fileDescriptor)] } ?? []))
            }
        }
        // The first server's serveForever runs the loop; the others (more sockets systemd passed) accept on it too.
        loop.takeOwnership()
        for server in servers.dropFirst() { try server.startServing(pollInterval: .milliseconds(250)) }
        try servers[0].serveForever(pollInterval: .milliseconds(250))
        for server in servers.dropFirst() { server.stopServing() }
        // The library's drain, every server side by side, then the close.
        let reports = BaseServer.shutdown(servers, gracePeriod: .milliseconds(Int(grace * 1000)))
        for server in servers { server.serverClose() }
        let perLoop = servers.compactMap { ($0.mixIn as? ReactorMixIn)?.connectionsPerLoop }
            .reduce(into: [Int](repeating: 0, count: loops)) { sums, counts in
                for (index, count) in counts.enumerated() { sums[index] += count }
            }
        group?.shutdown()
        watchdog?.cancel()
        stopWatcher.cancel()
        metricsEndpoint?.stop()
        let left = reports.reduce(0) { $0 + $1.cut }
        for _ in 0..<left { stats.add(.gracePeriod) }
        let cpu = CPUTime.ofThisProcess()
        let spread = group == nil ? "" : ", connections per loop: \(perLoop.map(String.init).joined(separator: " "))"
        writeToStandardError("sockserv: \(stats.summary), \(String(format: "%.3f", cpu.total)) s CPU\(spread)\n")
        if left > 0 {
            writeToStandardError("sockserv: cut off \(left) requests in progress after the \(grace) s grace period\n")
            throw ExitCode(1)
        }
    }

    /// SIGHUP: reads the TLS files again for new connections; a file that fails keeps the old context.
    private func reloadTLS(_ servers: [TCPServer]) {
        let logger = Logger(label: "sockserv")
        guard tlsCert != nil else { return logger.notice("SIGHUP: nothing to reload without --tls-cert") }
        do {
            let context = try makeTLSContext()
            for server in servers { server.tls = context }
            logger.notice("SIGHUP: reloaded the TLS certificate \(tlsCert ?? "") and key \(tlsKey ?? "")")
        } catch {
            logger.error("SIGHUP: keeping the TLS certificates in use: \(error)")
        }
    }

    /// A server bound to `address` and listening.
    private func makeServer(_ address: SocketAddress, loop: EventLoop, group: LoopGroup?, context: ServeContext) throws
        -> TCPServer
    {
        let server = try makeServer(loop: loop, context: context) { requestHandler, mixIn in
            if udp {
                return try SockservDatagramServer(
                    address, requestHandler: requestHandler, mixIn: mixIn, context: context, loop: loop)
            }
            return try SockservStreamServer(
                address, requestHandler: requestHandler, mixIn: mixIn, context: context, loop: loop, group: group)
        }
        do {
            try server.serverBind()
            try server.serverActivate()
        } catch {
            server.serverClose()
            throw error
        }
        return server
    }

    /// A server on a socket systemd passed: a listening stream socket, or with `--udp` a datagram socket.
    private func adoptServer(_ passed: Systemd.PassedSocket, loop: EventLoop, group: LoopGroup?, context: ServeContext)
        throws
        -> TCPServer
    {
        let socket = try adopt(passed)
        return try makeServer(loop: loop, context: context) { requestHandler, mixIn in
            if udp {
                return try SockservDatagramServer(
                    adopting: socket, requestHandler: requestHandler, mixIn: mixIn, context: context, loop: loop)
            }
            return try SockservStreamServer(
                adopting: socket, requestHandler: requestHandler, mixIn: mixIn, context: context, loop: loop,
                group: group)
        }
    }

    /// The socket systemd passed, checked: a listening stream socket, or with `--udp` a datagram socket.
    private func adopt(_ passed: Systemd.PassedSocket) throws(IOError) -> Socket {
        do throws(IOError) {
            return try Socket(adoptingBound: passed.fileDescriptor, kind: udp ? .datagram : .stream)
        } catch {
            throw IOError(
                errnoCode: error.errnoCode,
                operation:
                    "the socket systemd passed (descriptor \(passed.fileDescriptor), \(passed.name)): \(error.operation)"
            )
        }
    }

    /// A server in `--mode` for `--protocol` with every option applied, made by `make` from its handler and mode.
    private func makeServer(
        loop: EventLoop, context: ServeContext, _ make: (RequestHandlerType, ProcessingMixIn) throws -> TCPServer
    ) throws -> TCPServer {
        let mixIn = mode.makeMixIn()
        // Python's limit of 40 children would stall a benchmark's 50 connections: allow as many as may be
        // open, plus one, so that --max-connections refuses (verifyRequest) before the parent would wait.
        (mixIn as? ForkingMixIn)?.maxChildren = maxConnections.map { $0 + 1 } ?? 4096
        let requestHandler: RequestHandlerType
        switch (mode, handler ?? .callback) {
        case _ where udp:
            requestHandler =
                mode == .reactor ? .async(AsyncEchoDatagramHandler.self) : .blocking(EchoDatagramHandler.self)
        case _ where service == .http: requestHandler = HTTPService.requestHandler(for: mixIn)
        case _ where service == .proxy:
            requestHandler =
                mode == .reactor ? .callback(CallbackProxyHandler.self) : .blocking(BlockingProxyHandler.self)
        case (.reactor, .callback): requestHandler = .callback(CallbackSessionHandler.self)
        case (.reactor, .async): requestHandler = .async(AsyncSessionHandler.self)
        default: requestHandler = .blocking(BlockingSessionHandler.self)
        }
        let server = try make(requestHandler, mixIn)
        if let stream = server as? SockservStreamServer {
            if service == .http {
                let root = self.root
                let http = HTTPService(limits: limits) { SockservHTTPHandler(root: root) }
                http.keepAliveTimeout = context.idleTimeout
                if let openFiles { http.openFilesPerDirectory = openFiles }
                stream.httpService = http
            }
            stream.maxConnections = maxConnections
            stream.refusal = service == .resp ? Refusal.resp : service == .http ? Refusal.http : nil
        }
        server.unixSocketPermissions = unixPermissions
        server.allowedClients = try allowedRanges()
        server.proxyProtocol = proxyProtocol
        return server
    }

    private func listenAddress() throws -> SocketAddress {
        if let unix { return try SocketAddress(unixPath: unix) }
        let host = (try? HostPort.host(self.host).get()) ?? self.host
        guard let address = try SocketAddress.resolve(host: host, port: port).first else {
            throw ValidationError("cannot resolve \(host)")
        }
        return address
    }

    /// Makes the protocol state of one connection, for `--protocol`; every loop's server shares it.
    private func sessionMaker() -> @Sendable () -> any Session {
        let limits = self.limits
        switch service {
        case .echo:
            return { EchoSession(limits: limits) }
        case .resp:
            let store = RedisStore()
            return { RESPSession(commands: store, limits: limits) }
        case .http, .proxy:
            return { EchoSession(limits: limits) }  // not used: http and proxy have handlers of their own
        }
    }
}

/// What a byte on the wake pipe means (an enum's raw values: constants a signal handler may use).
enum WakeReason: UInt8 {
    case stop = 1
    case metrics
    case reload
    case restart
}

/// Makes SIGINT and SIGTERM drain every server (`BaseServer.drainProcess()`) and write to a pipe the loop watches (both
/// async-signal-safe), SIGHUP ask for a TLS reload the same way, SIGUSR1 for a metrics dump and SIGUSR2 for a
/// restart (so that none kills the server); forked children inherit the handlers. Returns the pipe's read end.
func installStopSignals() throws -> Int32 {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw IOError(errnoCode: errno, operation: "pipe") }
    for fd in fds {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }
    ProcessSignals.wakeFD.store(fds[1], ordering: .relaxed)
    _ = BaseServer.isProcessDraining  // initialize the flag before a signal can touch it
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { signal in
        var byte: UInt8
        switch signal {
        case SIGHUP: byte = WakeReason.reload.rawValue
        case SIGUSR1: byte = WakeReason.metrics.rawValue
        case SIGUSR2: byte = WakeReason.restart.rawValue
        default:
            BaseServer.drainProcess()
            byte = WakeReason.stop.rawValue
        }
        _ = write(ProcessSignals.wakeFD.load(ordering: .relaxed), &byte, 1)
    }
    action.sa_flags = SA_RESTART
    // A parent may have started us with these blocked (a test runner's threads often do).
    var set = sigset_t()
    sigemptyset(&set)
    for signal in [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2] {
        sigaction(signal, &action, nil)
        sigaddset(&set, signal)
    }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    return fds[0]
}

/// Writes `text` to standard error with one `write`.
func writeToStandardError(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Whether `path` is an existing directory.
func directoryExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
}
