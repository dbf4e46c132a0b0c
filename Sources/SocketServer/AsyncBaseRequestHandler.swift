import Reactor

/// The base of async request handlers for reactor mode: ``BaseRequestHandler`` with `async` steps.
///
/// Every step runs on the server's loop thread, interleaved with other requests at each `await`.
/// Methods that may be overridden: ``setup()``, ``handle()``, ``finish()``.
open class AsyncBaseRequestHandler: DrainableHandler {
    /// The request being served.
    public let request: Request
    /// The client's address (`unix:` for an unnamed Unix peer).
    public let clientAddress: SocketAddress
    /// The server that accepted the request.
    public let server: BaseServer

    /// Called by the server; do not call directly.
    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        self.request = request
        self.clientAddress = clientAddress
        self.server = server
    }

    /// Prepares for ``handle()``. The default does nothing. May be overridden.
    open func setup() async throws {}

    /// Serves the request. The default does nothing. Override this.
    open func handle() async throws {}

    /// Cleans up after ``handle()``, even when it threw. The default does nothing. May be overridden.
    open func finish() async throws {}

    /// The server drains (``BaseServer/shutdown(gracePeriod:)``); called on the loop thread, between the task's
    /// steps. End what can end without losing a request: a handler waiting for its client's next request closes
    /// the connection (its read then throws `ReactorError.alreadyClosed`). When the grace period ends, the task
    /// is cancelled and its connection reset. The default does nothing. May be overridden.
    open func handleDrain() {}

    /// Runs the handler's life cycle: setup, then handle, then finish. Do not override.
    final func run() async throws {
        try await setup()
        do {
            try await handle()
        } catch {
            try? await finish()
            throw error
        }
        try await finish()
    }
}

/// An async handler for stream requests: ``StreamRequestHandler`` for reactor mode, where ``rfile``
/// and ``wfile`` are the connection itself (`try await rfile.readLine()`, `try await wfile.write(...)`).
open class AsyncStreamRequestHandler: AsyncBaseRequestHandler {
    /// The connection (Python's `connection`).
    public let connection: Connection
    /// Reads from the client: the connection's async face.
    public var rfile: Connection { connection }
    /// Writes to the client: the connection's async face, with backpressure.
    public var wfile: Connection { connection }

    /// A read waiting longer than this throws `ReactorError.timedOut`; output that cannot drain for
    /// this long closes the connection. `nil` waits forever.
    open var timeout: Duration? { nil }
    /// Set `TCP_NODELAY` on the connection.
    open var disableNagleAlgorithm: Bool { false }

    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        guard case .connection(let connection) = request else { throw ServerError.wrongRequestKind }
        self.connection = connection
        try super.init(request: request, clientAddress: clientAddress, server: server)
    }

    /// Applies ``timeout`` and ``disableNagleAlgorithm``. Overrides call `super.setup()`.
    open override func setup() async throws {
        connection.readTimeout = timeout
        connection.writeTimeout = timeout
        if disableNagleAlgorithm { Socket.disableNagleAlgorithm(connection.fileDescriptor) }
    }

    /// Waits until what was written has been handed to the kernel. Overrides call `super.finish()`.
    open override func finish() async throws {
        if connection.isOpen { try await connection.flush() }
    }
}

/// An async handler for one datagram: ``DatagramRequestHandler`` for reactor mode.
open class AsyncDatagramRequestHandler: AsyncBaseRequestHandler {
    /// The datagram received.
    public let packet: [UInt8]
    /// The server's socket, to answer on.
    public let socket: Socket
    /// Reads the packet.
    public let rfile: SocketReader
    /// Collects the reply, sent as one datagram by ``finish()``.
    public let wfile: SocketWriter

    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        (packet, socket, rfile, wfile) = try datagramFiles(request, replyingTo: clientAddress, metrics: server.metrics)
        try super.init(request: request, clientAddress: clientAddress, server: server)
    }

    /// Sends what was written to ``wfile`` to the client. Overrides call `super.finish()`.
    open override func finish() async throws {
        try wfile.flush()
    }
}
