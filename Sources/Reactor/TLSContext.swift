internal import COpenSSL
import Glibc

/// OpenSSL's shared TLS state (`SSL_CTX`), made once from a ``TLSConfiguration`` and used by every
/// connection that starts with it: ``Listener``, ``Connection``, a blocking ``Socket``, or a
/// SocketServer server's `tls`.
///
/// Making a context reads every file at once, so a missing or mismatched certificate is an error here,
/// not at the first client. A context never changes: to reload certificates, make a new one and give
/// it to the listener or server; connections already open keep the context they started with.
///
/// Every context is made with TLS 1.2 as the oldest version (or 1.3 if configured), renegotiation off,
/// compression off, session tickets on (a server also caches sessions for TLS 1.2 clients), partial
/// writes and buffers released while a connection is idle (`SSL_MODE_RELEASE_BUFFERS`), and read-ahead
/// (a record is read with one system call, not two). A peer that closes its TCP connection without
/// `close_notify` ends the input like a clean close, as Python's `suppress_ragged_eofs` does: protocols
/// that frame their messages (HTTP with `Content-Length`, RESP) see a truncated message either way, and
/// ``Connection/receivedCloseNotify`` tells the two apart.
///
/// Thread-safe: OpenSSL locks a context's shared state (its session cache) itself, and nothing here
/// changes after `init`. Ownership: owns its `SSL_CTX`s (one per certificate, for SNI) and frees them in
/// `deinit`; every TLS connection keeps its context alive.
public final class TLSContext: @unchecked Sendable {
    /// Which side of the handshake the context's connections take.
    public enum Role: Sendable {
        /// Accepted connections (`TLS_server_method`).
        case server
        /// Outbound connections (`TLS_client_method`).
        case client
    }

    /// The side the context's connections take.
    public let role: Role
    /// What the context was made from.
    public let configuration: TLSConfiguration
    /// One `SSL_CTX` per certificate; the first is the default (and, for a client, the only one).
    let contexts: [OpaquePointer]
    /// The ALPN list in wire format (length-prefixed names), kept for OpenSSL's callbacks.
    private let alpnWire: [UInt8]

    /// A server context: the certificates (and for mutual TLS the client CA file) are loaded now.
    /// - Throws: ``TLSError/configuration(_:)`` naming the file and OpenSSL's reason: a missing file, a
    ///   file that is not PEM, a key that does not match its certificate, or no certificate at all.
    public convenience init(server configuration: TLSConfiguration) throws(TLSError) {
        try self.init(role: .server, configuration: configuration)
    }

    /// A client context: the trust roots (and a client certificate, if given) are loaded now.
    /// - Throws: ``TLSError/configuration(_:)`` naming the file and OpenSSL's reason.
    public convenience init(client configuration: TLSConfiguration) throws(TLSError) {
        try self.init(role: .client, configuration: configuration)
    }

    private init(role: Role, configuration: TLSConfiguration) throws(TLSError) {
        EventLoop.processSetUp()  // SIGPIPE ignored: OpenSSL writes to the socket without MSG_NOSIGNAL
        self.role = role
        self.configuration = configuration
        alpnWire = try Self.wireFormat(configuration.applicationProtocols)
        if role == .server && configuration.certificates.isEmpty {
            throw .configuration("a server needs a certificate and its private key")
        }
        var made: [OpaquePointer] = []
        do throws(TLSError) {
            let certificates: [TLSConfiguration.CertificateFiles?] =
                role == .server ? configuration.certificates : [configuration.certificates.first]
            for certificate in certificates {
                made.append(try Self.makeContext(role: role, configuration: configuration, certificate: certificate))
            }
        } catch {
            for context in made { SSL_CTX_free(context) }
            throw error
        }
        contexts = made
        let unmanagedSelf = Unmanaged.passUnretained(self).toOpaque()
        for context in contexts {
            if role == .server {
                if contexts.count > 1 {
                    copenssl_ctx_set_servername_callback(context, Self.serverNameCallback, unmanagedSelf)
                }
                if !alpnWire.isEmpty { SSL_CTX_set_alpn_select_cb(context, Self.alpnCallback, unmanagedSelf) }
            } else if !alpnWire.isEmpty {
                // The one OpenSSL call that returns 0 on success.
                guard SSL_CTX_set_alpn_protos(context, alpnWire, UInt32(alpnWire.count)) == 0 else {
                    throw .configuration("ALPN protocols \(configuration.applicationProtocols): \(Self.errorReason())")
                }
            }
        }
    }

    deinit {
        for context in contexts { SSL_CTX_free(context) }
    }

    /// The default `SSL_CTX`, which new connections start with.
    var defaultContext: OpaquePointer { contexts[0] }

    // MARK: Making an SSL_CTX

    private static func makeContext(
        role: Role, configuration: TLSConfiguration, certificate: TLSConfiguration.CertificateFiles?
    ) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(role == .server ? TLS_server_method() : TLS_client_method()) else {
            throw .configuration("SSL_CTX_new: \(errorReason())")
        }
        do throws(TLSError) {
            try configure(context, role: role, configuration: configuration, certificate: certificate)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return context
    }

    private static func configure(
        _ context: OpaquePointer, role: Role, configuration: TLSConfiguration,
        certificate: TLSConfiguration.CertificateFiles?
    ) throws(TLSError) {
        _ = SSL_CTX_set_options(context, copenssl_default_options())
        _ = copenssl_ctx_set_mode(context, copenssl_default_modes())
        copenssl_ctx_set_read_ahead(context, 1)
        let version = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard copenssl_ctx_set_min_proto_version(context, version) == 1 else {
            throw .configuration("minimum version: \(errorReason())")
        }
        if let certificate {
            try requireReadable(certificate.chain, "certificate chain")
            try requireReadable(certificate.privateKey, "private key")
            guard SSL_CTX_use_certificate_chain_file(context, certificate.chain) == 1 else {
                throw .configuration("certificate chain \(certificate.chain): \(errorReason())")
            }
            guard SSL_CTX_use_PrivateKey_file(context, certificate.privateKey, SSL_FILETYPE_PEM) == 1 else {
                throw .configuration("private key \(certificate.privateKey): \(errorReason())")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw .configuration(
                    "private key \(certificate.privateKey) does not match certificate \(certificate.chain)")
            }
        }
        switch role {
        case .server:
            // Resumption must know which "application" a session belongs to once clients are verified.
            let sessionContext = Array("swift-socketserver".utf8)
            _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
            switch configuration.clientAuthentication {
            case .none:
                break
            case .optional(let caFile), .required(let caFile):
                try requireReadable(caFile, "client CA file")
                guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                    throw .configuration("client CA file \(caFile): \(errorReason())")
                }
                // The CA names the server sends, so a client knows which certificate to present.
                if let names = SSL_load_client_CA_file(caFile) { SSL_CTX_set_client_CA_list(context, names) }
                var mode = SSL_VERIFY_PEER
                if case .required = configuration.clientAuthentication { mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
                SSL_CTX_set_verify(context, mode, nil)
            }
        case .client:
            guard configuration.verifiesPeer else { break }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            switch configuration.trustRoots {
            case .system:
                guard SSL_CTX_set_default_verify_paths(context) == 1 else {
                    throw .configuration("the system's trust store: \(errorReason())")
                }
            case .file(let path):
                try requireReadable(path, "CA file")
                guard SSL_CTX_load_verify_locations(context, path, nil) == 1 else {
                    throw .configuration("CA file \(path): \(errorReason())")
                }
            }
        }
    }

    /// A file the configuration names must be readable: "certificate chain PATH: No such file or directory",
    /// in the system's words, rather than OpenSSL's queue for the same failure (`system lib` twice).
    private static func requireReadable(_ path: String, _ what: String) throws(TLSError) {
        do {
            try Posix.checkReadableFile(path)
        } catch {
            throw .configuration("\(what) \(path): \(error.reason)")
        }
    }

    /// ALPN names as OpenSSL wants them: each preceded by its length (1 to 255 bytes).
    private static func wireFormat(_ names: [String]) throws(TLSError) -> [UInt8] {
        var wire: [UInt8] = []
        for name in names {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw .configuration("ALPN protocol name '\(name)' must be 1 to 255 bytes")
            }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        return wire
    }

    // MARK: Callbacks (OpenSSL calls them during a handshake, on the thread running it)

    /// SNI: switches the connection to the first certificate that matches the name the client asked for.
    private static let serverNameCallback: copenssl_servername_callback = { ssl, _, argument in
        guard let ssl, let argument, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
            return SSL_TLSEXT_ERR_OK
        }
        let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
        for candidate in context.contexts {
            guard let certificate = SSL_CTX_get0_certificate(candidate),
                X509_check_host(certificate, name, 0, 0, nil) == 1
            else { continue }
            if candidate != context.defaultContext { _ = SSL_set_SSL_CTX(ssl, candidate) }
            break
        }
        return SSL_TLSEXT_ERR_OK  // no match: the default certificate, as nginx's default server
    }

    /// ALPN: the first of the server's protocols that the client offers; none in common goes on without ALPN.
    private static let alpnCallback:
        @convention(c) (
            OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
            UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
        ) -> Int32 = { _, output, outputLength, offered, offeredLength, argument in
            guard let argument, let output, let outputLength else { return SSL_TLSEXT_ERR_NOACK }
            let context = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
            let wire = context.alpnWire
            let offeredList = UnsafeBufferPointer(start: offered, count: Int(offeredLength))
            // Server preference: walk our list, take the first name the client also sent.
            var index = 0
            while index < wire.count {
                let length = Int(wire[index])
                let name = wire[(index + 1)..<(index + 1 + length)]
                var offeredIndex = 0
                while offeredIndex < offeredList.count {
                    let offeredLength = Int(offeredList[offeredIndex])
                    let start = offeredIndex + 1
                    guard start + offeredLength <= offeredList.count else { break }
                    if offeredLength == length && offeredList[start..<(start + offeredLength)].elementsEqual(name) {
                        // Point into the client's list, which OpenSSL keeps for the handshake.
                        output.pointee = offered! + start
                        outputLength.pointee = UInt8(length)
                        return SSL_TLSEXT_ERR_OK
                    }
                    offeredIndex = start + offeredLength
                }
                index += 1 + length
            }
            return SSL_TLSEXT_ERR_NOACK
        }

    // MARK: Errors

    /// OpenSSL's queued errors, oldest first, as their reason strings joined by ": ", and the queue emptied.
    static func errorReason() -> String {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            if let reason = ERR_reason_error_string(code) {
                reasons.append(String(cString: reason))
            } else {
                var buffer = [UInt8](repeating: 0, count: 256)
                buffer.withUnsafeMutableBufferPointer { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { ERR_error_string_n(code, $0.baseAddress, $0.count) }
                }
                reasons.append(String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self))
            }
        }
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: ": ")
    }
}
