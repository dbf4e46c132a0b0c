import Reactor

/// A reactor-mode handler in the callback style, like asyncio's `Protocol`: one object per
/// connection, called on the loop thread as bytes arrive, with no task per connection.
///
/// The cheapest way to serve many connections: an idle connection costs its ``Reactor/Connection``,
/// this object and its fields. Write with `connection.write(...)` (buffered past the socket, with
/// reading paused above the high watermark) and end with `connection.close()`.
///
/// Methods that may be overridden: ``setup()``, ``handle(_:)``, ``handleEndOfInput()``,
/// ``handleWritable()``, ``finish(error:)``.
open class CallbackRequestHandler: ConnectionDelegate {
    /// The connection served.
    public let connection: Connection
    /// The client's address (`unix:` for an unnamed Unix peer).
    public let clientAddress: SocketAddress
    /// The server that accepted the connection.
    public let server: BaseServer
    /// Told when the connection closes, so the server knows what is still in progress.
    unowned(unsafe) var reactor: ReactorMixIn?

    /// Called by the server; do not call directly.
    public required init(connection: Connection, clientAddress: SocketAddress, server: BaseServer) {
        self.connection = connection
        self.clientAddress = clientAddress
        self.server = server
    }

    /// The connection is open and reading. The default does nothing. May be overridden.
    open func setup() {}

    /// Bytes arrived: `buffer` holds all that is unconsumed; consume what you can use, the rest is
    /// kept for the next call. The default discards everything. Override this.
    open func handle(_ buffer: inout ByteBuffer) {
        buffer.clear()
    }

    /// The client closed its sending side. The default closes once what was written is sent. May be overridden.
    open func handleEndOfInput() {
        connection.close()
    }

    /// Output fell to the low watermark after rising above the high one. The default does nothing. May be overridden.
    open func handleWritable() {}

    /// The connection closed: `error` is `nil` after an orderly close. Called once. The default does nothing.
    /// May be overridden.
    open func finish(error: (any Error)?) {}

    // ConnectionDelegate: forwards to the hooks above. Do not override.

    public final func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        handle(&buffer)
    }

    public final func connectionDidReachEnd(_ connection: Connection) {
        handleEndOfInput()
    }

    public final func connectionDidBecomeWritable(_ connection: Connection) {
        handleWritable()
    }

    public final func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
        finish(error: error)
        reactor?.requestFinished()
        reactor = nil
    }
}
