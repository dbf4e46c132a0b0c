import Reactor

/// The base of blocking request handlers: Python's `BaseRequestHandler`.
///
/// The server creates one handler per request and calls ``setup()``, then ``handle()``, then
/// ``finish()`` (also when `handle()` throws; not when `setup()` throws). Override ``handle()``.
///
/// Methods that may be overridden: ``setup()``, ``handle()``, ``finish()``.
/// Attributes: ``request``, ``clientAddress``, ``server``.
open class BaseRequestHandler {
    /// The request being served.
    public let request: Request
    /// The client's address (`unix:` for an unnamed Unix peer).
    public let clientAddress: SocketAddress
    /// The server that accepted the request.
    public let server: BaseServer

    /// Called by the server; do not call directly. Subclasses that add stored properties give them defaults.
    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        self.request = request
        self.clientAddress = clientAddress
        self.server = server
    }

    /// Prepares for ``handle()``. The default does nothing. May be overridden.
    open func setup() throws {}

    /// Serves the request. The default does nothing. Override this.
    open func handle() throws {}

    /// Cleans up after ``handle()``, even when it threw. The default does nothing. May be overridden.
    open func finish() throws {}

    /// Runs the handler's life cycle: setup, then handle, then finish. Do not override.
    final func run() throws {
        try setup()
        do {
            try handle()
        } catch {
            try? finish()
            throw error
        }
        try finish()
    }
}
