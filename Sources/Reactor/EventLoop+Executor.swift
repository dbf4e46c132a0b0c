import Glibc

/// The loop as a Swift concurrency executor: tasks started with `Task(executorPreference: loop)`, or
/// actors whose `unownedExecutor` is the loop's, run on the loop thread, and continuations resumed
/// from libevent callbacks run before the loop polls again.
extension EventLoop: SerialExecutor, TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueueJob(UnownedJob(job))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func checkIsolated() {
        preconditionInEventLoop()
    }

    public func isIsolatingCurrentContext() -> Bool? {
        inEventLoop
    }
}

/// Carries a loop-bound value into a task that will run on the same loop thread.
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
}

extension EventLoop {
    /// Starts a task that runs on this loop's thread (`Task(executorPreference: self)`), so the loop-bound
    /// objects it captures (connections, timers) may be used from it. Call on the loop thread.
    ///
    /// Write `body` in nonisolated code. A closure formed in main-actor code (top-level code in
    /// `main.swift`, say) is isolated to the main actor and would wait for a thread that the loop
    /// keeps busy; that is stopped with a precondition rather than left to hang.
    /// - Parameter body: the task's work; nonisolated `async` functions it calls run on the loop too.
    /// - Returns: the task, for cancellation or to await its end.
    @discardableResult
    public func spawn(_ body: @escaping @isolated(any) () async -> Void) -> Task<Void, Never> {
        preconditionInEventLoop()
        precondition(
            !(body.isolation is MainActor),
            "EventLoop.spawn: the task body is isolated to the main actor and would never run while the loop holds "
                + "the thread; create it in a nonisolated function")
        let bound = LoopBound(value: body)
        return Task(executorPreference: self) {
            await bound.value()
        }
    }
}
