import Foundation
import Protocols
import Testing

/// Parses every request head in `input` fed in two chunks cut at `split`, skipping `Content-Length` bodies.
func parseHeads(_ input: [UInt8], split: Int? = nil, limits: Limits = .default) throws -> [HTTP.RequestHead] {
    var buffer: [UInt8] = []
    var heads: [HTTP.RequestHead] = []
    var skip = 0
    let chunks = split.map { [Array(input[..<$0]), Array(input[$0...])] } ?? [input]
    for chunk in chunks {
        buffer += chunk
        while true {
            if skip > 0 {
                let n = min(skip, buffer.count)
                buffer.removeFirst(n)
                skip -= n
                if skip > 0 { break }
            }
            guard let (head, consumed) = try buffer.withUnsafeBytes({ try HTTP.parseRequestHead($0, limits: limits) })
            else { break }
            buffer.removeFirst(consumed)
            if case .length(let length) = head.body { skip = length }
            heads.append(head)
        }
    }
    return heads
}

/// What a head looks like, for comparisons.
func summary(_ head: HTTP.RequestHead) -> String {
    "\(head.method) \(head.target) \(head.version) \(head.headers.fields.map { "\($0.name)=\($0.value)" }) \(head.body)"
}

/// Decodes a chunked body fed in pieces of `step` bytes.
func decodeChunked(_ text: String, step: Int, limit: Int = 1 << 20) throws -> (body: [UInt8], consumed: Int, done: Bool)
{
    var decoder = HTTP.ChunkedDecoder(limit: limit)
    let bytes = Array(text.utf8)
    var body: [UInt8] = []
    var pending: [UInt8] = []
    var consumed = 0
    var offset = 0
    while offset < bytes.count && !decoder.isComplete {
        pending += bytes[offset..<min(offset + step, bytes.count)]
        offset = min(offset + step, bytes.count)
        let used = try pending.withUnsafeBytes { try decoder.decode($0, into: &body) }
        pending.removeFirst(used)
        consumed += used
    }
    return (body, consumed, decoder.isComplete)
}

@Suite struct HTTPTests {
    @Test func parsesPipelinedRequestsAtEverySplit() throws {
        let text =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Long:  spaced value \r\n\r\nHEAD /x?y=1 HTTP/1.0\nConnection: keep-alive\n\nGET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET //c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let bytes = Array(text.utf8)
        let expected = try parseHeads(bytes)
        #expect(expected.map(\.target) == ["/", "/x?y=1", "/b", "/c"], "a leading // is reduced to /")
        #expect(expected.map(\.method) == ["GET", "HEAD", "GET", "GET"])
        #expect(expected.map(\.version) == ["HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "HTTP/1.1"])
        #expect(expected.map(\.body) == [.none, .none, .length(3), .chunked])
        #expect(expected[0].headers["x-long"] == "spaced value")
        #expect(expected[1].headers.tokens("connection") == ["keep-alive"])
        for split in 0...bytes.count {
            #expect(try parseHeads(bytes, split: split).map(summary) == expected.map(summary), "split at \(split)")
        }
    }

    /// Python's version rule: `HTTP/` and two dot-separated runs of 1 to 10 digits, nothing else.
    @Test func versionsParseAsPythonDoes() {
        #expect(HTTP.Version("HTTP/1.1") == .http11)
        #expect(HTTP.Version("HTTP/0.9") == .http09)
        #expect(HTTP.Version("HTTP/1234567890.0123456789") == HTTP.Version(1_234_567_890, 123_456_789))
        #expect(HTTP.Version("HTTP/1.1"[...]) == .http11, "a Substring")
        for bad in [
            "", "HTTP/", "HTTP/1", "HTTP/1.", "HTTP/.1", "HTTP/1.1.1", "HTTP/12345678901.1", "HTTP/1.12345678901",
            "http/1.1", "HTTP/1.x", "HTTP/-1.1", "HTTP/1 .1", "HTTP/1.1 ", "XTTP/1.1", "HTTP/１.1",
        ] {
            #expect(HTTP.Version(bad) == nil, "\(bad)")
        }
    }

    /// The request line is the line as sent, whichever way it was parsed: a common one is rebuilt from its
    /// words only when asked for, so it must come out the same; one whose target is reduced keeps the original.
    @Test(arguments: [
        "GET /1k.bin HTTP/1.1", "GET //evil.example/x HTTP/1.1", "GET  /two-spaces HTTP/1.1", "GET\t/tab HTTP/1.0",
        "GET /page", "GET /caf\u{e9} HTTP/1.1",
    ])
    func requestLineIsAsSent(line: String) throws {
        let bytes = Array(line.unicodeScalars.map { UInt8($0.value) }) + Array("\r\nHost: x\r\n\r\n".utf8)
        let (head, _) = try #require(try bytes.withUnsafeBytes { try HTTP.parseRequestHead($0) })
        #expect(head.requestLine == line)
    }

    @Test func twoWordsAreHTTP09WithoutHeaders() throws {
        let bytes = Array("GET /page\r\nHost: ignored\r\n\r\n".utf8)
        let (head, consumed) = try #require(try bytes.withUnsafeBytes { try HTTP.parseRequestHead($0) })
        #expect(head.version == "HTTP/0.9" && head.versionNumber == .http09 && head.headers.count == 0)
        #expect(consumed == 11, "the request line only")
    }

    @Test(arguments: [
        ("GET / FUBAR\r\n\r\n", 400, "Bad request version ('FUBAR')"),
        ("GET / HTTP/1.2.3\r\n\r\n", 400, "Bad request version ('HTTP/1.2.3')"),
        ("GET / HTTP/2.0\r\n\r\n", 505, "Invalid HTTP version (2.0)"),
        ("CUSTOM /\r\n\r\n", 400, "Bad HTTP/0.9 request type ('CUSTOM')"),
        ("GET / HTTP/1.1 extra\r\n\r\n", 400, "Bad request version ('extra')"),
        ("GET\r\n\r\n", 400, "Bad request syntax ('GET')"),
        ("G@T / HTTP/1.1\r\n\r\n", 400, "Bad request method ('G@T')"),
        ("GET /a\u{7f}b HTTP/1.1\r\n\r\n", 400, "Bad request target"),
        ("GET / HTTP/1.1\r\nbad header\r\n\r\n", 400, "Bad header line"),
        ("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", 400, "Bad header value"),
        ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "Bad header value"),
        ("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "Obsolete line folding"),
        ("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "Bad Content-Length"),
        ("GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400, "Bad Content-Length"),
        ("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "Bad Content-Length"),
        ("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, "Bad Content-Length"),
        (
            "GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
            "Both Transfer-Encoding and Content-Length"
        ),
        ("GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "Unsupported Transfer-Encoding"),
    ])
    func malformedRequests(text: String, status: Int, message: String) {
        #expect {
            _ = try parseHeads(Array(text.utf8))
        } throws: { error in
            let error = error as? HTTP.ParseError
            return error?.status == status && error?.message == message
        }
    }

    @Test func headerFieldsAsSent() throws {
        // Values trimmed of spaces and tabs on both sides, empty values kept, Latin-1 decoded byte for byte,
        // names kept as sent; looked up by name in any case.
        let bytes: [UInt8] =
            Array("GET / HTTP/1.1\r\nA:\t x y \t\r\nB:\r\nC:   \r\nx-Mixed-CASE: v\r\nL: caf".utf8) + [0xE9]
            + Array("\r\n\r\n".utf8)
        let head = try #require(try parseHeads(bytes).first)
        #expect(head.headers.fields.map(\.name) == ["A", "B", "C", "x-Mixed-CASE", "L"])
        #expect(head.headers.fields.map(\.value) == ["x y", "", "", "v", "caf\u{E9}"])
        #expect(head.headers["X-MIXED-case"] == "v" && head.headers["x-mixed-cas"] == nil)
        #expect(head.headers.contains("b") && !head.headers.contains("D"))
        #expect(head.body == .none && head.version == "HTTP/1.1" && head.method == "GET")
        for text in [": x", "Bad Name: x", "Name : x", "Name\tx: y", "Name"] {
            #expect(throws: HTTP.ParseError.self, "\(text)") {
                try parseHeads(Array("GET / HTTP/1.1\r\n\(text)\r\n\r\n".utf8))
            }
        }
    }

    @Test func limits() throws {
        var limits = Limits()
        limits.headLength = 1024
        limits.requestLength = 100
        func status(_ text: String) -> Int? {
            do {
                _ = try parseHeads(Array(text.utf8), limits: limits)
                return nil
            } catch {
                return (error as? HTTP.ParseError)?.status
            }
        }
        #expect(status("GET /" + String(repeating: "x", count: 1100)) == 414, "no line end yet")
        #expect(status("GET /" + String(repeating: "x", count: 1100) + " HTTP/1.1\r\n\r\n") == 414)
        #expect(status("GET / HTTP/1.1\r\nX: " + String(repeating: "v", count: 1100)) == 431, "no line end yet")
        #expect(status("GET / HTTP/1.1\r\nX: " + String(repeating: "v", count: 1 << 20) + "\r\n\r\n") == 431)
        #expect(status("GET / HTTP/1.1\r\n" + String(repeating: "X: 1234567890\r\n", count: 80) + "\r\n") == 431)
        #expect(status("GET / HTTP/1.1\r\n" + String(repeating: "X: 1\r\n", count: 101) + "\r\n") == 431)
        #expect(status("GET / HTTP/1.1\r\n" + String(repeating: "X: 1\r\n", count: 100) + "\r\n") == nil)
        #expect(status("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n") == 413)
        #expect(status("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n") == nil)
    }

    @Test func chunkedBodiesAtEveryStep() throws {
        let text =
            "3;name=value\r\nabc\r\n10\r\n" + String(repeating: "d", count: 16) + "\r\n0\r\nTrailer: x\r\n\r\nNEXT"
        for step in 1...text.utf8.count {
            let (body, consumed, done) = try decodeChunked(text, step: step)
            #expect(body == Array(("abc" + String(repeating: "d", count: 16)).utf8), "step \(step)")
            #expect(done && consumed == text.utf8.count - 4, "step \(step): stops before the next request")
        }
        #expect(throws: HTTP.ParseError.self) { _ = try decodeChunked("zz\r\n", step: 100) }
        #expect(throws: HTTP.ParseError.self) { _ = try decodeChunked("3\r\nabcX\r\n", step: 100) }
        #expect {
            _ = try decodeChunked("8\r\n12345678\r\n8\r\n", step: 100, limit: 10)
        } throws: { ($0 as? HTTP.ParseError)?.status == 413 }
    }

    @Test func statusTexts() {
        #expect(HTTP.reason(404) == "Not Found" && HTTP.explanation(404) == "Nothing matches the given URI")
        #expect(HTTP.reason(999) == "")
    }
}
