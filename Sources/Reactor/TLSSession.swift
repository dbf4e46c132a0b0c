internal import COpenSSL
import Glibc

/// One connection's TLS state (`SSL *`) over a socket descriptor: each step (handshake, read, write,
/// close_notify) is one non-blocking OpenSSL call whose outcome says what to wait for. ``Connection``
/// drives it from the loop's readiness, a blocking ``Socket`` from `poll`.
///
/// OpenSSL reads and writes the descriptor itself (a socket BIO, as nginx and libevent's
/// `bufferevent_openssl` do): ciphertext never passes through a buffer of ours, so TLS adds no copy.
///
/// Used by one thread at a time. Ownership: owns its `SSL *` (freed in `deinit`), never the descriptor;
/// keeps its ``TLSContext`` alive.
final class TLSSession {
    /// What a step did.
    enum Outcome {
        /// Done: bytes read or written (0 for a handshake or close_notify).
        case done(Int)
        /// Call again once the socket is readable.
        case wantRead
        /// Call again once the socket is writable.
        case wantWrite
        /// The peer closed: `close_notify`, or its TCP end without one (``receivedCloseNotify`` tells which).
        case closed
        /// A ``TLSError``, or an ``IOError`` from the socket (`ECONNRESET`).
        case failed(any Error)
    }

    let context: TLSContext
    private let ssl: OpaquePointer
    /// Whether the handshake has completed.
    private(set) var isHandshakeComplete = false
    /// Whether a handshake step has run (a session adopted from a blocking socket may be half-way).
    private(set) var handshakeBegan = false
    /// The failure that ended the session: every later step reports it again (OpenSSL's own queue has it
    /// only once, and a peek may be what saw it).
    private var failure: (any Error)?

    /// Starts TLS on a connected socket, as the context's role says; no byte is exchanged yet.
    /// - Parameter serverName: a client's: the name sent as SNI (unless it is an IP address) and checked
    ///   against the server's certificate when the context verifies peers.
    /// - Throws: ``TLSError/configuration(_:)`` if OpenSSL cannot allocate the connection.
    init(context: TLSContext, fileDescriptor: Int32, serverName: String? = nil) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.defaultContext) else {
            throw .configuration("SSL_new: \(TLSContext.errorReason())")
        }
        self.ssl = ssl
        self.context = context
        guard SSL_set_fd(ssl, fileDescriptor) == 1 else {
            throw .configuration("SSL_set_fd: \(TLSContext.errorReason())")
        }
        switch context.role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if let serverName {
                try expect(serverName)
            } else if context.configuration.verifiesPeer {
                // A chain from a trusted CA proves nothing without the name it must carry (Python refuses too).
                throw .configuration("verifying the server needs its name: give a serverName")
            }
        }
    }

    deinit {
        SSL_free(ssl)
    }

    /// A client's SNI and the name its peer's certificate must carry.
    private func expect(_ serverName: String) throws(TLSError) {
        let isAddress =
            (try? SocketAddress(ipv4: serverName, port: 0)) != nil
            || (try? SocketAddress(ipv6: serverName, port: 0)) != nil
        if !isAddress { _ = copenssl_set_tlsext_host_name(ssl, serverName) }
        guard context.configuration.verifiesPeer else { return }
        let checked =
            isAddress
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) : SSL_set1_host(ssl, serverName)
        guard checked == 1 else { throw .configuration("server name \(serverName): \(TLSContext.errorReason())") }
    }

    // MARK: Steps

    /// Runs one OpenSSL call: a session that failed reports that failure again; otherwise the error queue
    /// and `errno` are cleared first (so what they hold afterwards is this call's), and a result that is
    /// not `done` gets OpenSSL's verdict.
    @inline(__always)
    private func step(_ done: (Int32) -> Outcome?, _ call: () -> Int32) -> Outcome {
        if let failure { return .failed(failure) }
        ERR_clear_error()
        Posix.clearError()
        let result = call()
        return done(result) ?? outcome(of: result, systemError: Posix.lastError)
    }

    /// The result of `SSL_read`/`SSL_write`/`SSL_peek`: a count when positive.
    @inline(__always)
    private static func count(_ result: Int32) -> Outcome? { result > 0 ? .done(Int(result)) : nil }

    /// The result of `SSL_do_handshake`: 1 when complete.
    private static func complete(_ result: Int32) -> Outcome? { result == 1 ? .done(0) : nil }

    /// The result of `SSL_shutdown`: 0 or 1 once `close_notify` is sent.
    private static func sent(_ result: Int32) -> Outcome? { result >= 0 ? .done(0) : nil }

    /// Advances the handshake.
    func handshake() -> Outcome {
        handshakeBegan = true
        return step(Self.complete) {
            let result = SSL_do_handshake(ssl)
            if result == 1 { isHandshakeComplete = true }
            return result
        }
    }

    /// Decrypts up to `count` bytes into `buffer` (running the handshake first if it has not completed).
    @inline(__always)
    func read(into buffer: UnsafeMutableRawPointer, count: Int) -> Outcome {
        step(Self.count) { SSL_read(ssl, buffer, Int32(clamping: count)) }
    }

    /// Encrypts and sends up to `count` bytes (a record or more: partial writes are on). After
    /// ``Outcome/wantWrite`` the next call must start with the same bytes (they may have moved).
    @inline(__always)
    func write(_ bytes: UnsafeRawPointer, count: Int) -> Outcome {
        step(Self.count) { SSL_write(ssl, bytes, Int32(clamping: count)) }
    }

    /// Sends `close_notify` (without waiting for the peer's); nothing to send before the handshake or
    /// after a failure.
    func shutdown() -> Outcome {
        guard isHandshakeComplete, failure == nil else { return .done(0) }
        return step(Self.sent) { SSL_shutdown(ssl) }
    }

    /// Whether the peer sent `close_notify` (a clean TLS close) rather than only closing its TCP side;
    /// meaningful once a read returned ``Outcome/closed``. (The context's options make OpenSSL mark both
    /// as received; only after a bare TCP close has the socket itself reached its end.)
    var receivedCloseNotify: Bool {
        SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN != 0 && copenssl_read_side_at_eof(ssl) == 0
    }

    /// Whether received bytes wait inside OpenSSL (read ahead of what was asked for): decrypted ones, a
    /// whole record, or only part of one. True does not promise that a read returns something.
    var hasPendingInput: Bool { SSL_has_pending(ssl) == 1 }

    /// Whether a read would return at once (bytes, the end, or an error) rather than wait for the socket:
    /// decrypted bytes are buffered, or a whole record has arrived (looked at with `SSL_peek`, which reads
    /// what the non-blocking socket has but consumes nothing). Part of a record is not enough.
    func hasReadableInput() -> Bool {
        if SSL_pending(ssl) > 0 || failure != nil { return true }
        guard isHandshakeComplete else { return false }
        var byte: UInt8 = 0
        if case .wantRead = step(Self.count, { SSL_peek(ssl, &byte, 1) }) { return false }
        return true  // bytes, the end, or an error: the read reports it
    }

    /// Reads OpenSSL's verdict on a failed call: what to wait for, or why it failed (kept for later steps).
    private func outcome(of result: Int32, systemError: Int32) -> Outcome {
        let outcome = verdict(of: result, systemError: systemError)
        if case .failed(let error) = outcome { failure = error }
        return outcome
    }

    private func verdict(of result: Int32, systemError: Int32) -> Outcome {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ:
            return .wantRead
        case SSL_ERROR_WANT_WRITE:
            return .wantWrite
        case SSL_ERROR_ZERO_RETURN:
            return isHandshakeComplete ? .closed : .failed(TLSError.closedDuringHandshake)
        case SSL_ERROR_SYSCALL where ERR_peek_error() == 0:
            if systemError != 0 && systemError != EAGAIN {
                return .failed(
                    IOError(errnoCode: systemError, operation: isHandshakeComplete ? "TLS" : "TLS handshake"))
            }
            return isHandshakeComplete ? .closed : .failed(TLSError.closedDuringHandshake)
        case _ where copenssl_peek_system_error() != 0:
            // The socket failed and OpenSSL queued its errno (ECONNRESET): an IOError, as without TLS.
            let code = copenssl_peek_system_error()
            ERR_clear_error()
            return .failed(IOError(errnoCode: code, operation: isHandshakeComplete ? "TLS" : "TLS handshake"))
        case _ where !isHandshakeComplete && context.role == .server && copenssl_peek_http_request() != 0:
            ERR_clear_error()
            answerPlainHTTP()
            return .failed(TLSError.plainHTTPRequest)
        default:
            var reason = TLSContext.errorReason()
            guard !isHandshakeComplete else { return .failed(TLSError.protocolError(reason)) }
            // A certificate that did not verify: say why (only where certificates are verified at all).
            let verification = SSL_get_verify_result(ssl)
            if verification != X509_V_OK && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE {
                reason += ": \(String(cString: X509_verify_cert_error_string(verification)))"
            }
            return .failed(TLSError.handshakeFailed(reason))
        }
    }

    /// nginx's answer to plain HTTP on an HTTPS port, in the clear, so that a browser or curl shows why.
    static let plainHTTPAnswer: [UInt8] = {
        let body = "400 Bad Request: the plain HTTP request was sent to an HTTPS port\n"
        return Array(
            ("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body).utf8)
    }()

    /// Sends ``plainHTTPAnswer`` without waiting: it fits an empty socket buffer, and is dropped if not (OpenSSL
    /// sent nothing on this connection: it recognized the request before any reply).
    private func answerPlainHTTP() {
        Self.plainHTTPAnswer.withUnsafeBytes {
            _ = try? Posix.send(SSL_get_fd(ssl), $0.baseAddress!, $0.count, dontWait: true)
        }
    }

    // MARK: What was agreed

    /// The handshake's result; call once it has completed.
    func info() -> TLSInfo {
        var alpn: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpn, &alpnLength)
        let applicationProtocol = alpn.map {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self)
        }
        return TLSInfo(
            version: String(cString: SSL_get_version(ssl)),
            cipher: copenssl_current_cipher_name(ssl).map { String(cString: $0) } ?? "",
            applicationProtocol: applicationProtocol,
            serverName: SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) },
            peerSubject: peerSubject(),
            resumed: SSL_session_reused(ssl) == 1)
    }

    /// The peer certificate's subject in RFC 2253 form.
    private func peerSubject() -> String? {
        guard let certificate = SSL_get0_peer_certificate(ssl), let name = X509_get_subject_name(certificate),
            let bio = BIO_new(BIO_s_mem())
        else { return nil }
        defer { BIO_free(bio) }
        guard copenssl_print_name_rfc2253(bio, name) >= 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
        let count = BIO_read(bio, &bytes, Int32(bytes.count))
        return String(decoding: bytes.prefix(max(0, Int(count))), as: UTF8.self)
    }
}
