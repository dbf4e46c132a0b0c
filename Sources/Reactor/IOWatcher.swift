import CLibevent

/// Watches any file descriptor (a pipe, an `eventfd`, a device) for readiness on the loop; loop-bound.
///
/// Readiness is level-triggered: the handler runs on every pass while the descriptor stays ready.
/// Ownership: the watcher owns its `struct event *` but **not** the descriptor, which the caller
/// closes after ``cancel()``. A started watcher keeps itself alive until ``cancel()``.
public final class IOWatcher {
    /// Readiness conditions.
    public struct Events: OptionSet, Sendable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        /// Data (or end of input) can be read; the corresponding C constant is `EV_READ`.
        public static let readable = Events(rawValue: Int16(EV_READ))
        /// Data can be written; the corresponding C constant is `EV_WRITE`.
        public static let writable = Events(rawValue: Int16(EV_WRITE))
    }

    /// The loop the watcher runs on.
    public let loop: EventLoop
    /// The watched descriptor (not owned).
    public let fileDescriptor: Int32
    /// The conditions watched.
    public let events: Events
    private var event: OpaquePointer?
    private var handler: ((Events) -> Void)?
    private var retainedSelf: Unmanaged<IOWatcher>?

    /// Creates a watcher and starts it.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent rejects the descriptor.
    public init(fileDescriptor: Int32, events: Events, on loop: EventLoop, handler: @escaping (Events) -> Void) throws(ReactorError) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.fileDescriptor = fileDescriptor
        self.events = events
        self.handler = handler
        event = event_new(loop.base, fileDescriptor, events.rawValue | Int16(EV_PERSIST), { _, what, context in
            let watcher = Unmanaged<IOWatcher>.fromOpaque(context!).takeUnretainedValue()
            watcher.loop.withCallbackScope { watcher.handler?(Events(rawValue: what).intersection([.readable, .writable])) }
        }, Unmanaged.passUnretained(self).toOpaque())
        guard event != nil else { throw .libevent("event_new(fd \(fileDescriptor))") }
        try start()
    }

    /// Whether the watcher is currently watching.
    public private(set) var isActive = false

    /// Resumes watching after ``stop()``.
    /// - Throws: ``ReactorError/alreadyClosed`` after ``cancel()``; ``ReactorError/libevent(_:)`` if `event_add` fails.
    public func start() throws(ReactorError) {
        loop.preconditionInEventLoop()
        guard let event else { throw .alreadyClosed }
        guard !isActive else { return }
        guard event_add(event, nil) == 0 else { throw .libevent("event_add(fd \(fileDescriptor))") }
        isActive = true
        retainedSelf = Unmanaged.passRetained(self)
    }

    /// Pauses watching; ``start()`` resumes.
    public func stop() {
        loop.preconditionInEventLoop()
        guard let event, isActive else { return }
        event_del(event)
        isActive = false
        retainedSelf?.release()
        retainedSelf = nil
    }

    /// Stops watching for good and frees the event; the descriptor stays open. Safe to call more than once.
    public func cancel() {
        stop()
        if let event { event_free(event) }
        event = nil
        handler = nil
    }
}
