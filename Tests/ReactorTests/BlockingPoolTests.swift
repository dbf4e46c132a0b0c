import Dispatch
import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// Work that blocks until the test opens the gate, and counts how many pieces started.
final class Gate: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    let started = Atomic<Int>(0)

    /// Blocks the calling pool thread until ``open(_:)``.
    func pass() {
        started.add(1, ordering: .relaxed)
        semaphore.wait()
    }

    func open(_ count: Int) {
        for _ in 0..<count { semaphore.signal() }
    }
}

/// A flag a pool thread sets and the test reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

@Suite(.serialized) struct BlockingPoolTests {
    /// The work runs on a pool thread, not the loop's, and the task goes on on its loop with the result; an error
    /// thrown by the work is the caller's.
    @Test func theWorkRunsOffTheLoopAndTheCallerResumesOnIt() async throws {
        let group = try LoopGroup(loops: 1, blockingThreads: 2)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let (value, workOnLoop, resumedOnLoop) = try await Task(executorPreference: loop) {
            let (value, onLoop) = try await loop.runBlocking { (42, loop.inEventLoop) }
            return (value, onLoop, loop.inEventLoop)
        }.value
        #expect(value == 42 && !workOnLoop && resumedOnLoop)
        struct Failed: Error, Equatable {}
        await #expect(throws: Failed()) {
            try await Task(executorPreference: loop) { try await loop.runBlocking { throw Failed() } }.value
        }
        #expect(threadNames().contains { $0.hasPrefix("group-pool-") }, "\(threadNames())")
    }

    /// With a bound of 2, a third piece of work waits for a thread; the loop goes on serving meanwhile (an echo
    /// client is answered, a timer fires) and the pool never starts a third thread.
    @Test func theBoundHoldsAndTheLoopServesWhileThePoolIsFull() async throws {
        let group = try LoopGroup(loops: 1, blockingThreads: 2)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let pool = group.blockingPool
        let gate = Gate()
        let tasks = (0..<3).map { index in
            Task(executorPreference: loop) {
                try await loop.runBlocking {
                    gate.pass()
                    return index
                }
            }
        }
        #expect(eventually { pool.runningCount == 2 && pool.queuedCount == 1 }, "two run, the third waits")
        #expect(gate.started.load(ordering: .relaxed) == 2 && pool.threadCount == 2)

        let listener = try onLoop(loop) {
            try Listener(address: try SocketAddress(ipv4: "127.0.0.1", port: 0), on: loop) { connection in
                serveEcho(connection, face: .callback)
            }
        }
        let client = try connectedClient(listener.localAddress, timeout: .seconds(2))
        #expect(try echoes(client, "the loop is free\n"))
        client.close()
        let fired = DispatchSemaphore(value: 0)
        _ = try onLoop(loop) { try loop.schedule(after: .milliseconds(10)) { fired.signal() } }
        #expect(fired.wait(timeout: .now() + 2) == .success, "a timer fires while the pool is full")

        gate.open(3)
        var results: [Int] = []
        for task in tasks { results.append(try await task.value) }
        #expect(results == [0, 1, 2])
        #expect(gate.started.load(ordering: .relaxed) == 3)
        try onLoop(loop) { listener.close() }
    }

    /// Work given while a thread is idle but before it has woken: a burst of two on a pool of two with one idle
    /// thread runs both at once (the idle thread used to count for both, and the second waited for the first).
    @Test func aBurstUsesTheWholeBound() async throws {
        let group = try LoopGroup(loops: 1, blockingThreads: 2)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let pool = group.blockingPool
        _ = try await Task(executorPreference: loop) { try await loop.runBlocking { 1 } }.value
        #expect(eventually { pool.threadCount == 1 && pool.runningCount == 0 }, "one thread, idle")
        let gate = Gate()
        let tasks = (0..<2).map { _ in Task(executorPreference: loop) { try await loop.runBlocking { gate.pass() } } }
        #expect(
            eventually { pool.runningCount == 2 }, "both run: \(pool.runningCount) running, \(pool.queuedCount) queued")
        gate.open(2)
        for task in tasks { try await task.value }
        #expect(pool.threadCount == 2)
    }

    /// A task cancelled while its work waits for a thread throws CancellationError and the work never runs; work
    /// already running finishes and its result is returned.
    @Test func cancellationBeforeTheStartSkipsTheWork() async throws {
        let group = try LoopGroup(loops: 1, blockingThreads: 1)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let gate = Gate()
        let running = Task(executorPreference: loop) { try await loop.runBlocking { gate.pass() } }
        #expect(eventually { gate.started.load(ordering: .relaxed) == 1 })
        let ran = Flag()
        let waiting = Task(executorPreference: loop) { try await loop.runBlocking { ran.set() } }
        #expect(eventually { group.blockingPool.queuedCount == 1 })
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        running.cancel()  // started: runs to its end all the same
        gate.open(1)
        try await running.value
        #expect(eventually { group.blockingPool.runningCount == 0 })
        #expect(!ran.isSet, "the cancelled work never ran")
        // Cancelled before it was even queued.
        let early = Task(executorPreference: loop) {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await loop.runBlocking { ran.set() }
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(!ran.isSet)
    }

    /// Shutting down while work waits: by default the queued work runs first; cancelling, its callers get
    /// poolShutDown at once while the running work finishes; afterwards new work is refused.
    @Test(arguments: [false, true])
    func shutdownWithWorkQueued(cancelling: Bool) async throws {
        let pool = BlockingPool(threads: 1, name: "test-pool")
        let gate = Gate()
        let first = Task {
            try await Self.run(on: pool) {
                gate.pass()
                return 1
            }
        }
        #expect(eventually { gate.started.load(ordering: .relaxed) == 1 })
        let queued = (2...3).map { value in Task { try await Self.run(on: pool) { value } } }
        #expect(eventually { pool.queuedCount == 2 })
        let shutDown = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            pool.shutdown(cancellingQueued: cancelling)
            shutDown.signal()
        }
        if cancelling {
            for task in queued {
                await #expect(throws: ReactorError.poolShutDown) { try await task.value }
            }
        }
        #expect(shutDown.wait(timeout: .now() + 0.2) == .timedOut, "shutdown waits for the running work")
        gate.open(1)
        #expect(try await first.value == 1)
        if !cancelling {
            #expect(try await queued[0].value == 2)
            #expect(try await queued[1].value == 3)
        }
        #expect(shutDown.wait(timeout: .now() + 5) == .success)
        await #expect(throws: ReactorError.poolShutDown) { try await Self.run(on: pool) { 4 } }
        #expect(!threadNames().contains { $0.hasPrefix("test-pool") }, "joined")
    }

    /// The callback form, for callback handlers: the completion runs on the loop thread with the result.
    @Test func theCallbackFormCompletesOnTheLoop() throws {
        let group = try LoopGroup(loops: 1)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let done = DispatchSemaphore(value: 0)
        let result = Handover<(Int, Bool)>()
        try onLoop(loop) {
            loop.runBlocking({ 6 * 7 }) { outcome in
                result.value = ((try? outcome.get()) ?? 0, loop.inEventLoop)
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(result.value?.0 == 42 && result.value?.1 == true)
    }

    /// Runs `work` on `pool` through a loop of its own (an `EventLoop` made with that pool, never run: the work's
    /// caller is a plain task here).
    static func run<Value: Sendable>(on pool: BlockingPool, _ work: @escaping @Sendable () throws -> Value)
        async throws -> Value
    {
        let loop = try EventLoop(blockingPool: pool)
        return try await loop.runBlocking(work)
    }
}
