import Reactor

/// What ``BaseServer/getRequest()`` returns and every hook after it receives: Python's `request`.
public enum Request: @unchecked Sendable {
    /// An accepted stream connection for a blocking handler (sequential, threading and forking modes).
    case stream(Socket)
    /// An accepted stream connection on the server's loop, for an async handler (reactor mode).
    case connection(Connection)
    /// One datagram, and the server's socket to answer on (which the request does not own).
    case datagram(packet: [UInt8], socket: Socket)
}
