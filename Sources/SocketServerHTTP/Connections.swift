import Glibc
import Protocols
import Reactor
import SocketServer
import Synchronization

/// What the connections of one HTTP server share: how to make their handlers, the input limits, and
/// whether the server is draining (no request is started on an idle connection once it is).
public final class HTTPService: @unchecked Sendable {
    /// Makes the handler of a new connection: a ``BaseHTTPRequestHandler`` in every mode, or in reactor mode
    /// an ``AsyncHTTPRequestHandler``.
    public let makeHandler: @Sendable () -> HTTPRequestHandlerBase
    /// Input limits: the request head (`headLength`, over it 414 or 431) and the body (`requestLength`,
    /// over it 413). Set before serving. In reactor mode a body is read whole before its handler runs, so
    /// `requestLength` is what one connection may make the server hold.
    public var limits: Limits
    /// How long a connection may wait for its next request; `nil` leaves it to the handler's `timeout`.
    public var keepAliveTimeout: Duration?

    /// How many files each directory served keeps open for its next request (Reactor's `OpenFileCache`: never
    /// stale, a kept file is used only while its path still names it unchanged); 0 opens each file for each
    /// request. Set before serving.
    public var openFilesPerDirectory = 64
    private let openFileCaches = Mutex<[String: OpenFileCache]>([:])

    /// The open-file cache of the directory at `path`, shared by the server's handlers.
    public func openFileCache(for path: String) -> OpenFileCache {
        openFileCaches.withLock { caches in
            if let cache = caches[path] { return cache }
            let cache = OpenFileCache(capacity: openFilesPerDirectory)
            caches[path] = cache
            return cache
        }
    }

    /// Lets the files kept open go (each closes once no response is sending it). The HTTP servers call it
    /// from `serverClose()`; a server of your own that conforms to ``HTTPServing`` calls it from its own.
    public func closeOpenFiles() {
        for cache in openFileCaches.withLock({ Array($0.values) }) { cache.removeAll() }
    }

    private let draining = Atomic<Bool>(false)

    public init(limits: Limits = .default, makeHandler: @escaping @Sendable () -> HTTPRequestHandlerBase) {
        self.makeHandler = makeHandler
        self.limits = limits
    }

    /// Whether ``stopKeepAlive()`` was called.
    public var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Ends keep-alive without stopping the server: each connection closes after its response in progress, and
    /// one waiting for its next request closes when it next wakes (in the blocking modes within 250 ms; in reactor
    /// mode at its next byte or its keep-alive timeout). To stop a server, use `BaseServer.shutdown(gracePeriod:)`,
    /// which does this for its connections and closes the waiting ones within 250 ms.
    public func stopKeepAlive() {
        draining.store(true, ordering: .releasing)
    }

    /// The handler types that serve HTTP in `mixIn`'s mode, for a `TCPServer` (or Unix stream server)
    /// that conforms to ``HTTPServing``.
    public static func requestHandler(for mixIn: ProcessingMixIn) -> RequestHandlerType {
        mixIn.handlesAsync ? .callback(LoopHTTPConnection.self) : .blocking(BlockingHTTPConnection.self)
    }

}

/// A server whose connections speak HTTP: ``HTTPServer`` and its kin, or your own `TCPServer` subclass
/// made with ``HTTPService/requestHandler(for:)``.
public protocol HTTPServing: BaseServer {
    /// The server's HTTP configuration.
    var http: HTTPService { get }
}

extension BaseServer {
    fileprivate var httpService: HTTPService {
        guard let server = self as? any HTTPServing else {
            preconditionFailure("\(type(of: self)) serves HTTP connections but does not conform to HTTPServing")
        }
        return server.http
    }

    /// Whether a connection should close after its response in progress: the server drains, or its HTTP
    /// service stopped keep-alive.
    fileprivate func endsKeepAlive(_ service: HTTPService) -> Bool {
        isDraining || service.isDraining
    }
}

/// Whether an error only means the client went away (a reset, or closed while we wrote).
func isPeerGone(_ error: any Error) -> Bool {
    guard let error = error as? IOError else { return false }
    return error.errnoCode == ECONNRESET || error.errnoCode == EPIPE
}

// MARK: Blocking modes

/// Sends at once on the blocking socket.
private final class SocketTransport: HTTPTransport {
    let socket: Socket
    let metrics: ServerMetrics
    var sent = 0

    init(socket: Socket, metrics: ServerMetrics) {
        self.socket = socket
        self.metrics = metrics
    }

    func send(_ bytes: [UInt8]) throws {
        try socket.sendAll(bytes)
        sent += bytes.count
        metrics.countSent(bytes.count)
    }

    func send(_ region: FileRegion) throws -> Int? {
        let count = try socket.sendFile(region.fileDescriptor, offset: region.offset, count: region.count)
        sent += count
        metrics.countSent(count)
        return count
    }
}

/// One HTTP connection in sequential, threading or forking mode: requests read from the blocking socket,
/// served by the handler one after another; a thin shell over ``HTTP1Session``.
final class BlockingHTTPConnection: BaseRequestHandler {
    @exclusivity(unchecked) private var input = ByteBuffer()
    @exclusivity(unchecked) private var socket: Socket!
    @exclusivity(unchecked) private var received = 0
    @exclusivity(unchecked) private var session = HTTP1Session()
    /// Whether the socket's receives wake every ``pollInterval`` (plain sockets).
    @exclusivity(unchecked) private var wakesToPoll = false
    /// The handler's timeout, for reads on a socket that wakes every poll interval.
    @exclusivity(unchecked) private var requestTimeout: Duration?

    /// How often a connection waiting for its next request looks at the draining flag.
    static let pollInterval: Int32 = 250

    override func handle() throws {
        guard case .stream(let socket) = request else { throw ServerError.wrongRequestKind }
        self.socket = socket
        let service = server.httpService
        session = HTTP1Session(limits: service.limits)
        guard let handler = service.makeHandler() as? BaseHTTPRequestHandler else {
            throw ServerError.handlerDoesNotMatchMode(
                "an AsyncHTTPRequestHandler is served by ReactorHTTPServer only; use BaseHTTPRequestHandler here")
        }
        let transport = SocketTransport(socket: socket, metrics: server.metrics)
        let writer = HTTPResponseWriter(transport: transport)
        handler.attach(server: server, service: service, clientAddress: clientAddress, writer: writer)
        if let timeout = handler.timeout { socket.timeout = timeout }
        requestTimeout = handler.timeout
        if !socket.usesTLS {
            // A blocking receive that wakes every poll interval: one system call per request where a look, a
            // poll and a receive were three. (A TLS socket is non-blocking underneath, and polls.)
            let poll = Duration.milliseconds(Int(Self.pollInterval))
            socket.receiveTimeout = [poll, handler.timeout, service.keepAliveTimeout].compactMap { $0 }.min()
            wakesToPoll = true
        }
        try handler.setup()
        defer {
            handler.bytesReceived = received
            handler.bytesSent = transport.sent
            handler.finish()
        }
        do {
            while try serveOne(handler, writer: writer, service: service) {}
        } catch let error where isPeerGone(error) {
            return  // the client went away: an end like any other
        } catch ReactorError.timedOut {
            handler.serverCloseReason = .timedOut(idle: false)
            handler.logError("Request timed out")
        }
    }

    /// The session's next event in what was received; `nil` when it needs more input.
    private func next(into body: inout [UInt8]) -> (event: HTTP1Session.Event?, consumed: Int) {
        let result = input.withUnsafeReadableBytes { session.next($0, body: &body) }
        input.moveReaderIndex(forwardBy: result.consumed)
        return result
    }

    /// Serves one request; false when the connection should close.
    private func serveOne(_ handler: BaseHTTPRequestHandler, writer: HTTPResponseWriter, service: HTTPService) throws
        -> Bool
    {
        var head: HTTP.RequestHead?
        var unused: [UInt8] = []
        while head == nil {
            if !input.isEmpty {
                switch next(into: &unused).event {
                case .head(let parsed):
                    head = parsed
                    continue
                case .error(let error):
                    try handler.reject(error)
                    try writer.flush()
                    handler.end()
                    return false
                case .body, .end, nil:
                    break
                }
            }
            if input.isEmpty && wakesToPoll {
                guard try receiveRequest(handler, service) else { return false }
                continue
            }
            if input.isEmpty {
                // The next request is often there already (pipelining, a quick client): no wait then.
                if let bytes = try socket.receiveIfReady(maxCount: 16 * 1024) {
                    guard count(bytes) else { return false }
                    continue
                }
                guard try waitForRequest(handler, service) else {
                    if !server.endsKeepAlive(service) { handler.serverCloseReason = .timedOut(idle: true) }
                    return false
                }
            }
            guard try receive() else { return false }  // the client closed, perhaps mid-head: nothing to answer
        }
        let request = head!
        handler.begin(request, body: body(request.body))
        defer { handler.end() }
        if handler.wantsContinue(request) {
            guard try handler.handleExpect100() else {
                try writer.flush()
                return false
            }
            try writer.flush()
        }
        do {
            try handler.handleCommand()
        } catch let error as HTTP.ParseError where handler.responseStatus == nil {
            // A malformed chunked body, found while the handler read it: answered as a bad head is.
            try handler.reject(error)
        }
        if handler.hasPendingHead { try handler.flushHeaders() }
        try writer.flush()
        if writer.truncated {
            handler.logError("file ended before its Content-Length: closing the connection")
            return false
        }
        // Only what the response said closes: a drain that began after its head went out lets the connection wait
        // for one more request (answered with `Connection: close`), or closes it after 250 ms without one.
        if handler.closeConnection { return false }
        // What the handler left of the body is read and dropped, within reason, to reach the next request.
        return try handler.rfile.discard(upTo: 64 * 1024)
    }

    /// Waits for the next request's first bytes, looking at the draining flag and the keep-alive timeout.
    private func waitForRequest(_ handler: BaseHTTPRequestHandler, _ service: HTTPService) throws -> Bool {
        let limit = service.keepAliveTimeout ?? handler.timeout
        let deadline = limit.map { ContinuousClock.now + $0 }
        while true {
            // Input first: a request already on its way when the drain began is answered.
            if try socket.waitForInput(timeout: .milliseconds(Int(Self.pollInterval))) { return true }
            if server.endsKeepAlive(service) { return false }
            if let deadline, ContinuousClock.now >= deadline { return false }
        }
    }

    /// Receives the next request's first bytes on a socket that wakes every poll interval, looking at the
    /// draining flag and the keep-alive timeout then; false when the connection should close. Bytes already sent
    /// are received before the flag is looked at: a drain loses no request that had arrived.
    private func receiveRequest(_ handler: BaseHTTPRequestHandler, _ service: HTTPService) throws -> Bool {
        let deadline = (service.keepAliveTimeout ?? handler.timeout).map { ContinuousClock.now + $0 }
        while true {
            do {
                return try receiveOnce()  // false: the client closed
            } catch ReactorError.timedOut {
                if server.endsKeepAlive(service) { return false }
                if let deadline, ContinuousClock.now >= deadline {
                    handler.serverCloseReason = .timedOut(idle: true)
                    return false
                }
            }
        }
    }

    /// Receives more input; false at its end. On a socket that wakes every poll interval the wait goes on
    /// until the handler's timeout.
    private func receive() throws -> Bool {
        guard wakesToPoll else { return try receiveOnce() }
        let deadline = requestTimeout.map { ContinuousClock.now + $0 }
        while true {
            do {
                return try receiveOnce()
            } catch ReactorError.timedOut {
                if let deadline, ContinuousClock.now >= deadline { throw ReactorError.timedOut }
            }
        }
    }

    /// One receive straight into the input buffer, counted; false at the end of input.
    private func receiveOnce() throws -> Bool {
        let count = try socket.receive(into: &input, maxCount: 16 * 1024)
        if count == 0 { return false }
        received += count
        server.metrics.countReceived(count)
        return true
    }

    /// Counts and keeps received bytes; false for none (the end of input).
    private func count(_ bytes: [UInt8]) -> Bool {
        if bytes.isEmpty { return false }
        received += bytes.count
        server.metrics.countReceived(bytes.count)
        input.append(bytes)
        return true
    }

    /// The request body's reader: the session's body events, from what was received after the head, then
    /// from the socket.
    private func body(_ framing: HTTP.Body) -> HTTPRequestBody {
        let length: Int?
        switch framing {
        case .none: length = 0
        case .length(let count): length = count
        case .chunked: length = nil
        }
        return HTTPRequestBody(contentLength: length) { [self] in
            var bytes: [UInt8] = []
            while bytes.isEmpty {
                let (event, consumed) = next(into: &bytes)
                switch event {
                case .body, .head:
                    continue
                case .end:
                    return bytes
                case .error(let error):
                    throw error
                case nil:
                    if consumed == 0, try !receive() { throw ReactorError.unexpectedEOF }
                }
            }
            return bytes
        }
    }
}

// MARK: Reactor mode

/// Writes straight to the reactor connection: bytes are sent at once or buffered, file regions queued.
private final class ConnectionTransport: HTTPTransport {
    let connection: Connection

    init(connection: Connection) {
        self.connection = connection
    }

    func send(_ bytes: [UInt8]) throws {
        connection.write(bytes)
    }

    func send(_ region: FileRegion) throws -> Int? {
        connection.write(file: region)
        return nil  // sent as the client reads; a file that shrinks closes the connection (ReactorError.fileShrank)
    }
}

/// One HTTP connection in reactor mode, with no task: a thin shell over ``HTTP1Session``, called on the loop
/// as bytes arrive. It feeds them to the session, runs each handler on the loop thread once its request is
/// whole (body included), and writes the response to the connection, which sends it as the client reads
/// (file regions with `sendfile`). Pipelined requests are served in order; while a response waits above the
/// connection's high watermark, the next request waits too (and reading pauses).
final class LoopHTTPConnection: CallbackRequestHandler {
    @exclusivity(unchecked) private var service: HTTPService!
    @exclusivity(unchecked) private var handler: HTTPRequestHandlerBase!
    @exclusivity(unchecked) private var writer: HTTPResponseWriter!
    @exclusivity(unchecked) private var session = HTTP1Session()
    /// An async handler's request is running in its task: input waits.
    @exclusivity(unchecked) private var busy = false
    /// The request being read, and its body so far.
    @exclusivity(unchecked) private var head: HTTP.RequestHead?
    @exclusivity(unchecked) private var body: [UInt8] = []
    /// Between requests with no byte of the next one yet: the keep-alive wait.
    @exclusivity(unchecked) private var idle = true
    /// Input not consumed yet, kept here only while serving waits for output to drain.
    @exclusivity(unchecked) private var held = ByteBuffer()

    override func setup() throws {
        service = server.httpService
        session = HTTP1Session(limits: service.limits)
        handler = service.makeHandler()
        writer = HTTPResponseWriter(transport: ConnectionTransport(connection: connection))
        handler.attach(server: server, service: service, clientAddress: clientAddress, writer: writer)
        handler.reactorConnection = connection
        connection.writeTimeout = handler.timeout
        try handler.setup()
        awaitRequest()
    }

    override func handle(_ buffer: inout ByteBuffer) throws {
        if held.readableBytes + buffer.readableBytes > Self.heldLimit {
            // A client pipelining this much behind requests that wait (a running async handler, or responses
            // it does not read) is not waited for.
            handler.logError(
                "over \(Self.heldLimit) bytes of requests sent ahead of responses not yet sent: closing the connection")
            buffer.clear()
            return connection.close()
        }
        if held.isEmpty {
            try serve(&buffer)
            if !buffer.isEmpty && connection.isOpen {
                buffer.withUnsafeReadableBytes { held.append($0) }  // rare: kept until the output drains
                buffer.clear()
            }
        } else {
            buffer.withUnsafeReadableBytes { held.append($0) }
            buffer.clear()
            try serve(&held)
        }
    }

    override func handleWritable() {
        guard !held.isEmpty, !mustWaitForOutput else { return }
        serveHeld()
    }

    /// The most input kept while requests wait (for output to drain, or for an async handler).
    static let heldLimit = 1 << 20

    /// Serves what was held back, reporting a handler's error as ``handle(_:)`` would.
    private func serveHeld() {
        do {
            try serve(&held)
        } catch {
            server.reportHandlerError(.connection(connection), clientAddress: clientAddress, error: error)
            connection.close()
        }
    }

    override func handleEndOfInput() throws {
        // The client closed: between requests, or mid-request (nothing to answer then).
        connection.close()
    }

    /// How long a drain lets a connection waiting for its next request wait on: the blocking modes' poll interval.
    static let drainWait = Duration.milliseconds(Int(BlockingHTTPConnection.pollInterval))
    /// Closing because the server drains, once the connection has waited ``drainWait`` for a request.
    @exclusivity(unchecked) private var closingForDrain = false

    /// A drain closes the connection after its response in progress (`Connection: close`); one waiting for its
    /// next request closes once it has waited ``drainWait`` more without a byte of one. Not at once: a request the
    /// client had sent as the drain began would cross the close and be lost (under `wrk -c20`, a close at once
    /// failed 20 requests a restart); it is answered instead, with `Connection: close`.
    override func handleDrain() {
        guard idle && !busy && held.isEmpty && session.isBetweenRequests else { return }
        closingForDrain = true
        connection.idleTimeout = min(keepAliveTimeout ?? Self.drainWait, Self.drainWait)
    }

    override func finish(error: (any Error)?) {
        guard let handler else { return }
        switch error {
        case ReactorError.timedOut? where closingForDrain && idle:
            break  // the drain's close of a connection that waited: neither a timeout nor an error
        case ReactorError.timedOut?:
            if idle {
                handler.serverCloseReason = .timedOut(idle: true)  // no next request in time: closed quietly
            } else {
                handler.serverCloseReason = .timedOut(idle: false)
                handler.logError("Request timed out")
            }
        case ReactorError.fileShrank?:
            handler.logError("file ended before its Content-Length: closing the connection")
        default:
            break
        }
        handler.bytesReceived = connection.bytesReceived
        handler.bytesSent = connection.bytesSent
        handler.finish()
    }

    /// Whether the next request must wait: the responses before it are above the high watermark.
    private var mustWaitForOutput: Bool { connection.bufferedOutputBytes > connection.highWatermark }

    /// Between requests (closed at once by a drain), bounded by the keep-alive timeout.
    private func awaitRequest() {
        idle = true
        connection.idleTimeout = keepAliveTimeout
    }

    /// How long a connection may wait for its next request, once per connection: a class attribute.
    private lazy var keepAliveTimeout = service.keepAliveTimeout ?? handler.timeout
    /// How long a request may take to arrive and be sent, once per connection: a class attribute.
    private lazy var requestTimeout = handler.timeout

    /// Serves every whole request in `input`, in order, while output allows; consumes what it used.
    private func serve(_ input: inout ByteBuffer) throws {
        while connection.isOpen && !busy {
            if session.isBetweenRequests {
                if input.isEmpty || mustWaitForOutput { return }
                if idle {  // a request's first bytes
                    idle = false
                    connection.idleTimeout = requestTimeout
                }
            }
            let (event, consumed) = input.withUnsafeReadableBytes { session.next($0, body: &body) }
            input.moveReaderIndex(forwardBy: consumed)
            switch event {
            case nil:
                if consumed == 0 { return }  // more input needed
            case .head(let parsed):
                head = parsed
                if handler.wantsContinue(parsed) {  // the handler answers it, before the body: it sees the head now
                    handler.begin(parsed, body: nil)
                    guard try handler.handleExpect100() else { return try endEarly(&input) }
                    try writer.flush()
                }
            case .body:
                continue
            case .end:
                let request = head!
                head = nil
                let bytes = body
                body = []
                try respond(request, body: bytes)
            case .error(let error):
                try handler.reject(error)
                return try endEarly(&input)
            }
        }
        if !connection.isOpen { input.clear() }  // ending: what is left is dropped
    }

    /// Runs the handler on a whole request and writes its response; then waits for the next request or
    /// closes.
    private func respond(_ head: HTTP.RequestHead, body: [UInt8]) throws {
        let chunked = head.body == .chunked
        let length = chunked ? nil : body.count
        handler.begin(head, body: body.isEmpty && !chunked ? nil : .bytes(body, contentLength: length))
        if let handler = handler as? AsyncHTTPRequestHandler { return respondLater(handler) }
        var failure: (any Error)?
        do {
            try (handler as! BaseHTTPRequestHandler).handleCommand()
            if handler.hasPendingHead { try handler.flushHeaders() }
        } catch {
            failure = error
        }
        try finishResponse(failure)
    }

    /// Runs an async handler's request in a task on the loop; input waits meanwhile, and is served after it.
    private func respondLater(_ handler: AsyncHTTPRequestHandler) {
        busy = true
        connection.idleTimeout = nil  // the handler's own awaits are its business; the write timeout still holds
        connection.loop.spawn { [self] in
            var failure: (any Error)?
            do {
                try await handler.handleCommand()
                if handler.hasPendingHead { try handler.flushHeaders() }
            } catch {
                failure = error
            }
            busy = false
            guard connection.isOpen else { return handler.end() }  // the client left meanwhile: only the log
            connection.idleTimeout = requestTimeout
            do {
                try finishResponse(failure)
            } catch {
                server.reportHandlerError(.connection(connection), clientAddress: clientAddress, error: error)
                return connection.close()
            }
            if !held.isEmpty && !mustWaitForOutput { serveHeld() }
        }
    }

    /// After the handler ran: sends what it wrote, logs the request, and waits for the next one or closes.
    private func finishResponse(_ failure: (any Error)?) throws {
        try writer.flush()
        handler.end()
        if let failure { throw failure }
        if writer.truncated {
            handler.logError("file ended before its Content-Length: closing the connection")
            writer.truncated = false
            return end()
        }
        // Only what the response said closes: a drain that began after its head went out lets the connection wait
        // for one more request (answered with `Connection: close`), or closes it after 250 ms without one.
        if handler.closeConnection { return end() }
        awaitRequest()
        if server.endsKeepAlive(service) { handleDrain() }
    }

    /// Sends what the handler wrote (an error, a refused 100-continue), logs the request, and ends the connection.
    private func endEarly(_ input: inout ByteBuffer) throws {
        try writer.flush()
        handler.end()
        input.clear()
        end()
    }

    private func end() {
        connection.close()
    }
}
