import Dispatch
import Reactor
import Synchronization

/// Serves every request on the server's loop thread, concurrently: the mode Python never had.
///
/// Each accepted connection becomes a `Connection`, served either by an async handler (a task
/// on the loop; a handler that awaits lets every other request proceed) or by a
/// ``CallbackRequestHandler`` called as bytes arrive. One thread serves thousands of clients.
open class ReactorMixIn: ProcessingMixIn, @unchecked Sendable {
    /// Requests whose handler has not finished (``ProcessingMixIn/requestsInProgress``). Readable from any thread.
    public var activeRequests: Int { requestsInProgress }

    public override init() {}

    open override var handlesAsync: Bool { true }
    open override var requestsPerWakeup: Int { 64 }

    /// Runs `finishRequest` on the loop for the request's `Connection` (`getRequest` accepts straight into
    /// one; a blocking socket from an overriding `getRequest` is adopted first): a callback handler starts at
    /// once and its request finishes when the connection closes; an async handler runs in a task, after
    /// which the request is shut down.
    ///
    /// On a ``BaseServer/group`` the accepted socket goes to the group's loops in turn (``connectionsPerLoop``) and
    /// becomes a `Connection` there, where everything after happens.
    ///
    /// A TLS connection's handler starts once its handshake has completed on the loop; a failed handshake
    /// goes to `handleError` and ends the request.
    open override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        let inProgress = server.takeRequestInProgress(request)
        if let group = server.group, case .stream(let socket) = request {
            if connectionsPerLoop.isEmpty { connectionsPerLoop = Array(repeating: 0, count: group.loops.count) }
            let loop = group.loops[nextLoop]
            connectionsPerLoop[nextLoop] += 1
            nextLoop = (nextLoop + 1) % group.loops.count
            loop.execute { [self] in
                adopt(socket, on: loop, inProgress, clientAddress: clientAddress, server: server)
            }
            return
        }
        guard case .stream(let socket) = request else {
            return try start(inProgress, clientAddress: clientAddress, server: server)
        }
        adopt(socket, on: server.loop, inProgress, clientAddress: clientAddress, server: server)
    }

    /// Makes the accepted socket a `Connection` on `loop` and serves it; with ``BaseServer/proxyProtocol``, once its
    /// header has been read there and the client it names verified.
    private func adopt(
        _ socket: Socket, on loop: EventLoop, _ inProgress: RequestInProgress, clientAddress: SocketAddress,
        server: BaseServer
    ) {
        let serve = { [self] (clientAddress: SocketAddress) in
            do {
                inProgress.adopted(as: try Connection(adopting: socket, on: loop), server: server)
                try start(inProgress, clientAddress: clientAddress, server: server)
            } catch {
                server.reportHandlerError(inProgress.request, clientAddress: clientAddress, error: error)
                server.shutdownRequest(inProgress.request)
                inProgress.finish()
            }
        }
        guard server.proxyProtocol else { return serve(clientAddress) }
        ProxyHeaderReader.read(socket, peer: clientAddress, timeout: server.proxyHeaderTimeout, on: loop) { result in
            switch result {
            case .success(let client) where server.verifyRequest(inProgress.request, clientAddress: client):
                serve(client)
            case .success:
                server.metrics.refused.increment()
                server.shutdownRequest(inProgress.request)
                inProgress.finish()
            case .failure(let error):
                server.reportHandlerError(inProgress.request, clientAddress: clientAddress, error: error)
                server.shutdownRequest(inProgress.request)
                inProgress.finish()
            }
        }
    }

    /// How many connections went to each loop of the server's ``BaseServer/group``, in its order (empty without
    /// one, or before the first). Read on the serving thread, or once serving has stopped.
    public private(set) var connectionsPerLoop: [Int] = []
    private var nextLoop = 0

    /// Serves the request now, or once its TLS handshake has completed.
    private func start(_ inProgress: RequestInProgress, clientAddress: SocketAddress, server: BaseServer) throws {
        let request = inProgress.request
        guard case .connection(let connection) = request, !connection.isHandshakeComplete else {
            return try serve(inProgress, clientAddress: clientAddress, server: server)
        }
        connection.whenHandshakeCompletes { [self] error in
            do {
                if let error { throw error }
                try serve(inProgress, clientAddress: clientAddress, server: server)
            } catch {
                server.reportHandlerError(request, clientAddress: clientAddress, error: error)
                server.shutdownRequest(request)
                inProgress.finish()
            }
        }
    }

    /// Runs the handler of a connection ready to serve (its TLS handshake done). The request ends where the
    /// handler does: when its task returns, or (a callback handler) when its connection closes.
    private func serve(_ inProgress: RequestInProgress, clientAddress: SocketAddress, server: BaseServer) throws {
        let request = inProgress.request
        if case .callback = server.requestHandler {
            do {
                return try server.finishRequest(request, clientAddress: clientAddress)
            } catch {
                inProgress.finish()
                throw error
            }
        }
        let loop: EventLoop
        if case .connection(let connection) = request { loop = connection.loop } else { loop = server.loop }
        let task = loop.spawn {
            do {
                try await server.finishRequest(request, clientAddress: clientAddress)
            } catch {
                server.reportHandlerError(request, clientAddress: clientAddress, error: error)
            }
            server.shutdownRequest(request)
            if case .connection(let connection) = request {
                server.metrics.bytesReceived.increment(by: connection.bytesReceived)
                server.metrics.bytesSent.increment(by: connection.bytesSent)
            }
            inProgress.finish()
        }
        if case .connection(let connection) = request {
            server.openRequests(on: connection.loop).attach(task, to: connection)
        }
    }

    /// Runs the loop until the handlers in progress have finished, unless ``ProcessingMixIn/blockOnClose`` is cleared
    /// (or a drain has waited already); then, unless the loop runs on, until the connections still sending their
    /// last replies have closed (each within its own timeouts, at most 5 s in all), and resets any left. On a
    /// ``BaseServer/group`` the same, while the group's threads run its loops.
    open override func serverClose(_ server: BaseServer) {
        if server.group != nil {  // the connections are all on the group's loops: the server's own has none
            if blockOnClose { _ = awaitGroup(server, until: drained ? .now + .seconds(5) : nil) }
            cutGroup(server)
            _ = awaitGroup(server, until: .now + .seconds(1))
            return
        }
        guard !server.loop.isRunning else { return }
        if blockOnClose && !drained && activeRequests > 0 {
            server.loop.takeOwnership()
            while activeRequests > 0 {
                do { try server.loop.runOnce(timeout: .milliseconds(100)) } catch { return }
            }
        }
        server.openRequests.finishClosing(on: server.loop, within: .seconds(5), wait: blockOnClose)
    }

    // MARK: The drain
    /// Each handler on the loop (or the group's loops) hears of the drain (``CallbackRequestHandler/handleDrain()``,
    /// ``AsyncBaseRequestHandler/handleDrain()``).
    override func beginDrain(_ server: BaseServer) {
        server.openRequests.drainConnections()
        forEachGroupLoop(server) { $0.drainConnections() }
    }

    /// Runs the loop until every handler has finished, and every connection has closed, or `deadline` passes; on a
    /// group, waits for its loops to get there.
    override func awaitRequests(_ server: BaseServer, until deadline: ContinuousClock.Instant) -> Bool {
        if server.group != nil { return awaitGroup(server, until: deadline) }
        while hasRequestsInProgress || server.openRequests.hasConnections {
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            do { try server.loop.runOnce(timeout: min(left, .milliseconds(100))) } catch { return false }
        }
        return true
    }

    /// Cancels every handler's task and resets every connection still open.
    override func cutRequests(_ server: BaseServer) {
        server.openRequests.cutConnections()
        cutGroup(server)
    }

    // MARK: On a group

    /// Runs `body` with each group loop's registry, on that loop's thread.
    private func forEachGroupLoop(_ server: BaseServer, _ body: @escaping @Sendable (OpenRequests) -> Void) {
        for (loop, registry) in zip(server.group?.loops ?? [], server.groupRequests) {
            loop.execute { body(registry) }
        }
    }

    private func cutGroup(_ server: BaseServer) {
        forEachGroupLoop(server) { $0.cutConnections() }
    }

    /// Waits, on a thread outside the group, until no connection is open or closing on any of its loops (each
    /// loop's connections handed to it before are there by then: its work runs in order), or `deadline` passes.
    private func awaitGroup(_ server: BaseServer, until deadline: ContinuousClock.Instant?) -> Bool {
        guard let group = server.group else { return true }
        precondition(!group.loops.contains { $0.inEventLoop }, "a server on a LoopGroup closed from one of its loops")
        let emptied = DispatchSemaphore(value: 0)
        // A loop stopped already (its group shut down first) runs nothing more: its connections stay as they are.
        let running = zip(group.loops, server.groupRequests).filter { $0.0.isRunning }
        for (loop, registry) in running {
            loop.execute { registry.whenEmpty { emptied.signal() } }
        }
        for _ in running {
            guard let deadline else {
                emptied.wait()
                continue
            }
            if emptied.wait(timeout: deadline.dispatchTime) == .timedOut { return false }
        }
        return true
    }
}
