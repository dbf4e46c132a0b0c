import Glibc

/// TLS on a blocking ``Socket``, for handlers on their own thread or in a forked child: the same
/// `receive`, `sendAll` and `sendFile` calls read and write plaintext.
///
/// The descriptor becomes non-blocking and each call waits with `poll` for the direction OpenSSL asks
/// for, so ``Socket/timeout`` bounds each wait of `receive` and the whole of `sendAll`, and the
/// handshake is bounded as a whole by ``TLSConfiguration/handshakeTimeout``. `sendFile` reads the file
/// and writes it through OpenSSL (64 KiB at a time), as `sendfile(2)` would bypass the encryption.
extension Socket {
    /// Starts TLS on this connected socket, as `context`'s role says. No byte moves yet: the handshake
    /// runs in ``handshake()``, or in the first `receive` or `sendAll`.
    /// - Parameters:
    ///   - context: the TLS context; its role says which side of the handshake this is.
    ///   - serverName: a client's: sent as SNI and checked against the server's certificate.
    /// - Throws: ``TLSError/configuration(_:)`` if OpenSSL cannot set the connection up, or an ``IOError``
    ///   if the descriptor cannot be made non-blocking.
    public func startTLS(_ context: TLSContext, serverName: String? = nil) throws {
        precondition(tlsSession == nil, "startTLS(_:serverName:) on a socket that has TLS already")
        try Posix.setNonBlocking(fileDescriptor)
        Socket.disableNagle(fileDescriptor)  // as on a Connection: no delayed-ACK stall after the handshake
        tlsSession = try TLSSession(context: context, fileDescriptor: fileDescriptor, serverName: serverName)
    }

    /// Whether ``startTLS(_:serverName:)`` was called.
    public var usesTLS: Bool { tlsSession != nil || tlsInfo != nil }

    /// Runs the TLS handshake to its end, blocking the calling thread for at most the context's handshake
    /// timeout; returns at once without TLS or once the handshake has completed.
    /// - Throws: ``TLSError/handshakeTimedOut``, ``TLSError/handshakeFailed(_:)`` with OpenSSL's reason,
    ///   ``TLSError/closedDuringHandshake``, or the ``IOError`` of the socket (`ECONNRESET`).
    public func handshake() throws {
        guard let tlsSession, !tlsSession.isHandshakeComplete else { return }
        let deadline = ContinuousClock.now + tlsSession.context.configuration.handshakeTimeout
        let outcome: TLSSession.Outcome
        do {
            outcome = try blockingStep(deadline) { tlsSession.handshake() }
        } catch ReactorError.timedOut {
            throw TLSError.handshakeTimedOut
        }
        switch outcome {
        case .failed(let error): throw error
        case .closed: throw TLSError.closedDuringHandshake
        default: tlsInfo = tlsSession.info()
        }
    }

    /// Waits up to `timeout` (`nil`: forever) for input: true when a read would return without blocking
    /// (bytes, or the peer's end). With TLS that means a whole record: bytes OpenSSL already holds count
    /// though the socket may not be readable, and part of a record does not, though the socket is.
    public func waitForInput(timeout: Duration?) throws -> Bool {
        guard let tlsSession, tlsSession.isHandshakeComplete else {
            return try Posix.wait(fileDescriptor, writable: false, timeout: timeout)
        }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            if tlsSession.hasReadableInput() { return true }
            guard try Posix.wait(fileDescriptor, writable: false, until: deadline) else { return false }
        }
    }

    // MARK: Through OpenSSL (called by receive, receiveIfReady, sendAll and shutdown)

    func tlsReceive(_ tls: TLSSession, maxCount: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: maxCount) { buffer, count in
            count = try tlsReceive(tls, into: buffer.baseAddress!, maxCount: maxCount)
        }
    }

    /// Up to `maxCount` bytes decrypted into `space`; 0 at the end of input.
    func tlsReceive(_ tls: TLSSession, into space: UnsafeMutableRawPointer, maxCount: Int) throws -> Int {
        try handshake()
        let deadline = timeout.map { ContinuousClock.now + $0 }
        switch try blockingStep(deadline, { tls.read(into: space, count: maxCount) }) {
        case .done(let read): return read
        case .failed(let error): throw error
        default: return 0  // the end of input
        }
    }

    func tlsReceiveIfReady(_ tls: TLSSession, maxCount: Int) throws -> [UInt8]? {
        try handshake()
        var ready = true
        let bytes = try [UInt8](unsafeUninitializedCapacity: maxCount) { buffer, count in
            count = 0
            switch tls.read(into: buffer.baseAddress!, count: maxCount) {
            case .done(let read): count = read
            case .wantRead, .wantWrite: ready = false
            case .closed: break
            case .failed(let error): throw error
            }
        }
        return ready ? bytes : nil
    }

    func tlsSendAll(_ tls: TLSSession, _ bytes: UnsafeRawBufferPointer) throws {
        try handshake()
        // After a timeout mid-record OpenSSL would finish that record with the next call's bytes.
        if tlsWriteStuck {
            throw TLSError.protocolError("an earlier send timed out mid-record: the connection cannot send")
        }
        // One deadline for the whole buffer: a slow reader cannot stretch it record by record.
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var offset = 0
        while offset < bytes.count {
            let outcome: TLSSession.Outcome
            do {
                outcome = try blockingStep(deadline) {
                    tls.write(bytes.baseAddress! + offset, count: bytes.count - offset)
                }
            } catch {
                tlsWriteStuck = true
                throw error
            }
            switch outcome {
            case .done(let sent): offset += sent
            case .failed(let error): throw error
            default: throw IOError(errnoCode: EPIPE, operation: "TLS send")  // the peer's close_notify came first
            }
        }
    }

    /// Sends `close_notify`, waiting for the socket to drain for up to ``timeout`` (2 s without one);
    /// a peer that is gone or does not read is not waited for further.
    func sendCloseNotify(_ tls: TLSSession) {
        guard !tlsWriteStuck else { return }
        _ = try? blockingStep(ContinuousClock.now + (timeout ?? .seconds(2))) { tls.shutdown() }
    }

    /// Repeats `step` while OpenSSL asks to wait, waiting for the direction it names until `deadline`.
    /// - Throws: ``ReactorError/timedOut`` at the deadline, or the ``IOError`` of `poll`.
    private func blockingStep(_ deadline: ContinuousClock.Instant?, _ step: () -> TLSSession.Outcome) throws
        -> TLSSession.Outcome
    {
        while true {
            let outcome = step()
            let writable: Bool
            switch outcome {
            case .wantRead: writable = false
            case .wantWrite: writable = true
            default: return outcome
            }
            guard try Posix.wait(fileDescriptor, writable: writable, until: deadline) else {
                throw ReactorError.timedOut
            }
        }
    }
}
