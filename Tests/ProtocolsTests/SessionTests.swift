import Protocols
import Testing

@Suite struct SessionTests {
    func echo(_ text: String, limit: Int = 64) -> (output: String, consumed: Int, requests: Int, keepOpen: Bool) {
        var limits = Limits()
        limits.lineLength = limit
        var session = EchoSession(limits: limits)
        var output: [UInt8] = []
        let (consumed, requests, keepOpen) = Array(text.utf8).withUnsafeBytes { session.consume($0, into: &output) }
        return (String(decoding: output, as: UTF8.self), consumed, requests, keepOpen)
    }

    @Test func echoAnswersCompleteLinesAndKeepsTheRest() {
        let result = echo("one\ntwo\nthr")
        #expect(result.output == "one\ntwo\n" && result.consumed == 8 && result.requests == 2 && result.keepOpen)
    }

    /// The lines before an overlong one are answered, then the session closes.
    @Test func anOverlongLineClosesAfterTheLinesBeforeIt() {
        let long = String(repeating: "x", count: 65)
        for text in ["ok\n\(long)\n", "ok\n\(long)"] {
            let result = echo(text)
            #expect(result.output == "ok\n" && result.consumed == 3 && result.requests == 1 && !result.keepOpen)
        }
        #expect(echo(String(repeating: "y", count: 64) + "\n").keepOpen, "a line of exactly the limit is fine")
    }

    /// RESP and HTTP sessions call their application and consume exactly what they answered.
    @Test func sessionsCallTheirApplication() {
        struct Pong: RESPCommandHandler {
            func execute(_ arguments: [[UInt8]]) -> (reply: RESP.Reply, close: Bool) {
                (.simple("PONG"), arguments.first == Array("QUIT".utf8))
            }
        }
        var resp = RESPSession(commands: Pong())
        var output: [UInt8] = []
        let (consumed, requests, keepOpen) = Array("PING\r\nPING\r\nQUIT\r\nPING\r\n".utf8).withUnsafeBytes {
            resp.consume($0, into: &output)
        }
        #expect(String(decoding: output, as: UTF8.self) == "+PONG\r\n+PONG\r\n+PONG\r\n")
        #expect(consumed == 18 && requests == 3 && !keepOpen)
        #expect(resp.closeReason == .requested)
    }

    /// A session that asks to close says why: the client asked, a limit, or malformed input.
    @Test func sessionsSayWhyTheyClose() {
        struct Ok: RESPCommandHandler {
            func execute(_ arguments: [[UInt8]]) -> (reply: RESP.Reply, close: Bool) { (.simple("OK"), false) }
        }
        var limits = Limits()
        limits.lineLength = 8
        for (input, reason) in [
            ("PING\r\n", nil),
            ("*1\r\n$99999999999\r\n", SessionCloseReason.inputLimit("Protocol error: invalid bulk length")),
            (String(repeating: "x", count: 9), .inputLimit("Protocol error: too big inline request")),
            ("*1\r\nx\r\n", .protocolError("Protocol error: expected '$', got 'x'")),
        ] {
            var session = RESPSession(commands: Ok(), limits: limits)
            var output: [UInt8] = []
            let keepOpen = Array(input.utf8).withUnsafeBytes { session.consume($0, into: &output).keepOpen }
            #expect(keepOpen == (reason == nil))
            #expect(session.closeReason == reason, "\(input)")
        }
        var echo = EchoSession(limits: limits)
        var output: [UInt8] = []
        #expect(echo.closeReason == nil)
        _ = Array("a line too long\n".utf8).withUnsafeBytes { echo.consume($0, into: &output) }
        #expect(echo.closeReason == .inputLimit("a line longer than 8 bytes"))
    }
}

/// A command set whose `SLOW` is blocking work.
private struct SlowCommands: RESPCommandHandler {
    func execute(_ arguments: [[UInt8]]) -> (reply: RESP.Reply, close: Bool) { (.simple("FAST"), false) }

    func blockingWork(_ arguments: [[UInt8]]) -> (@Sendable () -> RESP.Reply)? {
        guard arguments.first == Array("SLOW".utf8) else { return nil }
        return { .simple("SLOW DONE") }
    }
}

@Suite struct BlockingWorkSessionTests {
    /// The session stops at blocking work, hands it out once, consumes nothing until then, and goes on after.
    @Test func aSessionStopsAtBlockingWorkAndGoesOnAfter() {
        var session = RESPSession(commands: SlowCommands())
        let input = Array("A\r\nSLOW\r\nB\r\n".utf8)
        var output: [UInt8] = []
        let first = input.withUnsafeBytes { session.consume($0, into: &output) }
        #expect(first.consumed == 9 && first.requests == 2 && first.keepOpen)
        #expect(output == Array("+FAST\r\n".utf8))
        let stalled = input[9...].withUnsafeBytes { session.consume($0, into: &output) }
        #expect(stalled.consumed == 0 && stalled.requests == 0, "nothing passes the work's reply")
        let work = session.takeBlockingWork()
        #expect(session.takeBlockingWork() == nil, "handed out once")
        output += work?.run() ?? []
        let rest = input[9...].withUnsafeBytes { session.consume($0, into: &output) }
        #expect(rest.consumed == 3 && rest.requests == 1)
        #expect(output == Array("+FAST\r\n+SLOW DONE\r\n+FAST\r\n".utf8))
        var echo = EchoSession()
        #expect(echo.takeBlockingWork() == nil)
    }
}
