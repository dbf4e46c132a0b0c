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

/// One non-blocking `connect` in flight; its event keeps it alive until it completes.
private final class PendingConnect {
    let address: SocketAddress
    let loop: EventLoop
    let timeout: Duration?
    let tls: (context: TLSContext, serverName: String?)?
    var completion: ((Result<Connection, any Error>) -> Void)?
    var fd: Int32 = -1
    var event: LoopEvent?
    var failure: (any Error)?

    init(
        address: SocketAddress, loop: EventLoop, timeout: Duration?, tls: (TLSContext, String?)?,
        completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        self.address = address
        self.loop = loop
        self.timeout = timeout
        self.tls = tls
        self.completion = completion
    }

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

    func finish(timedOut: Bool) {
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
        if let failure {
            if fd >= 0 { Posix.close(fd) }
            completion?(.failure(failure))
        } else if let tls, let completion {
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
        } else {
            completion?(Result { try Connection(adopting: fd, on: loop, nonBlocking: true) })
        }
    }
}
