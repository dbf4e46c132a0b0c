import Reactor

/// A reactor-mode handler in the callback style, like asyncio's `Protocol`: one object per
/// connection, called on the loop thread as bytes arrive, with no task per connection.
///
/// The cheapest way to serve many connections: an idle connection costs its `Connection`,
/// this object and its fields. Write with `connection.write(...)` (buffered past the socket, with
/// reading paused above the high watermark) and end with `connection.close()`.
///
/// Methods that may be overridden: ``setup()``, ``handle(_:)``, ``handleEndOfInput()``,
/// ``handleWritable()``, ``finish(error:)``.
///
/// An error thrown by ``setup()``, ``handle(_:)`` or ``handleEndOfInput()`` goes to the server's
/// ``BaseServer/handleError(_:clientAddress:error:)`` and the connection is shut down (what was
/// written is still sent); ``finish(error:)`` then gets that error. Other connections go on.
open class CallbackRequestHandler: ConnectionDelegate, DrainableHandler {
    /// The connection served.
    public let connection: Connection
    /// The client's address (`unix:` for an unnamed Unix peer).
    public let clientAddress: SocketAddress
    /// The server that accepted the connection.
    public let server: BaseServer

    /// Called by the server; do not call directly.
    public required init(connection: Connection, clientAddress: SocketAddress, server: BaseServer) {
        self.connection = connection
        self.clientAddress = clientAddress
        self.server = server
    }

    /// The connection is open and reading. The default does nothing. May be overridden.
    open func setup() throws {}

    /// Bytes arrived: `buffer` holds all that is unconsumed; consume what you can use, the rest is
    /// kept for the next call. The default discards everything. Override this.
    open func handle(_ buffer: inout ByteBuffer) throws {
        buffer.clear()
    }

    /// The client closed its sending side. The default closes once what was written is sent. May be overridden.
    open func handleEndOfInput() throws {
        connection.close()
    }

    /// Output fell to the low watermark after rising above the high one. The default does nothing. May be overridden.
    open func handleWritable() {}

    /// The connection closed: `error` is `nil` after an orderly close. Called once. The default does nothing.
    /// May be overridden.
    open func finish(error: (any Error)?) {}

    /// The server drains (``BaseServer/shutdown(gracePeriod:)``): end what can end without losing a request,
    /// such as a connection waiting for its client's next request (close it). What is still open when the grace
    /// period ends is reset. The default does nothing: the connection may go on until then. May be overridden.
    open func handleDrain() {}

    /// The error a hook threw, passed on to ``finish(error:)``.
    private var hookError: (any Error)?

    /// Called by the server once the handler is the connection's delegate.
    func start() {
        do { try setup() } catch { fail(error) }
    }

    /// A hook threw: report it, then close the connection (what was written is still sent); once is enough.
    private func fail(_ error: any Error) {
        guard hookError == nil else { return }
        hookError = error
        server.reportHandlerError(.connection(connection), clientAddress: clientAddress, error: error)
        connection.close()
    }

    // ConnectionDelegate: forwards to the hooks above. Do not override.

    public final func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        guard hookError == nil else { return buffer.clear() }
        do { try handle(&buffer) } catch { fail(error) }
    }

    public final func connectionDidReachEnd(_ connection: Connection) {
        guard hookError == nil else { return }
        do { try handleEndOfInput() } catch { fail(error) }
    }

    public final func connectionDidBecomeWritable(_ connection: Connection) {
        handleWritable()
    }

    public final func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
        finish(error: hookError ?? error)
        server.metrics.bytesReceived.increment(by: connection.bytesReceived)
        server.metrics.bytesSent.increment(by: connection.bytesSent)
        // The end of the request, as in every mode: shutdownRequest once, then the request in progress (held by the
        // server's open requests, which end it as they let the closed connection go).
        server.shutdownRequest(.connection(connection))
        server.openRequests(on: connection.loop).release(connection)
    }
}
