import CLibevent

/// A one-shot or repeating timer on an ``EventLoop``; loop-bound.
///
/// Ownership: the timer owns its `struct event *` and frees it when cancelled or, for a one-shot
/// timer, after it fires. A pending timer keeps itself alive, so it may be scheduled and forgotten;
/// a repeating timer runs until ``cancel()``.
public final class LoopTimer {
    /// The loop the timer runs on.
    public let loop: EventLoop
    /// The period of a repeating timer; `nil` for a one-shot timer.
    public let interval: Duration?
    private var event: OpaquePointer?
    private var handler: ((LoopTimer) -> Void)?
    private var retainedSelf: Unmanaged<LoopTimer>?

    init(loop: EventLoop, delay: Duration, interval: Duration?, handler: @escaping (LoopTimer) -> Void) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.interval = interval
        self.handler = handler
        let flags = interval == nil ? 0 : Int16(EV_PERSIST)
        event = event_new(loop.base, -1, flags, { _, _, context in
            let timer = Unmanaged<LoopTimer>.fromOpaque(context!).takeUnretainedValue()
            timer.loop.withCallbackScope { timer.fire() }
        }, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "event_new failed: out of memory")
        var tv = timeval(delay)
        event_add(event, &tv)
        retainedSelf = Unmanaged.passRetained(self)
    }

    /// Whether the timer will still fire.
    public var isPending: Bool { event != nil }

    /// Stops the timer; it will not fire again. Safe to call more than once, and from its own handler.
    public func cancel() {
        loop.preconditionInEventLoop()
        guard let event else { return }
        event_free(event)
        self.event = nil
        handler = nil
        retainedSelf?.release()
        retainedSelf = nil
    }

    private func fire() {
        guard let handler else { return }
        if interval == nil {
            // One-shot: release before the handler runs, so the handler may schedule anew freely.
            defer { cancel() }
            handler(self)
        } else {
            handler(self)
        }
    }
}

extension EventLoop {
    /// Runs `body` once on the loop after `delay`. Call on the loop thread.
    /// - Returns: the timer, to cancel it.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> LoopTimer {
        LoopTimer(loop: self, delay: delay, interval: nil) { _ in body() }
    }

    /// Runs `body` every `interval`, first after one interval, until the timer is cancelled. Call on the loop thread.
    /// - Returns: the timer; `body` receives it too, so it can cancel itself.
    @discardableResult
    public func scheduleRepeating(every interval: Duration, _ body: @escaping (LoopTimer) -> Void) -> LoopTimer {
        LoopTimer(loop: self, delay: interval, interval: interval, handler: body)
    }
}
