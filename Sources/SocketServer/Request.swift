import Reactor
import Synchronization

/// What ``BaseServer/getRequest()`` returns and every hook after it receives: Python's `request`.
public enum Request: @unchecked Sendable {
    /// An accepted stream connection for a blocking handler (sequential, threading and forking modes).
    case stream(Socket)
    /// An accepted stream connection on the server's loop, for an async handler (reactor mode).
    case connection(Connection)
    /// One datagram, and the server's socket to answer on (which the request does not own).
    case datagram(packet: [UInt8], socket: Socket)
}

/// A request in progress: made when the server hands an accepted request to its mode, and finished exactly once
/// where the mode's work on it ends (sequential: ``ProcessingMixIn/processRequest(_:clientAddress:server:)``
/// returns; threading: its thread ends; forking: its child is reaped; reactor: its async handler returns, or its
/// callback handler's connection closes). Until then it is counted (``ProcessingMixIn/requestsInProgress``, the
/// server's ``ServerMetrics``) and, when this process serves it, in the server's open requests, where a drain
/// reaches it. A second ``finish()`` does nothing; one dropped unfinished stops a debug build.
final class RequestInProgress: @unchecked Sendable {
    /// The request; a stream socket adopted by a loop becomes its connection (``adopted(as:)``).
    private(set) var request: Request
    // What the end touches, held directly rather than through the server (whose `metrics` is a lazy property);
    // the registry is the server's own and outlives its requests, so it is not counted.
    private let mixIn: ProcessingMixIn
    private let metrics: ServerMetrics
    private unowned(unsafe) var openRequests: OpenRequests
    private let finished = Atomic<Bool>(false)
    /// Reactor mode, on the loop thread: the handler a drain tells (an async one; a callback handler is found as its
    /// connection's delegate) and the task a cut cancels.
    var handler: (any DrainableHandler)?
    var task: Task<Void, Never>?

    /// Counts `request` in, and keeps it in the server's open requests where this process serves it.
    init(_ request: Request, server: BaseServer) {
        self.request = request
        mixIn = server.mixIn
        metrics = server.metrics
        openRequests = server.openRequests
        mixIn.requestStarted()
        metrics.inProgress.increment()
        switch request {
        case .stream(let socket) where mixIn.servesInThisProcess: openRequests.add(socket)
        case .connection(let connection):
            openRequests = server.openRequests(on: connection.loop)
            openRequests.add(connection, self)
        default: break
        }
    }

    /// The stream socket became `connection`, on its loop's thread: the request is that connection from now on, in
    /// the registry of its loop.
    func adopted(as connection: Connection, server: BaseServer) {
        request = .connection(connection)
        openRequests = server.openRequests(on: connection.loop)
        openRequests.add(connection, self)
    }

    var isFinished: Bool { finished.load(ordering: .acquiring) }

    /// The mode is done with the request: it leaves the open requests (a loop connection once it has closed) and
    /// the count. Idempotent.
    func finish() {
        guard !isFinished else { return }
        // A loop connection's entry holds this request, which its release ends.
        if case .connection(let connection) = request { openRequests.release(connection) }
        end()
    }

    /// Counts the end, once. (``OpenRequests`` calls it as it releases the request's connection.)
    func end() {
        guard !finished.exchange(true, ordering: .acquiringAndReleasing) else { return }
        mixIn.requestEnded()
        metrics.requestFinished()
    }

    deinit {
        assert(isFinished, "a request in progress was dropped without being finished: \(request)")
    }
}
