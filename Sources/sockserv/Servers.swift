import Reactor
import SocketServer
import SocketServerHTTP

/// The stream server for every family and mode: refuses connections beyond `--max-connections` and
/// reports handler errors in one line.
final class SockservStreamServer: TCPServer, SessionServer, HTTPServing, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var requestQueueSize: Int32 { 1024 }
    override class var allowReuseAddress: Bool { true }

    let context: ServeContext
    /// Whether the mode is forking (looked up once: a cast per request costs).
    private let forks: Bool

    init(
        _ address: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop, group: LoopGroup?
    ) throws {
        self.context = context
        forks = mixIn is ForkingMixIn
        try super.init(
            address, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: false, loop: loop, group: group)
    }

    /// A server on a socket passed by systemd's socket activation.
    init(
        adopting socket: Socket, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop, group: LoopGroup?
    ) throws {
        self.context = context
        forks = mixIn is ForkingMixIn
        try super.init(adopting: socket, requestHandler: requestHandler, mixIn: mixIn, loop: loop, group: group)
    }

    /// `serve http`'s configuration; `nil` for the other services.
    var httpService: HTTPService?
    var http: HTTPService {
        guard let httpService else { preconditionFailure("an HTTP connection on a server without HTTPService") }
        return httpService
    }

    override func serverClose() {
        super.serverClose()
        httpService?.closeOpenFiles()
    }

    /// The most connections served at once; `nil` is unlimited.
    var maxConnections: Int?
    /// What a client refused at ``maxConnections`` is told before the connection closes (over plain
    /// TCP or Unix sockets: a TLS client has not finished its handshake): Redis's error for resp, a 503 for http.
    var refusal: [UInt8]?

    override func verifyRequest(_ request: Request, clientAddress: SocketAddress) -> Bool {
        guard super.verifyRequest(request, clientAddress: clientAddress) else {  // --allow
            context.stats.closed(clientAddress, .allowList)
            return false
        }
        // With --proxy-protocol this runs after the header, where the request is counted in progress already: the
        // limit was checked as it was accepted (processRequest), on the accepting thread.
        return proxyProtocol || withinConnectionLimit(request, clientAddress: clientAddress, alreadyCounted: 0)
    }

    /// Whether another connection may be served under `--max-connections`; refuses it (counted, logged, told) if not.
    /// `alreadyCounted` is 1 when the request is among the requests in progress already.
    private func withinConnectionLimit(_ request: Request, clientAddress: SocketAddress, alreadyCounted: Int) -> Bool {
        guard let maxConnections else { return true }
        guard connectionsInProgress(alreadyCounted: alreadyCounted) - alreadyCounted >= maxConnections else {
            return true
        }
        context.stats.closed(clientAddress, .connectionLimit, "--max-connections \(maxConnections) reached")
        if let refusal { tell(request, refusal) }
        return false
    }

    /// Forking mode: runs in the child, whose loop is its own by now; the child first closes the metrics endpoint's
    /// listening socket.
    override func finishRequest(_ request: Request, clientAddress: SocketAddress) throws {
        if forks { MetricsEndpoint.closeInForkedChild() }
        try super.finishRequest(request, clientAddress: clientAddress)
    }

    /// Children forked for connections (forking mode; counted in the parent, on the serving thread).
    private var forked = 0

    override func processRequest(_ request: Request, clientAddress: SocketAddress) throws {
        // --proxy-protocol: the limit as the connection is accepted (its header, and verifyRequest, come later), by the
        // balancer's address; the request is in progress already.
        if proxyProtocol && !withinConnectionLimit(request, clientAddress: clientAddress, alreadyCounted: 1) {
            return shutdownRequest(request)
        }
        try super.processRequest(request, clientAddress: clientAddress)
        if forks { forked += 1 }  // the parent; the child exits inside
    }

    /// Connections being served, counted from their accept: the library's count of requests in progress,
    /// which a request joins on the accepting thread (the handlers' own count starts only when a thread or task
    /// runs, so a burst of accepts would all see room in threading mode). Forking mode takes the smaller of two
    /// counts that each may only be too high: the library's, children not yet reaped (one that has finished may
    /// not have exited yet), and the children forked less the connections the children have finished (one
    /// forked a moment ago has not counted itself yet, and one whose TLS handshake failed never counts itself).
    private func connectionsInProgress(alreadyCounted: Int = 0) -> Int {
        guard let forking = mixIn as? ForkingMixIn else { return mixIn.requestsInProgress }
        forking.collectChildren()
        let stats = context.stats
        let started = stats[.connections]  // read before open: a child starting in between makes this high, not low
        let finished = started - stats[.open]
        // The request being accepted is in the library's count, not yet among the children forked: add it there.
        return min(forking.requestsInProgress, forked - finished + alreadyCounted)
    }

    /// Sends a short refusal without waiting: it fits an empty socket buffer, and is dropped if not.
    private func tell(_ request: Request, _ bytes: [UInt8]) {
        switch request {
        case .stream(let socket) where !socket.usesTLS:
            bytes.withUnsafeBytes { _ = try? socket.sendIfReady($0) }
        case .connection(let connection) where !connection.usesTLS:
            connection.write(bytes)
        default:
            break
        }
    }

    /// A client that closed during its TLS handshake (a TCP health check, a port scan) or sent plain HTTP
    /// (answered 400) is a routine close, logged at info and not an error; every other failure is an error.
    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        if let error = error as? TLSError, error == .closedDuringHandshake || error == .plainHTTPRequest {
            return context.stats.closed(clientAddress, .tlsHandshake, error, level: .info)
        }
        if case ServerError.proxyHeader = error {  // the balancer's or a stray client's fault: not a handler error
            return context.stats.closed(clientAddress, .proxyHeader, error)
        }
        context.stats.add(.errors)
        context.stats.closed(clientAddress, CloseReason(error), error)
    }
}

/// What a client refused at `--max-connections` is told, by protocol.
enum Refusal {
    static let resp = Array("-ERR max number of clients reached\r\n".utf8)
    static let http: [UInt8] = {
        let body = "Service Unavailable: the server's connection limit is reached\n"
        return Array(
            ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body).utf8)
    }()
}

/// The datagram server for every family and mode (echo only).
final class SockservDatagramServer: UDPServer, SessionServer, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var allowReuseAddress: Bool { true }

    let context: ServeContext
    /// Whether the mode is forking (looked up once: a cast per request costs).
    private let forks: Bool

    init(
        _ address: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop
    ) throws {
        self.context = context
        forks = mixIn is ForkingMixIn
        try super.init(address, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: false, loop: loop)
    }

    /// A server on a socket passed by systemd's socket activation.
    init(
        adopting socket: Socket, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop
    ) throws {
        self.context = context
        forks = mixIn is ForkingMixIn
        try super.init(adopting: socket, requestHandler: requestHandler, mixIn: mixIn, loop: loop)
    }

    /// Forking mode: runs in the child, which first closes the metrics endpoint's listening socket.
    override func finishRequest(_ request: Request, clientAddress: SocketAddress) throws {
        if forks { MetricsEndpoint.closeInForkedChild() }
        try super.finishRequest(request, clientAddress: clientAddress)
    }

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        context.stats.add(.errors)
        serveLogger.error("datagram from \(clientAddress): \(error)")
    }
}
