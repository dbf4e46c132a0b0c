import Protocols
import Testing

/// The HTTP/1 session on its own: events for pipelined requests of every framing, the same events however
/// the bytes are split, errors that end the session, and its keep-alive and framing decisions.
@Suite struct HTTP1SessionTests {
    /// Feeds `chunks` one after another, taking every event each allows; the events as text, with each
    /// request's body at its end.
    private func events(_ chunks: [[UInt8]], limits: Limits = .default) -> [String] {
        var session = HTTP1Session(limits: limits)
        var pending: [UInt8] = []
        var body: [UInt8] = []
        var result: [String] = []
        for chunk in chunks {
            pending += chunk
            while true {
                let (event, consumed) = pending.withUnsafeBytes { session.next($0, body: &body) }
                pending.removeFirst(consumed)
                guard let event else {
                    if consumed == 0 { break }
                    continue
                }
                switch event {
                case .head(let head): result.append("head \(head.method) \(head.target)")
                case .body: break
                case .end:
                    result.append("end " + String(decoding: body, as: UTF8.self))
                    body = []
                case .error(let error): result.append("error \(error.status)")
                }
                if case .error = event { break }
            }
        }
        return result
    }

    static let pipeline = Array(
        ("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            + "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
            + "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n"
            + "HEAD /d HTTP/1.1\r\n\r\n").utf8)

    static let expected = [
        "head GET /a", "end ", "head POST /b", "end hello", "head POST /c", "end abcde", "head HEAD /d", "end ",
    ]

    @Test func pipelinedRequestsOfEveryFraming() {
        #expect(events([Self.pipeline]) == Self.expected)
    }

    /// One byte at a time, and split at every point: the same events and bodies.
    @Test func theSameEventsHoweverTheBytesAreSplit() {
        #expect(events(Self.pipeline.map { [$0] }) == Self.expected)
        for split in 1..<Self.pipeline.count {
            let parts = [Array(Self.pipeline[..<split]), Array(Self.pipeline[split...])]
            #expect(events(parts) == Self.expected, "split at \(split)")
        }
    }

    /// A malformed head, a bad chunk, a body over the limit: one error event, then nothing more.
    @Test func errorsEndTheSession() {
        var limits = Limits()
        limits.requestLength = 10
        #expect(
            events([Array("GET /a HTTP/1.1\r\n\r\nBAD\r\n\r\nGET /b HTTP/1.1\r\n\r\n".utf8)]) == [
                "head GET /a", "end ", "error 400",
            ])
        #expect(
            events([Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8)]) == [
                "head POST /", "error 400",
            ])
        #expect(events([Array("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".utf8)], limits: limits) == ["error 413"])
        #expect(
            events([Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n".utf8)], limits: limits) == [
                "head POST /", "error 413",
            ])
        var session = HTTP1Session()
        var body: [UInt8] = []
        _ = Array("BAD\r\n\r\n".utf8).withUnsafeBytes { session.next($0, body: &body) }
        let after = Array("GET / HTTP/1.1\r\n\r\n".utf8).withUnsafeBytes { session.next($0, body: &body) }
        #expect(after.event == nil && after.consumed == 0)
    }

    /// The session reads no further than the request it is in: the next one is parsed when asked for.
    @Test func itStopsAtTheEndOfEachRequest() throws {
        var session = HTTP1Session()
        var body: [UInt8] = []
        let bytes = Array("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n".utf8)
        var offset = 0
        func next() -> HTTP1Session.Event? {
            let (event, consumed) = bytes[offset...].withUnsafeBytes { session.next($0, body: &body) }
            offset += consumed
            return event
        }
        guard case .head = next() else {
            Issue.record("no head")
            return
        }
        #expect(session.isInBody)
        guard case .body = next() else {
            Issue.record("no body")
            return
        }
        #expect(body == Array("ok".utf8) && offset == bytes.count - 18)
        guard case .end = next() else {
            Issue.record("no end")
            return
        }
        #expect(session.isBetweenRequests && offset == bytes.count - 18)
        guard case .head(let head) = next() else {
            Issue.record("no second head")
            return
        }
        #expect(head.method == "GET" && offset == bytes.count)
    }

    @Test func keepAliveContinueAndBodies() throws {
        let cases: [(String, HTTP.Version, Bool)] = [
            ("GET / HTTP/1.1\r\n\r\n", .http11, true),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", .http11, false),
            ("GET / HTTP/1.1\r\n\r\n", .http10, false),
            ("GET / HTTP/1.0\r\n\r\n", .http11, false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", .http11, true),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", .http10, false),
            ("GET /\r\n", .http11, false),
            // Tokens: any case, trimmed, anywhere in the list, in any Connection field; not a longer word.
            ("GET / HTTP/1.1\r\nconnection: Upgrade,\t CLOSE \r\n\r\n", .http11, false),
            ("GET / HTTP/1.1\r\nConnection: upgrade\r\nCONNECTION: close\r\n\r\n", .http11, false),
            ("GET / HTTP/1.1\r\nConnection: closed, unclose, close-ish\r\n\r\n", .http11, true),
            ("GET / HTTP/1.0\r\nConnection: Upgrade, Keep-Alive\r\n\r\n", .http11, true),
            ("GET / HTTP/1.0\r\nConnection: keep-alive-ish,,\r\n\r\n", .http11, false),
            ("GET / HTTP/1.0\r\nConnection:\r\n\r\n", .http11, false),
        ]
        for (text, server, keeps) in cases {
            let parsed = try Array(text.utf8).withUnsafeBytes { try #require(try HTTP.parseRequestHead($0)).head }
            #expect(HTTP1Session.keepsAlive(parsed, serverVersion: server) == keeps, "\(text) \(server)")
        }
        let expecting = try Array("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n".utf8)
            .withUnsafeBytes { try #require(try HTTP.parseRequestHead($0)).head }
        #expect(HTTP1Session.wantsContinue(expecting, serverVersion: .http11))
        #expect(!HTTP1Session.wantsContinue(expecting, serverVersion: .http10))
        #expect(HTTP1Session.responseHasBody(method: "GET", status: 200))
        for (method, status) in [("HEAD", 200), ("GET", 100), ("GET", 204), ("GET", 205), ("GET", 304)] {
            #expect(!HTTP1Session.responseHasBody(method: method, status: status), "\(method) \(status)")
        }
    }
}
