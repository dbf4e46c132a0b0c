import Reactor

/// A stream server on a Unix socket path: Python's `UnixStreamServer`. A stale socket file is replaced
/// (Python fails with `EADDRINUSE`); the server removes its file on close.
open class UnixStreamServer: TCPServer, @unchecked Sendable {
    open override class var addressFamilies: [SocketAddress.Family] { [.unix] }
}
