import Glibc
import Protocols
import Reactor
import SocketServer
import Synchronization

/// What the connections of one HTTP server share: how to make their handlers, the input limits, and
/// whether the server is draining (no request is started on an idle connection once it is).
public final class HTTPService: @unchecked Sendable {
    /// Makes the handler of a new connection.
    public let makeHandler: @Sendable () -> BaseHTTPRequestHandler
    /// Input limits: the request head (`headLength`, over it 414 or 431) and the body (`requestLength`,
    /// over it 413). Set before serving. In reactor mode a body is read whole before its handler runs, so
    /// `requestLength` is what one connection may make the server hold.
    public var limits: Limits
    /// How long a connection may wait for its next request; `nil` leaves it to the handler's `timeout`.
    public var keepAliveTimeout: Duration?

    private let draining = Atomic<Bool>(false)
    /// Reactor connections waiting for their next request, by loop (touched on that loop's thread only).
    private let waiting = Mutex<[ObjectIdentifier: UncheckedConnection]>([:])

    public init(limits: Limits = .default, makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler) {
        self.makeHandler = makeHandler
        self.limits = limits
    }

    /// Also drain while this returns true (a flag a signal handler sets, say): read between requests, as
    /// the draining flag is. Set before serving.
    public var drainWhen: (@Sendable () -> Bool)?

    /// Whether ``stopKeepAlive()`` was called (or ``drainWhen`` says so).
    public var isDraining: Bool { draining.load(ordering: .acquiring) || drainWhen?() == true }

    /// Ends keep-alive, for a graceful stop: each connection closes after the response in progress, and
    /// one waiting for its next request closes now (in the blocking modes within 250 ms). Call it on the
    /// server's loop thread in reactor mode (where it closes the waiting connections), from any thread
    /// otherwise.
    public func stopKeepAlive() {
        draining.store(true, ordering: .releasing)
        let idle = waiting.withLock { entries in
            defer { entries = [:] }
            return Array(entries.values)
        }
        for entry in idle { entry.connection.close() }
    }

    /// The handler types that serve HTTP in `mixIn`'s mode, for a `TCPServer` (or Unix stream server)
    /// that conforms to ``HTTPServing``.
    public static func requestHandler(for mixIn: ProcessingMixIn) -> RequestHandlerType {
        mixIn.handlesAsync ? .callback(LoopHTTPConnection.self) : .blocking(BlockingHTTPConnection.self)
    }

    func startWaiting(_ connection: Connection) {
        waiting.withLock { $0[ObjectIdentifier(connection)] = UncheckedConnection(connection: connection) }
    }

    func stopWaiting(_ connection: Connection) {
        _ = waiting.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }
}

/// A reactor connection in ``HTTPService``'s registry: only ever touched on its loop's thread.
private struct UncheckedConnection: @unchecked Sendable {
    let connection: Connection
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
}

/// Parses the request head at the start of `input` and consumes it; `nil` (nothing consumed) while incomplete.
func takeRequestHead(from input: inout ByteBuffer, limits: Limits) throws(HTTP.ParseError) -> HTTP.RequestHead? {
    let parsed = try input.withUnsafeReadableBytes { (bytes) throws(HTTP.ParseError) in
        try HTTP.parseRequestHead(bytes, limits: limits)
    }
    guard let (head, consumed) = parsed else { return nil }
    input.moveReaderIndex(forwardBy: consumed)
    return head
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
/// served by the handler one after another.
final class BlockingHTTPConnection: BaseRequestHandler {
    private var input = ByteBuffer()
    private var socket: Socket!
    private var received = 0

    /// How often a connection waiting for its next request looks at the draining flag.
    static let pollInterval: Int32 = 250

    override func handle() throws {
        guard case .stream(let socket) = request else { throw ServerError.wrongRequestKind }
        self.socket = socket
        let service = server.httpService
        let handler = service.makeHandler()
        let transport = SocketTransport(socket: socket, metrics: server.metrics)
        let writer = HTTPResponseWriter(transport: transport)
        handler.attach(server: server, clientAddress: clientAddress, writer: writer)
        if let timeout = handler.timeout { socket.timeout = timeout }
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

    /// Serves one request; false when the connection should close.
    private func serveOne(_ handler: BaseHTTPRequestHandler, writer: HTTPResponseWriter, service: HTTPService) throws
        -> Bool
    {
        let limits = service.limits
        var parsed: HTTP.RequestHead?
        while true {
            do {
                parsed = try takeRequestHead(from: &input, limits: limits)
            } catch {
                try handler.reject(error)
                try writer.flush()
                handler.end()
                return false
            }
            if parsed != nil { break }
            if input.isEmpty {
                // The next request is often there already (pipelining, a quick client): no wait then.
                if let bytes = try socket.receiveIfReady(maxCount: 16 * 1024) {
                    guard count(bytes) else { return false }
                    continue
                }
                guard try waitForRequest(handler, service) else {
                    if !service.isDraining { handler.serverCloseReason = .timedOut(idle: true) }
                    return false
                }
            }
            guard try receive() else { return false }  // the client closed, perhaps mid-head: nothing to answer
        }
        let head = parsed!
        handler.begin(head, body: body(head.body, limits: limits))
        defer { handler.end() }
        if handler.wantsContinue(head) {
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
        if handler.closeConnection || service.isDraining { return false }
        // What the handler left of the body is read and dropped, within reason, to reach the next request.
        return try handler.rfile.discard(upTo: 64 * 1024)
    }

    /// Waits for the next request's first bytes, looking at the draining flag and the keep-alive timeout.
    private func waitForRequest(_ handler: BaseHTTPRequestHandler, _ service: HTTPService) throws -> Bool {
        let limit = service.keepAliveTimeout ?? handler.timeout
        let deadline = limit.map { ContinuousClock.now + $0 }
        while true {
            if service.isDraining { return false }
            if try socket.waitForInput(timeout: .milliseconds(Int(Self.pollInterval))) { return true }
            if let deadline, ContinuousClock.now >= deadline { return false }
        }
    }

    /// Receives more input; false at its end.
    private func receive() throws -> Bool {
        count(try socket.receive(maxCount: 16 * 1024))
    }

    /// Counts and keeps received bytes; false for none (the end of input).
    private func count(_ bytes: [UInt8]) -> Bool {
        if bytes.isEmpty { return false }
        received += bytes.count
        server.metrics.countReceived(bytes.count)
        input.append(bytes)
        return true
    }

    /// The request body's reader: from what was received after the head, then from the socket.
    private func body(_ framing: HTTP.Body, limits: Limits) -> HTTPRequestBody {
        switch framing {
        case .none:
            return .empty()
        case .length(let length):
            var remaining = length
            return HTTPRequestBody(contentLength: length) { [self] in
                guard remaining > 0 else { return [] }
                if input.isEmpty, try !receive() { throw ReactorError.unexpectedEOF }
                let bytes = input.readBytes(min(remaining, input.readableBytes)) ?? []
                remaining -= bytes.count
                return bytes
            }
        case .chunked:
            var decoder = HTTP.ChunkedDecoder(limit: limits.requestLength, maxLineLength: limits.headLength)
            return HTTPRequestBody(contentLength: nil) { [self] in
                var output: [UInt8] = []
                while output.isEmpty && !decoder.isComplete {
                    if input.isEmpty, try !receive() { throw ReactorError.unexpectedEOF }
                    let consumed = try input.withUnsafeReadableBytes { try decoder.decode($0, into: &output) }
                    input.moveReaderIndex(forwardBy: consumed)
                }
                return output
            }
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

/// One HTTP connection in reactor mode, with no task: called on the loop as bytes arrive, it parses
/// requests, reads their bodies, runs each handler on the loop thread once its request is whole, and
/// writes the response to the connection, which sends it as the client reads (file regions with
/// `sendfile`). Pipelined requests are served in order; while a response waits above the connection's
/// high watermark, the next request waits too (and reading pauses).
final class LoopHTTPConnection: CallbackRequestHandler {
    private var service: HTTPService!
    private var handler: BaseHTTPRequestHandler!
    private var writer: HTTPResponseWriter!
    /// Input not consumed yet, kept here only while serving waits for output to drain.
    private var held = ByteBuffer()

    /// Where the connection is in its current request.
    private enum Phase {
        /// Waiting for (the rest of) a request head; `idle` before its first byte.
        case head(idle: Bool)
        /// Reading a body of `Content-Length` bytes.
        case body(HTTP.RequestHead, [UInt8], remaining: Int)
        /// Decoding a chunked body.
        case chunked(HTTP.RequestHead, [UInt8], HTTP.ChunkedDecoder)
        /// The connection is ending: input is dropped.
        case closing
    }
    private var phase = Phase.head(idle: true)

    override func setup() throws {
        service = server.httpService
        handler = service.makeHandler()
        writer = HTTPResponseWriter(transport: ConnectionTransport(connection: connection))
        handler.attach(server: server, clientAddress: clientAddress, writer: writer)
        handler.reactorConnection = connection
        connection.writeTimeout = handler.timeout
        try handler.setup()
        awaitRequest()
    }

    override func handle(_ buffer: inout ByteBuffer) throws {
        if case .head(idle: true) = phase { beginRequest() }
        if held.isEmpty {
            try serve(&buffer)
            if !buffer.isEmpty && connection.isOpen && mustWaitForOutput {
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
        do {
            try serve(&held)
        } catch {
            server.reportHandlerError(.connection(connection), clientAddress: clientAddress, error: error)
            connection.close()
        }
    }

    override func handleEndOfInput() throws {
        // The client closed: between requests, or mid-request (nothing to answer then).
        phase = .closing
        connection.close()
    }

    override func finish(error: (any Error)?) {
        service?.stopWaiting(connection)
        guard let handler else { return }
        switch error {
        case ReactorError.timedOut?:
            if case .head(idle: true) = phase {
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

    /// Between requests: registered for ``HTTPService/stopKeepAlive()``, bounded by the keep-alive timeout.
    private func awaitRequest() {
        phase = .head(idle: true)
        service.startWaiting(connection)
        connection.idleTimeout = service.keepAliveTimeout ?? handler.timeout
    }

    /// A request's first bytes arrived.
    private func beginRequest() {
        service.stopWaiting(connection)
        phase = .head(idle: false)
        connection.idleTimeout = handler.timeout
    }

    /// Serves every whole request in `input`, in order, while output allows; consumes what it used.
    private func serve(_ input: inout ByteBuffer) throws {
        let limits = service.limits
        while connection.isOpen && !input.isEmpty {
            switch phase {
            case .closing:
                return input.clear()
            case .head:
                if case .head(idle: true) = phase {
                    if mustWaitForOutput { return }
                    beginRequest()
                }
                let parsed: HTTP.RequestHead?
                do {
                    parsed = try takeRequestHead(from: &input, limits: limits)
                } catch {
                    try handler.reject(error)
                    return try endEarly(&input)
                }
                guard let head = parsed else { return }  // incomplete: more bytes to come
                handler.begin(head, body: .empty())
                if handler.wantsContinue(head) {
                    guard try handler.handleExpect100() else { return try endEarly(&input) }
                    try writer.flush()
                }
                switch head.body {
                case .none:
                    try respond(head, body: [])
                case .length(let length):
                    phase = .body(head, [], remaining: length)
                case .chunked:
                    phase = .chunked(
                        head, [], HTTP.ChunkedDecoder(limit: limits.requestLength, maxLineLength: limits.headLength))
                }
            case .body(let head, var body, let remaining):
                let count = min(remaining, input.readableBytes)
                input.withUnsafeReadableBytes { body.append(contentsOf: $0[..<count]) }
                input.moveReaderIndex(forwardBy: count)
                if count == remaining {
                    try respond(head, body: body)
                } else {
                    phase = .body(head, body, remaining: remaining - count)
                }
            case .chunked(let head, var body, var decoder):
                do {
                    let consumed = try input.withUnsafeReadableBytes { try decoder.decode($0, into: &body) }
                    input.moveReaderIndex(forwardBy: consumed)
                } catch let error as HTTP.ParseError {
                    try handler.reject(error)
                    return try endEarly(&input)
                }
                if decoder.isComplete {
                    try respond(head, body: body)
                } else {
                    phase = .chunked(head, body, decoder)
                }
            }
        }
        // A request with no body bytes still to come (the last one of the input) is served above; one with an
        // empty body is too. A Content-Length body of zero length arrives with no bytes at all:
        if case .body(let head, let body, remaining: 0) = phase { try respond(head, body: body) }
    }

    /// Runs the handler on a whole request and writes its response; then waits for the next request or
    /// closes.
    private func respond(_ head: HTTP.RequestHead, body: [UInt8]) throws {
        handler.begin(head, body: .bytes(body, contentLength: head.body == .chunked ? nil : body.count))
        var failure: (any Error)?
        do {
            try handler.handleCommand()
            if handler.hasPendingHead { try handler.flushHeaders() }
        } catch {
            failure = error
        }
        try writer.flush()
        handler.end()
        if let failure { throw failure }
        if writer.truncated {
            handler.logError("file ended before its Content-Length: closing the connection")
            writer.truncated = false
            return end()
        }
        if handler.closeConnection || service.isDraining { return end() }
        awaitRequest()
    }

    /// Sends what the handler wrote (an error, a refused 100-continue), logs the request, and ends the connection.
    private func endEarly(_ input: inout ByteBuffer) throws {
        try writer.flush()
        handler.end()
        input.clear()
        end()
    }

    private func end() {
        phase = .closing
        connection.close()
    }
}
