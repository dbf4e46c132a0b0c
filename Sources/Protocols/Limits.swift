/// How much a client may send at once. Input over a limit is a protocol error: the client gets an
/// error reply and its connection is closed; other connections are not affected.
///
/// The defaults are safe for a server exposed to untrusted clients: no single connection can make
/// the server buffer more than ``requestLength`` bytes of one request.
public struct Limits: Sendable, Equatable {
    /// The longest line: an echo line or an inline RESP command (default 64 KiB).
    public var lineLength = 64 * 1024
    /// The longest HTTP request head, request line and headers together (default 8 KiB); over it is 431.
    public var headLength = 8 * 1024
    /// The largest RESP bulk argument (default 16 MiB).
    public var bulkLength = 16 * 1024 * 1024
    /// The largest whole request: a RESP command with all its arguments, or an HTTP body (default 32 MiB).
    public var requestLength = 32 * 1024 * 1024
    /// The most arguments in one RESP command (default 1,048,576).
    public var arguments = 1024 * 1024

    public init() {}

    public static let `default` = Limits()
}
