// The names README.md's code blocks use without defining them (see README.md here).
@_exported import Foundation
@_exported import Glibc
@_exported import Protocols
@_exported import Reactor
@_exported import SocketServer
@_exported import SocketServerHTTP

/// Stand-ins are never run.
private func standIn<T>() -> T { fatalError("a documentation stand-in") }

/// The README's loop, from its echo server.
public var loop: EventLoop { standIn() }

/// The README's socketserver handler.
open class Handler: StreamRequestHandler {}
