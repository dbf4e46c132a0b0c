/// A TLS failure: a bad configuration, a handshake that failed or timed out, or a bad record later.
/// Reasons are OpenSSL's own words (`"no shared cipher"`, `"certificate verify failed"`).
public enum TLSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A certificate, key or CA file could not be used: the file and OpenSSL's reason.
    case configuration(String)
    /// The handshake failed: OpenSSL's reason, with the verification error for a certificate that did not verify.
    case handshakeFailed(String)
    /// The handshake did not complete within the configuration's handshake timeout.
    case handshakeTimedOut
    /// The peer closed the connection before the handshake completed.
    case closedDuringHandshake
    /// The client sent a plain HTTP request where a TLS handshake was expected (`http://` to an HTTPS port).
    /// The server answered it `400 Bad Request` in the clear, as nginx does, and closed: a client's mistake,
    /// which servers log at `info`.
    case plainHTTPRequest
    /// A record after the handshake was bad (a MAC failure, say): OpenSSL's reason.
    case protocolError(String)

    public var description: String {
        switch self {
        case .configuration(let reason): return "TLS configuration: \(reason)"
        case .handshakeFailed(let reason): return "TLS handshake failed: \(reason)"
        case .handshakeTimedOut: return "TLS handshake timed out"
        case .closedDuringHandshake: return "TLS handshake failed: the peer closed the connection"
        case .plainHTTPRequest: return "TLS handshake failed: the client sent a plain HTTP request (answered 400)"
        case .protocolError(let reason): return "TLS error: \(reason)"
        }
    }
}
