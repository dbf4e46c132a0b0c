import Reactor

/// Buffered reading, Python's `rfile`: over a blocking socket (``StreamRequestHandler``) or over the
/// bytes of one datagram (``DatagramRequestHandler``).
public final class SocketReader {
    private var buffer = ByteBuffer()
    private var atEnd = false
    private let fill: () throws -> [UInt8]

    /// A reader that receives from `socket` in chunks of up to `chunkSize` bytes.
    public convenience init(socket: Socket, chunkSize: Int = 16 * 1024) {
        self.init { try socket.receive(maxCount: chunkSize) }
    }

    /// A reader over `bytes` only.
    public convenience init(bytes: [UInt8]) {
        var remaining: [UInt8]? = bytes
        self.init {
            defer { remaining = nil }
            return remaining ?? []
        }
    }

    /// A reader whose `fill` returns the next bytes, or none at the end.
    init(fill: @escaping () throws -> [UInt8]) {
        self.fill = fill
    }

    /// Receives more; false at the end of input.
    private func receiveMore() throws -> Bool {
        if atEnd { return false }
        let bytes = try fill()
        if bytes.isEmpty {
            atEnd = true
            return false
        }
        buffer.append(bytes)
        return true
    }

    /// Reads one line ending in `\n`.
    /// - Parameters:
    ///   - maxLength: the longest line accepted, not counting its `\n` or `\r\n`.
    ///   - strippingNewline: whether to drop the trailing `\n` or `\r\n`; default false, the line kept whole as
    ///     Python's `readline()` keeps it.
    /// - Returns: the line; at the end of input the last unterminated bytes, then `nil`.
    /// - Throws: `ReactorError.lineTooLong(limit:)`, `ReactorError.timedOut` past the
    ///   handler's timeout, or an `IOError`.
    public func readLine(maxLength: Int = 64 * 1024, strippingNewline: Bool = false) throws -> [UInt8]? {
        while true {
            if let line = try buffer.readLine(maxLength: maxLength, strippingNewline: strippingNewline) { return line }
            if try !receiveMore() { return buffer.isEmpty ? nil : buffer.readAll() }
        }
    }

    /// Reads `count` bytes, fewer only at the end of input (Python's `rfile.read(n)`).
    public func read(_ count: Int) throws -> [UInt8] {
        while buffer.readableBytes < count, try receiveMore() {}
        return buffer.readBytes(min(count, buffer.readableBytes)) ?? []
    }

    /// Reads everything until the end of input.
    public func readAll() throws -> [UInt8] {
        while try receiveMore() {}
        return buffer.readAll()
    }

    /// Calls `body` with each line until the end of input (Python's `for line in rfile`).
    public func forEachLine(
        maxLength: Int = 64 * 1024, strippingNewline: Bool = false, _ body: ([UInt8]) throws -> Void
    )
        throws
    {
        while let line = try readLine(maxLength: maxLength, strippingNewline: strippingNewline) {
            try body(line)
        }
    }
}
