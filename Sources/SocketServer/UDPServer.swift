import Reactor

/// A datagram server over UDP: Python's `UDPServer`. Requests are single packets of up to
/// `maxPacketSize` bytes; there is no connection to shut down or close.
open class UDPServer: TCPServer, @unchecked Sendable {
    open override class var socketKind: Socket.Kind { .datagram }
    /// The default largest packet received.
    open class var maxPacketSize: Int { 8192 }
    /// The largest packet received; longer ones are truncated.
    public var maxPacketSize = 8192

    /// A sequential server with a blocking datagram handler.
    public convenience init(
        _ serverAddress: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        try self.init(
            serverAddress, requestHandler: .blocking(handler), mixIn: ProcessingMixIn(),
            bindAndActivate: bindAndActivate, loop: loop)
    }

    public init(
        _ serverAddress: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn,
        bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        try super.init(
            serverAddress, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: bindAndActivate, loop: loop)
        maxPacketSize = Self.maxPacketSize
    }

    /// A server on a datagram socket that is already bound (systemd's socket activation, a parent process).
    public init(
        adopting socket: Socket, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, loop: EventLoop? = nil
    ) throws {
        try super.init(adopting: socket, requestHandler: requestHandler, mixIn: mixIn, loop: loop)
        maxPacketSize = Self.maxPacketSize
    }

    /// Nothing to do: datagram sockets do not listen.
    open override func serverActivate() throws {}

    /// Receives one packet and its sender.
    open override func getRequest() throws -> (Request, SocketAddress)? {
        guard let (packet, sender) = try socket.receiveFrom(maxCount: maxPacketSize) else { return nil }
        return (.datagram(packet: packet, socket: socket), sender ?? .unnamedUnix)
    }

    /// Nothing to shut down.
    open override func shutdownRequest(_ request: Request) {
        closeRequest(request)
    }

    /// Nothing to close.
    open override func closeRequest(_ request: Request) {}
}
