import ArgumentParser
import Foundation
import Glibc
import Protocols
import Reactor
import SocketServer

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
            The first line on standard output is `listening on ADDRESS`. SIGINT or SIGTERM stops accepting, lets \
            requests in progress finish (up to 5 s), prints a summary on standard error and exits 0.

            resp keeps one store for all connections in reactor, threading and sequential modes; in forking mode \
            each child process has its own store, so keys set on one connection are not seen by another.
            """
    )

    @Argument(help: "The protocol: echo, resp or http.")
    var service: Service

    @Option(help: "How requests are processed: sequential, threading, forking or reactor.")
    var mode: Mode = .reactor

    @Option(help: "Reactor mode's handler: callback (no task per connection) or async (a task per connection).")
    var handler: HandlerStyle = .callback

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

    @Option(help: "http: serve files under this directory (like Python's SimpleHTTPRequestHandler).")
    var root: String?

    func validate() throws {
        if udp && service != .echo { throw ValidationError("--udp serves echo only") }
        if root != nil && service != .http { throw ValidationError("--root is for http only") }
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
    }

    func run() throws {
        let wake = try installStopSignals()
        let address = try listenAddress()
        configureSessions()
        var servers: [TCPServer] = []
        for index in 0..<loops {
            let loop = try EventLoop(backend: backend)
            ServeContext.idleRegistries[ObjectIdentifier(loop)] = IdleRegistry()
            // Loops after the first bind the port the first one got, side by side (SO_REUSEPORT).
            servers.append(try makeServer(index == 0 ? address : servers[0].serverAddress, loop: loop))
        }
        print("listening on \(servers[0].serverAddress)")
        fflush(nil)

        let stopWatcher = try IOWatcher(fileDescriptor: wake, events: .readable, on: servers[0].loop) { _ in
            var byte: UInt8 = 0
            while read(wake, &byte, 1) > 0 {}
            for server in servers { server.requestShutdown() }
        }
        let others = DispatchGroup()
        for server in servers.dropFirst() {
            others.enter()
            Thread.detachNewThread {
                defer { others.leave() }
                do { try serve(server) } catch { writeToStandardError("sockserv: \(error)\n") }
            }
        }
        try serve(servers[0])
        stopWatcher.cancel()
        others.wait()
        writeToStandardError("sockserv: \(ServeContext.stats.summary)\n")
    }

    /// Serves until stopped, lets requests in progress finish, closes. Runs on the server's loop thread.
    private func serve(_ server: TCPServer) throws {
        try server.serveForever(pollInterval: .milliseconds(250))
        try finishRequestsInProgress(server, deadline: ContinuousClock.now + .seconds(5))
        server.serverClose()
    }

    private func makeServer(_ address: SocketAddress, loop: EventLoop) throws -> TCPServer {
        let mixIn = mode.makeMixIn()
        // Python's limit of 40 children would stall a benchmark's 50 connections: allow as many as may be open.
        (mixIn as? ForkingMixIn)?.maxChildren = maxConnections ?? 4096
        if udp {
            let handler: RequestHandlerType = mode == .reactor ? .async(AsyncEchoDatagramHandler.self) : .blocking(EchoDatagramHandler.self)
            return try SockservDatagramServer(address, requestHandler: handler, mixIn: mixIn, loop: loop)
        }
        let requestHandler: RequestHandlerType
        switch (mode, handler) {
        case (.reactor, .callback): requestHandler = .callback(CallbackSessionHandler.self)
        case (.reactor, .async): requestHandler = .async(AsyncSessionHandler.self)
        default: requestHandler = .blocking(BlockingSessionHandler.self)
        }
        let server = try SockservStreamServer(address, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: false, loop: loop)
        server.maxConnections = maxConnections
        server.allowReusePort = loops > 1
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

    private func configureSessions() {
        _ = ServeContext.stats  // map the shared counters now, before any child is forked
        ServeContext.idleTimeout = idleTimeout.map { .milliseconds(Int($0 * 1000)) }
        switch service {
        case .echo:
            ServeContext.makeSession = { EchoSession() }
        case .resp:
            let store = RedisStore()
            ServeContext.makeSession = { RESPSession(store: store) }
        case .http:
            let responder = HTTPResponder(root: root)
            ServeContext.makeSession = { HTTPSession(responder: responder) }
        }
    }

    /// After the last accept: let requests in progress finish, closing connections that wait idle.
    private func finishRequestsInProgress(_ server: TCPServer, deadline: ContinuousClock.Instant) throws {
        switch server.mixIn {
        case let reactor as ReactorMixIn:
            let idle = ServeContext.idle(on: server.loop)
            idle.closeAll()
            while reactor.activeRequests > 0 && ContinuousClock.now < deadline {
                try server.loop.runOnce(timeout: .milliseconds(50))
                idle.closeAll()
            }
        case let threading as ThreadingMixIn:
            while threading.activeThreads > 0 && ContinuousClock.now < deadline { usleep(10_000) }
        case let forking as ForkingMixIn:
            // Children finish their request when told to stop, as the parent does.
            for child in forking.activeChildren { kill(child, SIGTERM) }
            while !forking.activeChildren.isEmpty && ContinuousClock.now < deadline {
                forking.collectChildren()
                usleep(10_000)
            }
        default:
            break
        }
    }
}

/// Makes SIGINT and SIGTERM set the stop flag and write to a pipe the loop watches (both
/// async-signal-safe); forked children inherit the handlers. Returns the pipe's read end.
func installStopSignals() throws -> Int32 {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw IOError(errnoCode: errno, operation: "pipe") }
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    ServeContext.wakeFD = fds[1]
    _ = ServeContext.stopping.load(ordering: .relaxed)  // initialize the global before a signal can touch it
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { _ in
        ServeContext.stopping.store(true, ordering: .relaxed)
        var byte: UInt8 = 1
        _ = write(ServeContext.wakeFD, &byte, 1)
    }
    action.sa_flags = SA_RESTART
    sigaction(SIGINT, &action, nil)
    sigaction(SIGTERM, &action, nil)
    // A parent may have started us with these blocked (a test runner's threads often do).
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
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
