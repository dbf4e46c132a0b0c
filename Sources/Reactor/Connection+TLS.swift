/// What moves a ``Connection``'s bytes (libevent splits its socket and OpenSSL bufferevents the same way). The
/// connection keeps the buffers, the interest in each direction, the deadlines and the closing; the transport
/// reads, writes and says what it waits for.
enum Transport {
    /// System calls on the socket: `read`, `send`, `sendfile`.
    case plain
    /// OpenSSL over the socket.
    case tls(TLSTransport)

    /// Whether file regions go to the socket with `sendfile(2)` (else through memory, to be encrypted).
    var sendsFiles: Bool {
        if case .plain = self { return true }
        return false
    }

    /// Input already decrypted or buffered inside OpenSSL, which the socket's readiness cannot show.
    var hasPendingInput: Bool {
        guard case .tls(let tls) = self else { return false }
        return tls.session.hasPendingInput
    }

    /// A TLS read waits for the socket to be writable.
    var readWaitsForWrite: Bool {
        guard case .tls(let tls) = self else { return false }
        return tls.readWaitsForWrite
    }

    /// When the TLS handshake times out; `nil` without TLS or once it completed.
    var handshakeDeadline: UInt64? {
        guard case .tls(let tls) = self else { return nil }
        return tls.handshakeDeadline
    }
}

/// TLS under a ``Connection``: OpenSSL's state, and what each direction waits for. OpenSSL may need the
/// other direction than the call's (a read that must first send, a write that must first receive): the
/// connection then watches that direction and retries the call when it is ready. Loop-bound.
final class TLSTransport {
    let session: TLSSession
    /// A read that must wait for the socket to be writable (OpenSSL has to send first).
    @exclusivity(unchecked) var readWaitsForWrite = false
    /// A write that must wait for the socket to be readable.
    @exclusivity(unchecked) var writeWaitsForRead = false
    /// `close_notify` was sent (or could not be: the peer was gone).
    @exclusivity(unchecked) var closeNotifySent = false
    /// The handshake must send before it can go on.
    @exclusivity(unchecked) var handshakeWaitsForWrite = false
    /// When the handshake times out; `nil` once it completed.
    @exclusivity(unchecked) var handshakeDeadline: UInt64?
    /// Told once when the handshake completes (`nil`) or the connection closes before it does.
    @exclusivity(unchecked) var handshakeObservers: [((any Error)?) -> Void] = []

    init(session: TLSSession) {
        self.session = session
    }

    /// Whether buffered output may be sent once the socket is writable: once the handshake has completed,
    /// unless a write waits for the socket to be readable.
    var mayWrite: Bool { session.isHandshakeComplete && !writeWaitsForRead }

    /// Whether to watch the socket for readability, given whether the connection wants input: during the
    /// handshake, unless it must send first; after it, for wanted input unless a read waits to send first
    /// (the socket would be readable on every pass), and for a write that waits to receive.
    func watchesReadable(_ wantsInput: Bool) -> Bool {
        guard session.isHandshakeComplete else { return !handshakeWaitsForWrite }
        return (wantsInput && !readWaitsForWrite) || writeWaitsForRead
    }

    /// Decrypts into `space` until it is full or OpenSSL has nothing more without waiting for the socket.
    func read(into space: UnsafeMutableRawPointer, capacity: Int) -> (Int, Connection.InputStop) {
        var count = 0
        while count < capacity {
            switch session.read(into: space + count, count: capacity - count) {
            case .done(let read):
                count += read
                // Nothing buffered: the next read would only find an empty socket (one system call saved).
                if !session.hasPendingInput { return (count, .drained) }
            case .wantRead: return (count, .drained)
            case .wantWrite:
                readWaitsForWrite = true
                return (count, .wantsWrite)
            case .closed: return (count, .end)
            case .failed(let error): return (count, .failed(error))
            }
        }
        return (count, .spaceFull)
    }

    /// Encrypts and sends from `bytes` until all are sent or the socket must wait (a write that must first
    /// receive sets ``writeWaitsForRead``).
    /// - Returns: the bytes sent (0 before the handshake has completed).
    /// - Throws: the ``TLSError`` or ``IOError`` that ends the connection.
    func write(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard mayWrite else { return 0 }
        var sent = 0
        while sent < bytes.count {
            switch session.write(bytes.baseAddress! + sent, count: bytes.count - sent) {
            case .done(let count):
                sent += count
            case .wantWrite:
                return sent
            case .wantRead:
                writeWaitsForRead = true
                return sent
            case .closed:
                throw ReactorError.alreadyClosed
            case .failed(let error):
                throw error
            }
        }
        return sent
    }
}

/// TLS on a ``Connection``: the handshake, readiness in either direction, and `close_notify`.
extension Connection {
    /// Waits until the TLS handshake has completed; returns at once without TLS or once it has. Call from
    /// a task on the connection's loop.
    /// - Throws: the error the connection closed with before the handshake completed (a ``TLSError`` such
    ///   as ``TLSError/handshakeFailed(_:)`` or ``TLSError/handshakeTimedOut``, or an ``IOError``).
    public func handshake() async throws {
        loop.preconditionInEventLoop()
        guard case .tls(let tls) = transport, tlsInfo == nil else {
            if usesTLS && tlsInfo == nil { throw closeError ?? ReactorError.alreadyClosed }  // closed before it
            return
        }
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            tls.handshakeObservers.append { error in
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
        guard case .tls(let tls) = transport else { return body(closeError ?? ReactorError.alreadyClosed) }
        tls.handshakeObservers.append(body)
    }

    /// Whether the TLS handshake has completed (always true without TLS).
    public var isHandshakeComplete: Bool { !usesTLS || tlsInfo != nil }

    /// Arms the handshake timeout; a client sends its hello once the socket is writable (the loop's next pass).
    /// Nagle's algorithm goes off: a handshake's last flight and the first reply leave as separate writes,
    /// and the second would wait for the peer's delayed ACK (40 ms on Linux).
    func startTLS(_ tls: TLSTransport) {
        Socket.disableNagle(fileDescriptor)
        let session = tls.session
        if session.isHandshakeComplete {  // adopted from a blocking Socket after its handshake
            if tlsInfo == nil { tlsInfo = session.info() }
            return
        }
        tls.handshakeDeadline = Connection.now() &+ session.context.configuration.handshakeTimeout.nanoseconds
        updateDeadlineTimer()
        // A client speaks first; a handshake begun on a blocking socket may be waiting to send.
        if session.context.role == .client || session.handshakeBegan { setWriting(true) }
    }

    // MARK: Readiness

    func tlsReadable(_ tls: TLSTransport) {
        guard tls.session.isHandshakeComplete else { return advanceHandshake(tls) }
        if tls.writeWaitsForRead {
            tls.writeWaitsForRead = false
            sendOutput(tls)
            guard state != .closed else { return }
            updateReading()
        }
        if !tls.readWaitsForWrite && wantsInput { receive() }
    }

    func tlsWritable(_ tls: TLSTransport) {
        guard tls.session.isHandshakeComplete else { return advanceHandshake(tls) }
        if tls.readWaitsForWrite {
            tls.readWaitsForWrite = false
            if wantsInput { receive() }
            guard state != .closed else { return }
            updateReading()
        }
        sendOutput(tls)
    }

    // MARK: The handshake

    private func advanceHandshake(_ tls: TLSTransport) {
        switch tls.session.handshake() {
        case .done:
            tls.handshakeDeadline = nil
            updateDeadlineTimer()
            tlsInfo = tls.session.info()
            tls.handshakeWaitsForWrite = false
            setWriting(false)
            let observers = tls.handshakeObservers
            tls.handshakeObservers = []
            for observer in observers { observer(nil) }
            delegate?.connectionDidCompleteHandshake(self)
            guard state != .closed else { return }
            // What was written meanwhile goes now, and a shutdownOutput() or close() asked for goes on.
            sendOutput(tls)
            guard state != .closed else { return }
            updateReading()
            // Application data that came with the handshake's last flight is already inside OpenSSL.
            if reading && wantsInput && tls.session.hasPendingInput { receive() }
        case .wantRead:
            tls.handshakeWaitsForWrite = false
            setWriting(false)
            updateReading()
        case .wantWrite:
            tls.handshakeWaitsForWrite = true
            setWriting(true)
            updateReading()
        case .closed:
            finishClose(TLSError.closedDuringHandshake)
        case .failed(let error):
            finishClose(error)
        }
    }

    // MARK: Writing

    /// Sends buffered output, then lets the connection react (writers, close_notify, a pending close).
    private func sendOutput(_ tls: TLSTransport) {
        if !output.isEmpty {
            do {
                let sent = try output.withUnsafeReadableBytes { try transmit($0) }
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
        setWriting((!outputIsEmpty && outputMayProceed) || tls.readWaitsForWrite)
        outputProgressed()
    }

    /// Sends `close_notify` once, before the FIN; true once it is sent (or cannot be: the peer is gone),
    /// false while it waits for the socket to drain (it is retried then). Always true without TLS.
    func closeNotify() -> Bool {
        guard case .tls(let tls) = transport, !tls.closeNotifySent else { return true }
        if case .wantWrite = tls.session.shutdown() {
            setWriting(true)
            // A peer that does not read must not keep a closing connection forever (its replies are all in
            // the kernel already, so no writeDeadline was armed).
            armWriteDeadline(state == .closing ? writeTimeout ?? lingerTimeout : writeTimeout)
            return false
        }
        tls.closeNotifySent = true
        return true
    }
}
