import Dispatch
import Foundation
import Reactor
import Synchronization

/// Serves each request on a new thread: Python's `ThreadingMixIn`.
///
/// ``BaseServer/serverClose()`` waits for the request threads unless ``daemonThreads`` is set or
/// ``ProcessingMixIn/blockOnClose`` is cleared. Finished threads are forgotten as they end, so a long-running server
/// accumulates nothing.
///
/// Each request thread is named as Python names its threads, `Thread-N` with N counting the request threads of
/// the process from 1: the name shows in `ps -L`, `top -H`, `/proc/PID/task/TID/comm`, debuggers, and the
/// `thread` metadata of ``BaseServer/handleError(_:clientAddress:error:)``'s default log line
/// (``requestThreadName``).
open class ThreadingMixIn: ProcessingMixIn, @unchecked Sendable {
    /// Request threads started by every threading server of the process: Python's thread counter.
    private static let threadsStarted = Atomic<Int>(0)

    /// Threads the server does not wait for on close (Python's `daemon_threads`). Default false.
    public var daemonThreads = false

    private let joinable = DispatchGroup()
    /// Every request thread, waited for or not: what a drain waits for.
    private let running = DispatchGroup()

    public override init() {}

    /// False: a request's lingering close runs on its own thread, which has nothing else to do.
    open override var lingersOnTheLoop: Bool { false }

    /// Request threads still running (``ProcessingMixIn/requestsInProgress``).
    public var activeThreads: Int { requestsInProgress }

    /// Starts a thread that runs ``processRequestThread(_:clientAddress:server:)``.
    open override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        let waitedFor = !daemonThreads && blockOnClose
        if waitedFor { joinable.enter() }
        running.enter()
        let number = Self.threadsStarted.add(1, ordering: .relaxed).newValue
        let inProgress = server.takeRequestInProgress(request)
        Thread.detachNewThread { [self] in
            let name = "Thread-\(number)"
            // The kernel's name, set here: Foundation's `Thread.current.name` setter races with the thread's start
            // and left the creator's name on some threads (seen under ThreadSanitizer).
            CurrentThread.setName(name)
            Self.$requestThreadName.withValue(name) {
                processRequestThread(request, clientAddress: clientAddress, server: server)
            }
            inProgress.finish()
            if waitedFor { joinable.leave() }
            running.leave()
        }
    }

    /// The name of the request thread the caller runs on (`Thread-N`), for its logs; `nil` on other threads.
    /// A task-local value, bound for the request's whole run on its thread.
    @TaskLocal public static var requestThreadName: String?

    /// Runs on the request's thread: finish the request, report an error, shut the request down.
    /// May be overridden.
    open func processRequestThread(_ request: Request, clientAddress: SocketAddress, server: BaseServer) {
        do {
            try server.finishAccepted(request, clientAddress: clientAddress)
        } catch {
            server.reportHandlerError(request, clientAddress: clientAddress, error: error)
        }
        server.shutdownRequest(request)
    }

    /// Waits for the request threads (see ``ProcessingMixIn/blockOnClose`` and ``daemonThreads``).
    /// After a drain (``BaseServer/shutdown(gracePeriod:)``), which waited already, it does not wait again.
    open override func serverClose(_ server: BaseServer) {
        if blockOnClose && !drained { joinable.wait() }
    }

    override func awaitRequests(_ server: BaseServer, until deadline: ContinuousClock.Instant) -> Bool {
        running.wait(timeout: deadline.dispatchTime) == .success
    }
}
