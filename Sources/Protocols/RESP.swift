/// The Redis serialization protocol (RESP2), sans I/O: commands parsed from bytes, replies encoded to bytes.
public enum RESP {
    /// Malformed input; the connection that sent it should get `-ERR <message>` and be closed.
    public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
        public let message: String
        /// Whether the input was well formed but over one of the ``Limits``.
        public let exceedsLimit: Bool
        public init(_ message: String, exceedsLimit: Bool = false) {
            self.message = message
            self.exceedsLimit = exceedsLimit
        }
        public var description: String { message }
    }

    /// Parses the command at the start of `bytes`, inline (`PING\r\n`) or multibulk (`*1\r\n$4\r\nPING\r\n`).
    ///
    /// - Returns: the arguments (empty for a blank inline line, which Redis ignores) and how many bytes
    ///   they took, or `nil` when the command is not complete yet.
    /// - Throws: ``ProtocolError`` with Redis's wording for malformed input or input over `limits`.
    public static func parseCommand(
        _ bytes: UnsafeRawBufferPointer, limits: Limits = .default
    ) throws(ProtocolError) -> (arguments: [[UInt8]], consumed: Int)? {
        guard let first = bytes.first else { return nil }
        return first == UInt8(ascii: "*") ? try parseMultibulk(bytes, limits) : try parseInline(bytes, limits)
    }

    private static func parseInline(
        _ bytes: UnsafeRawBufferPointer, _ limits: Limits
    ) throws(ProtocolError) -> (arguments: [[UInt8]], consumed: Int)? {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            if bytes.count > limits.lineLength {
                throw ProtocolError("Protocol error: too big inline request", exceedsLimit: true)
            }
            return nil
        }
        if newline > limits.lineLength {
            throw ProtocolError("Protocol error: too big inline request", exceedsLimit: true)
        }
        var end = newline
        if end > 0 && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let arguments = bytes[..<end]
            .split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
            .map { [UInt8]($0) }
        return (arguments, newline + 1)
    }

    private static func parseMultibulk(
        _ bytes: UnsafeRawBufferPointer, _ limits: Limits
    ) throws(ProtocolError) -> (arguments: [[UInt8]], consumed: Int)? {
        guard let (count, afterCount) = try readNumber(bytes, from: 1) else { return nil }
        guard count <= limits.arguments else {
            throw ProtocolError("Protocol error: invalid multibulk length", exceedsLimit: count >= 0)
        }
        // First find where the command ends without copying, so a command arriving in many reads is
        // only copied once, when complete.
        var index = afterCount
        for _ in 0..<max(0, count) {
            guard index < bytes.count else { return try incomplete(bytes, limits) }
            guard bytes[index] == UInt8(ascii: "$") else {
                throw ProtocolError("Protocol error: expected '$', got '\(Character(UnicodeScalar(bytes[index])))'")
            }
            guard let (length, afterLength) = try readNumber(bytes, from: index + 1) else {
                return try incomplete(bytes, limits)
            }
            guard (0...limits.bulkLength).contains(length) else {
                throw ProtocolError("Protocol error: invalid bulk length", exceedsLimit: length > 0)
            }
            guard afterLength + length + 2 <= limits.requestLength else {
                throw ProtocolError("Protocol error: too big request", exceedsLimit: true)
            }
            guard afterLength + length + 2 <= bytes.count else { return nil }
            guard bytes[afterLength + length] == UInt8(ascii: "\r"),
                bytes[afterLength + length + 1] == UInt8(ascii: "\n")
            else {
                throw ProtocolError("Protocol error: bulk string not terminated by CRLF")
            }
            index = afterLength + length + 2
        }
        // Complete and valid: a second pass over the lengths copies each argument once (no list of ranges).
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(max(0, count))
        var position = afterCount
        for _ in 0..<max(0, count) {
            let (length, start) = try readNumber(bytes, from: position + 1)!
            arguments.append([UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])))
            position = start + length + 2
        }
        return (arguments, index)
    }

    /// A command not complete yet: `nil`, unless what has come is already over the request limit.
    private static func incomplete(_ bytes: UnsafeRawBufferPointer, _ limits: Limits) throws(ProtocolError) -> (
        arguments: [[UInt8]], consumed: Int
    )? {
        if bytes.count > limits.requestLength {
            throw ProtocolError("Protocol error: too big request", exceedsLimit: true)
        }
        return nil
    }

    /// Reads a decimal number ending in CRLF at `start`: the number and the index after the CRLF,
    /// `nil` if the line is incomplete.
    private static func readNumber(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(ProtocolError) -> (
        Int, Int
    )? {
        var index = start
        var value = 0
        var negative = false
        var digits = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "-") where index == start:
                negative = true
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                digits += 1
                guard digits <= 18 else { throw ProtocolError("Protocol error: invalid length") }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "\r"):
                guard index + 1 < bytes.count else { return nil }
                guard bytes[index + 1] == UInt8(ascii: "\n"), digits > 0 else {
                    throw ProtocolError("Protocol error: invalid length")
                }
                return (negative ? -value : value, index + 2)
            default:
                throw ProtocolError("Protocol error: invalid length")
            }
            index += 1
        }
        if index - start > 20 { throw ProtocolError("Protocol error: invalid length") }
        return nil
    }

    /// A reply, encoded by ``encode(into:)``.
    public enum Reply: Equatable, Sendable {
        case simple(String)
        case error(String)
        case integer(Int)
        case bulk([UInt8]?)
        case array([Reply])

        public static let ok = Reply.simple("OK")

        /// Appends the RESP2 encoding.
        public func encode(into output: inout [UInt8]) {
            switch self {
            case .simple(let text):
                output.append(UInt8(ascii: "+"))
                output.append(contentsOf: Self.singleLine(text))
            case .error(let text):
                output.append(UInt8(ascii: "-"))
                output.append(contentsOf: Self.singleLine(text))
            case .integer(let value):
                output.append(UInt8(ascii: ":"))
                output.appendDecimal(value)
            case .bulk(nil):
                output.append(contentsOf: "$-1".utf8)
            case .bulk(let bytes?):
                output.append(UInt8(ascii: "$"))
                output.appendDecimal(bytes.count)
                output.append(13)
                output.append(10)
                output.append(contentsOf: bytes)
            case .array(let items):
                output.append(UInt8(ascii: "*"))
                output.appendDecimal(items.count)
                output.append(13)
                output.append(10)
                for item in items { item.encode(into: &output) }
                return
            }
            output.append(13)  // byte by byte: an array literal here would be an allocation per reply
            output.append(10)
        }

        /// A simple string or error must stay one line (an argument echoed in an error could otherwise
        /// forge replies): CR and LF become spaces, as Redis does.
        private static func singleLine(_ text: String) -> [UInt8] {
            text.utf8.map { $0 == 13 || $0 == 10 ? UInt8(ascii: " ") : $0 }
        }

        /// The encoding as bytes.
        public var encoded: [UInt8] {
            var output: [UInt8] = []
            encode(into: &output)
            return output
        }
    }
}
