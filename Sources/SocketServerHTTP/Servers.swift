import Glibc
import Protocols
import Reactor
import SocketServer

/// An HTTP server: Python's `http.server.HTTPServer`, a `TCPServer` whose connections are
/// served by a ``BaseHTTPRequestHandler``, sequentially unless another mode is given.
///
/// `allowReuseAddress` is on, as in Python. The handler comes from a type (`handler: Hello.self`, made
/// with `init()`) or a factory closure, Python's `functools.partial`:
/// `HTTPServer(address, handler: { SimpleHTTPRequestHandler(directory: "/srv/www") })`.
open class HTTPServer: TCPServer, HTTPServing, @unchecked Sendable {
    open override class var allowReuseAddress: Bool { true }
    open override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }

    /// How connections are served: the handler factory, the limits, keep-alive.
    public let http: HTTPService

    /// The host part of the bound address (Python's `server_name`), or the Unix path.
    public var serverName: String { serverAddress.host ?? serverAddress.path ?? "" }
    /// The bound port (Python's `server_port`); 0 for a Unix socket.
    public var serverPort: Int { serverAddress.port ?? 0 }

    /// A server in the mode of `mixIn` (sequential by default) whose handlers `makeHandler` makes.
    /// - Throws: `ServerError/wrongAddressFamily(_:)`, or the `IOError` of a failed bind or listen.
    public init(
        _ address: SocketAddress, mixIn: ProcessingMixIn = ProcessingMixIn(), bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil,
        handler makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler
    ) throws {
        http = HTTPService(makeHandler: makeHandler)
        try super.init(
            address, requestHandler: HTTPService.requestHandler(for: mixIn), mixIn: mixIn,
            bindAndActivate: bindAndActivate, loop: loop, group: group)
    }

    /// A server on a socket already bound and listening: one passed by systemd's socket activation or by the
    /// process this one replaces (see `TCPServer.init(adopting:requestHandler:mixIn:loop:group:)`).
    /// - Throws: `ServerError/wrongAddressFamily(_:)`, or an `IOError` when the socket has no address.
    public init(
        adopting socket: Socket, mixIn: ProcessingMixIn = ProcessingMixIn(), loop: EventLoop? = nil,
        group: LoopGroup? = nil, handler makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler
    ) throws {
        http = HTTPService(makeHandler: makeHandler)
        try super.init(
            adopting: socket, requestHandler: HTTPService.requestHandler(for: mixIn), mixIn: mixIn, loop: loop,
            group: group)
    }

    /// A server with the HTTP configuration `http`, whatever kind of handler it makes (the reactor server's
    /// async handlers come through here).
    init(
        _ address: SocketAddress, mixIn: ProcessingMixIn, bindAndActivate: Bool, loop: EventLoop?,
        group: LoopGroup? = nil, http: HTTPService
    ) throws {
        self.http = http
        try super.init(
            address, requestHandler: HTTPService.requestHandler(for: mixIn), mixIn: mixIn,
            bindAndActivate: bindAndActivate, loop: loop, group: group)
    }

    /// A server in the mode of `mixIn` (sequential by default) serving each connection with a new `handler`.
    public convenience init(
        _ address: SocketAddress, handler: BaseHTTPRequestHandler.Type, mixIn: ProcessingMixIn = ProcessingMixIn(),
        bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        try self.init(address, mixIn: mixIn, bindAndActivate: bindAndActivate, loop: loop) { handler.init() }
    }

    /// Python's `server_close`, then the files kept open for the next request are let go
    /// (``HTTPService/closeOpenFiles()``).
    open override func serverClose() {
        super.serverClose()
        http.closeOpenFiles()
    }
}

/// An HTTP server with a thread per connection: Python's `ThreadingHTTPServer` (daemon threads, as Python's).
open class ThreadingHTTPServer: HTTPServer, ThreadingServer, @unchecked Sendable {
    /// The server's mode.
    public let threading: ThreadingMixIn

    public init(
        _ address: SocketAddress, bindAndActivate: Bool = true, loop: EventLoop? = nil,
        handler makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler
    ) throws {
        threading = ThreadingMixIn()
        threading.daemonThreads = true
        try super.init(address, mixIn: threading, bindAndActivate: bindAndActivate, loop: loop, handler: makeHandler)
    }

    public convenience init(
        _ address: SocketAddress, handler: BaseHTTPRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        try self.init(address, bindAndActivate: bindAndActivate, loop: loop) { handler.init() }
    }
}

/// An HTTP server with a child process per connection (Python has no `ForkingHTTPServer`; it is
/// `ForkingMixIn` with `HTTPServer`).
open class ForkingHTTPServer: HTTPServer, ForkingServer, @unchecked Sendable {
    /// The server's mode.
    public let forking: ForkingMixIn

    public init(
        _ address: SocketAddress, bindAndActivate: Bool = true, loop: EventLoop? = nil,
        handler makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler
    ) throws {
        forking = ForkingMixIn()
        try super.init(address, mixIn: forking, bindAndActivate: bindAndActivate, loop: loop, handler: makeHandler)
    }

    public convenience init(
        _ address: SocketAddress, handler: BaseHTTPRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        try self.init(address, bindAndActivate: bindAndActivate, loop: loop) { handler.init() }
    }
}

/// An HTTP server serving every connection on its loop thread, the mode Python never had: the same
/// handlers, no thread per client, files sent as clients read them.
open class ReactorHTTPServer: HTTPServer, @unchecked Sendable {
    /// The server's mode.
    public let reactor: ReactorMixIn

    public init(
        _ address: SocketAddress, bindAndActivate: Bool = true, loop: EventLoop? = nil, group: LoopGroup? = nil,
        handler makeHandler: @escaping @Sendable () -> BaseHTTPRequestHandler
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, mixIn: reactor, bindAndActivate: bindAndActivate, loop: loop, group: group, handler: makeHandler)
    }

    public convenience init(
        _ address: SocketAddress, handler: BaseHTTPRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        try self.init(address, bindAndActivate: bindAndActivate, loop: loop, group: group) { handler.init() }
    }

    /// A server whose handlers' `do` methods may await (``AsyncHTTPRequestHandler``): each request's runs in
    /// a task on the loop while the loop serves other connections.
    public init(
        _ address: SocketAddress, bindAndActivate: Bool = true, loop: EventLoop? = nil, group: LoopGroup? = nil,
        handler makeHandler: @escaping @Sendable () -> AsyncHTTPRequestHandler
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, mixIn: reactor, bindAndActivate: bindAndActivate, loop: loop, group: group,
            http: HTTPService(makeHandler: makeHandler))
    }

    /// A server of `AsyncHTTPRequestHandler`s of type `handler`.
    public convenience init(
        _ address: SocketAddress, handler: AsyncHTTPRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        try self.init(address, bindAndActivate: bindAndActivate, loop: loop, group: group) { handler.init() }
    }
}
