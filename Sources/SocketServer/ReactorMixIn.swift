import Reactor
import Synchronization

/// Serves every request on the server's loop thread, concurrently: the mode Python never had.
///
/// Each accepted connection becomes a `Connection`, served either by an async handler (a task
/// on the loop; a handler that awaits lets every other request proceed) or by a
/// ``CallbackRequestHandler`` called as bytes arrive. One thread serves thousands of clients.
open class ReactorMixIn: ProcessingMixIn, @unchecked Sendable {
    /// Whether ``BaseServer/serverClose()`` runs the loop until handlers in progress finish. Default true.
    public var blockOnClose = true
    /// Requests whose handler has not finished. Readable from any thread.
    public var activeRequests: Int { active.load(ordering: .relaxed) }
    private let active = Atomic<Int>(0)

    public override init() {}

    open override var handlesAsync: Bool { true }
    open override var requestsPerWakeup: Int { 64 }
    open override var hasRequestsInProgress: Bool { activeRequests > 0 }

    /// Starts a task on the loop that runs the async handler, reports its error and shuts the request down.
    open override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        var request = request
        if case .stream(let socket) = request {
            request = .connection(try Connection(adopting: socket.detach(), on: server.loop))
        }
        if case .callback(let handlerType) = server.requestHandler, case .connection(let connection) = request {
            let handler = handlerType.init(connection: connection, clientAddress: clientAddress, server: server)
            active.add(1, ordering: .relaxed)
            handler.reactor = self
            connection.delegate = handler
            handler.start()
            return
        }
        active.add(1, ordering: .relaxed)
        server.loop.spawn { [self] in
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
            server.metrics.requestFinished()
            active.subtract(1, ordering: .relaxed)
        }
    }

    /// A callback handler's connection closed.
    func requestFinished() {
        active.subtract(1, ordering: .relaxed)
    }

    /// Runs the loop until the handlers in progress have finished, unless ``blockOnClose`` is cleared.
    open override func serverClose(_ server: BaseServer) {
        guard blockOnClose, activeRequests > 0 else { return }
        server.loop.takeOwnership()
        while activeRequests > 0 {
            do { try server.loop.runOnce(timeout: .milliseconds(100)) } catch { return }
        }
    }
}
