import Glibc
import Reactor

/// Serves each request in a forked child process: Python's `ForkingMixIn`.
///
/// The child re-initializes the loop's kernel state (`event_reinit`), closes its copy of a listening
/// socket (so the parent alone decides when new connections are refused), serves the request with
/// blocking I/O, and leaves with `_exit` (status 0, or 1 after a handler error). Children that die
/// otherwise (killed by a signal, a trap) are reaped and reported by ``childExited(_:status:)``. The parent reaps
/// its children in ``BaseServer/serviceActions()`` and ``BaseServer/handleTimeout()``, waits when
/// ``maxChildren`` are running, and waits for all on close unless ``ProcessingMixIn/blockOnClose`` is cleared. It
/// only ever waits for children it started: other children of the process keep their status.
///
/// A child takes SIGTERM as a request to drain (its ``BaseServer/isDraining`` turns true: an HTTP connection
/// ends after its response in progress) rather than dying at once: ``BaseServer/shutdown(gracePeriod:)`` sends it
/// when a drain begins, and SIGKILL to the children still running when the grace period ends.
open class ForkingMixIn: ProcessingMixIn, @unchecked Sendable {
    /// The most children at once; at this number the server waits for one to end. Default 40.
    public var maxChildren = 40

    /// The children started and not yet reaped.
    public var activeChildren: Set<pid_t> { Set(requests.keys) }
    /// Each child not yet reaped, with the request it serves (finished when the child is reaped).
    private var requests: [pid_t: RequestInProgress] = [:]

    /// A forking mode with Python's defaults: at most 40 children, ``ProcessingMixIn/timeout`` 300 s.
    public override init() {
        super.init()
        timeout = .seconds(300)
    }

    /// False: a request's lingering close runs on its own child, before it exits, which has nothing else to do.
    open override var lingersOnTheLoop: Bool { false }

    override var servesInThisProcess: Bool { false }

    /// Forks: the parent records the child and closes its copy of the request; the child serves it and exits.
    open override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        let inProgress = server.takeRequestInProgress(request)
        let pid: pid_t
        do {
            pid = try ChildProcess.fork()
        } catch {
            inProgress.finish()
            throw error
        }
        if pid > 0 {
            requests[pid] = inProgress
            server.closeRequest(request)
            return
        }
        // The child: nothing of the parent's loop may be touched before this.
        try? server.loop.reinitAfterFork()
        signal(SIGCHLD, SIG_DFL)
        BaseServer.drainOnSIGTERM()  // the parent's drain asks its children to finish with SIGTERM
        // The child's copy of a listening socket would keep it open after the parent closes it.
        if case .datagram = request {} else { Glibc.close(server.fileno) }
        var status: Int32 = 1
        do {
            try server.finishAccepted(request, clientAddress: clientAddress)
            status = 0
        } catch {
            server.reportHandlerError(request, clientAddress: clientAddress, error: error)
        }
        server.shutdownRequest(request)
        fflush(nil)
        _exit(status)
    }

    /// Reaps children that have ended; `blocking` waits for all of them. At ``maxChildren``, waits
    /// until one of them ends. Only this server's children are ever waited for (no `waitpid(-1)`).
    public func collectChildren(blocking: Bool = false) {
        for pid in Array(requests.keys) {
            reap(pid, blocking: blocking)
        }
        // Whichever child ends first frees a place; polling our own children keeps foreign ones untouched.
        while requests.count >= maxChildren {
            usleep(5_000)
            for pid in Array(requests.keys) { reap(pid, blocking: false) }
        }
    }

    private func reap(_ pid: pid_t, blocking: Bool) {
        switch ChildProcess.wait(for: pid, blocking: blocking) {
        case .running:
            return
        case .notAChild:
            ended(pid)  // not ours to wait for any more: its request is over all the same
        case .ended(let status):
            ended(pid)
            childExited(pid, status: status)
        }
    }

    /// The child's request is over.
    private func ended(_ pid: pid_t) {
        requests.removeValue(forKey: pid)?.finish()
    }

    /// A child was reaped. The default logs one that was killed by a signal (a trap, say) at `error`
    /// level, and one that exited with a status other than 0 at `warning` (1 follows a handler error
    /// already reported). May be overridden.
    open func childExited(_ pid: pid_t, status: Int32) {
        let signal = status & 0x7F
        if signal != 0 {
            logger.error("child \(pid) was killed by signal \(signal) (\(String(cString: strsignal(signal))))")
        } else if case let code = (status >> 8) & 0xFF, code != 0 {
            logger.warning("child \(pid) exited with status \(code)")
        }
    }

    open override func serviceActions(_ server: BaseServer) {
        collectChildren()
    }

    open override func handleTimeout(_ server: BaseServer) {
        collectChildren()
    }

    /// Waits for every child unless ``ProcessingMixIn/blockOnClose`` is cleared.
    open override func serverClose(_ server: BaseServer) {
        collectChildren(blocking: blockOnClose)  // Python reaps without waiting when it does not block
    }

    /// A drain asks each child to finish with SIGTERM: its ``BaseServer/isDraining`` turns true, and a handler
    /// that waits for its client's next request (HTTP keep-alive) ends.
    override func beginDrain(_ server: BaseServer) {
        for child in requests.keys { kill(child, SIGTERM) }
    }

    override func awaitRequests(_ server: BaseServer, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            for pid in Array(requests.keys) { reap(pid, blocking: false) }
            if requests.isEmpty { return true }
            if ContinuousClock.now >= deadline { return false }
            usleep(2_000)
        }
    }

    /// The children still running at the end of the grace period are killed (SIGKILL).
    override func cutRequests(_ server: BaseServer) {
        for child in requests.keys { kill(child, SIGKILL) }
    }
}
