import Dispatch
import Glibc
import Logging
import Reactor
import Synchronization

/// The template every server follows: Python's `BaseServer`, served on a Reactor `EventLoop`.
///
/// ```
/// serveForever ─▶ handleRequestNoBlock ─▶ getRequest ─▶ verifyRequest ─▶ processRequest
///                                                        └▶ finishRequest (the handler) ─▶ shutdownRequest ─▶ closeRequest
///                                          error ─▶ handleError ─▶ shutdownRequest
/// ```
///
/// Methods for the caller: ``serveForever(pollInterval:)``, ``handleRequest()``, ``shutdown()``,
/// ``shutdown(gracePeriod:)`` (a drain, which Python does not have), ``serverClose()``, ``closing(_:)``, ``fileno``.
///
/// Methods that may be overridden: ``serverBind()``, ``serverActivate()``, ``getRequest()``,
/// ``verifyRequest(_:clientAddress:)``, ``processRequest(_:clientAddress:)``,
/// `finishRequest(_:clientAddress:)`, ``shutdownRequest(_:)``, ``closeRequest(_:)``,
/// ``handleError(_:clientAddress:error:)``, ``handleTimeout()``, ``serviceActions()``.
///
/// Attributes: ``serverAddress``, ``requestHandler``, ``timeout``, ``loop``, ``mixIn``.
///
/// Unlike Python's, ``shutdown()`` wakes the loop at once instead of waiting out `pollInterval`.
/// Thread safety: ``shutdown()`` and ``shutdown(gracePeriod:)`` may be called from any thread but the serving one; in threading
/// mode the request hooks and ``handleError(_:clientAddress:error:)`` run on worker threads.
open class BaseServer: @unchecked Sendable {
    /// The address the server is bound to; after binding, the real one (so port 0 shows the port chosen).
    public internal(set) var serverAddress: SocketAddress {
        didSet { logger[metadataKey: "server"] = "\(serverAddress)" }
    }
    /// The handler class instantiated for each request.
    public let requestHandler: RequestHandlerType
    /// How requests are processed: sequentially (``ProcessingMixIn``), or by a ``ThreadingMixIn``,
    /// ``ForkingMixIn`` or ``ReactorMixIn``.
    public let mixIn: ProcessingMixIn
    /// The loop the server waits on; serving runs it on the calling thread.
    public let loop: EventLoop
    /// The loops a reactor server serves its connections on, or `nil` to serve them on ``loop``.
    ///
    /// With a group, ``loop`` (run by the thread in ``serveForever(pollInterval:)``, as without one) accepts,
    /// verifies and hands each connection to the group's loops in turn, where its handler runs; ``handleError(_:clientAddress:error:)``,
    /// ``shutdownRequest(_:)`` and ``closeRequest(_:)`` then run on those loops' threads. ``shutdown(gracePeriod:)``
    /// and ``serverClose()`` reach the connections on every loop. Shut the group down after the servers on it
    /// are closed.
    public let group: LoopGroup?
    /// How long ``handleRequest()`` waits for a request before ``handleTimeout()``; `nil` takes the mode's
    /// ``ProcessingMixIn/timeout`` (`nil` but in forking mode, where it is 300 s as in Python), and `nil` there
    /// waits forever.
    open var timeout: Duration?
    /// Python's socket timeout of the listening socket: ``handleRequest()`` waits at most the smaller of the two.
    open var socketTimeout: Duration?
    /// Where the server reports: ``handleError(_:clientAddress:error:)``'s default, accept failures,
    /// crashed children. Label `SocketServer`, with the server's address as `server` metadata. Set it
    /// before serving; the mode (``mixIn``) reports through the same logger.
    public var logger: Logger {
        didSet {
            mixIn.logger = logger
            loggerLevel = logger.logLevel
        }
    }
    /// ``logger``'s level, for a handler deciding per request whether to log: read without copying the logger
    /// (a copy retains its handler, which every connection's thread shares).
    package private(set) var loggerLevel = Logger.Level.info
    /// When set, the default ``verifyRequest(_:clientAddress:)`` accepts only IP clients in one of
    /// these ranges and refuses (and logs at `notice`) the rest; Unix clients, which have no IP
    /// address, are accepted (the socket file's permissions guard them). `nil` accepts everyone.
    public var allowedClients: [AddressRange]?
    /// Whether each stream connection starts with a PROXY protocol header (version 1 or 2, as haproxy, nginx and
    /// cloud balancers send with `send-proxy`): the server reads it first, below any TLS, and the client it names is
    /// the client address from then on, for ``verifyRequest(_:clientAddress:)`` (so ``allowedClients``), the logs
    /// and the handler. `verifyRequest` then runs after the header, where the mode serves the request (the request's
    /// thread or child, or the loop), not when it is accepted; a LOCAL header (the balancer's health check) leaves
    /// the socket's peer. A connection whose header is malformed or not whole within ``proxyHeaderTimeout`` goes to
    /// ``handleError(_:clientAddress:error:)`` as ``ServerError/proxyHeader(_:)`` and is closed. Default `false`:
    /// a server that trusts headers must be reachable only by the balancer. The modes read the header in their
    /// `processRequest`; an override that calls `finishRequest(_:clientAddress:)` itself reads none (and verifies
    /// nothing). `verifyRequest` may then run on request threads, in children and on a group's loops.
    public var proxyProtocol = false
    /// How long a connection has to send its whole PROXY protocol header (``proxyProtocol``). Default 3 s.
    public var proxyHeaderTimeout: Duration = .seconds(3)
    /// How long the requests in progress may take to finish when the server runs as a `ServiceLifecycle` service
    /// (``run()``) and the group shuts down: ``shutdown(gracePeriod:)`` with it before ``serverClose()``. `nil` (the
    /// default) waits for them, as ``serverClose()`` does.
    public var shutdownGracePeriod: Duration?
    /// What the server counts (see ``ServerMetrics``), through the bootstrapped `swift-metrics` backend,
    /// with the bound address as the `server` dimension. Made on first use; replace it before serving
    /// to count elsewhere.
    public lazy var metrics = ServerMetrics(dimensions: [("server", "\(serverAddress)")])

    private struct ServeState {
        var serving = false
        var servingThread: pthread_t?
        var waiters: [DispatchSemaphore] = []
    }
    private let serveState = Mutex(ServeState())
    private let shutdownRequested = Atomic<Bool>(false)
    /// The requests in progress a drain reaches: those on ``loop`` (and the blocking sockets served).
    let openRequests = OpenRequests()
    /// Those on each of the ``group``'s loops, in its order.
    let groupRequests: [OpenRequests]
    private let draining = Atomic<Bool>(false)
    /// Set when a drain cuts the requests left: what they fail with afterwards is the cut, not a handler's error.
    private let cutting = Atomic<Bool>(false)
    private var acceptor: Acceptor?
    private var serviceTimer: LoopTimer?
    private var acceptPauses = 0
    private var lastPauseReport: ContinuousClock.Instant?

    /// Creates a server; subclasses create their socket and bind it.
    /// - Parameters:
    ///   - serverAddress: where to listen.
    ///   - requestHandler: the handler class per request; must suit the mode (async or callback for reactor mode).
    ///   - mixIn: the processing mode; sequential by default.
    ///   - loop: the loop to wait on; a new one by default.
    ///   - group: the loops to serve connections on (reactor mode); `nil` serves them on `loop`.
    /// - Throws: ``ServerError/handlerDoesNotMatchMode(_:)``, or a `ReactorError` if no loop can be made.
    public init(
        serverAddress: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn = ProcessingMixIn(),
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        guard requestHandler.runsOnLoop == mixIn.handlesAsync else {
            throw ServerError.handlerDoesNotMatchMode(
                "\(type(of: mixIn)) needs \(mixIn.handlesAsync ? "an async or callback" : "a blocking") request handler"
            )
        }
        if group != nil && !(mixIn is ReactorMixIn) {
            throw ServerError.handlerDoesNotMatchMode("a LoopGroup serves reactor mode, not \(type(of: mixIn))")
        }
        if let loop, let group, group.loops.contains(where: { $0 === loop }) {
            preconditionFailure("a server's loop accepts for its group: pass a loop outside the group")
        }
        self.serverAddress = serverAddress
        self.requestHandler = requestHandler
        self.mixIn = mixIn
        self.loop = try loop ?? EventLoop()
        self.group = group
        groupRequests = group?.loops.map { _ in OpenRequests() } ?? []
        var logger = Logger(label: "SocketServer")
        logger[metadataKey: "server"] = "\(serverAddress)"
        self.logger = logger
        loggerLevel = logger.logLevel
        mixIn.logger = logger
    }

    // MARK: Methods for the caller

    /// The descriptor the server waits on. Subclasses provide it.
    open var fileno: Int32 {
        preconditionFailure("\(type(of: self)) must override fileno")
    }

    /// Handles requests until ``shutdown()``, running the loop on the calling thread.
    ///
    /// ``serviceActions()`` runs after each request and at least every `pollInterval`. If ``shutdown()``
    /// was called before, returns at once.
    /// - Throws: ``ServerError/serverClosed(_:)`` after ``serverClose()``, or a `ReactorError` if the loop fails.
    public func serveForever(pollInterval: Duration = .milliseconds(500)) throws {
        try requireOpen("serveForever")
        let start = serveState.withLock { state -> Bool in
            precondition(!state.serving, "serveForever() called while the server is already serving")
            if shutdownRequested.load(ordering: .acquiring) { return false }
            state.serving = true
            state.servingThread = pthread_self()
            return true
        }
        defer {
            let waiters = serveState.withLock { state -> [DispatchSemaphore] in
                state.serving = false
                state.servingThread = nil
                shutdownRequested.store(false, ordering: .releasing)
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.signal() }
        }
        guard start else { return }
        loop.takeOwnership()
        _ = metrics
        try startServing(pollInterval: pollInterval)
        defer { stopServing() }
        // The flag decides, not the loop: a stop meant for an earlier run only costs one more pass.
        repeat {
            try loop.run()
        } while !shutdownRequested.load(ordering: .acquiring)
    }

    /// Starts waiting for requests on ``loop`` without running it, for a program that runs the loop
    /// itself with other servers, timers and watchers. Call on the loop thread; ``stopServing()`` undoes it.
    /// - Throws: ``ServerError/serverClosed(_:)`` after ``serverClose()``, or a `ReactorError` if the loop fails.
    public func startServing(pollInterval: Duration = .milliseconds(500)) throws {
        try requireOpen("startServing")
        // Reactor's one accept path: batches, and a pause (resumed when a descriptor frees) on failure.
        acceptor = try Acceptor(
            fileDescriptor: fileno, on: loop, acceptsPerWakeup: mixIn.requestsPerWakeup,
            accept: { [unowned self] () throws(IOError) -> Bool in
                guard try handleRequestNoBlock(honoringShutdown: true) else {
                    // Shut down on a loop the program runs: stop watching, or a client waiting in the backlog
                    // would keep the socket readable and spin the loop.
                    if shutdownRequested.load(ordering: .acquiring) { acceptor?.close() }
                    return false
                }
                serviceActions()
                return true
            },
            onPause: { [unowned self] error in acceptingPaused(error) })
        do {
            serviceTimer = try loop.scheduleRepeating(every: pollInterval) { [unowned self] _ in
                reportLoops()
                serviceActions()
            }
        } catch {
            stopServing()
            throw error
        }
    }

    /// Stops waiting for requests on ``loop``; requests being served go on. Outside ``serveForever(pollInterval:)``
    /// it also ends a ``shutdown()`` or ``requestShutdown()``, so that a later ``startServing(pollInterval:)`` serves.
    public func stopServing() {
        if serviceTimer != nil { reportLoops() }
        acceptor?.close()
        acceptor = nil
        serviceTimer?.cancel()
        serviceTimer = nil
        serveState.withLock { state in
            if !state.serving { shutdownRequested.store(false, ordering: .releasing) }
        }
    }

    /// Counts the callbacks ``loop`` ran, on its thread, and each ``group`` loop's, on theirs.
    private func reportLoops() {
        let metrics = self.metrics
        metrics.reportLoop(loop, since: &openRequests.reportedCallbacks)
        for (loop, registry) in zip(group?.loops ?? [], groupRequests) {
            loop.execute { metrics.reportLoop(loop, since: &registry.reportedCallbacks) }
        }
    }

    /// Asks ``serveForever(pollInterval:)`` to stop, wakes its loop, and waits until it has stopped.
    ///
    /// No request is accepted after this is called. Called before serving starts, it makes the next
    /// ``serveForever(pollInterval:)`` return at once. Calling it from the serving thread (a handler
    /// in sequential or reactor mode) would wait for itself: that is a precondition failure; use
    /// ``requestShutdown()`` there.
    public func shutdown() {
        stopServeForever()?.wait()
    }

    /// Asks ``serveForever(pollInterval:)`` to stop and wake its loop; returns what to wait on while it serves.
    private func stopServeForever() -> DispatchSemaphore? {
        serveState.withLock { state -> DispatchSemaphore? in
            if let thread = state.servingThread {
                precondition(
                    pthread_equal(thread, pthread_self()) == 0,
                    "shutdown() called from the thread running serveForever() would deadlock; use requestShutdown()")
            }
            let alreadyAsked = shutdownRequested.exchange(true, ordering: .acquiringAndReleasing)
            guard state.serving else { return nil }
            let waiter = DispatchSemaphore(value: 0)
            state.waiters.append(waiter)
            if !alreadyAsked { loop.stop() }
            return waiter
        }
    }

    /// Stops serving and drains: no request is accepted from now on (a stream server closes its listening
    /// socket, so new clients are refused rather than left waiting); requests in progress may finish until
    /// `gracePeriod` has passed, and what is left then is cut off. Returns once every request has ended, or a
    /// second after the cut for one that ignores it.
    ///
    /// From the moment it is called ``isDraining`` is true, and each mode tells its requests: a reactor handler
    /// hears ``CallbackRequestHandler/handleDrain()`` (or ``AsyncBaseRequestHandler/handleDrain()``), a forked
    /// child gets SIGTERM (which turns its ``isDraining`` true); the HTTP servers close connections that wait for
    /// a next request once it has waited 250 ms more (a request already on its way is answered, not lost to the
    /// close) and end the others after their response in
    /// progress, with `Connection: close`. A handler that serves many requests on one connection does the same
    /// by looking at ``isDraining``.
    ///
    /// The cut: threading and sequential mode shut down each request's socket both ways (a handler blocked on it
    /// returns; one blocked elsewhere is left running and counted as cut); forking mode kills each child
    /// (SIGKILL); reactor mode cancels each handler's task and resets its connection.
    ///
    /// Call it from another thread while ``serveForever(pollInterval:)`` runs (it stops serving first, as
    /// ``shutdown()`` does), or after `serveForever` has returned (after ``requestShutdown()``), or for a loop the
    /// program runs, after ``stopServing()`` and outside the loop's callbacks: a reactor server's drain runs its
    /// loop on the calling thread. Then call ``serverClose()``, which waits for nothing more. The outcome is
    /// logged at `notice` and counted in ``metrics``.
    /// - Parameter gracePeriod: how long requests in progress may take to finish.
    /// - Returns: how many requests finished in the grace period and how many were cut off.
    @discardableResult
    public func shutdown(gracePeriod: Duration) -> DrainReport {
        Self.shutdown([self], gracePeriod: gracePeriod)[0]
    }

    /// Drains several servers as one (``shutdown(gracePeriod:)``): every one stops accepting and tells its requests
    /// before any is waited for, and they share the deadline, so servers on one loop (an ``EventLoopService``'s)
    /// drain side by side within `gracePeriod` in all.
    /// - Returns: each server's report, in order.
    @discardableResult
    public static func shutdown(_ servers: [BaseServer], gracePeriod: Duration) -> [DrainReport] {
        let deadline = ContinuousClock.now + gracePeriod
        var drains = servers.map { $0.startDrain(until: deadline) }
        for (index, server) in servers.enumerated() where !server.mixIn.awaitRequests(server, until: deadline) {
            server.cut(&drains[index])
        }
        let afterCut = ContinuousClock.now + .seconds(1)
        for (index, server) in servers.enumerated() where drains[index].finishedAtCut != nil {
            _ = server.mixIn.awaitRequests(server, until: afterCut)
        }
        return servers.indices.map { servers[$0].endDrain(drains[$0], gracePeriod: gracePeriod) }
    }

    /// One server's drain in progress: what it had finished when it began, and what was cut.
    private struct Drain {
        let finishedBefore: Int
        var cut = 0
        var finishedAtCut: Int?
    }

    /// Stops serving and accepting, and tells the requests in progress (a sequential one that keeps the serving
    /// thread past `deadline` is cut from here).
    private func startDrain(until deadline: ContinuousClock.Instant) -> Drain {
        var drain = Drain(finishedBefore: mixIn.requestsFinished)
        draining.store(true, ordering: .releasing)
        if let waiter = stopServeForever(), waiter.wait(timeout: deadline.dispatchTime) == .timedOut {
            // Only a sequential request keeps the serving thread this long: cut its socket from here.
            if !mixIn.handlesAsync { cut(&drain) }
            waiter.wait()
        }
        precondition(!loop.isRunning, "shutdown(gracePeriod:) while the server's loop runs: call stopServing() first")
        loop.takeOwnership()
        stopServing()
        stopAccepting()
        mixIn.beginDrain(self)
        return drain
    }

    /// Cuts the requests still in progress; what they fail with from now on is the cut, not a handler's error.
    private func cut(_ drain: inout Drain) {
        drain.finishedAtCut = mixIn.requestsFinished
        drain.cut += mixIn.requestsInProgress
        cutting.store(true, ordering: .releasing)
        mixIn.cutRequests(self)
    }

    private func endDrain(_ drain: Drain, gracePeriod: Duration) -> DrainReport {
        mixIn.drained = true
        let finished = (drain.finishedAtCut ?? mixIn.requestsFinished) - drain.finishedBefore
        let report = DrainReport(finished: finished, cut: drain.cut)
        metrics.drainFinished.increment(by: report.finished)
        metrics.drainCut.increment(by: report.cut)
        logger.notice("shut down after a grace period of \(gracePeriod): \(report)")
        return report
    }

    /// Stops accepting for good, at the start of a drain. The default does nothing; a stream `TCPServer`
    /// closes its listening socket.
    func stopAccepting() {}

    /// Whether the server drains: ``shutdown(gracePeriod:)`` was called, or ``drainProcess()`` asked every server
    /// of the process to (a signal handler's call; a forked child's SIGTERM makes it). A handler serving many requests on one connection
    /// looks at it between requests and ends instead of waiting for the next one.
    public var isDraining: Bool {
        draining.load(ordering: .relaxed) || processDraining.load(ordering: .relaxed)
    }

    /// Whether ``drainProcess()`` was called in this process.
    public static var isProcessDraining: Bool { processDraining.load(ordering: .relaxed) }

    /// Makes every server of the process drain (``isDraining``), without stopping any. Async-signal-safe: a
    /// program's SIGTERM handler may call it, as a forked child's does; read ``isProcessDraining`` once before
    /// installing such a handler, so that the flag exists before a signal can touch it.
    public static func drainProcess() {
        processDraining.store(true, ordering: .relaxed)
    }

    /// In a forked child: SIGTERM drains (``drainProcess()``) instead of killing.
    static func drainOnSIGTERM() {
        _ = processDraining.load(ordering: .relaxed)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in BaseServer.drainProcess() }
        action.sa_flags = SA_RESTART
        sigaction(SIGTERM, &action, nil)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Asks ``serveForever(pollInterval:)`` to stop without waiting; safe from any thread, the serving one included.
    /// On a loop the program runs (``startServing(pollInterval:)``), accepting stops until ``stopServing()``.
    public func requestShutdown() {
        serveState.withLock { state in
            let alreadyAsked = shutdownRequested.exchange(true, ordering: .acquiringAndReleasing)
            if state.serving && !alreadyAsked { loop.stop() }
        }
    }

    /// Handles one request, waiting at most the smaller of ``timeout`` and ``socketTimeout``; calls
    /// ``handleTimeout()`` if none came. In reactor mode, returns once every request in progress has finished,
    /// this one included.
    /// - Throws: ``ServerError/serverClosed(_:)`` after ``serverClose()``, or a `ReactorError` if the loop fails.
    public func handleRequest() throws {
        try requireOpen("handleRequest")
        var wait = socketTimeout
        if let timeout = timeout ?? mixIn.timeout { wait = min(wait ?? timeout, timeout) }
        let deadline = wait.map { ContinuousClock.now + $0 }
        loop.takeOwnership()
        _ = metrics
        var ready = false
        let watcher = try IOWatcher(fileDescriptor: fileno, events: .readable, on: loop) { _ in ready = true }
        defer { watcher.cancel() }
        while true {
            // A zero timeout still looks once, as Python's does.
            try loop.runOnce(timeout: deadline.map { max(.zero, $0 - ContinuousClock.now) })
            // Readiness can be spurious (another process took the request): keep waiting until the deadline.
            if ready {
                ready = false
                do {
                    guard try handleRequestNoBlock(honoringShutdown: false) else { continue }
                } catch {
                    return  // the accept failed (out of descriptors, say): no request this time
                }
                break
            }
            if let deadline, ContinuousClock.now >= deadline { return handleTimeout() }
        }
        // Requests served on the loop (reactor mode) need the loop to run; threads and children go on by themselves.
        while mixIn.handlesAsync && mixIn.hasRequestsInProgress { try loop.runOnce(timeout: .milliseconds(100)) }
    }

    /// Throws instead of waiting forever on a closed socket (Python raises `ValueError` there).
    private func requireOpen(_ call: String) throws(ServerError) {
        guard fileno >= 0 else {
            throw .serverClosed("\(call)() after serverClose() on \(type(of: self)) \(serverAddress)")
        }
    }

    /// Closes the server: Python's `server_close`. Modes wait here for their threads or children
    /// (see ``ProcessingMixIn/blockOnClose``). May be overridden; overrides call `super.serverClose()`.
    open func serverClose() {
        stopServing()
        mixIn.serverClose(self)
    }

    /// Runs `body` with the server and closes it afterwards on every path: Python's `with server:`.
    public func closing<R>(_ body: (BaseServer) throws -> R) rethrows -> R {
        defer { serverClose() }
        return try body(self)
    }

    // MARK: The request chain

    /// Accepts and processes one request if one is waiting: Python's `_handle_request_noblock`.
    /// While serving, nothing is accepted once a shutdown was asked.
    /// - Returns: false when no request was waiting (or a shutdown was asked); true when one was taken,
    ///   whether or not it was served (refused, or its handler failed).
    /// - Throws: the `IOError` of a failed accept, for the ``Acceptor`` to pause on.
    final func handleRequestNoBlock(honoringShutdown: Bool) throws(IOError) -> Bool {
        if honoringShutdown && shutdownRequested.load(ordering: .acquiring) { return false }
        let accepted: (Request, SocketAddress)?
        do {
            accepted = try getRequest()
        } catch let error as IOError {
            throw error
        } catch {
            logger.error("getRequest failed: \(error)")
            return true  // not an accept failure: try the next one
        }
        guard let (request, clientAddress) = accepted else { return false }
        metrics.accepted.increment()
        if case .datagram(let packet, _) = request { metrics.bytesReceived.increment(by: packet.count) }
        // With a PROXY protocol header to read, the client is known only once the mode has read it: verified then.
        let verifiedLater: Bool
        if proxyProtocol, case .stream = request { verifiedLater = true } else { verifiedLater = false }
        if verifiedLater || verifyRequest(request, clientAddress: clientAddress) {
            // In progress from here; the mode takes it and finishes it where its work ends, on every path.
            handedOver = RequestInProgress(request, server: self)
            do {
                try processRequest(request, clientAddress: clientAddress)
            } catch {
                reportHandlerError(request, clientAddress: clientAddress, error: error)
                shutdownRequest(request)
            }
            // A processRequest override that served it without the mode: done now that it returned.
            if let inProgress = handedOver {
                handedOver = nil
                inProgress.finish()
            }
        } else {
            metrics.refused.increment()
            shutdownRequest(request)
        }
        return true
    }

    /// The acceptor paused (out of descriptors, say): one report per episode, and every 10 s while it lasts.
    private func acceptingPaused(_ error: IOError) {
        let now = ContinuousClock.now
        acceptPauses += 1
        if lastPauseReport.map({ now - $0 >= .seconds(10) }) ?? true {
            logger.warning(
                "\(type(of: self)) on \(serverAddress): \(error); not accepting for 100 ms at a time (\(acceptPauses) pauses so far)"
            )
            lastPauseReport = now
        }
    }

    /// Binds the socket to ``serverAddress``. Called by the constructor. May be overridden.
    open func serverBind() throws {}

    /// Starts listening. Called by the constructor after ``serverBind()``. May be overridden.
    open func serverActivate() throws {}

    /// Takes one request from the socket; `nil` if none is waiting. Subclasses provide it.
    open func getRequest() throws -> (Request, SocketAddress)? {
        preconditionFailure("\(type(of: self)) must override getRequest()")
    }

    /// Whether to serve the request; false drops it (``shutdownRequest(_:)`` is called once).
    /// The default accepts everything, or with ``allowedClients`` set, the clients in those ranges.
    /// May be overridden; an override that keeps the allow-list calls `super`.
    open func verifyRequest(_ request: Request, clientAddress: SocketAddress) -> Bool {
        guard let allowedClients, clientAddress.family != .unix else { return true }
        if allowedClients.contains(where: { $0.contains(clientAddress) }) { return true }
        logger.notice("refused \(clientAddress): not in the allowed ranges")
        return false
    }

    /// The registry of the requests on `loop`: ``loop``'s or a ``group`` loop's.
    final func openRequests(on loop: EventLoop) -> OpenRequests {
        if loop === self.loop || groupRequests.isEmpty { return openRequests }
        return group?.loops.firstIndex { $0 === loop }.map { groupRequests[$0] } ?? openRequests
    }

    /// The request the accepting thread is handing to the mode, until the mode takes it.
    private var handedOver: RequestInProgress?

    /// The mode takes the request being handed to it (on the accepting thread, in its `processRequest`); one
    /// handed to it some other way is counted in progress from now.
    func takeRequestInProgress(_ request: Request) -> RequestInProgress {
        guard let inProgress = handedOver else { return RequestInProgress(request, server: self) }
        handedOver = nil
        return inProgress
    }

    /// Serves the request according to the mode (``mixIn``): sequentially by default, which calls
    /// `finishRequest(_:clientAddress:)` then ``shutdownRequest(_:)``. May be overridden.
    open func processRequest(_ request: Request, clientAddress: SocketAddress) throws {
        try mixIn.processRequest(request, clientAddress: clientAddress, server: self)
    }

    /// Instantiates the handler class: a blocking handler runs its setup, handle and finish here (after
    /// the TLS handshake of a TLS connection, bounded by its handshake timeout); a callback handler
    /// (reactor mode) becomes the connection's delegate and starts, and the request goes on on the loop
    /// until the connection closes. May be overridden.
    open func finishRequest(_ request: Request, clientAddress: SocketAddress) throws {
        switch (requestHandler, request) {
        case (.blocking(let handlerType), _):
            if case .stream(let socket) = request { try socket.handshake() }
            try handlerType.init(request: request, clientAddress: clientAddress, server: self).run()
        case (.callback(let handlerType), .connection(let connection)):
            let handler = handlerType.init(connection: connection, clientAddress: clientAddress, server: self)
            connection.delegate = handler
            handler.start()
        case (.callback, _):
            throw ServerError.handlerDoesNotMatchMode("a callback handler needs a reactor-mode connection")
        case (.async, _):
            throw ServerError.handlerDoesNotMatchMode("finishRequest needs a blocking handler")
        }
    }

    /// Instantiates the async handler class and runs its setup, handle and finish (reactor mode). May be overridden.
    open func finishRequest(_ request: Request, clientAddress: SocketAddress) async throws {
        guard case .async(let handlerType) = requestHandler else {
            throw ServerError.handlerDoesNotMatchMode("an async finishRequest needs an async handler")
        }
        let handler = try handlerType.init(request: request, clientAddress: clientAddress, server: self)
        if case .connection(let connection) = request {
            openRequests(on: connection.loop).attach(handler, to: connection)
        }
        try await handler.run()
    }

    /// Ends one request: by default just ``closeRequest(_:)``. May be overridden.
    open func shutdownRequest(_ request: Request) {
        closeRequest(request)
    }

    /// Releases one request's resources. The default does nothing. May be overridden.
    open func closeRequest(_ request: Request) {}

    /// Counts a handler's error and passes it to ``handleError(_:clientAddress:error:)``.
    /// Once a drain has cut the requests left, what they fail with is the cut (reported by the drain), logged at
    /// `debug` only.
    package final func reportHandlerError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        if cutting.load(ordering: .acquiring) {
            return logger.debug("\(clientAddress): cut off by the drain: \(error)")
        }
        metrics.errors.increment()
        handleError(request, clientAddress: clientAddress, error: error)
    }

    /// Reports a handler's error; the server goes on. The default logs "Exception occurred during
    /// processing of request from ADDR" at `error` level through ``logger``, with the error as `error`
    /// metadata, and in threading mode the request thread's name as `thread`; a client that sent plain HTTP to
    /// a TLS port (`TLSError.plainHTTPRequest`, answered `400`) is logged at `info`. May be overridden; may run
    /// on worker threads.
    open func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        if let error = error as? TLSError, error == .plainHTTPRequest {  // the client's mistake, answered 400
            return logger.info("\(clientAddress): \(error)")
        }
        var metadata: Logger.Metadata = ["error": "\(error)"]
        if let name = ThreadingMixIn.requestThreadName { metadata["thread"] = "\(name)" }
        logger.error("Exception occurred during processing of request from \(clientAddress)", metadata: metadata)
    }

    /// Called by ``handleRequest()`` when no request came in time. The default lets the mode reap
    /// (forking mode collects children). May be overridden.
    open func handleTimeout() {
        mixIn.handleTimeout(self)
    }

    /// Runs after each request and at least every poll interval while serving. The default lets the
    /// mode do its housekeeping (forking mode collects children). May be overridden.
    open func serviceActions() {
        mixIn.serviceActions(self)
    }
}

/// Set by ``BaseServer/drainProcess()``: every server of the process drains.
private let processDraining = Atomic<Bool>(false)
