/// The callback face of a ``Connection``, like asyncio's `Protocol` or a SwiftNIO inbound handler.
///
/// Every method runs on the loop thread. All but ``connection(_:didReceive:)`` have default
/// implementations; a class conforming to this protocol implements the ones it needs.
public protocol ConnectionDelegate: AnyObject {
    /// Bytes arrived. `buffer` holds every byte received and not yet consumed: consume what you can
    /// use (``ByteBuffer/readLine(maxLength:strippingNewline:)``, ``ByteBuffer/readAll()``,
    /// ``ByteBuffer/moveReaderIndex(forwardBy:)``) and the rest is kept for the next call.
    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer)

    /// The peer closed its sending side (end of input). The default closes the connection once
    /// what was written has been sent; implement it to keep writing on a half-closed connection.
    func connectionDidReachEnd(_ connection: Connection)

    /// Output fell to the low watermark after rising above the high one: writing may resume.
    /// Reading pauses while output is above the high watermark. The default does nothing.
    func connectionDidBecomeWritable(_ connection: Connection)

    /// The TLS handshake completed: ``Connection/tlsInfo`` says what it agreed on (the peer's certificate
    /// subject, ALPN). Bytes written earlier have been sent; received ones follow. The default does nothing.
    func connectionDidCompleteHandshake(_ connection: Connection)

    /// The connection closed: `error` is `nil` after an orderly ``Connection/close()``, otherwise
    /// the reason (an ``IOError`` such as `ECONNRESET`, or ``ReactorError/timedOut``). Called once.
    /// The default does nothing.
    func connection(_ connection: Connection, didCloseWith error: (any Error)?)
}

extension ConnectionDelegate {
    public func connectionDidReachEnd(_ connection: Connection) {
        connection.close()
    }

    public func connectionDidBecomeWritable(_ connection: Connection) {}

    public func connectionDidCompleteHandshake(_ connection: Connection) {}

    public func connection(_ connection: Connection, didCloseWith error: (any Error)?) {}
}
