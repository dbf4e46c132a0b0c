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
    /// A TLS connection's handler starts once its handshake has completed on the loop; a failed handshake
    /// goes to `handleError` and ends the request.
    open override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        let inProgress = server.takeRequestInProgress(request)
        do {
            if case .stream(let socket) = request {
                let connection = try Connection(adopting: socket, on: server.loop)
                inProgress.request = .connection(connection)
                server.openRequests.add(connection, inProgress)
            }
        } catch {
            inProgress.finish()
            throw error
        }
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
        let task = server.loop.spawn {
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
        if case .connection(let connection) = request { server.openRequests.attach(task, to: connection) }
    }

    /// Runs the loop until the handlers in progress have finished, unless ``ProcessingMixIn/blockOnClose`` is cleared
    /// (or a drain has waited already); then, unless the loop runs on, until the connections still sending their
    /// last replies have closed (each within its own timeouts, at most 5 s in all), and resets any left.
    open override func serverClose(_ server: BaseServer) {
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
    /// Each handler on the loop hears of the drain (``CallbackRequestHandler/handleDrain()``,
    /// ``AsyncBaseRequestHandler/handleDrain()``).
    override func beginDrain(_ server: BaseServer) {
        server.openRequests.drainConnections()
    }

    /// Runs the loop until every handler has finished, and every connection has closed, or `deadline` passes.
    override func awaitRequests(_ server: BaseServer, until deadline: ContinuousClock.Instant) -> Bool {
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
    }
}
