import Glibc
import Reactor
import Synchronization

/// A stream server over TCP (IPv4 or IPv6, from the address): Python's `TCPServer`.
///
/// The constructor creates the socket and, with `bindAndActivate`, calls ``serverBind()`` and
/// ``serverActivate()``; if either fails the socket is closed before the error propagates.
/// Class attributes (override as `class var`): `requestQueueSize` (5), `allowReuseAddress` (false),
/// `allowReusePort` (false), `unixSocketPermissions` (`0o600`), ``addressFamilies``, ``socketKind``; each is copied to an instance
/// property of the same name that may be changed before binding.
///
/// With ``tls`` set, every mode serves TLS (Python leaves it to an override of `get_request` that wraps the
/// accepted socket). The handshake never runs in the accept loop, where one slow client would stall
/// `serve_forever` (Python's classic pitfall with `wrap_socket` in `get_request`): in threading and forking
/// modes it runs in the request's thread or child, in sequential mode in `finishRequest` on the serving
/// thread (which serves one client at a time anyway), in reactor mode on the loop, next to every other
/// connection. The handler starts once the handshake has completed, `rfile` and `wfile` read and write
/// plaintext, and a failed or timed-out handshake goes to ``BaseServer/handleError(_:clientAddress:error:)`` as a
/// `TLSError` with OpenSSL's reason.
open class TCPServer: BaseServer, @unchecked Sendable {
    /// The families this server accepts.
    open class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6] }
    /// Stream or datagram.
    open class var socketKind: Socket.Kind { .stream }
    /// The default backlog passed to `listen`.
    open class var requestQueueSize: Int32 { 5 }
    /// Whether to set `SO_REUSEADDR` before binding by default. False, as Python's `TCPServer`: a server restarted
    /// while connections of its previous run are in `TIME_WAIT` then fails to bind (`EADDRINUSE`) for up to a
    /// minute. `HTTPServer` sets it, as Python's does; a daemon that restarts should override it to true.
    open class var allowReuseAddress: Bool { false }
    /// Whether to set `SO_REUSEPORT` before binding by default (IP families only).
    open class var allowReusePort: Bool { false }
    /// The permission bits of a Unix socket file by default: `0o600`, only the owner may connect.
    open class var unixSocketPermissions: mode_t { 0o600 }

    /// The server's socket.
    public let socket: Socket
    /// The backlog passed to `listen` by ``serverActivate()``.
    public var requestQueueSize: Int32 = 5
    /// Set `SO_REUSEADDR` in ``serverBind()`` (see `class var allowReuseAddress`: false by default, so a restart
    /// can fail on `TIME_WAIT`); change it before binding (`bindAndActivate: false`).
    public var allowReuseAddress = false
    /// Set `SO_REUSEPORT` in ``serverBind()`` (IP families only).
    public var allowReusePort = false
    /// Set `IPV6_V6ONLY` in ``serverBind()``: an IPv6 server then refuses IPv4 clients. Default false: on `::`
    /// the server is dual stack, as Python's `AF_INET6` servers are on Linux, whatever `net.ipv6.bindv6only` says.
    public var ipv6Only = false
    /// The permission bits ``serverBind()`` gives a Unix socket file, before listening (so no one
    /// connects earlier); connecting needs write permission.
    public var unixSocketPermissions: mode_t = 0o600
    /// The family of ``BaseServer/serverAddress``.
    public var addressFamily: SocketAddress.Family { serverAddress.family }
    /// TLS for the connections accepted from now on (stream servers only); `nil` serves plain bytes.
    /// Thread-safe: replace it at any time to reload certificates; connections already open keep theirs.
    public var tls: TLSContext? {
        get { tlsContext.withLock { $0 } }
        set {
            precondition(newValue == nil || Self.socketKind == .stream, "\(Self.self): TLS needs a stream server")
            precondition(newValue?.role != .client, "\(Self.self): a server needs a server TLSContext")
            tlsContext.withLock { $0 = newValue }
        }
    }
    private let tlsContext = Mutex<TLSContext?>(nil)
    /// How long ``shutdownRequest(_:)`` may wait for a blocking connection's replies to be delivered
    /// when its client sent input that was never read. Default 2 s; zero closes at once.
    public var lingerTimeout: Duration = .seconds(2)

    /// A sequential server with a blocking handler.
    /// - Throws: ``ServerError/wrongAddressFamily(_:)``, or the `IOError` of a failed bind or listen.
    public convenience init(
        _ serverAddress: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        try self.init(
            serverAddress, requestHandler: .blocking(handler), mixIn: ProcessingMixIn(),
            bindAndActivate: bindAndActivate, loop: loop)
    }

    /// A server in any mode; in reactor mode, with `group`, its connections are served on the group's loops
    /// (``BaseServer/group``).
    /// - Throws: ``ServerError/wrongAddressFamily(_:)``, ``ServerError/handlerDoesNotMatchMode(_:)``, or the
    ///   `IOError` of a failed bind or listen (the socket is then closed).
    public init(
        _ serverAddress: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn,
        bindAndActivate: Bool = true, loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        guard Self.addressFamilies.contains(serverAddress.family) else {
            throw ServerError.wrongAddressFamily("\(Self.self) serves \(Self.addressFamilies), not \(serverAddress)")
        }
        if let mismatch = requestHandler.mismatch(with: Self.socketKind) {
            throw ServerError.handlerDoesNotMatchMode("\(Self.self): \(mismatch)")
        }
        socket = try Socket(family: serverAddress.family, kind: Self.socketKind, nonBlocking: true)
        try super.init(
            serverAddress: serverAddress, requestHandler: requestHandler, mixIn: mixIn, loop: loop, group: group)
        requestQueueSize = Self.requestQueueSize
        allowReuseAddress = Self.allowReuseAddress
        allowReusePort = Self.allowReusePort
        unixSocketPermissions = Self.unixSocketPermissions
        if bindAndActivate {
            do {
                try serverBind()
                try serverActivate()
            } catch {
                serverClose()
                throw error
            }
        }
    }

    /// A server on a socket that is already bound (and, for a stream server, listening): one passed by
    /// systemd's socket activation (`LISTEN_FDS`) or by a parent process. ``serverBind()`` and
    /// ``serverActivate()`` are not called; ``BaseServer/serverAddress`` is the socket's address. The server
    /// owns the socket and closes it in ``serverClose()``; it never removes a Unix socket file it did not bind.
    /// Python reaches the same with `bind_and_activate=False` and `server.socket = socket.socket(fileno=fd)`.
    /// - Throws: ``ServerError/wrongAddressFamily(_:)``, ``ServerError/handlerDoesNotMatchMode(_:)``, or an
    ///   `IOError` when the socket has no address.
    public init(
        adopting socket: Socket, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, loop: EventLoop? = nil,
        group: LoopGroup? = nil
    ) throws {
        guard let address = socket.localAddress else {
            throw IOError(errnoCode: ENOTCONN, operation: "getsockname of the adopted socket")
        }
        guard Self.addressFamilies.contains(address.family) else {
            throw ServerError.wrongAddressFamily("\(Self.self) serves \(Self.addressFamilies), not \(address)")
        }
        if let mismatch = requestHandler.mismatch(with: Self.socketKind) {
            throw ServerError.handlerDoesNotMatchMode("\(Self.self): \(mismatch)")
        }
        self.socket = socket
        try super.init(serverAddress: address, requestHandler: requestHandler, mixIn: mixIn, loop: loop, group: group)
        requestQueueSize = Self.requestQueueSize
        allowReuseAddress = Self.allowReuseAddress
        allowReusePort = Self.allowReusePort
        unixSocketPermissions = Self.unixSocketPermissions
    }

    open override var fileno: Int32 { socket.fileDescriptor }

    /// Sets the reuse options and binds; ``BaseServer/serverAddress`` becomes the bound address.
    open override func serverBind() throws {
        if serverAddress.family != .unix {
            if allowReuseAddress { try socket.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1) }
            if allowReusePort { try socket.setOption(level: SOL_SOCKET, name: SO_REUSEPORT, value: 1) }
            if serverAddress.family == .ipv6 {
                try socket.setOption(level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: ipv6Only ? 1 : 0)
            }
        }
        try socket.bind(to: serverAddress, unixPermissions: unixSocketPermissions)
        if serverAddress.family != .unix, let bound = socket.localAddress { serverAddress = bound }
    }

    /// Listens with `requestQueueSize`.
    open override func serverActivate() throws {
        try socket.listen(backlog: requestQueueSize)
    }

    /// Closes the socket (a Unix server also removes its socket file), then lets the mode finish, as Python's
    /// `server_close` does: new clients are refused at once instead of waiting in the backlog while request
    /// threads, children or reactor handlers finish.
    open override func serverClose() {
        stopServing()  // the accept watcher goes before its descriptor
        socket.close()
        super.serverClose()
        finishLingeringCloses()
    }

    /// The sequential mode's lingering closes (``shutdownRequest(_:)``), at ``serverClose()``: unless the loop
    /// is running (they end on it), waited for (each ends within ``lingerTimeout``) when
    /// ``ProcessingMixIn/blockOnClose`` is set, then any left are reset.
    private func finishLingeringCloses() {
        guard !mixIn.handlesAsync, !loop.isRunning else { return }
        openRequests.finishClosing(on: loop, within: lingerTimeout + .seconds(1), wait: mixIn.blockOnClose)
    }

    /// Accepts one connection: a blocking socket for the blocking modes, straight into a loop `Connection`
    /// for the reactor (on a ``BaseServer/group``, a non-blocking socket the mode hands to a loop of the group).
    /// With ``tls``, TLS is started on it; its handshake runs later (see the class).
    open override func getRequest() throws -> (Request, SocketAddress)? {
        let tls = self.tls
        // A PROXY protocol header is read from the socket before it becomes a loop connection (which reads at once).
        if mixIn.handlesAsync && group == nil && !proxyProtocol {
            guard let (connection, address) = try socket.acceptConnection(on: loop, tls: tls) else { return nil }
            return (.connection(connection), address ?? .unnamedUnix)
        }
        guard let (connection, address) = try socket.accept(nonBlocking: mixIn.handlesAsync) else { return nil }
        if let tls {
            do {
                try connection.startTLS(tls)
            } catch {
                connection.close()
                throw error  // a TLSError (out of memory): logged, and the next client is accepted
            }
        }
        return (.stream(connection), address ?? .unnamedUnix)
    }

    /// Shuts down the sending side (`shutdown(SHUT_WR)`), then ``closeRequest(_:)``.
    ///
    /// Closing a socket whose peer sent input nobody read makes the kernel answer with a reset that
    /// destroys replies not yet delivered. So when input is waiting, the close lingers: input is read and
    /// dropped until the client closes or ``lingerTimeout`` passes. In sequential mode that runs on the
    /// server's loop (the socket becomes a loop `Connection`, `Socket.closeLingering(on:timeout:)`), so the
    /// one serving thread goes on to the next request at once; ``serverClose()`` waits for those still
    /// lingering, at most ``lingerTimeout`` and a second, and resets any left (with
    /// ``ProcessingMixIn/blockOnClose`` false, at once; while the loop runs, they end on it). A request thread or
    /// child lingers itself, blocking, until its replies are delivered too (the send queue is empty); a
    /// reactor connection lingers on the loop (`Connection.lingerTimeout`).
    open override func shutdownRequest(_ request: Request) {
        switch request {
        case .stream(let socket):
            try? socket.shutdown(.write)
            // On a loop thread (the server's, or a group's, where a PROXY header was refused), linger on that loop.
            let current = loop.inEventLoop ? loop : group?.loops.first { $0.inEventLoop }
            if mixIn.lingersOnTheLoop, let current {
                if let closing = socket.closeLingering(on: current, timeout: lingerTimeout) {
                    openRequests(on: current).release(closing)
                }
            } else {
                socket.lingerBeforeClose(timeout: lingerTimeout)
            }
        case .connection(let connection): connection.shutdownOutput()
        case .datagram: break
        }
        closeRequest(request)
    }

    /// A stream server closes its listening socket when a drain starts: new clients are refused at once.
    /// (A datagram server's socket still carries the replies of the requests in progress.)
    override func stopAccepting() {
        if Self.socketKind == .stream { socket.close() }
    }

    /// Closes the connection (a reactor connection sends what is buffered first, staying in the server's registry
    /// of open connections until it has closed, for ``serverClose()`` and a drain to finish).
    open override func closeRequest(_ request: Request) {
        switch request {
        case .stream(let socket): socket.close()
        case .connection(let connection):
            connection.close()
            // Until its last bytes are sent (a refused one's, say); a callback handler's is closed already here.
            if !connection.isClosed { openRequests(on: connection.loop).release(connection) }
        case .datagram: break
        }
    }
}
