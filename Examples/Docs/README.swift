// The names README.md's code blocks use without defining them (see README.md here).

/// The README's loop, from its echo server.
public var loop: EventLoop { standIn() }

/// The README's socketserver handler.
open class Handler: StreamRequestHandler {}

/// The README's blocking client: a database driver without async I/O.
public struct Database: Sendable {
    public init() {}
    public func lookUp(_ key: String) throws -> String { standIn() }
}
