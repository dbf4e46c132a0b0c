import Reactor

/// Writing, Python's `wfile`: every `write(_:)` is sent whole, never partially.
///
/// With a buffer size of 0 (the default for stream handlers) each write is sent at once; otherwise
/// bytes collect until the buffer size is exceeded or ``flush()`` is called.
public final class SocketWriter {
    private var pending: [UInt8] = []
    private let bufferSize: Int
    private let send: ([UInt8]) throws -> Void

    /// A writer that sends to `socket` (Python's `sendall`).
    public convenience init(socket: Socket, bufferSize: Int = 0) {
        self.init(bufferSize: bufferSize) { try socket.sendAll($0) }
    }

    /// A writer whose `send` delivers each flushed chunk.
    public init(bufferSize: Int, send: @escaping ([UInt8]) throws -> Void) {
        self.bufferSize = bufferSize
        self.send = send
    }

    /// Writes all of `bytes`.
    /// - Throws: `ReactorError.timedOut` past the handler's timeout, or an `IOError` (`EPIPE`, ...).
    public func write(_ bytes: some Sequence<UInt8>) throws {
        if bufferSize == 0 && pending.isEmpty {
            try send(Array(bytes))
            return
        }
        pending.append(contentsOf: bytes)
        if pending.count > bufferSize { try flush() }
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) throws {
        try write(string.utf8)
    }

    /// Sends what is buffered.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        let bytes = pending
        pending = []
        try send(bytes)
    }

    /// The bytes written and not yet sent.
    public var bufferedBytes: [UInt8] { pending }
}
