internal import CLibevent

/// One libevent event (`struct event *`) and the Swift closure it runs: the module's one bridge from
/// libevent's C callbacks to Swift. Every loop-bound type (connections, listeners, datagram sockets,
/// timers, watchers) holds its events as `LoopEvent`s and touches no libevent call of its own.
///
/// - Callbacks: one trampoline for every event; the handler runs on the loop thread inside
///   ``EventLoop/withCallbackScope(_:)``, and receives what fired (``Fired``).
/// - Retain policy: the handler keeps whatever it captures alive until the event is freed, so an
///   owner that captures itself (a connection, a listener, a pending timer) stays alive exactly until it
///   frees its events on close or cancel, and no owner keeps an `Unmanaged` reference to itself. The C
///   callback's context is this object, unretained: its owner holds it, and freeing it (``free()`` or the
///   last release) removes it from the loop first, so libevent never calls into a released object.
/// - Out of memory: `event_new` fails only for lack of memory; every initializer then throws
///   ``ReactorError/libevent(_:)``, and the owner decides (a connection closes with the error).
///
/// Ownership: owns its `struct event *` and frees it in ``free()`` or `deinit`; never owns a descriptor.
/// Loop-bound.
final class LoopEvent {
    /// What made an event fire (libevent's `what` flags).
    struct Fired: OptionSet {
        let rawValue: Int16
        /// The corresponding C constant is `EV_READ`.
        static let readable = Fired(rawValue: Int16(EV_READ))
        /// The corresponding C constant is `EV_WRITE`.
        static let writable = Fired(rawValue: Int16(EV_WRITE))
        /// The event's timeout passed; the corresponding C constant is `EV_TIMEOUT`.
        static let timeout = Fired(rawValue: Int16(EV_TIMEOUT))
    }

    unowned let loop: EventLoop
    private var event: OpaquePointer?
    private var handler: ((Fired) -> Void)?

    /// An event for readiness of `fileDescriptor` (or, with `-1`, a timer or an event only activated by hand).
    /// - Parameters:
    ///   - watching: `.readable` and/or `.writable`; empty for a timer.
    ///   - persistent: stays added after it fires (`EV_PERSIST`); otherwise it fires once per ``add(timeout:)``.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent cannot allocate the event.
    init(
        loop: EventLoop, fileDescriptor: Int32 = -1, watching: Fired = [], persistent: Bool,
        _ handler: @escaping (Fired) -> Void
    ) throws(ReactorError) {
        self.loop = loop
        self.handler = handler
        let flags = watching.rawValue | (persistent ? Int16(EV_PERSIST) : 0)
        event = event_new(
            loop.base, fileDescriptor, flags, LoopEvent.trampoline, Unmanaged.passUnretained(self).toOpaque())
        guard event != nil else { throw .libevent("event_new(fd \(fileDescriptor))") }
    }

    /// An event for each arrival of `signal` (libevent's `evsignal`), persistent.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent cannot allocate the event.
    init(loop: EventLoop, signal: Int32, _ handler: @escaping (Fired) -> Void) throws(ReactorError) {
        self.loop = loop
        self.handler = handler
        event = event_new(
            loop.base, signal, Int16(EV_SIGNAL | EV_PERSIST), LoopEvent.trampoline,
            Unmanaged.passUnretained(self).toOpaque())
        guard event != nil else { throw .libevent("evsignal_new(\(signal))") }
    }

    deinit {
        if let event { event_free(event) }
    }

    /// The one C callback: finds the `LoopEvent` from its context and runs its handler in a callback scope.
    private static let trampoline: event_callback_fn = { _, what, context in
        let event = Unmanaged<LoopEvent>.fromOpaque(context!).takeUnretainedValue()
        guard let handler = event.handler else { return }
        event.loop.withCallbackScope { handler(Fired(rawValue: what)) }
    }

    /// Adds the event to the loop (`event_add`), with a timeout if given (a timer's delay). Adding a pending
    /// event again resets its timeout.
    /// - Returns: false if libevent refused (or the event was freed).
    @discardableResult
    func add(timeout: Duration? = nil) -> Bool {
        guard let event else { return false }
        if let timeout {
            var tv = timeval(timeout)
            return event_add(event, &tv) == 0
        }
        return event_add(event, nil) == 0
    }

    /// Removes the event from the loop (`event_del`); ``add(timeout:)`` adds it again.
    func remove() {
        if let event { event_del(event) }
    }

    /// Makes the event fire on the loop's next pass with `fired` (`event_active`); thread-safe once the loop
    /// uses libevent's pthread locking, which ``EventLoop`` sets up.
    func activate(_ fired: Fired) {
        if let event { event_active(event, Int32(fired.rawValue), 0) }
    }

    /// Removes and frees the event and drops the handler (and what it captured). Safe to call more than
    /// once, and from the event's own handler.
    func free() {
        guard let event else { return }
        event_free(event)
        self.event = nil
        handler = nil
    }
}
