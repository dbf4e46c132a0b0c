import Glibc

extension Connection {
    /// Opens a TCP or Unix stream connection without blocking the loop. Call on the loop thread.
    ///
    /// - Parameters:
    ///   - address: where to connect.
    ///   - loop: the loop the connection will belong to.
    ///   - timeout: fail with ``ReactorError/timedOut`` if not connected by then.
    ///   - completion: called once, on the loop thread, on a later pass of the loop (never before this returns),
    ///     with the open connection or an ``IOError`` such as `ECONNREFUSED`.
    public static func connect(
        to address: SocketAddress, on loop: EventLoop, timeout: Duration? = nil,
        _ completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        loop.preconditionInEventLoop()
        PendingConnect(address: address, loop: loop, timeout: timeout, tls: nil, completion: completion).start()
    }

    /// Opens a TLS connection without blocking the loop: connects, then completes the handshake (bounded
    /// by the context's handshake timeout) before `completion` runs. Call on the loop thread.
    ///
    /// - Parameters:
    ///   - address: where to connect.
    ///   - loop: the loop the connection will belong to.
    ///   - timeout: fail with ``ReactorError/timedOut`` if not connected by then (the handshake has its own).
    ///   - tls: a client context (``TLSContext/init(client:)``).
    ///   - serverName: sent as SNI and, when the context verifies peers, the name the server's certificate
    ///     must carry; by default the address's IP, which the certificate must then list.
    ///   - completion: as in ``connect(to:on:timeout:_:)``; a failed handshake is its ``TLSError``
    ///     (`"certificate verify failed: ..."`).
    public static func connect(
        to address: SocketAddress, on loop: EventLoop, timeout: Duration? = nil, tls: TLSContext,
        serverName: String? = nil, _ completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        loop.preconditionInEventLoop()
        PendingConnect(
            address: address, loop: loop, timeout: timeout, tls: (tls, serverName ?? address.host),
            completion: completion
        ).start()
    }

    /// Opens a TLS connection and completes its handshake; call from a task on `loop`.
    /// - Throws: ``IOError``, ``ReactorError/timedOut``, or the ``TLSError`` of a failed handshake.
    public static func connect(
        to address: SocketAddress, on loop: EventLoop, timeout: Duration? = nil, tls: TLSContext,
        serverName: String? = nil
    ) async throws -> Connection {
        let bound: LoopBound<Connection> = try await withUnsafeThrowingContinuation { continuation in
            connect(to: address, on: loop, timeout: timeout, tls: tls, serverName: serverName) { result in
                continuation.resume(with: result.map { LoopBound(value: $0) })
            }
        }
        return bound.value
    }

    /// Opens a TCP or Unix stream connection; call from a task on `loop`.
    /// - Throws: ``IOError`` (e.g. `ECONNREFUSED`) or ``ReactorError/timedOut``.
    public static func connect(to address: SocketAddress, on loop: EventLoop, timeout: Duration? = nil) async throws
        -> Connection
    {
        let bound: LoopBound<Connection> = try await withUnsafeThrowingContinuation { continuation in
            connect(to: address, on: loop, timeout: timeout) { result in
                continuation.resume(with: result.map { LoopBound(value: $0) })
            }
        }
        return bound.value
    }
}

/// One non-blocking `connect` in flight, then the connection (with TLS, after its handshake).
private final class PendingConnect {
    let loop: EventLoop
    let tls: (context: TLSContext, serverName: String?)?
    let completion: (Result<Connection, any Error>) -> Void
    var attempt: ConnectAttempt?

    init(
        address: SocketAddress, loop: EventLoop, timeout: Duration?, tls: (TLSContext, String?)?,
        completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        self.loop = loop
        self.tls = tls
        self.completion = completion
        attempt = ConnectAttempt(address: address, loop: loop, timeout: timeout) { [self] result in
            attempt = nil
            switch result {
            case .success(let fd): Connection.open(fd, on: loop, tls: self.tls, completion)
            case .failure(let error): completion(.failure(error))
            }
        }
    }

    func start() { attempt?.start() }
}

extension Connection {
    /// Makes a connected socket a connection and, with TLS, completes the handshake before `completion`.
    static func open(
        _ fd: Int32, on loop: EventLoop, tls: (context: TLSContext, serverName: String?)?,
        _ completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        guard let tls else { return completion(Result { try Connection(adopting: fd, on: loop, nonBlocking: true) }) }
        let connection: Connection
        do {
            connection = try Connection(
                adopting: fd, on: loop, nonBlocking: true, tls: tls.context, serverName: tls.serverName)
        } catch {
            return completion(.failure(error))  // the failed init closed the descriptor
        }
        connection.whenHandshakeCompletes { error in
            completion(error.map { .failure($0) } ?? .success(connection))
        }
    }
}

/// One non-blocking `connect(2)` to one address; loop-bound. Its event keeps it alive until it completes or is
/// cancelled. The completion gets the connected descriptor (its owner's from then on) or why it failed, always
/// from the loop, on a later pass.
final class ConnectAttempt {
    let address: SocketAddress
    let loop: EventLoop
    let timeout: Duration?
    private var completion: ((Result<Int32, any Error>) -> Void)?
    private var fd: Int32 = -1
    private var event: LoopEvent?
    private var failure: (any Error)?

    init(
        address: SocketAddress, loop: EventLoop, timeout: Duration?,
        completion: @escaping (Result<Int32, any Error>) -> Void
    ) {
        self.address = address
        self.loop = loop
        self.timeout = timeout
        self.completion = completion
    }

    var isPending: Bool { completion != nil }

    func start() {
        do {
            fd = try Posix.socket(domain: address.family.rawValue, type: Socket.stream)
            if address.family != .unix { Socket.disableNagle(fd) }
            _ = try Posix.connect(fd, to: address)
        } catch {
            failure = error
        }
        // Completion always comes from the loop, even for an immediate failure.
        let event: LoopEvent
        do {
            event = try LoopEvent(
                loop: loop, fileDescriptor: fd, watching: .writable, persistent: false
            ) { [self] fired in finish(timedOut: fired.contains(.timeout)) }
        } catch {
            if fd >= 0 { Posix.close(fd) }
            fd = -1
            let completion = LoopBound(value: self.completion)
            self.completion = nil
            return loop.execute { completion.value?(.failure(error)) }
        }
        self.event = event
        if failure != nil || fd < 0 {
            event.activate(.writable)
        } else {
            event.add(timeout: timeout)
        }
    }

    /// Abandons the attempt: closes its socket; the completion never runs.
    func cancel() {
        event?.free()
        event = nil
        completion = nil
        if fd >= 0 { Posix.close(fd) }
        fd = -1
    }

    private func finish(timedOut: Bool) {
        event?.free()
        event = nil
        if failure == nil {
            if timedOut {
                failure = ReactorError.timedOut
            } else {
                do {
                    let code = try Posix.getSocketError(fd)
                    if code != 0 { failure = IOError(errnoCode: code, operation: "connect \(address)") }
                } catch {
                    failure = error
                }
            }
        }
        let completion = self.completion
        self.completion = nil
        let fd = self.fd
        self.fd = -1
        if let failure {
            if fd >= 0 { Posix.close(fd) }
            completion?(.failure(failure))
        } else if let completion {
            completion(.success(fd))
        } else {
            Posix.close(fd)
        }
    }
}
