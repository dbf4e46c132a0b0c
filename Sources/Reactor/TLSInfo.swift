/// What a completed handshake agreed on, for the handler.
public struct TLSInfo: Sendable, Equatable {
    /// The protocol version, e.g. `"TLSv1.3"`.
    public let version: String
    /// The cipher suite, e.g. `"TLS_AES_256_GCM_SHA384"`.
    public let cipher: String
    /// The ALPN protocol agreed on, if any.
    public let applicationProtocol: String?
    /// The server name the client asked for (SNI), if any.
    public let serverName: String?
    /// The subject of the peer's certificate in RFC 2253 form (`CN=alice,O=Example`), if it presented one;
    /// on a server that asks for client certificates, it verified against the CA file (an unverified one
    /// fails the handshake).
    public let peerSubject: String?
    /// Whether the session was resumed (a ticket or a cached session) rather than a full handshake.
    public let resumed: Bool
}
