/// A one-shot or repeating timer on an ``EventLoop``; loop-bound.
///
/// Ownership: the timer owns its event and frees it when cancelled or, for a one-shot timer, after
/// it fires. A pending timer keeps itself alive, so it may be scheduled and forgotten; a repeating
/// timer runs until ``cancel()``.
public final class LoopTimer {
    /// The loop the timer runs on.
    public let loop: EventLoop
    /// The period of a repeating timer; `nil` for a one-shot timer.
    public let interval: Duration?
    private var event: LoopEvent?

    init(loop: EventLoop, delay: Duration, interval: Duration?, handler: @escaping (LoopTimer) -> Void)
        throws(ReactorError)
    {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.interval = interval
        event = try LoopEvent(loop: loop, persistent: interval != nil) { [self] _ in fire(handler) }
        event?.add(timeout: delay)
    }

    /// Whether the timer will still fire.
    public var isPending: Bool { event != nil }

    /// Stops the timer; it will not fire again. Safe to call more than once, and from its own handler.
    public func cancel() {
        loop.preconditionInEventLoop()
        event?.free()
        event = nil
    }

    private func fire(_ handler: (LoopTimer) -> Void) {
        if interval == nil {
            // One-shot: free the event first, so the handler may schedule anew freely.
            cancel()
        }
        handler(self)
    }
}

extension EventLoop {
    /// Runs `body` once on the loop after `delay`. Call on the loop thread.
    /// - Returns: the timer, to cancel it.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent is out of memory for the event.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) throws(ReactorError) -> LoopTimer {
        try LoopTimer(loop: self, delay: delay, interval: nil) { _ in body() }
    }

    /// Runs `body` every `interval`, first after one interval, until the timer is cancelled. Call on the loop thread.
    /// - Returns: the timer; `body` receives it too, so it can cancel itself.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent is out of memory for the event.
    @discardableResult
    public func scheduleRepeating(every interval: Duration, _ body: @escaping (LoopTimer) -> Void) throws(ReactorError)
        -> LoopTimer
    {
        try LoopTimer(loop: self, delay: interval, interval: interval, handler: body)
    }
}
