// The names the SocketServerHTTP article's code blocks use without defining them (see README.md here), beyond
// Common.swift's.

/// The async handler example's backend: a service a handler awaits.
public struct Backend: Sendable {
    public func fetch(_ path: String) async throws -> [UInt8] { standIn() }
}

public let backend = Backend()
