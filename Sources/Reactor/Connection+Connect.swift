import CLibevent
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
    public static func connect(to address: SocketAddress, on loop: EventLoop, timeout: Duration? = nil) async throws -> Connection {
        let bound: LoopBound<Connection> = try await withUnsafeThrowingContinuation { continuation in
            connect(to: address, on: loop, timeout: timeout) { result in
                continuation.resume(with: result.map { LoopBound(value: $0) })
            }
        }
        return bound.value
    }
}

/// One non-blocking `connect` in flight; keeps itself alive until it completes.
private final class PendingConnect {
    let address: SocketAddress
    let loop: EventLoop
    let timeout: Duration?
    var completion: ((Result<Connection, any Error>) -> Void)?
    var fd: Int32 = -1
    var event: OpaquePointer?
    var failure: (any Error)?
    var retainedSelf: Unmanaged<PendingConnect>?

    init(address: SocketAddress, loop: EventLoop, timeout: Duration?, completion: @escaping (Result<Connection, any Error>) -> Void) {
        self.address = address
        self.loop = loop
        self.timeout = timeout
        self.completion = completion
    }

    func start() {
        retainedSelf = Unmanaged.passRetained(self)
        do {
            fd = try Posix.socket(domain: address.family.rawValue, type: Socket.stream)
            if address.family != .unix { Socket.disableNagle(fd) }
            let result = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if result != 0 && errno != EINPROGRESS && errno != EINTR {
                failure = IOError(errnoCode: errno, operation: "connect \(address)")
            }
        } catch {
            failure = error
        }
        // Completion always comes from the loop, even for an immediate failure.
        event = event_new(loop.base, fd, Int16(EV_WRITE), { _, what, context in
            let pending = Unmanaged<PendingConnect>.fromOpaque(context!).takeUnretainedValue()
            pending.loop.withCallbackScope { pending.finish(timedOut: what & Int16(EV_TIMEOUT) != 0) }
        }, Unmanaged.passUnretained(self).toOpaque())
        precondition(event != nil, "event_new failed: out of memory")
        if failure != nil || fd < 0 {
            event_active(event, Int32(EV_WRITE), 0)
        } else if let timeout {
            var tv = timeval(timeout)
            event_add(event, &tv)
        } else {
            event_add(event, nil)
        }
    }

    func finish(timedOut: Bool) {
        event_free(event)
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
        retainedSelf?.release()
        retainedSelf = nil
    }
}
