/// TLS on a ``Connection``: the handshake, reads and writes through OpenSSL, and `close_notify`, each
/// driven by the loop's readiness. OpenSSL may need the other direction than the call's (a read that
/// must first send, a write that must first receive): the connection then watches that direction and
/// retries the call when it is ready.
extension Connection {
    /// Waits until the TLS handshake has completed; returns at once without TLS or once it has. Call from
    /// a task on the connection's loop.
    /// - Throws: the error the connection closed with before the handshake completed (a ``TLSError`` such
    ///   as ``TLSError/handshakeFailed(_:)`` or ``TLSError/handshakeTimedOut``, or an ``IOError``).
    public func handshake() async throws {
        loop.preconditionInEventLoop()
        guard usesTLS, tlsInfo == nil else { return }
        if state == .closed { throw closeError ?? ReactorError.alreadyClosed }
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            handshakeObservers.append { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
        }
    }

    /// Calls `body` on the loop once the TLS handshake has completed (with `nil`), or once the connection
    /// closed before it did (with the error, ``ReactorError/alreadyClosed`` after an orderly close).
    /// Without TLS, or once the handshake has completed, `body` runs at once. Call on the loop thread.
    public func whenHandshakeCompletes(_ body: @escaping ((any Error)?) -> Void) {
        loop.preconditionInEventLoop()
        if !usesTLS || tlsInfo != nil { return body(nil) }
        if state == .closed { return body(closeError ?? ReactorError.alreadyClosed) }
        handshakeObservers.append(body)
    }

    /// Whether the TLS handshake has completed (always true without TLS).
    public var isHandshakeComplete: Bool { !usesTLS || tlsInfo != nil }

    /// Arms the handshake timeout; a client sends its hello once the socket is writable (the loop's next pass).
    /// Nagle's algorithm goes off: a handshake's last flight and the first reply leave as separate writes,
    /// and the second would wait for the peer's delayed ACK (40 ms on Linux).
    func startTLS(_ tls: TLSSession) {
        Socket.disableNagle(fileDescriptor)
        if tls.isHandshakeComplete {  // adopted from a blocking Socket after its handshake
            if tlsInfo == nil { tlsInfo = tls.info() }
            return
        }
        handshakeDeadline = Connection.now() &+ tls.context.configuration.handshakeTimeout.nanoseconds
        updateDeadlineTimer()
        // A client speaks first; a handshake begun on a blocking socket may be waiting to send.
        if tls.context.role == .client || tls.handshakeBegan { setWriting(true) }
    }

    // MARK: Readiness

    func tlsReadable(_ tls: TLSSession) {
        guard tls.isHandshakeComplete else { return advanceHandshake(tls) }
        if tlsWriteWaitsForRead {
            tlsWriteWaitsForRead = false
            sendOutput(tls)
            guard state != .closed else { return }
            updateReading()
        }
        if !tlsReadWaitsForWrite && wantsInput { receive() }
    }

    func tlsWritable(_ tls: TLSSession) {
        guard tls.isHandshakeComplete else { return advanceHandshake(tls) }
        if tlsReadWaitsForWrite {
            tlsReadWaitsForWrite = false
            if wantsInput { receive() }
            guard state != .closed else { return }
            updateReading()
        }
        sendOutput(tls)
    }

    // MARK: The handshake

    private func advanceHandshake(_ tls: TLSSession) {
        switch tls.handshake() {
        case .done:
            handshakeDeadline = nil
            updateDeadlineTimer()
            tlsInfo = tls.info()
            handshakeWaitsForWrite = false
            setWriting(false)
            let observers = handshakeObservers
            handshakeObservers = []
            for observer in observers { observer(nil) }
            delegate?.connectionDidCompleteHandshake(self)
            guard state != .closed else { return }
            // What was written meanwhile goes now, and a shutdownOutput() or close() asked for goes on.
            sendOutput(tls)
            guard state != .closed else { return }
            updateReading()
            // Application data that came with the handshake's last flight is already inside OpenSSL.
            if reading && wantsInput && tls.hasPendingInput { receive() }
        case .wantRead:
            handshakeWaitsForWrite = false
            setWriting(false)
            updateReading()
        case .wantWrite:
            handshakeWaitsForWrite = true
            setWriting(true)
            updateReading()
        case .closed:
            finishClose(TLSError.closedDuringHandshake)
        case .failed(let error):
            finishClose(error)
        }
    }

    // MARK: Reading

    /// Decrypts into `space` until it is full or OpenSSL has nothing more without waiting for the socket.
    func decrypt(_ tls: TLSSession, into space: UnsafeMutableRawPointer, capacity: Int) -> (Int, InputStop) {
        var count = 0
        while count < capacity {
            switch tls.read(into: space + count, count: capacity - count) {
            case .done(let read):
                count += read
                // Nothing buffered: the next read would only find an empty socket (one system call saved).
                if !tls.hasPendingInput { return (count, .drained) }
            case .wantRead: return (count, .drained)
            case .wantWrite: return (count, .wantsWrite)
            case .closed: return (count, .end)
            case .failed(let error): return (count, .failed(error))
            }
        }
        return (count, .spaceFull)
    }

    // MARK: Writing

    /// Encrypts and sends from `bytes` until all are sent or the socket must wait.
    /// - Returns: the bytes sent (0 before the handshake has completed).
    /// - Throws: the ``TLSError`` or ``IOError`` that ends the connection.
    func tlsTransmit(_ tls: TLSSession, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard outputMayProceed else { return 0 }
        var sent = 0
        while sent < bytes.count {
            switch tls.write(bytes.baseAddress! + sent, count: bytes.count - sent) {
            case .done(let count):
                sent += count
            case .wantWrite:
                return sent
            case .wantRead:
                tlsWriteWaitsForRead = true
                updateReading()
                return sent
            case .closed:
                throw ReactorError.alreadyClosed
            case .failed(let error):
                throw error
            }
        }
        return sent
    }

    /// Sends buffered output, then lets the connection react (writers, close_notify, a pending close).
    private func sendOutput(_ tls: TLSSession) {
        if !output.isEmpty {
            do {
                let sent = try output.withUnsafeReadableBytes { try tlsTransmit(tls, $0) }
                output.moveReaderIndex(forwardBy: sent)
                bytesSent &+= sent
                if sent > 0 { wroteProgress() }
            } catch {
                return finishClose(error)
            }
        }
        // Files are read and encrypted piece by piece once the bytes before them are out.
        if output.isEmpty && !queuedFiles.isEmpty && outputMayProceed {
            guard sendQueuedFile() else { return }
        }
        setWriting((!outputIsEmpty && outputMayProceed) || tlsReadWaitsForWrite)
        outputProgressed()
    }

    /// Sends `close_notify` once, before the FIN; true once it is sent (or cannot be: the peer is gone),
    /// false while it waits for the socket to drain (it is retried then). Always true without TLS.
    func closeNotify() -> Bool {
        guard let tls, !closeNotifySent else { return true }
        if case .wantWrite = tls.shutdown() {
            setWriting(true)
            // A peer that does not read must not keep a closing connection forever (its replies are all in
            // the kernel already, so no writeDeadline was armed).
            armWriteDeadline(state == .closing ? writeTimeout ?? lingerTimeout : writeTimeout)
            return false
        }
        closeNotifySent = true
        return true
    }
}
