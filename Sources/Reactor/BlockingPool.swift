import Glibc
import Synchronization

/// A bounded pool of threads for blocking work (a database driver's call, a file system walk, a library without
/// asynchronous I/O), so that no loop waits for it: ``EventLoop/runBlocking(_:)`` runs a closure on one of the
/// pool's threads and the caller goes on, on its loop, with the result. Tokio's `spawn_blocking`, asyncio's
/// `run_in_executor`, SwiftNIO's `NIOThreadPool`.
///
/// At most ``maxThreads`` run work at once; threads start as work arrives and stay until ``shutdown(cancellingQueued:)``.
/// Work beyond the bound waits in a queue, first in first out, and giving work never blocks: a loop goes on serving
/// while the pool is full. A task cancelled while its work waits does not run it (``EventLoop/runBlocking(_:)``
/// throws `CancellationError`); work that has started runs to its end.
///
/// Every loop has a pool: its ``LoopGroup``'s, or the process's ``shared`` one.
public final class BlockingPool: @unchecked Sendable {
    /// The most threads running work at once.
    public let maxThreads: Int
    /// Names the threads in `ps -L` and debuggers: `NAME-1`, `NAME-2`, ...
    private let name: String
    private let state = Mutex(Backlog())
    /// Posted once per job queued, and once per thread at shutdown.
    private let wakeup = Posix.makeSemaphore()

    /// The process's pool, for loops outside a ``LoopGroup``: ``defaultThreadCount`` threads, started on demand.
    public static let shared = BlockingPool(threads: defaultThreadCount, name: "blocking")

    /// The processors this process may run on (its CPU affinity: a container's or `taskset`'s set).
    public static var defaultThreadCount: Int { Posix.processorCount }

    /// A pool of at most `threads` threads (at least 1), none started yet.
    public init(threads: Int = BlockingPool.defaultThreadCount, name: String = "blocking") {
        precondition(threads >= 1, "BlockingPool needs at least one thread, got \(threads)")
        maxThreads = threads
        self.name = name
    }

    deinit {
        Posix.destroySemaphore(wakeup)
    }

    /// Work waiting for a thread now. Readable from any thread.
    public var queuedCount: Int { state.withLock { $0.queue.count } }

    /// Work running now. Readable from any thread.
    public var runningCount: Int { state.withLock { $0.running } }

    /// Threads started (at most ``maxThreads``; they stay until shutdown). Readable from any thread.
    public var threadCount: Int { state.withLock { $0.threads.count + $0.starting } }

    /// Queues `job`, starting a thread if the idle ones are fewer than the queued work and the bound allows; false
    /// if the pool is shut down.
    func enqueue(_ job: any PoolJob) -> Bool {
        let startThread = state.withLock { state -> Bool? in
            guard !state.shutDown else { return nil }
            state.queue.append(job)
            // An idle thread takes one queued job; it counts as idle until it wakes, so compare with the queue.
            guard state.idle < state.queue.count && state.threads.count + state.starting < maxThreads else {
                return false
            }
            state.starting += 1
            return true
        }
        guard let startThread else { return false }
        Posix.semaphorePost(wakeup)
        if startThread { start() }
        return true
    }

    private func start() {
        let number = state.withLock { $0.threads.count + $0.starting }
        do {
            let thread = try ReactorThread.start(named: "\(name)-\(number)") { [self] in work() }
            state.withLock { state in
                state.starting -= 1
                state.threads.append(thread)
            }
        } catch {
            // No thread (a system limit): the work waits for the pool's threads, or fails if there are none.
            let stranded = state.withLock { state -> [any PoolJob] in
                state.starting -= 1
                guard state.threads.isEmpty && state.starting == 0 else { return [] }
                return state.queue.removeAll()
            }
            for job in stranded { job.abandon(error) }
        }
    }

    /// A pool thread: runs queued work until the pool shuts down and the queue is empty.
    private func work() {
        while true {
            state.withLock { $0.idle += 1 }
            Posix.semaphoreWait(wakeup)
            let job = state.withLock { state -> (any PoolJob)? in
                state.idle -= 1
                guard let job = state.queue.popFirst() else { return nil }
                state.running += 1
                return job
            }
            guard let job else {
                if state.withLock({ $0.shutDown }) { return }
                continue
            }
            job.run()
            state.withLock { $0.running -= 1 }
        }
    }

    /// Stops taking work (``EventLoop/runBlocking(_:)`` then throws ``ReactorError/poolShutDown``) and waits for
    /// the threads to end. Work running finishes; queued work runs first, or with `cancellingQueued` is not run and
    /// its callers get ``ReactorError/poolShutDown``. Call from a thread outside the pool; a second call returns at once.
    public func shutdown(cancellingQueued: Bool = false) {
        let (threads, cancelled) = state.withLock { state -> ([ReactorThread], [any PoolJob]) in
            guard !state.shutDown else { return ([], []) }
            state.shutDown = true
            let threads = state.threads
            state.threads = []
            return (threads, cancellingQueued ? state.queue.removeAll() : [])
        }
        precondition(!threads.contains { $0.isCurrent }, "BlockingPool.shutdown() called from one of its own threads")
        for job in cancelled { job.abandon(ReactorError.poolShutDown) }
        for _ in threads { Posix.semaphorePost(wakeup) }
        for thread in threads { thread.join() }
    }
}

/// What a pool's lock guards.
private struct Backlog {
    var queue = JobQueue()
    var threads: [ReactorThread] = []
    /// Threads being started (counted against the bound before they exist).
    var starting = 0
    /// Threads waiting for work.
    var idle = 0
    var running = 0
    var shutDown = false
}

/// First in, first out, without moving the queue at each removal.
private struct JobQueue {
    private var jobs: [(any PoolJob)?] = []
    private var head = 0

    var count: Int { jobs.count - head }

    mutating func append(_ job: any PoolJob) { jobs.append(job) }

    mutating func popFirst() -> (any PoolJob)? {
        guard head < jobs.count else { return nil }
        let job = jobs[head]
        jobs[head] = nil
        head += 1
        if head == jobs.count {
            jobs.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return job
    }

    mutating func removeAll() -> [any PoolJob] {
        let left = jobs[head...].compactMap { $0 }
        jobs = []
        head = 0
        return left
    }
}

/// One piece of work in a pool's queue.
protocol PoolJob: AnyObject, Sendable {
    /// Runs the work, unless it was cancelled, and delivers its result. On a pool thread.
    func run()
    /// Delivers `error` without running the work, unless it has started or was cancelled.
    func abandon(_ error: any Error)
}

/// A job whose caller awaits it (``EventLoop/runBlocking(_:)``). Its state moves once from queued to running or
/// to cancelled, by atomic exchange, so the continuation is resumed exactly once whoever gets there first: the
/// worker, a cancellation, or a shutdown.
final class AwaitedJob<Value: Sendable>: PoolJob, @unchecked Sendable {
    private enum Stage: UInt8 {
        case new, queued, running, cancelled
    }
    private let work: @Sendable () throws -> Value
    private let stage = Atomic<UInt8>(Stage.new.rawValue)
    /// Written once before the stage becomes `queued`, read only by whoever moves it from `queued`.
    private var continuation: CheckedContinuation<Value, any Error>?

    init(_ work: @escaping @Sendable () throws -> Value) {
        self.work = work
    }

    /// Keeps the continuation and marks the job queued; false if it was cancelled first (then the caller resumes it).
    func install(_ continuation: CheckedContinuation<Value, any Error>) -> Bool {
        self.continuation = continuation
        return move(from: .new, to: .queued)
    }

    func run() {
        guard move(from: .queued, to: .running), let continuation else { return }
        continuation.resume(with: Result { try work() })
    }

    func abandon(_ error: any Error) {
        guard move(from: .queued, to: .cancelled), let continuation else { return }
        continuation.resume(throwing: error)
    }

    /// The caller's task was cancelled: the work will not run if it has not started.
    func cancel() {
        if move(from: .new, to: .cancelled) { return }  // install() sees it and resumes
        abandon(CancellationError())
    }

    private func move(from old: Stage, to new: Stage) -> Bool {
        stage.compareExchange(expected: old.rawValue, desired: new.rawValue, ordering: .acquiringAndReleasing).exchanged
    }
}

/// A job whose result a loop-bound callback receives on its loop (``EventLoop/runBlocking(_:completion:)``).
final class CallbackJob<Value: Sendable>: PoolJob, @unchecked Sendable {
    private let work: @Sendable () throws -> Value
    private let deliver: @Sendable (Result<Value, any Error>) -> Void
    private let done = Atomic<Bool>(false)

    init(
        _ work: @escaping @Sendable () throws -> Value, deliver: @escaping @Sendable (Result<Value, any Error>) -> Void
    ) {
        self.work = work
        self.deliver = deliver
    }

    func run() {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        deliver(Result { try work() })
    }

    func abandon(_ error: any Error) {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        deliver(.failure(error))
    }
}

extension EventLoop {
    /// Runs `work` on this loop's ``blockingPool`` and returns its result (or throws its error), so that a blocking
    /// call does not stall the loop's other clients. The calling task waits, and goes on where it runs (a
    /// handler's task: on this loop). If the task is cancelled while the work is still queued, the work does not
    /// run and this throws `CancellationError`; work that has started runs to its end and its result is returned.
    /// - Throws: what `work` throws; `CancellationError`; ``ReactorError/poolShutDown`` if the pool is shut down.
    public func runBlocking<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        let job = AwaitedJob(work)
        let pool = blockingPool
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard job.install(continuation) else { return continuation.resume(throwing: CancellationError()) }
                if !pool.enqueue(job) { job.abandon(ReactorError.poolShutDown) }
            }
        } onCancel: {
            job.cancel()
        }
    }

    /// The callback form of ``runBlocking(_:)``, for callback handlers: runs `work` on this loop's
    /// ``blockingPool`` and calls `completion` with its result on this loop's thread. Call on the loop thread.
    /// `completion` runs even if the connection it serves has closed in the meantime: look before writing.
    /// If the pool is shut down, `completion` gets ``ReactorError/poolShutDown`` at once.
    public func runBlocking<Value: Sendable>(
        _ work: @escaping @Sendable () throws -> Value, completion: @escaping (Result<Value, any Error>) -> Void
    ) {
        preconditionInEventLoop()
        let bound = LoopBound(value: completion)
        let job = CallbackJob(work) { [self] result in execute { bound.value(result) } }
        if !blockingPool.enqueue(job) { completion(.failure(ReactorError.poolShutDown)) }
    }
}
