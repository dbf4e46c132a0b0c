import Protocols
import Testing

/// Feeds `input` to the RESP parser cut at `split`, as a connection would see it, and collects commands.
func parseAll(_ input: [UInt8], split: Int? = nil) throws -> [[String]] {
    var buffer: [UInt8] = []
    var commands: [[String]] = []
    let chunks = split.map { [Array(input[..<$0]), Array(input[$0...])] } ?? [input]
    for chunk in chunks {
        buffer += chunk
        while let (arguments, consumed) = try buffer.withUnsafeBytes({ try RESP.parseCommand($0) }) {
            buffer.removeFirst(consumed)
            if !arguments.isEmpty { commands.append(arguments.map { String(decoding: $0, as: UTF8.self) }) }
        }
    }
    #expect(buffer.isEmpty, "bytes left over: \(buffer)")
    return commands
}

@Suite struct RESPTests {
    static let cases: [(String, [[String]])] = [
        ("*1\r\n$4\r\nPING\r\n", [["PING"]]),
        ("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n", [["SET", "key", "va\r\nl"]]),
        ("PING\r\n", [["PING"]]),
        ("ECHO  hello\tworld\n", [["ECHO", "hello", "world"]]),
        ("\r\nPING\r\n", [["PING"]]),
        ("*2\r\n$3\r\nGET\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\nPING\r\n", [["GET", ""], ["PING"], ["PING"]]),
        ("*0\r\n*1\r\n$6\r\nDBSIZE\r\n", [["DBSIZE"]]),
    ]

    @Test(arguments: cases.indices)
    func parsesAtEverySplit(index: Int) throws {
        let (text, expected) = Self.cases[index]
        let bytes = Array(text.utf8)
        #expect(try parseAll(bytes) == expected)
        for split in 0...bytes.count {
            #expect(try parseAll(bytes, split: split) == expected, "split at \(split)")
        }
    }

    @Test(arguments: [
        ("*x\r\n", "Protocol error: invalid length"),
        ("*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
        ("*1\r\n$-5\r\n", "Protocol error: invalid bulk length"),
        ("*1\r\n$4\r\nPINGxx", "Protocol error: bulk string not terminated by CRLF"),
        ("*99999999\r\n", "Protocol error: invalid multibulk length (over the limit)"),
        ("*1\r\n$99999999999999999999\r\n", "Protocol error: invalid length"),
        ("*1\r\n$\(16 * 1024 * 1024 + 1)\r\n", "Protocol error: invalid bulk length (over the limit)"),
        ("*1\r\n$\r\n", "Protocol error: invalid length"),
        ("*1\r\n$4\0\r\nPING\r\n", "Protocol error: invalid length"),
        ("*--1\r\n", "Protocol error: invalid length"),
    ])
    func malformedInputIsAProtocolError(text: String, message: String) {
        // "(over the limit)": well formed, but over one of the limits (`exceedsLimit`).
        let overLimit = message.hasSuffix(" (over the limit)")
        let expected = RESP.ProtocolError(
            overLimit ? String(message.dropLast(" (over the limit)".count)) : message, exceedsLimit: overLimit)
        #expect(throws: expected) { _ = try parseAll(Array(text.utf8)) }
    }

    @Test func anOverlongInlineLineIsAnError() {
        let line = [UInt8](repeating: UInt8(ascii: "a"), count: Limits.default.lineLength + 1)
        #expect(throws: RESP.ProtocolError("Protocol error: too big inline request", exceedsLimit: true)) {
            _ = try line.withUnsafeBytes { try RESP.parseCommand($0) }
        }
    }

    @Test func aRequestOverTheLimitIsAnErrorBeforeItIsComplete() throws {
        var limits = Limits()
        limits.requestLength = 1000
        // Three 400-byte arguments: the third would pass 1,000 bytes.
        let argument = "$400\r\n" + String(repeating: "x", count: 400) + "\r\n"
        let command = Array(("*3\r\n" + argument + argument + "$400\r\n").utf8)
        #expect(throws: RESP.ProtocolError("Protocol error: too big request", exceedsLimit: true)) {
            _ = try command.withUnsafeBytes { try RESP.parseCommand($0, limits: limits) }
        }
        // A negative count is an empty command, as Redis treats it; NUL bytes are data.
        #expect(try parseAll(Array("*-1\r\n*1\r\n$3\r\na\0b\r\n".utf8)) == [["a\0b"]])
    }

    @Test func repliesEncodeByteExactly() {
        #expect(RESP.Reply.simple("PONG").encoded == Array("+PONG\r\n".utf8))
        #expect(RESP.Reply.error("ERR x").encoded == Array("-ERR x\r\n".utf8))
        #expect(RESP.Reply.integer(-3).encoded == Array(":-3\r\n".utf8))
        #expect(RESP.Reply.bulk(nil).encoded == Array("$-1\r\n".utf8))
        #expect(RESP.Reply.bulk(Array("hi".utf8)).encoded == Array("$2\r\nhi\r\n".utf8))
        #expect(RESP.Reply.array([.integer(1), .bulk([])]).encoded == Array("*2\r\n:1\r\n$0\r\n\r\n".utf8))
        // An echoed argument cannot forge a second reply.
        #expect(RESP.Reply.error("ERR x\r\n+OK").encoded == Array("-ERR x  +OK\r\n".utf8))
    }
}
