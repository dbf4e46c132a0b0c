internal import CLibevent
import Glibc
import Synchronization

/// One libevent `event_base`, run by one thread: the reactor.
///
/// Everything created on a loop (connections, listeners, timers, watchers) is *loop-bound*: it must
/// be used only on the loop's thread, which is the thread that created the loop until ``run()`` or
/// ``runOnce(timeout:)`` is called, and the thread running it from then on. Loop-bound methods
/// check this with a precondition.
///
/// Three entry points are thread-safe and wake the loop at once: ``stop()``, ``execute(_:)`` and
/// the executor's `enqueue` (so `Task(executorPreference: loop)` and actors on the loop work).
///
/// Ownership: the loop owns its `event_base` and frees it in `deinit`. Objects created on the loop
/// keep it alive; open connections, listeners, pending timers and active watchers keep themselves
/// alive until closed or cancelled.
public final class EventLoop: @unchecked Sendable {
    /// The I/O multiplexing method libevent uses.
    public enum Backend: String, Sendable, CaseIterable {
        /// libevent's choice (epoll on Linux).
        case automatic
        /// Linux `epoll`.
        case epoll
        /// `poll(2)`.
        case poll
        /// `select(2)`; limited to descriptors below `FD_SETSIZE` (1024).
        case select
    }

    /// Cross-thread work waiting for the loop.
    private enum RemoteWork {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    private struct RemoteQueue {
        var work: [RemoteWork] = []
        /// The wake-up event was activated and has not run yet.
        var wakePending = false
    }

    /// The underlying `struct event_base *`, owned by this loop.
    let base: OpaquePointer
    /// The method libevent chose, e.g. `"epoll"`.
    public let backendName: String
    /// Where ``runBlocking(_:)`` runs blocking work: the loop's ``LoopGroup``'s pool, or the process's.
    public let blockingPool: BlockingPool

    private let owner: Atomic<UInt>
    private let running = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let remote = Mutex(RemoteQueue())
    private var wakeEvent: LoopEvent?
    private var runOnceTimer: LoopEvent?
    /// While the loop runs on the main thread, the main dispatch queue's work (main-actor jobs) runs from it.
    private var mainQueueEvent: LoopEvent?
    /// The system resolver's `evdns_base`, created by the first ``resolver`` asked for.
    private var dnsBase: OpaquePointer?
    /// Whether the owner thread is the main thread (``mainQueueEvent`` is set then).
    var ownedByMainThread: Bool { mainQueueEvent != nil }

    // Loop-thread state.
    /// Jobs enqueued on the loop thread during a callback, run when the outermost callback returns.
    private var localJobs: [UnownedJob] = []
    /// How many callbacks (or job drains) are on the stack.
    private var callbackDepth = 0
    /// Acceptors that stopped accepting on EMFILE/ENFILE; resumed when a connection closes.
    var pausedAcceptors: [Acceptor] = []
    /// Scratch space every connection reads into first, so an idle connection holds no buffer.
    let scratch: UnsafeMutableRawBufferPointer
    static let scratchSize = 64 * 1024

    /// The backends this libevent build offers, in its order of preference (e.g. `["epoll", "poll", "select"]`).
    public static var supportedBackends: [String] {
        guard var method = event_get_supported_methods() else { return [] }
        var names: [String] = []
        while let name = method.pointee {
            names.append(String(cString: name))
            method += 1
        }
        return names
    }

    /// Creates a loop on the calling thread.
    /// - Parameters:
    ///   - backend: the multiplexing method; other methods are avoided through `event_config_avoid_method`.
    ///   - blockingPool: where ``runBlocking(_:)`` runs work; by default the process's (``BlockingPool/shared``).
    /// - Throws: ``ReactorError/unsupportedBackend(_:)`` if the method is not available,
    ///   ``ReactorError/libevent(_:)`` if libevent cannot create the base.
    public init(backend: Backend = .automatic, blockingPool: BlockingPool = .shared) throws(ReactorError) {
        EventLoop.processSetUp()
        guard let config = event_config_new() else { throw .libevent("event_config_new") }
        defer { event_config_free(config) }
        if backend != .automatic {
            let supported = EventLoop.supportedBackends
            guard supported.contains(backend.rawValue) else { throw .unsupportedBackend(backend.rawValue) }
            for method in supported where method != backend.rawValue {
                event_config_avoid_method(config, method)
            }
        }
        guard let base = event_base_new_with_config(config) else { throw .libevent("event_base_new_with_config") }
        self.base = base
        self.backendName = String(cString: event_base_get_method(base))
        self.blockingPool = blockingPool
        self.owner = Atomic(UInt(pthread_self()))
        self.scratch = .allocate(byteCount: EventLoop.scratchSize, alignment: 16)
        // The loop's own events must not keep it alive: they capture it unowned, and deinit frees them.
        wakeEvent = try LoopEvent(loop: self, persistent: false) { [unowned self] _ in handleWake() }
        runOnceTimer = try LoopEvent(loop: self, persistent: false) { _ in }
        watchMainQueue(Posix.isMainThread)  // from the start: a descriptor made later would look like a leak
    }

    deinit {
        if let dnsBase { evdns_base_free(dnsBase, 0) }  // no lookup is in flight: each keeps the loop alive
        wakeEvent?.free()
        runOnceTimer?.free()
        mainQueueEvent?.free()
        event_base_free(base)
        scratch.deallocate()
    }

    /// Once per process: libevent's pthread locking (so other threads can wake the loop), and
    /// SIGPIPE ignored (a write to a closed peer must be an error, not the death of the process).
    private static let processSetUpDone: Bool = {
        evthread_use_pthreads()
        signal(SIGPIPE, SIG_IGN)
        return true
    }()

    static func processSetUp() {
        _ = processSetUpDone
    }

    // MARK: Thread identity

    /// Whether the calling thread is this loop's thread.
    public var inEventLoop: Bool {
        owner.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Stops the program unless called on the loop's thread.
    @inline(__always)
    public func preconditionInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inEventLoop, "\(ReactorError.notOnLoopThread)", file: file, line: line)
    }

    /// Whether ``run()`` or ``runOnce(timeout:)`` is running now, on whichever thread.
    public var isRunning: Bool { running.load(ordering: .acquiring) }

    /// Makes the calling thread the loop's thread, so loop-bound objects can be set up on it before
    /// ``run()`` or ``runOnce(timeout:)``. The loop must not be running on another thread.
    public func takeOwnership() {
        precondition(!running.load(ordering: .acquiring), "EventLoop.takeOwnership() while the loop runs")
        takeThread()
    }

    /// In a forked child, re-creates the kernel state libevent shares with the parent (`event_reinit`),
    /// so the child's use of the loop cannot disturb the parent's. Call first thing in the child.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent cannot reinitialize.
    public func reinitAfterFork() throws(ReactorError) {
        owner.store(UInt(pthread_self()), ordering: .releasing)
        running.store(false, ordering: .releasing)
        guard event_reinit(base) == 0 else { throw .libevent("event_reinit") }
    }

    // MARK: Running

    /// Runs the loop on the calling thread until ``stop()`` is called.
    ///
    /// If ``stop()`` was called before `run()` started, `run()` returns at once. Each `stop()` ends one `run()`.
    /// - Throws: ``ReactorError/libevent(_:)`` if `event_base_loop` fails.
    public func run() throws(ReactorError) {
        try enter()
        defer { leave() }
        while !stopRequested.exchange(false, ordering: .acquiringAndReleasing) {
            if event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY) < 0 { throw .libevent("event_base_loop") }
        }
    }

    /// Runs one pass of the loop on the calling thread, for a host program that drives it from its own loop.
    ///
    /// - Parameter timeout: how long to wait for something to happen: `nil` waits until at least one
    ///   event runs, `.zero` only runs what is ready now.
    /// - Throws: ``ReactorError/libevent(_:)`` if `event_base_loop` fails.
    public func runOnce(timeout: Duration? = nil) throws(ReactorError) {
        try enter()
        defer { leave() }
        let flags: Int32
        if timeout == .zero {
            // NONBLOCK alone would keep looping while a level-triggered descriptor stays ready.
            flags = EVLOOP_NONBLOCK | EVLOOP_ONCE
        } else {
            flags = EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY
            if let timeout { runOnceTimer?.add(timeout: timeout) }
        }
        defer { if timeout != nil { runOnceTimer?.remove() } }
        if event_base_loop(base, flags) < 0 { throw .libevent("event_base_loop") }
    }

    private func enter() throws(ReactorError) {
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            preconditionFailure("EventLoop.run() called while the loop is already running")
        }
        takeThread()
    }

    /// Makes the calling thread the loop's thread. Only a change of thread asks whether it is the main one
    /// (two system calls), not every ``run()`` or ``runOnce(timeout:)``.
    private func takeThread() {
        let me = UInt(pthread_self())
        if owner.exchange(me, ordering: .acquiringAndReleasing) != me { watchMainQueue(Posix.isMainThread) }
    }

    /// On the main thread the loop holds the thread the main actor runs on, so it runs the main queue's work
    /// itself, as Foundation's RunLoop does: main-actor code (top-level code in `main.swift`, a task it spawns)
    /// runs between the loop's callbacks instead of waiting forever. The event stays while the loop keeps to
    /// the main thread; a loop run on another thread leaves the main queue alone.
    private func watchMainQueue(_ watch: Bool) {
        if watch && mainQueueEvent == nil {
            let descriptor = Posix.mainQueueDescriptor()
            let drain: (LoopEvent.Fired) -> Void = { _ in Posix.drainMainQueue(descriptor) }
            // Out of memory for the event: main-actor work then waits, as it did before there was this event.
            mainQueueEvent = try? LoopEvent(
                loop: self, fileDescriptor: descriptor, watching: .readable, persistent: true, drain)
            _ = mainQueueEvent?.add()  // work enqueued earlier left the eventfd readable: the first poll finds it
        } else if !watch, let event = mainQueueEvent {
            event.free()
            mainQueueEvent = nil
        }
    }

    private func leave() {
        running.store(false, ordering: .releasing)
    }

    /// Makes the running ``run()`` return, or the next one return at once. Thread-safe; wakes the loop immediately.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        wake()
    }

    /// Runs `body` on the loop's thread soon, waking the loop if it is waiting. Thread-safe.
    ///
    /// Closures run in the order they were submitted.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        let needsWake = remote.withLock { queue in
            queue.work.append(.closure(body))
            return Self.claimWake(&queue)
        }
        if needsWake { wakeEvent?.activate([]) }
    }

    private func wake() {
        if remote.withLock({ Self.claimWake(&$0) }) { wakeEvent?.activate([]) }
    }

    private static func claimWake(_ queue: inout RemoteQueue) -> Bool {
        if queue.wakePending { return false }
        queue.wakePending = true
        return true
    }

    private func handleWake() {
        let work = remote.withLock { queue -> [RemoteWork] in
            queue.wakePending = false
            let work = queue.work
            queue.work = []
            return work
        }
        // Already inside the wake event's callback scope.
        for item in work {
            switch item {
            case .job(let job): runJob(job)
            case .closure(let body): body()
            }
        }
        if stopRequested.load(ordering: .acquiring) {
            event_base_loopbreak(base)
        }
    }

    // MARK: Callbacks and local jobs

    /// Callbacks this loop has run (readiness, timers, wake-ups): a measure of its work. Read on the loop thread.
    public private(set) var callbacksRun: UInt64 = 0

    /// Wraps every callback from libevent: jobs that the callback enqueued (a continuation resumed,
    /// say) run when the outermost callback returns, before the loop polls again, with no lock.
    @inline(__always)
    func withCallbackScope(_ body: () -> Void) {
        callbacksRun &+= 1
        callbackDepth += 1
        body()
        callbackDepth -= 1
        if callbackDepth == 0 && !localJobs.isEmpty {
            drainLocalJobs()
        }
    }

    private func drainLocalJobs() {
        callbackDepth += 1
        defer { callbackDepth -= 1 }
        var rounds = 0
        while !localJobs.isEmpty {
            rounds += 1
            if rounds > 1024 {
                // A task that keeps re-enqueueing itself must not starve I/O: finish on the next pass.
                let rest = localJobs
                localJobs = []
                let needsWake = remote.withLock { queue in
                    queue.work.append(contentsOf: rest.map { RemoteWork.job($0) })
                    return Self.claimWake(&queue)
                }
                if needsWake { wakeEvent?.activate([]) }
                return
            }
            let jobs = localJobs
            localJobs = []
            for job in jobs { runJob(job) }
        }
    }

    @inline(__always)
    private func runJob(_ job: UnownedJob) {
        job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
    }

    /// Adds a job from the executor. On the loop thread inside a callback it joins the lock-free local
    /// queue; from anywhere else it goes through the locked remote queue and wakes the loop.
    func enqueueJob(_ job: UnownedJob) {
        // `inEventLoop` first: only the loop thread may read `callbackDepth`.
        if inEventLoop && callbackDepth > 0 {
            localJobs.append(job)
            return
        }
        let needsWake = remote.withLock { queue in
            queue.work.append(.job(job))
            return Self.claimWake(&queue)
        }
        if needsWake { wakeEvent?.activate([]) }
    }

    /// The `evdns_base` of ``resolver``: `/etc/resolv.conf` and `/etc/hosts` as the C library reads them (a
    /// missing file or one with no nameserver leaves `127.0.0.1`, as glibc does). Queries wait at most 5 s, twice,
    /// unless `resolv.conf` says otherwise. It does not keep a loop with nothing else to do from returning.
    func systemDNSBase() -> OpaquePointer {
        if let dnsBase { return dnsBase }
        guard let created = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE) else {
            fatalError("evdns_base_new: out of memory")
        }
        try? Resolver.configure(created, queryTimeout: .seconds(5), attempts: 2)
        _ = evdns_base_resolv_conf_parse(created, clibevent_dns_options_all, "/etc/resolv.conf")
        dnsBase = created
        return created
    }

    // MARK: Accept back-off

    /// A connection closed: descriptors are free again, so paused listeners may accept.
    @inline(__always)
    func descriptorReleased() {
        if !pausedAcceptors.isEmpty {
            let acceptors = pausedAcceptors
            pausedAcceptors = []
            for acceptor in acceptors { acceptor.resume() }
        }
    }

}

extension timeval {
    /// A `timeval` for a non-negative duration, rounded up to the microsecond.
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) {
            self.init(tv_sec: 0, tv_usec: 0)
            return
        }
        // Far futures are capped at about 30 years: libevent adds the timeout to the current time.
        let cappedSeconds = min(seconds, 1_000_000_000)
        let micros = max(0, (attoseconds + 999_999_999_999) / 1_000_000_000_000)
        self.init(tv_sec: Int(cappedSeconds) + Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
    }
}
