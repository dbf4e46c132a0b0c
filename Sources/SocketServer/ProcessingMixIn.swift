import Logging
import Reactor
import Synchronization

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

    /// Whether ``BaseServer/serverClose()`` waits for the requests in progress: request threads, child
    /// processes, or reactor handlers (Python's `block_on_close`); in sequential mode, the closes still
    /// lingering on the loop (``TCPServer/shutdownRequest(_:)``), which false resets at once. Default true.
    public var blockOnClose = true

    /// The mode's wait in ``BaseServer/handleRequest()`` when the server's ``BaseServer/timeout`` is `nil`:
    /// `nil` (forever), except in forking mode: 300 s, Python's `ForkingMixIn.timeout`, so that a server driven
    /// by `handleRequest()` reaps idle children in ``BaseServer/handleTimeout()``.
    public var timeout: Duration?

    /// Requests accepted and not yet finished: the one count every mode keeps (a thread, a child process
    /// not yet reaped, a reactor handler still running). Readable from any thread.
    public var requestsInProgress: Int { inProgress.load(ordering: .acquiring) }
    private let inProgress = Atomic<Int>(0)

    public init() {}

    /// Whether the mode serves requests with async handlers (reactor mode).
    open var handlesAsync: Bool { false }

    /// Whether a request's lingering close may be left to the server's loop (see
    /// ``TCPServer/shutdownRequest(_:)``): true in sequential mode, whose serving thread runs that loop between
    /// requests; false in the modes whose requests end on a thread or in a child of their own, which linger there.
    open var lingersOnTheLoop: Bool { true }

    /// How many requests one readiness of the listening socket may accept.
    open var requestsPerWakeup: Int { 1 }

    /// Whether any request is still being served (``requestsInProgress`` is above zero).
    public var hasRequestsInProgress: Bool { requestsInProgress > 0 }

    /// Serves `request`: here, `BaseServer.finishRequest(_:clientAddress:)` then
    /// ``BaseServer/shutdownRequest(_:)`` on the calling thread. A thrown error goes to the server's
    /// ``BaseServer/handleError(_:clientAddress:error:)``, which then shuts the request down.
    ///
    /// An override must end the request's count exactly once on every path, thrown errors included:
    /// where the mode's work ends (a thread, a reaped child, a handler's close), or before it throws.
    open func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        defer { requestFinished(server.metrics) }
        try server.finishRequest(request, clientAddress: clientAddress)
        server.shutdownRequest(request)
    }

    // The request lifecycle's one count: up when the server hands a request to the mode, down once when
    // the mode is done with it, wherever that happens (this thread, a request thread, a reaped child, a
    // handler on the loop). The server's metrics follow it.

    /// The server handed `request` to the mode.
    final func requestStarted(_ metrics: ServerMetrics) {
        inProgress.add(1, ordering: .acquiringAndReleasing)
        metrics.inProgress.increment()
    }

    /// The mode is done with one request.
    final func requestFinished(_ metrics: ServerMetrics) {
        inProgress.subtract(1, ordering: .acquiringAndReleasing)
        metrics.requestFinished()
    }

    /// Housekeeping after each request and every poll interval. The default does nothing.
    open func serviceActions(_ server: BaseServer) {}

    /// Housekeeping when ``BaseServer/handleRequest()`` times out. The default does nothing.
    open func handleTimeout(_ server: BaseServer) {}

    /// Called by ``BaseServer/serverClose()``. The default does nothing.
    open func serverClose(_ server: BaseServer) {}
}
