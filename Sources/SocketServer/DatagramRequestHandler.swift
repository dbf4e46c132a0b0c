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
        guard case .datagram(let packet, let socket) = request else { throw ServerError.wrongRequestKind }
        self.packet = packet
        self.socket = socket
        rfile = SocketReader(bytes: packet)
        wfile = SocketWriter(bufferSize: .max) { bytes in
            try bytes.withUnsafeBytes { try socket.send($0, to: clientAddress) }
        }
        try super.init(request: request, clientAddress: clientAddress, server: server)
    }

    /// Sends what was written to ``wfile`` to the client, as one datagram. Overrides call `super.finish()`.
    open override func finish() throws {
        try wfile.flush()
    }
}
