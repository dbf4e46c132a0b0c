import Glibc
import Synchronization

/// Several event loops, each run by a thread of its own, for a program that outgrows one core: SwiftNIO's
/// `MultiThreadedEventLoopGroup`, nginx's worker processes in one process.
///
/// ``next()`` picks a loop, round-robin. A group's loops are running from the moment the group exists: work
/// reaches one through its thread-safe entry points (``EventLoop/execute(_:)``, a task with
/// `Task(executorPreference: loop)`), and loop-bound objects (listeners, connections, timers) are made there.
/// The loops share one ``BlockingPool`` (``blockingPool``) for their ``EventLoop/runBlocking(_:)`` work.
///
/// ``shutdown()`` stops the loops and joins their threads; a group left running keeps its threads until the
/// process exits.
public final class LoopGroup: Sendable {
    /// The loops, in the order ``next()`` hands them out.
    public let loops: [EventLoop]
    /// The pool the group's loops run blocking work on.
    public let blockingPool: BlockingPool
    private let threads: Mutex<[ReactorThread]>
    private let cursor = Atomic<Int>(0)

    /// Starts `loops` loops (default: one per processor this process may use), each on a thread named `loop-N`,
    /// and returns once all are running.
    /// - Parameters:
    ///   - count: how many loops, at least 1.
    ///   - backend: every loop's multiplexing method.
    ///   - blockingThreads: the bound of the group's ``blockingPool`` (default: one per processor).
    /// - Throws: ``ReactorError`` if a loop or a thread cannot be made; the loops already started are stopped.
    public init(
        loops count: Int = BlockingPool.defaultThreadCount, backend: EventLoop.Backend = .automatic,
        blockingThreads: Int = BlockingPool.defaultThreadCount
    ) throws(ReactorError) {
        precondition(count >= 1, "LoopGroup needs at least one loop, got \(count)")
        let pool = BlockingPool(threads: blockingThreads, name: "group-pool")
        var loops: [EventLoop] = []
        var threads: [ReactorThread] = []
        do throws(ReactorError) {
            for index in 1...count {
                let loop = try EventLoop(backend: backend, blockingPool: pool)
                threads.append(try ReactorThread.start(named: "loop-\(index)") { try? loop.run() })
                loops.append(loop)
            }
        } catch {
            for loop in loops { loop.stop() }
            for thread in threads { thread.join() }
            throw error
        }
        // Running means owned by its thread: from here no loop-bound call on this thread can pass for the loop's.
        for loop in loops {
            while !loop.isRunning { sched_yield() }
        }
        self.loops = loops
        self.blockingPool = pool
        self.threads = Mutex(threads)
    }

    /// The next loop, round-robin. Thread-safe.
    public func next() -> EventLoop {
        loops[(cursor.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max) % loops.count]
    }

    /// Stops every loop once it has run what it was given before, joins their threads, then shuts the blocking pool
    /// down (its running and queued work finishes first). Objects still on the loops (open connections, say) stay
    /// as they are: close them first. Call from a thread outside the group; a second call returns at once.
    public func shutdown() {
        let threads = self.threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        precondition(!threads.contains { $0.isCurrent }, "LoopGroup.shutdown() called from one of its own loops")
        for loop in loops { loop.stop() }
        for thread in threads { thread.join() }
        blockingPool.shutdown()
    }
}
