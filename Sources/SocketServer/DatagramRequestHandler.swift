import Reactor

/// A blocking handler for one datagram: Python's `DatagramRequestHandler`.
///
/// ``rfile`` reads the packet; what is written to ``wfile`` is collected and sent to the client as
/// one datagram by ``finish()``.
open class DatagramRequestHandler: BaseRequestHandler {
    /// The datagram received.
    public let packet: [UInt8]
    /// The server's socket, to answer on (Python's `socket`).
    public let socket: Socket
    /// Reads the packet.
    public let rfile: SocketReader
    /// Collects the reply.
    public let wfile: SocketWriter

    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        (packet, socket, rfile, wfile) = try datagramFiles(request, replyingTo: clientAddress, metrics: server.metrics)
        try super.init(request: request, clientAddress: clientAddress, server: server)
    }

    /// Sends what was written to ``wfile`` to the client, as one datagram. Overrides call `super.finish()`.
    open override func finish() throws {
        try wfile.flush()
    }
}

/// The packet, the server socket, a reader over the packet and a writer that collects the reply and
/// sends it to the client as one datagram when flushed: what both datagram handlers are made of.
func datagramFiles(_ request: Request, replyingTo clientAddress: SocketAddress, metrics: ServerMetrics) throws
    -> (packet: [UInt8], socket: Socket, rfile: SocketReader, wfile: SocketWriter)
{
    guard case .datagram(let packet, let socket) = request else { throw ServerError.wrongRequestKind }
    let wfile = SocketWriter(bufferSize: .max) { bytes in
        try bytes.withUnsafeBytes { try socket.send($0, to: clientAddress) }
        metrics.bytesSent.increment(by: bytes.count)
    }
    return (packet, socket, SocketReader(bytes: packet), wfile)
}
