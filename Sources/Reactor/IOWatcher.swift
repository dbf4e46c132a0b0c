/// Watches any file descriptor (a pipe, an `eventfd`, a device) for readiness on the loop; loop-bound.
///
/// Readiness is level-triggered: the handler runs on every pass while the descriptor stays ready.
/// Ownership: the watcher owns its event but **not** the descriptor, which the caller closes after
/// ``cancel()``. A watcher keeps itself alive, started or stopped, until ``cancel()``.
public final class IOWatcher {
    /// Readiness conditions.
    public struct Events: OptionSet, Sendable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        /// Data (or end of input) can be read; the corresponding C constant is `EV_READ`.
        public static let readable = Events(rawValue: LoopEvent.Fired.readable.rawValue)
        /// Data can be written; the corresponding C constant is `EV_WRITE`.
        public static let writable = Events(rawValue: LoopEvent.Fired.writable.rawValue)
    }

    /// The loop the watcher runs on.
    public let loop: EventLoop
    /// The watched descriptor (not owned).
    public let fileDescriptor: Int32
    /// The conditions watched.
    public let events: Events
    private var event: LoopEvent?

    /// Creates a watcher and starts it.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent rejects the descriptor or is out of memory.
    public init(fileDescriptor: Int32, events: Events, on loop: EventLoop, handler: @escaping (Events) -> Void)
        throws(ReactorError)
    {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.fileDescriptor = fileDescriptor
        self.events = events
        event = try LoopEvent(
            loop: loop, fileDescriptor: fileDescriptor, watching: LoopEvent.Fired(rawValue: events.rawValue),
            persistent: true
        ) { [self] fired in
            _ = self  // the event keeps the watcher alive until cancel()
            handler(Events(rawValue: fired.rawValue).intersection([.readable, .writable]))
        }
        do {
            try start()
        } catch {
            cancel()
            throw error
        }
    }

    /// Whether the watcher is currently watching.
    public private(set) var isActive = false

    /// Resumes watching after ``stop()``.
    /// - Throws: ``ReactorError/alreadyClosed`` after ``cancel()``; ``ReactorError/libevent(_:)`` if `event_add` fails.
    public func start() throws(ReactorError) {
        loop.preconditionInEventLoop()
        guard let event else { throw .alreadyClosed }
        guard !isActive else { return }
        guard event.add() else { throw .libevent("event_add(fd \(fileDescriptor))") }
        isActive = true
    }

    /// Pauses watching; ``start()`` resumes.
    public func stop() {
        loop.preconditionInEventLoop()
        guard let event, isActive else { return }
        event.remove()
        isActive = false
    }

    /// Stops watching for good and frees the event; the descriptor stays open. Safe to call more than once.
    public func cancel() {
        loop.preconditionInEventLoop()
        isActive = false
        event?.free()
        event = nil
    }
}
