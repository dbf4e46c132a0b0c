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
    /// - Parameter body: the task's work; nonisolated `async` functions it calls run on the loop too.
    /// - Returns: the task, for cancellation or to await its end.
    @discardableResult
    public func spawn(_ body: @escaping () async -> Void) -> Task<Void, Never> {
        preconditionInEventLoop()
        let bound = LoopBound(value: body)
        return Task(executorPreference: self) {
            await bound.value()
        }
    }
}
