/// Runs a handler on the loop thread when a signal arrives (libevent's `evsignal`); loop-bound.
///
/// The handler runs as an ordinary callback, not in signal context, so it may do anything.
/// Ownership: the watcher owns its event; it keeps itself alive until ``cancel()``, which restores the
/// signal's previous disposition.
public final class SignalWatcher {
    /// The loop the watcher runs on.
    public let loop: EventLoop
    /// The signal number watched, e.g. `SIGTERM`.
    public let signal: Int32
    private var event: LoopEvent?

    init(loop: EventLoop, signal: Int32, handler: @escaping (Int32) -> Void) throws(ReactorError) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.signal = signal
        let event = try LoopEvent(loop: loop, signal: signal) { [self] _ in handler(self.signal) }
        guard event.add() else {
            event.free()
            throw .libevent("evsignal_add(\(signal))")
        }
        self.event = event
        Posix.unblockSignal(signal)
    }

    /// Stops watching and restores the signal's previous handling. Safe to call more than once.
    public func cancel() {
        loop.preconditionInEventLoop()
        event?.free()
        event = nil
    }
}

extension EventLoop {
    /// Calls `handler` on the loop thread each time `signal` arrives. Call on the loop thread.
    ///
    /// Watching a signal also unblocks it in the calling thread: a process started with it blocked (the
    /// children of many test runners and supervisors are) would otherwise never see it.
    ///
    /// Only one loop in a process should watch signals (a libevent limit).
    /// - Throws: ``ReactorError/libevent(_:)`` if the signal cannot be watched.
    public func onSignal(_ signal: Int32, _ handler: @escaping (Int32) -> Void) throws(ReactorError) -> SignalWatcher {
        try SignalWatcher(loop: self, signal: signal, handler: handler)
    }
}
