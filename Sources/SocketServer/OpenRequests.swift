import Dispatch
import Glibc
import Reactor
import Synchronization

/// What ``BaseServer/shutdown(gracePeriod:)`` did with the requests in progress.
public struct DrainReport: Sendable, Equatable, CustomStringConvertible {
    /// Requests that were in progress when the drain began (or were accepted just before serving stopped) and
    /// finished within the grace period.
    public var finished: Int
    /// Requests still in progress when the grace period ended, and cut off then.
    public var cut: Int

    public init(finished: Int, cut: Int) {
        self.finished = finished
        self.cut = cut
    }

    public var description: String { "\(finished) finished, \(cut) cut off" }
}

/// A handler that can be told the server is draining: it ends what it can end without losing a request
/// (a connection waiting for its client's next request closes, say). ``CallbackRequestHandler`` and
/// ``AsyncBaseRequestHandler`` conform; their default does nothing.
protocol DrainableHandler: AnyObject {
    func handleDrain()
}

/// The server's one registry of open connections, where a drain can reach them: the blocking sockets served in
/// sequential and threading mode, and the connections on the server's loop, from accept until they have closed
/// completely: served in reactor mode (each with its handler, told of a drain, and its task, cancelled at the
/// cut), then closing (sending their last replies, lingering); a sequential request's lingering close joins it
/// too. Forked children are the ``ForkingMixIn``'s own list. A server on a ``LoopGroup`` has one more registry per
/// group loop, for the connections served there (``BaseServer/openRequests(on:)``).
final class OpenRequests: ConnectionDelegate, @unchecked Sendable {
    /// Blocking sockets being served.
    private let sockets = BlockingSockets()
    /// Connections on the loop, touched on the loop thread only: each with the request served on it, or closing.
    private var connections: [ObjectIdentifier: LoopEntry] = [:]

    private enum LoopEntry {
        /// Served: its request in progress, which holds the handler and task a drain reaches.
        case serving(RequestInProgress)
        /// Sending its last bytes, or lingering, with no request.
        case closing(Connection)
    }
    /// Run once no connection is open or closing (``whenEmpty(_:)``).
    private var emptyWaiters: [() -> Void] = []
    /// The loop's callback count at the server's last report of it (``ServerMetrics/reportLoop(_:since:)``).
    var reportedCallbacks: UInt64 = 0

    // MARK: Blocking sockets

    func add(_ socket: Socket) { sockets.add(socket) }

    /// Shuts every socket being served down both ways (`Socket.interrupt()`): a handler blocked reading sees the
    /// end of input, one blocked writing an error, and each returns. Safe from any thread.
    func cutSockets() { sockets.cut() }

    // MARK: Loop connections (loop thread only)

    func add(_ connection: Connection, _ inProgress: RequestInProgress) {
        connections[ObjectIdentifier(connection)] = .serving(inProgress)
    }

    func attach(_ handler: any DrainableHandler, to connection: Connection) {
        if case .serving(let inProgress)? = connections[ObjectIdentifier(connection)] { inProgress.handler = handler }
    }

    func attach(_ task: Task<Void, Never>, to connection: Connection) {
        if case .serving(let inProgress)? = connections[ObjectIdentifier(connection)] { inProgress.task = task }
    }

    /// The request on `connection` is over (and ends, ``RequestInProgress/end()``), or the connection is closing
    /// without one (a sequential request's lingering close, a refused reactor connection): forgotten once it has
    /// closed; until then kept (as the connection's delegate, which hears its close) while its last bytes go out.
    func release(_ connection: Connection) {
        let key = ObjectIdentifier(connection)
        let entry: LoopEntry?
        if connection.isClosed {
            entry = connections.removeValue(forKey: key)
        } else {
            entry = connections.updateValue(.closing(connection), forKey: key)
            connection.delegate = self
        }
        if case .serving(let inProgress)? = entry {
            inProgress.handler = nil
            inProgress.task = nil
            inProgress.end()
        }
        // After the end: a drain woken here counts the request finished (it read 0 finished, 0 cut before).
        if connections.isEmpty { emptied() }
    }

    /// Whether any connection is open or closing on the loop.
    var hasConnections: Bool { !connections.isEmpty }

    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) { buffer.clear() }

    func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
        connections[ObjectIdentifier(connection)] = nil
        if connections.isEmpty { emptied() }
    }

    /// Runs `body` once no connection is open or closing on the loop, and the requests served on them have ended (a
    /// drain woken by it reads them finished): at once if none is.
    func whenEmpty(_ body: @escaping () -> Void) {
        if connections.isEmpty { return body() }
        emptyWaiters.append(body)
    }

    private func emptied() {
        guard !emptyWaiters.isEmpty else { return }
        let waiters = emptyWaiters
        emptyWaiters = []
        for waiter in waiters { waiter() }
    }

    /// Tells every handler on the loop that the server drains: an async handler attached, or a callback handler,
    /// which is its connection's delegate (found there rather than attached: one dictionary write fewer per
    /// connection).
    func drainConnections() {
        for case .serving(let inProgress) in Array(connections.values) {
            guard case .connection(let connection) = inProgress.request else { continue }
            (inProgress.handler ?? (connection.delegate as? any DrainableHandler))?.handleDrain()
        }
    }

    /// Cancels every handler's task and resets every connection still open or closing.
    func cutConnections() {
        for entry in Array(connections.values) {
            switch entry {
            case .serving(let inProgress):
                inProgress.task?.cancel()
                if case .connection(let connection) = inProgress.request { connection.reset() }
            case .closing(let connection):
                connection.reset()
            }
        }
    }

    // MARK: Either

    /// Runs `loop` on the calling thread (which takes it; it must not be running) until every connection on it has
    /// closed or `limit` has passed, unless `wait` is false, then resets those left: ``BaseServer/serverClose()``'s
    /// end, in reactor mode and for the sequential mode's lingering closes.
    func finishClosing(on loop: EventLoop, within limit: Duration, wait: Bool) {
        guard hasConnections else { return }
        loop.takeOwnership()
        let deadline = ContinuousClock.now + limit
        while wait && hasConnections && ContinuousClock.now < deadline {
            do { try loop.runOnce(timeout: .milliseconds(100)) } catch { break }
        }
        cutConnections()
    }
}

extension ContinuousClock.Instant {
    /// This instant as a `DispatchTime`, for a semaphore's or a group's wait (at most a year away).
    var dispatchTime: DispatchTime {
        let (seconds, attoseconds) = max(.zero, self - .now).components
        let nanoseconds = min(seconds, 365 * 86_400) * 1_000_000_000 + attoseconds / 1_000_000_000
        return .now() + .nanoseconds(Int(nanoseconds))
    }
}

/// The blocking sockets a server is serving, added by the thread that accepts and forgotten once closed, as more
/// are added. The sockets themselves make a cut safe against a concurrent close (`Socket.interrupt()`); the lock
/// only orders the list between the accepting thread and the drain. (Its own type, so that ThreadSanitizer's
/// suppression of the `Mutex` it cannot see, `.ci/tsan.supp`, names nothing else.)
private final class BlockingSockets: Sendable {
    private struct List {
        var sockets: [Socket] = []
        /// The count at which closed sockets are next dropped (amortized: it doubles with what stays).
        var pruneAt = 64
    }
    private let list = Mutex(List())

    func add(_ socket: Socket) {
        list.withLock { list in
            if list.sockets.count >= list.pruneAt {
                list.sockets.removeAll { $0.isReleased }
                list.pruneAt = max(64, 2 * list.sockets.count)
            }
            list.sockets.append(socket)
        }
    }

    func cut() {
        for socket in list.withLock({ $0.sockets }) { socket.interrupt() }
    }
}
