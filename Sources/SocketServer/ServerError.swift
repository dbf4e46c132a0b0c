/// Errors about how a server is used, as opposed to failed system calls (`IOError`).
public enum ServerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The address's family does not suit the server (a Unix path for a `TCPServer`, say).
    case wrongAddressFamily(String)
    /// The handler type does not suit the processing mode: reactor mode needs an async handler, the
    /// other modes a blocking one.
    case handlerDoesNotMatchMode(String)
    /// The request is not of the kind this handler serves (a datagram for a stream handler).
    case wrongRequestKind
    /// Text that is not an IP address range in CIDR notation.
    case invalidAddressRange(String)
    /// The server was closed (``BaseServer/serverClose()``): it has no socket to serve on. Python raises
    /// `ValueError: Invalid file descriptor: -1` for the same call.
    case serverClosed(String)
    /// A server with ``BaseServer/proxyProtocol`` got no valid PROXY protocol header: bytes that are not one, an end
    /// of input before it ended, or nothing within ``BaseServer/proxyHeaderTimeout``. The connection is closed.
    case proxyHeader(String)

    public var description: String {
        switch self {
        case .wrongAddressFamily(let detail): return "wrong address family: \(detail)"
        case .handlerDoesNotMatchMode(let detail): return "handler does not match the processing mode: \(detail)"
        case .wrongRequestKind: return "the request is not of the kind this handler serves"
        case .invalidAddressRange(let detail): return "invalid address range: \(detail)"
        case .serverClosed(let detail): return "the server is closed: \(detail)"
        case .proxyHeader(let detail): return "no valid PROXY protocol header: \(detail)"
        }
    }
}
