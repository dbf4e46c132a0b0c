// The names the Reactor articles' code blocks use without defining them (see README.md here).

public var loop: EventLoop { standIn() }
public var listener: Listener { standIn() }
public var interrupt: SignalWatcher { standIn() }
public var connection: Connection { standIn() }

/// Getting Started's echo delegate.
public final class Echo: ConnectionDelegate {
    public init() {}
    public func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {}
}

/// Embedding the Loop's daemon.
public final class Daemon: @unchecked Sendable {
    public let loop: EventLoop = standIn()
    public var accepted = 0
}

/// Embedding the Loop's address to listen on, and the blocking client its handler calls.
public var address: SocketAddress { standIn() }
public struct Database: Sendable {
    public init() {}
    public func lookUp(_ key: String) throws -> String { standIn() }
}
