// The names the SocketServer articles' code blocks use without defining them (see README.md here).

public var server: TCPServer { standIn() }
public var address: SocketAddress { standIn() }

/// Handlers of Getting Started and the porting guide.
open class Handler: StreamRequestHandler {}
open class LineEcho: StreamRequestHandler {}
open class CallbackLineEcho: CallbackRequestHandler {}
open class Echo: AsyncStreamRequestHandler {}
open class DatagramEcho: AsyncDatagramRequestHandler {}
