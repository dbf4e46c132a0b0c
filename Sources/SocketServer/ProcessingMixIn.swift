import Glibc
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
    /// Requests finished since the server was made, for a drain's report.
    var requestsFinished: Int { finished.load(ordering: .acquiring) }
    private let finished = Atomic<Int>(0)
    /// Set by ``BaseServer/shutdown(gracePeriod:)``: the drain has waited for the requests it could, so
    /// ``serverClose(_:)`` does not wait again (for a thread that ignored its cut socket, say).
    var drained = false

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
    /// The request is in progress (``requestsInProgress``) from its accept until the mode's work on it ends; a mode
    /// that overrides this method without calling `super` has it end when the method returns.
    open func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        let inProgress = server.takeRequestInProgress(request)
        defer { inProgress.finish() }
        try server.finishAccepted(request, clientAddress: clientAddress)
        server.shutdownRequest(request)
    }

    // The request lifecycle's one count, kept by RequestInProgress: up when the server hands a request to the
    // mode, down once when the mode is done with it, wherever that happens (this thread, a request thread, a
    // reaped child, a handler on the loop). The server's metrics follow it.

    final func requestStarted() {
        inProgress.add(1, ordering: .acquiringAndReleasing)
    }

    final func requestEnded() {
        inProgress.subtract(1, ordering: .acquiringAndReleasing)
        finished.add(1, ordering: .relaxed)
    }

    /// Whether a stream request is served in this process (false in forking mode, where the parent only
    /// closes its copy).
    var servesInThisProcess: Bool { true }

    // MARK: The drain (BaseServer.shutdown(gracePeriod:)), on a thread that owns the server's loop

    /// Tells the requests in progress that the server drains. Default: nothing (a handler looks at
    /// ``BaseServer/isDraining``).
    func beginDrain(_ server: BaseServer) {}

    /// Waits until no request is in progress or `deadline` passes; true when none is left.
    func awaitRequests(_ server: BaseServer, until deadline: ContinuousClock.Instant) -> Bool {
        while hasRequestsInProgress && ContinuousClock.now < deadline { usleep(2_000) }
        return !hasRequestsInProgress
    }

    /// Cuts the requests in progress: their sockets are shut down both ways, so blocked handlers return.
    func cutRequests(_ server: BaseServer) {
        server.openRequests.cutSockets()
    }

    /// Housekeeping after each request and every poll interval. The default does nothing.
    open func serviceActions(_ server: BaseServer) {}

    /// Housekeeping when ``BaseServer/handleRequest()`` times out. The default does nothing.
    open func handleTimeout(_ server: BaseServer) {}

    /// Called by ``BaseServer/serverClose()``. The default does nothing.
    open func serverClose(_ server: BaseServer) {}
}
