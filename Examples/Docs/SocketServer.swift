// The names the SocketServer articles' code blocks use without defining them (see README.md here).
@_exported import Foundation
@_exported import Glibc
@_exported import Protocols
@_exported import Reactor
@_exported import SocketServer
@_exported import SocketServerHTTP

/// Stand-ins are never run.
private func standIn<T>() -> T { fatalError("a documentation stand-in") }

public var server: TCPServer { standIn() }
public var address: SocketAddress { standIn() }

/// Handlers of Getting Started and the porting guide.
open class Handler: StreamRequestHandler {}
open class LineEcho: StreamRequestHandler {}
open class CallbackLineEcho: CallbackRequestHandler {}
open class Echo: AsyncStreamRequestHandler {}
open class DatagramEcho: AsyncDatagramRequestHandler {}
