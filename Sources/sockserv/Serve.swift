import ArgumentParser
import CoreMetrics
import Foundation
import Glibc
import Logging
import Prometheus
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
    case echo, resp, http
}

/// `--log-level`'s values: swift-log's levels.
enum LogLevel: String, CaseIterable, ExpressibleByArgument {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue) ?? .info }
}

extension EventLoop.Backend: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument == "auto" ? "automatic" : argument)
    }
    public static var allValueStrings: [String] { ["auto", "epoll", "poll", "select"] }
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
            """
    )

    @Argument(help: "The protocol: echo, resp or http.")
    var service: Service

    @Option(help: "How requests are processed: sequential, threading, forking or reactor.")
    var mode: Mode = .reactor

    @Option(
        help: ArgumentHelp(
            "Reactor mode's handler for echo and resp: callback (no task per connection, the default) or async (a task per connection). http runs a task per connection.",
            valueName: "style"))
    var handler: HandlerStyle?

    @Option(help: "Reactor mode: this many loops, each on its own thread with its own SO_REUSEPORT listener.")
    var loops = 1

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port; 0 picks a free one.")
    var port = 0

    @Option(help: "Listen on this Unix socket path instead of host and port.")
    var unix: String?

    @Flag(help: "Serve datagrams (echo only): UDP, or Unix datagrams with --unix.")
    var udp = false

    @Option(help: "The event backend: auto, epoll, poll or select.")
    var backend: EventLoop.Backend = .automatic

    @Option(name: .customLong("idle-timeout"), help: "Close connections idle this many seconds.")
    var idleTimeout: Double?

    @Option(name: .customLong("max-connections"), help: "Refuse connections beyond this many open ones.")
    var maxConnections: Int?

    @Option(
        help: ArgumentHelp(
            "http: serve the files under this directory, as Python's SimpleHTTPRequestHandler (listings, index.html, ranges, 304s), streamed with sendfile. Without it, / answers one line of text and everything else is 404.",
            valueName: "directory"))
    var root: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            "The least severe log lines shown on standard error: trace, debug, info (http's access log), notice, warning, error or critical.",
            valueName: "level"))
    var logLevel: LogLevel = .info

    @Flag(help: "Count with swift-metrics; SIGUSR1 prints every metric on standard error in Prometheus text format.")
    var metrics = false

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
        name: .customLong("tls-handshake-timeout"),
        help: ArgumentHelp("Close a connection whose TLS handshake takes longer, in seconds.", valueName: "seconds"))
    var tlsHandshakeTimeout: Double = 10

    @Option(help: "Seconds to let requests in progress finish after SIGINT or SIGTERM before cutting them off.")
    var grace: Double = 5

    @Option(
        help: ArgumentHelp(
            "Serve only clients in this CIDR range (repeatable), e.g. 10.0.0.0/8 or ::1/128.", valueName: "cidr"))
    var allow: [String] = []

    @Option(
        name: .customLong("unix-mode"),
        help: ArgumentHelp("The Unix socket file's permissions, in octal.", valueName: "mode"))
    var unixMode = "600"

    @Option(name: .customLong("max-line"), help: "The longest echo line or inline RESP command, in bytes.")
    var maxLine = Limits.default.lineLength

    @Option(name: .customLong("max-head"), help: "http: the longest request head, in bytes (over it: 431).")
    var maxHead = Limits.default.headLength

    @Option(name: .customLong("max-bulk"), help: "resp: the largest bulk argument, in bytes.")
    var maxBulk = Limits.default.bulkLength

    @Option(name: .customLong("max-request"), help: "The largest RESP command or HTTP body, in bytes (over it: 413).")
    var maxRequest = Limits.default.requestLength

    func validate() throws {
        if udp && service != .echo { throw ValidationError("--udp serves echo only") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key")
        }
        guard tlsHandshakeTimeout > 0 && tlsHandshakeTimeout <= 3600 else {
            throw ValidationError("--tls-handshake-timeout must be more than 0 and at most 3600 seconds")
        }
        if udp && tlsCert != nil {
            throw ValidationError(
                "--tls-cert is for stream servers: TLS over UDP would be DTLS, which sockserv does not speak")
        }
        if root != nil && service != .http { throw ValidationError("--root is for http only") }
        if handler != nil && (service == .http || mode != .reactor || udp) {
            throw ValidationError("--handler is for echo and resp over streams in reactor mode")
        }
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0-65535") }
        if let idleTimeout, idleTimeout <= 0 { throw ValidationError("--idle-timeout must be positive") }
        if let maxConnections, maxConnections <= 0 { throw ValidationError("--max-connections must be positive") }
        if !(1...64).contains(loops) { throw ValidationError("--loops must be 1-64") }
        if loops > 1 && (mode != .reactor || udp || unix != nil) {
            throw ValidationError("--loops is for reactor mode over TCP")
        }
        if let root {
            guard directoryExists(root) else { throw ValidationError("--root \(root) is not a directory") }
        }
        guard grace >= 0 && grace <= 86_400 else { throw ValidationError("--grace must be 0-86400 seconds") }
        _ = try allowedRanges()
        if !allow.isEmpty && unix != nil {
            throw ValidationError("--allow is for IP addresses; a Unix socket has --unix-mode")
        }
        guard let permissions = mode_t(unixMode, radix: 8), permissions <= 0o777 else {
            throw ValidationError("--unix-mode must be octal 0-777")
        }
        for (name, value) in [
            ("--max-line", maxLine), ("--max-head", maxHead), ("--max-bulk", maxBulk), ("--max-request", maxRequest),
        ] {
            guard value > 0 else { throw ValidationError("\(name) must be positive") }
        }
    }

    /// `--unix-mode` as permission bits (validated).
    var unixPermissions: mode_t { mode_t(unixMode, radix: 8) ?? 0o600 }

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
        limits.lineLength = maxLine
        limits.headLength = maxHead
        limits.bulkLength = maxBulk
        limits.requestLength = maxRequest
        return limits
    }

    func run() throws {
        let level = logLevel.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        if metrics { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
        let tls: TLSContext?
        do {
            tls = try makeTLSContext()
        } catch {
            writeToStandardError("sockserv: \(error)\n")
            throw ExitCode(1)
        }
        let wake = try installStopSignals(metricsDump: metrics)
        let address = try listenAddress()
        let stats = try SharedCounters()  // mapped now, before any child is forked
        let makeSession = sessionMaker()
        let idle = idleTimeout.map { Duration.milliseconds(Int($0 * 1000)) }
        var servers: [TCPServer] = []
        for index in 0..<loops {
            let loop = try EventLoop(backend: backend)
            let context = ServeContext(makeSession: makeSession, idleTimeout: idle, stats: stats)
            // Loops after the first bind the port the first one got, side by side (SO_REUSEPORT).
            servers.append(
                try makeServer(index == 0 ? address : servers[0].serverAddress, loop: loop, context: context))
            servers[index].tls = tls
        }
        print("listening on \(servers[0].serverAddress)\(tls != nil ? " (tls)" : "")")
        fflush(nil)

        let stopWatcher = try IOWatcher(fileDescriptor: wake, events: .readable, on: servers[0].loop) { _ in
            var byte: UInt8 = 0
            var stop = false
            var dump = false
            var reload = false
            while read(wake, &byte, 1) > 0 {
                switch byte {
                case WakeReason.metrics: dump = true
                case WakeReason.reload: reload = true
                default: stop = true
                }
            }
            if dump { writeToStandardError(registry.emitToString()) }
            if reload { reloadTLS(servers) }
            if stop { for server in servers { server.requestShutdown() } }
        }
        let cutOff = CutOffCount()
        let others = DispatchGroup()
        for server in servers.dropFirst() {
            others.enter()
            Thread.detachNewThread {
                defer { others.leave() }
                do { try serve(server, cutOff: cutOff) } catch { writeToStandardError("sockserv: \(error)\n") }
            }
        }
        try serve(servers[0], cutOff: cutOff)
        stopWatcher.cancel()
        others.wait()
        let cpu = CPUTime.ofThisProcess()
        writeToStandardError("sockserv: \(stats.summary), \(String(format: "%.3f", cpu.total)) s CPU\n")
        let left = cutOff.requests.load(ordering: .relaxed)
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

    /// Requests cut off at the end of the grace period, over all loops.
    private final class CutOffCount: Sendable {
        let requests = Atomic<Int>(0)
    }

    /// Serves until stopped, lets requests in progress finish, closes. Runs on the server's loop thread.
    private func serve(_ server: TCPServer, cutOff: CutOffCount) throws {
        try server.serveForever(pollInterval: .milliseconds(250))
        server.socket.close()  // refuse new connections while the last requests finish
        let left = try finishRequestsInProgress(
            server, deadline: ContinuousClock.now + .milliseconds(Int(grace * 1000)))
        cutOff.requests.add(left, ordering: .relaxed)
        server.serverClose()
    }

    private func makeServer(_ address: SocketAddress, loop: EventLoop, context: ServeContext) throws -> TCPServer {
        let mixIn = mode.makeMixIn()
        // Python's limit of 40 children would stall a benchmark's 50 connections: allow as many as may be
        // open, plus one, so that --max-connections refuses (verifyRequest) before the parent would wait.
        (mixIn as? ForkingMixIn)?.maxChildren = maxConnections.map { $0 + 1 } ?? 4096
        let server: TCPServer
        if udp {
            let handler: RequestHandlerType =
                mode == .reactor ? .async(AsyncEchoDatagramHandler.self) : .blocking(EchoDatagramHandler.self)
            server = try SockservDatagramServer(
                address, requestHandler: handler, mixIn: mixIn, context: context, loop: loop)
        } else {
            let requestHandler: RequestHandlerType
            switch (mode, handler ?? .callback) {
            case _ where service == .http: requestHandler = HTTPService.requestHandler(for: mixIn)
            case (.reactor, .callback): requestHandler = .callback(CallbackSessionHandler.self)
            case (.reactor, .async): requestHandler = .async(AsyncSessionHandler.self)
            default: requestHandler = .blocking(BlockingSessionHandler.self)
            }
            let stream = try SockservStreamServer(
                address, requestHandler: requestHandler, mixIn: mixIn, context: context, loop: loop)
            if service == .http {
                let root = self.root
                let http = HTTPService(limits: limits) { SockservHTTPHandler(root: root) }
                http.keepAliveTimeout = context.idleTimeout
                http.drainWhen = { ProcessSignals.stopping.load(ordering: .relaxed) }
                stream.httpService = http
            }
            stream.maxConnections = maxConnections
            stream.allowReusePort = loops > 1
            server = stream
        }
        server.unixSocketPermissions = unixPermissions
        server.allowedClients = try allowedRanges()
        do {
            try server.serverBind()
            try server.serverActivate()
        } catch {
            server.serverClose()
            throw error
        }
        return server
    }

    private func listenAddress() throws -> SocketAddress {
        if let unix { return try SocketAddress(unixPath: unix) }
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
        case .http:
            return { EchoSession(limits: limits) }  // not used: http is served by SocketServerHTTP
        }
    }

    /// After the last accept: let requests in progress finish, closing connections that wait idle.
    /// - Returns: how many requests were still in progress at the deadline (then cut off).
    private func finishRequestsInProgress(_ server: TCPServer, deadline: ContinuousClock.Instant) throws -> Int {
        // HTTP: no new request on a kept-alive connection; those waiting for one close now.
        (server as? SockservStreamServer)?.httpService?.stopKeepAlive()
        switch server.mixIn {
        case let reactor as ReactorMixIn:
            // Closing sends what was written first; a connection is done once its replies are out.
            let idle = server.sessionContext.idle
            idle.closeAll()
            while (reactor.activeRequests > 0 || idle.prune() > 0) && ContinuousClock.now < deadline {
                try server.loop.runOnce(timeout: .milliseconds(50))
                idle.closeAll()
            }
            let left = idle.prune()
            if left > 0 { idle.resetAll() }
            return left
        case let threading as ThreadingMixIn:
            while threading.activeThreads > 0 && ContinuousClock.now < deadline { usleep(10_000) }
            return threading.activeThreads  // the process exits under them
        case let forking as ForkingMixIn:
            // Children finish their request when told to stop, as the parent does.
            for child in forking.activeChildren { kill(child, SIGTERM) }
            while !forking.activeChildren.isEmpty && ContinuousClock.now < deadline {
                forking.collectChildren()
                usleep(10_000)
            }
            let left = forking.activeChildren.count
            for child in forking.activeChildren { kill(child, SIGKILL) }
            forking.collectChildren(blocking: true)
            return left
        default:
            return 0
        }
    }
}

/// What a byte on the wake pipe means.
enum WakeReason {
    static let stop: UInt8 = 1
    static let metrics: UInt8 = 2
    static let reload: UInt8 = 3
}

/// Makes SIGINT and SIGTERM set the stop flag and write to a pipe the loop watches (both
/// async-signal-safe), SIGHUP ask for a TLS reload the same way, and with `metricsDump` SIGUSR1 ask for
/// a metrics dump; forked children inherit the handlers. Returns the pipe's read end.
func installStopSignals(metricsDump: Bool = false) throws -> Int32 {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw IOError(errnoCode: errno, operation: "pipe") }
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    ProcessSignals.wakeFD.store(fds[1], ordering: .relaxed)
    _ = ProcessSignals.stopping.load(ordering: .relaxed)  // initialize the global before a signal can touch it
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in
        ProcessSignals.stopping.store(true, ordering: .relaxed)
        var byte = WakeReason.stop
        _ = write(ProcessSignals.wakeFD.load(ordering: .relaxed), &byte, 1)
    }
    action.sa_flags = SA_RESTART
    sigaction(SIGINT, &action, nil)
    sigaction(SIGTERM, &action, nil)
    var reload = sigaction()
    reload.__sigaction_handler.sa_handler = { _ in
        var byte = WakeReason.reload
        _ = write(ProcessSignals.wakeFD.load(ordering: .relaxed), &byte, 1)
    }
    reload.sa_flags = SA_RESTART
    sigaction(SIGHUP, &reload, nil)
    if metricsDump {
        var dump = sigaction()
        dump.__sigaction_handler.sa_handler = { _ in
            var byte = WakeReason.metrics
            _ = write(ProcessSignals.wakeFD.load(ordering: .relaxed), &byte, 1)
        }
        dump.sa_flags = SA_RESTART
        sigaction(SIGUSR1, &dump, nil)
    }
    // A parent may have started us with these blocked (a test runner's threads often do).
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGHUP)
    if metricsDump { sigaddset(&set, SIGUSR1) }
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
