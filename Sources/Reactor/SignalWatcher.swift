import CLibevent

/// Runs a handler on the loop thread when a signal arrives (libevent's `evsignal`); loop-bound.
///
/// The handler runs as an ordinary callback, not in signal context, so it may do anything.
/// Ownership: the watcher owns its `struct event *`; an active watcher keeps itself alive until
/// ``cancel()``, which restores the signal's previous disposition.
public final class SignalWatcher {
    /// The loop the watcher runs on.
    public let loop: EventLoop
    /// The signal number watched, e.g. `SIGTERM`.
    public let signal: Int32
    private var event: OpaquePointer?
    private var handler: ((Int32) -> Void)?
    private var retainedSelf: Unmanaged<SignalWatcher>?

    init(loop: EventLoop, signal: Int32, handler: @escaping (Int32) -> Void) throws(ReactorError) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.signal = signal
        self.handler = handler
        event = clibevent_evsignal_new(loop.base, signal, { signal, _, context in
            let watcher = Unmanaged<SignalWatcher>.fromOpaque(context!).takeUnretainedValue()
            watcher.loop.withCallbackScope { watcher.handler?(signal) }
        }, Unmanaged.passUnretained(self).toOpaque())
        guard let event, event_add(event, nil) == 0 else {
            if let event { event_free(event) }
            throw .libevent("evsignal_add(\(signal))")
        }
        retainedSelf = Unmanaged.passRetained(self)
    }

    /// Stops watching and restores the signal's previous handling. Safe to call more than once.
    public func cancel() {
        loop.preconditionInEventLoop()
        guard let event else { return }
        event_free(event)
        self.event = nil
        handler = nil
        retainedSelf?.release()
        retainedSelf = nil
    }
}

extension EventLoop {
    /// Calls `handler` on the loop thread each time `signal` arrives. Call on the loop thread.
    ///
    /// Only one loop in a process should watch signals (a libevent limit).
    /// - Throws: ``ReactorError/libevent(_:)`` if the signal cannot be watched.
    public func onSignal(_ signal: Int32, _ handler: @escaping (Int32) -> Void) throws(ReactorError) -> SignalWatcher {
        try SignalWatcher(loop: self, signal: signal, handler: handler)
    }
}
