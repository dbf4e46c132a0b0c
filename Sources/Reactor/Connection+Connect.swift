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
        PendingConnect(address: address, loop: loop, timeout: timeout, completion: completion).start()
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
    var completion: ((Result<Connection, any Error>) -> Void)?
    var fd: Int32 = -1
    var event: LoopEvent?
    var failure: (any Error)?

    init(
        address: SocketAddress, loop: EventLoop, timeout: Duration?,
        completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        self.address = address
        self.loop = loop
        self.timeout = timeout
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
        } else {
            completion?(Result { try Connection(adopting: fd, on: loop, nonBlocking: true) })
        }
    }
}
