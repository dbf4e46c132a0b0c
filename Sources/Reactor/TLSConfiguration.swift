/// What a ``TLSContext`` is made from: certificates, what to verify, versions and protocols.
///
/// A value: build it, then make a context with ``TLSContext/init(server:)`` or ``TLSContext/init(client:)``,
/// which reads the files and reports any problem at once. The defaults are the safe ones: TLS 1.2 at least,
/// renegotiation off, session tickets on, a client that verifies the server against the system's trust
/// store, a server that asks for no client certificate.
public struct TLSConfiguration: Sendable {
    /// A certificate chain and its private key, both PEM files.
    public struct CertificateFiles: Sendable, Equatable {
        /// The certificate first, then the intermediates that lead to a root (PEM).
        public var chain: String
        /// The private key of the first certificate (PEM, unencrypted).
        public var privateKey: String

        public init(chain: String, privateKey: String) {
            self.chain = chain
            self.privateKey = privateKey
        }
    }

    /// The oldest protocol version accepted.
    public enum Version: Sendable, Equatable {
        /// TLS 1.2; the corresponding C constant is `TLS1_2_VERSION`.
        case tls12
        /// TLS 1.3; the corresponding C constant is `TLS1_3_VERSION`.
        case tls13
    }

    /// Whether a server asks its clients for a certificate (mutual TLS).
    public enum ClientAuthentication: Sendable, Equatable {
        /// No client certificate is asked for.
        case none
        /// A certificate is asked for; a client without one is served, one with a certificate that does not
        /// verify against the CA file is refused (`SSL_VERIFY_PEER`).
        case optional(caFile: String)
        /// A client without a certificate that verifies against the CA file is refused
        /// (`SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT`).
        case required(caFile: String)
    }

    /// What a client trusts.
    public enum TrustRoots: Sendable, Equatable {
        /// The system's store (`/etc/ssl/certs`, through `SSL_CTX_set_default_verify_paths`).
        case system
        /// The CA certificates in this PEM file only.
        case file(String)
    }

    /// A server's certificates: the first is the default; each other one is chosen when the name a client
    /// asks for (SNI) matches it (its subject alternative names, or its common name without them). A client
    /// presents the first, if any, when the server asks for one.
    public var certificates: [CertificateFiles]
    /// Servers: whether to ask for a client certificate.
    public var clientAuthentication: ClientAuthentication
    /// Clients: what a server's certificate must chain to.
    public var trustRoots: TrustRoots
    /// Clients: whether to verify the server's certificate and name. Turning it off makes the connection
    /// open to any man in the middle; it exists for tests and benchmarks.
    public var verifiesPeer: Bool
    /// ALPN protocol names in order of preference (e.g. `["h2", "http/1.1"]`). A server picks the first of
    /// its own that the client offers, and goes on without ALPN when there is none in common.
    public var applicationProtocols: [String]
    /// The oldest version accepted; TLS 1.2 by default.
    public var minimumVersion: Version
    /// How long a handshake may take before the connection is closed with ``TLSError/handshakeTimedOut``;
    /// 10 s by default. It runs from the connection's start, separately from any idle timeout.
    public var handshakeTimeout: Duration

    /// A server configuration with one certificate.
    /// - Parameters:
    ///   - certificateChain: PEM file: the certificate, then its intermediates.
    ///   - privateKey: PEM file: the certificate's key.
    public static func server(certificateChain: String, privateKey: String) -> TLSConfiguration {
        TLSConfiguration(certificates: [CertificateFiles(chain: certificateChain, privateKey: privateKey)])
    }

    /// A client configuration that verifies servers against `trustRoots`.
    public static func client(trustRoots: TrustRoots = .system) -> TLSConfiguration {
        TLSConfiguration(trustRoots: trustRoots)
    }

    public init(
        certificates: [CertificateFiles] = [], clientAuthentication: ClientAuthentication = .none,
        trustRoots: TrustRoots = .system, verifiesPeer: Bool = true, applicationProtocols: [String] = [],
        minimumVersion: Version = .tls12, handshakeTimeout: Duration = .seconds(10)
    ) {
        self.certificates = certificates
        self.clientAuthentication = clientAuthentication
        self.trustRoots = trustRoots
        self.verifiesPeer = verifiesPeer
        self.applicationProtocols = applicationProtocols
        self.minimumVersion = minimumVersion
        self.handshakeTimeout = handshakeTimeout
    }
}
