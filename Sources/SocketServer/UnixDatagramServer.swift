import Reactor

/// A datagram server on a Unix socket path: Python's `UnixDatagramServer`.
open class UnixDatagramServer: UDPServer, @unchecked Sendable {
    open override class var addressFamilies: [SocketAddress.Family] { [.unix] }
}
