import Logging
import Reactor

/// How a server processes a request once accepted. This base class is the sequential mode:
/// each request is served to the end on the serving thread before the next is accepted.
///
/// Python's mix-ins made Swift: a server holds one (``BaseServer/mixIn``) and its hooks call the
/// mix-in's methods, which subclasses override (``ThreadingMixIn``, ``ForkingMixIn``, ``ReactorMixIn``).
/// Methods that may be overridden: all of them.
open class ProcessingMixIn: @unchecked Sendable {
    /// Where the mode reports (forking mode: children that crashed). The server sets it to its own
    /// ``BaseServer/logger``.
    public var logger = Logger(label: "SocketServer")

    public init() {}

    /// Whether the mode serves requests with async handlers (reactor mode).
    open var handlesAsync: Bool { false }

    /// How many requests one readiness of the listening socket may accept.
    open var requestsPerWakeup: Int { 1 }

    /// Whether requests accepted on the loop are still being served there (reactor mode).
    open var hasRequestsInProgress: Bool { false }

    /// Serves `request`: here, `BaseServer.finishRequest(_:clientAddress:)` then
    /// ``BaseServer/shutdownRequest(_:)`` on the calling thread. A thrown error goes to the server's
    /// ``BaseServer/handleError(_:clientAddress:error:)``, which then shuts the request down.
    open func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        try server.finishRequest(request, clientAddress: clientAddress)
        server.shutdownRequest(request)
        server.metrics.requestFinished()
    }

    /// Housekeeping after each request and every poll interval. The default does nothing.
    open func serviceActions(_ server: BaseServer) {}

    /// Housekeeping when ``BaseServer/handleRequest()`` times out. The default does nothing.
    open func handleTimeout(_ server: BaseServer) {}

    /// Called by ``BaseServer/serverClose()``. The default does nothing.
    open func serverClose(_ server: BaseServer) {}
}
