import Glibc
import Reactor

// Python's combined names: a server class with its mode set. One file, because each is three lines.
//
// Each declares designated initializers of its own, so it inherits none of its superclass's: a
// `ReactorTCPServer` cannot be made with a blocking handler (it would have served one client at a time),
// nor a `ThreadingTCPServer` with another mode. What the types cannot refuse (a datagram handler on a stream
// server) `TCPServer.init` refuses with `ServerError.handlerDoesNotMatchMode`.

/// A server in threading mode: ``daemonThreads`` and ``blockOnClose`` forward to its ``ThreadingMixIn``.
public protocol ThreadingServer: BaseServer {
    /// The server's ``ThreadingMixIn``, the same object as its ``BaseServer/mixIn``.
    var threading: ThreadingMixIn { get }
}

extension ThreadingServer {
    /// See ``ThreadingMixIn/daemonThreads``.
    public var daemonThreads: Bool {
        get { threading.daemonThreads }
        set { threading.daemonThreads = newValue }
    }
    /// See ``ProcessingMixIn/blockOnClose``.
    public var blockOnClose: Bool {
        get { threading.blockOnClose }
        set { threading.blockOnClose = newValue }
    }
}

/// A server in forking mode: ``maxChildren``, ``blockOnClose`` and ``activeChildren`` forward to its ``ForkingMixIn``.
public protocol ForkingServer: BaseServer {
    /// The server's ``ForkingMixIn``, the same object as its ``BaseServer/mixIn``.
    var forking: ForkingMixIn { get }
}

extension ForkingServer {
    /// See ``ForkingMixIn/maxChildren``.
    public var maxChildren: Int {
        get { forking.maxChildren }
        set { forking.maxChildren = newValue }
    }
    /// See ``ProcessingMixIn/blockOnClose``.
    public var blockOnClose: Bool {
        get { forking.blockOnClose }
        set { forking.blockOnClose = newValue }
    }
    /// See ``ForkingMixIn/activeChildren``.
    public var activeChildren: Set<pid_t> { forking.activeChildren }
}

/// A TCP server that serves each request on its own thread.
open class ThreadingTCPServer: TCPServer, ThreadingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let threading: ThreadingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        threading = ThreadingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: threading, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A UDP server that serves each packet on its own thread.
open class ThreadingUDPServer: UDPServer, ThreadingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let threading: ThreadingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        threading = ThreadingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: threading, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A Unix stream server that serves each request on its own thread.
open class ThreadingUnixStreamServer: UnixStreamServer, ThreadingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let threading: ThreadingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        threading = ThreadingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: threading, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A Unix datagram server that serves each packet on its own thread.
open class ThreadingUnixDatagramServer: UnixDatagramServer, ThreadingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let threading: ThreadingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        threading = ThreadingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: threading, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A TCP server that serves each request in a child process.
open class ForkingTCPServer: TCPServer, ForkingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let forking: ForkingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        forking = ForkingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: forking, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A UDP server that serves each packet in a child process.
open class ForkingUDPServer: UDPServer, ForkingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let forking: ForkingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        forking = ForkingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: forking, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A Unix stream server that serves each request in a child process.
open class ForkingUnixStreamServer: UnixStreamServer, ForkingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let forking: ForkingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        forking = ForkingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: forking, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A Unix datagram server that serves each packet in a child process.
open class ForkingUnixDatagramServer: UnixDatagramServer, ForkingServer, @unchecked Sendable {
    /// The server's mode; a combined class always has this one (it inherits no initializer taking another).
    public let forking: ForkingMixIn

    public init(
        _ address: SocketAddress, handler: BaseRequestHandler.Type, bindAndActivate: Bool = true, loop: EventLoop? = nil
    ) throws {
        forking = ForkingMixIn()
        try super.init(
            address, requestHandler: .blocking(handler), mixIn: forking, bindAndActivate: bindAndActivate, loop: loop)
    }
}

/// A TCP server that serves every connection on its loop thread, concurrently, with an async or a callback handler;
/// with a `group`, on the group's loops (``BaseServer/group``).
open class ReactorTCPServer: TCPServer, @unchecked Sendable {
    /// The server's mode, the same object as its ``BaseServer/mixIn``.
    public let reactor: ReactorMixIn

    public init(
        _ address: SocketAddress, handler: AsyncStreamRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .async(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop, group: group)
    }

    public init(
        _ address: SocketAddress, handler: CallbackRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .callback(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop, group: group)
    }
}

/// A UDP server that serves every packet on its loop thread, concurrently, with an async handler.
open class ReactorUDPServer: UDPServer, @unchecked Sendable {
    /// The server's mode, the same object as its ``BaseServer/mixIn``.
    public let reactor: ReactorMixIn

    public init(
        _ address: SocketAddress, handler: AsyncDatagramRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .async(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop)
    }
}

/// A Unix stream server that serves every connection on its loop thread, concurrently, with an async or a callback
/// handler; with a `group`, on the group's loops (``BaseServer/group``).
open class ReactorUnixStreamServer: UnixStreamServer, @unchecked Sendable {
    /// The server's mode, the same object as its ``BaseServer/mixIn``.
    public let reactor: ReactorMixIn

    public init(
        _ address: SocketAddress, handler: AsyncStreamRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .async(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop, group: group)
    }

    public init(
        _ address: SocketAddress, handler: CallbackRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil, group: LoopGroup? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .callback(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop, group: group)
    }
}

/// A Unix datagram server that serves every packet on its loop thread, concurrently, with an async handler.
open class ReactorUnixDatagramServer: UnixDatagramServer, @unchecked Sendable {
    /// The server's mode, the same object as its ``BaseServer/mixIn``.
    public let reactor: ReactorMixIn

    public init(
        _ address: SocketAddress, handler: AsyncDatagramRequestHandler.Type, bindAndActivate: Bool = true,
        loop: EventLoop? = nil
    ) throws {
        reactor = ReactorMixIn()
        try super.init(
            address, requestHandler: .async(handler), mixIn: reactor, bindAndActivate: bindAndActivate,
            loop: loop)
    }
}
