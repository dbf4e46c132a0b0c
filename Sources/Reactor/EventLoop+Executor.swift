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
    /// From nonisolated code the body runs on the loop. From main-actor code (top-level code in `main.swift`,
    /// the closures it writes) the body is isolated to the main actor, and runs where the main actor does: on the
    /// main thread, which works when that is this loop's thread, since a loop running on the main thread runs
    /// the main queue's work between its callbacks. The nonisolated `async` functions it calls (a connection's
    /// reads and writes) run on the loop either way. A main-actor body for a loop on another thread would wait
    /// forever for a thread the main actor may never get: that is stopped with a precondition.
    /// - Parameter body: the task's work.
    /// - Returns: the task, for cancellation or to await its end.
    @discardableResult
    public func spawn(_ body: @escaping @isolated(any) () async -> Void) -> Task<Void, Never> {
        precondition(runsOnThisLoop(body.isolation), Self.mainActorMisuse)
        let bound = LoopBound(value: body)
        return Task(executorPreference: self) {
            await bound.value()
        }
    }

    /// ``spawn(_:)->Task<Void,Never>`` for a body that may throw: an error it throws ends the task and is the task's result, which
    /// nothing else reports; catch it in the body, or await the task's `value`.
    /// - Parameter body: the task's work.
    /// - Returns: the task, for cancellation or to await its end and its error.
    @discardableResult
    public func spawn(_ body: @escaping @isolated(any) () async throws -> Void) -> Task<Void, any Error> {
        precondition(runsOnThisLoop(body.isolation), Self.mainActorMisuse)
        let bound = LoopBound(value: body)
        return Task(executorPreference: self) {
            try await bound.value()
        }
    }

    /// Whether a body with this isolation runs on this loop's thread: on the loop thread (checked), and, when
    /// isolated to the main actor, only if that thread is the main thread.
    private func runsOnThisLoop(_ isolation: (any Actor)?) -> Bool {
        preconditionInEventLoop()
        return !(isolation is MainActor) || ownedByMainThread
    }

    private static let mainActorMisuse =
        "EventLoop.spawn: the task body is isolated to the main actor, but this loop runs on another thread than "
        + "the main one, so the body would never run; create it in a nonisolated function"
}
