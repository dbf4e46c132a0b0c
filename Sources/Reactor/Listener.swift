import Glibc

/// A listening TCP (IPv4 or IPv6) or Unix stream socket that accepts ``Connection``s on a loop; loop-bound.
///
/// Accepting goes through an ``Acceptor``: in batches, and when accepting fails for lack of descriptors
/// or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the listener reports the error, stops accepting,
/// and resumes after ``acceptBackoff`` or as soon as a connection on its loop closes, so a full
/// descriptor table never spins the loop.
///
/// With a ``TLSContext`` (``tls``), each connection is handed to `onAccept` once its handshake has
/// completed; a handshake that fails (or times out) closes only that connection, counts in
/// ``failedHandshakes`` and goes to ``onHandshakeError``.
///
/// Ownership: the listener owns its descriptor and its acceptor, and for a Unix address the socket file,
/// which it removes on ``close()`` if that file is still its own. An open listener keeps itself alive
/// (through its acceptor) until ``close()``.
public final class Listener {
    /// The loop the listener accepts on.
    public let loop: EventLoop
    /// The bound address; for port 0, the port the kernel chose.
    public let localAddress: SocketAddress
    /// The listening socket (owned).
    public let fileDescriptor: Int32
    /// How long to pause accepting after a resource error, unless a connection closes first.
    public var acceptBackoff: Duration {
        get { acceptor?.backoff ?? .milliseconds(100) }
        set { acceptor?.backoff = newValue }
    }
    /// Receives accept errors (each pause reports one). The default writes one line to standard error.
    public var onError: ((IOError) -> Void)?
    /// Whether the listener is currently accepting (false while paused and after close).
    public var isAccepting: Bool { acceptor?.isAccepting ?? false }
    /// TLS for the connections accepted from now on; `nil` serves plain TCP. Replace it to reload
    /// certificates: connections already open keep the context they started with.
    public var tls: TLSContext?
    /// Handshakes that failed or timed out so far.
    public private(set) var failedHandshakes = 0
    /// Receives each failed handshake's error (a ``TLSError`` with OpenSSL's reason, or an ``IOError``) and
    /// the client's address. The default does nothing: failed handshakes are routine on a public port.
    public var onHandshakeError: ((any Error, SocketAddress?) -> Void)?

    private let options: ListenOptions
    private var acceptor: Acceptor?
    private var onAccept: ((Connection) -> Void)?
    private var unixFile: UnixSocketFile?

    /// Most connections accepted per readiness callback, so one busy listener cannot starve the loop.
    static let acceptsPerWakeup = 64

    /// Binds, listens and starts accepting. Call on the loop thread.
    /// - Parameters:
    ///   - address: an IP address (port 0 picks a free port) or a Unix path.
    ///   - options: backlog and socket options.
    ///   - tls: a server context: each connection is handed on once its handshake has completed.
    ///   - loop: the loop that accepts; the listener belongs to it.
    ///   - onAccept: called on the loop thread with each accepted connection, which is already reading.
    /// - Throws: ``IOError`` if the socket cannot be created, bound or put in listening state (the socket is closed).
    public init(
        address: SocketAddress, options: ListenOptions = ListenOptions(), tls: TLSContext? = nil, on loop: EventLoop,
        onAccept: @escaping (Connection) -> Void
    ) throws {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.options = options
        self.tls = tls
        self.onAccept = onAccept
        let (fd, unixFile) = try Socket.bound(
            to: address, type: Socket.stream, reuseAddress: options.reuseAddress, reusePort: options.reusePort,
            ipv6Only: options.ipv6Only, unixPermissions: options.unixPermissions)
        do {
            try Posix.listen(fd, backlog: options.backlog)
            localAddress = try address.family == .unix ? address : SocketAddress.local(of: fd)
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
        fileDescriptor = fd
        self.unixFile = unixFile
        do {
            acceptor = try Acceptor(
                fileDescriptor: fd, on: loop, acceptsPerWakeup: Self.acceptsPerWakeup,
                accept: { [self] () throws(IOError) -> Bool in try acceptOne() },
                onPause: { [self] error in report(error) })
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
    }

    /// Accepts one connection and hands it on; false when none is waiting.
    private func acceptOne() throws(IOError) -> Bool {
        guard let fd = try Posix.accept(fileDescriptor) else { return false }
        if options.noDelay && localAddress.family != .unix { Socket.disableNagle(fd) }
        guard let tls else {
            if let connection = try? Connection(adopting: fd, on: loop, nonBlocking: true) { onAccept?(connection) }
            return true
        }
        // Out of memory for this one connection: it is closed, and accepting goes on.
        guard let connection = try? Connection(adopting: fd, on: loop, nonBlocking: true, tls: tls) else {
            return true
        }
        let peer = onHandshakeError != nil ? connection.remoteAddress : nil  // gone once a failure closed it
        connection.whenHandshakeCompletes { [weak self] error in
            if let error {
                self?.failedHandshakes += 1
                self?.onHandshakeError?(error, peer)
                return
            }
            // Closed meanwhile: nobody would serve it.
            guard let onAccept = self?.onAccept else { return connection.close() }
            onAccept(connection)
        }
        return true
    }

    private func report(_ error: IOError) {
        if let onError {
            onError(error)
        } else {
            reportToStandardError(
                "Reactor: accepting on \(localAddress): \(error); paused for \(acceptBackoff) or until a connection closes\n"
            )
        }
    }

    /// Stops accepting, closes the socket and removes its Unix socket file. Connections already
    /// accepted stay open. Safe to call more than once.
    public func close() {
        loop.preconditionInEventLoop()
        guard let acceptor else { return }
        self.acceptor = nil
        onAccept = nil
        acceptor.close()  // stops watching before the descriptor closes; it kept the listener alive
        Posix.close(fileDescriptor)
        unixFile?.remove()
    }
}
