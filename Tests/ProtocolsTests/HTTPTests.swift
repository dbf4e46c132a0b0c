import Foundation
import Protocols
import Testing

/// Parses every request head in `input` fed in two chunks cut at `split`, skipping bodies.
func parseHeads(_ input: [UInt8], split: Int? = nil) throws -> [HTTP.RequestHead] {
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
            guard let (head, consumed) = try buffer.withUnsafeBytes({ try HTTP.parseRequestHead($0) }) else { break }
            buffer.removeFirst(consumed)
            skip = head.bodyLength
            heads.append(head)
        }
    }
    return heads
}

@Suite struct HTTPTests {
    @Test func parsesPipelinedRequestsAtEverySplit() throws {
        let text =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Long:  spaced value \r\n\r\nHEAD /x?y=1 HTTP/1.0\nConnection: keep-alive\n\nGET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        let bytes = Array(text.utf8)
        let expected = try parseHeads(bytes)
        #expect(expected.map(\.target) == ["/", "/x?y=1", "/b", "/c"])
        #expect(expected.map(\.method) == ["GET", "HEAD", "GET", "GET"])
        #expect(expected.map(\.keepAlive) == [true, true, true, false])
        #expect(expected[0].header("x-long") == "spaced value")
        #expect(expected[1].minorVersion == 0)
        for split in 0...bytes.count {
            #expect(try parseHeads(bytes, split: split) == expected, "split at \(split)")
        }
    }

    @Test(arguments: [
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET noslash HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
        "\0\r\n\r\n",
    ])
    func malformedRequestsAre400(text: String) {
        #expect {
            _ = try parseHeads(Array(text.utf8))
        } throws: { ($0 as? HTTP.ParseError)?.status == 400 }
    }

    @Test func oversizedHeadsAre431AndBodiesOverTheLimit413() {
        let text =
            "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: Limits.default.headLength) + "\r\n\r\n"
        #expect(throws: HTTP.ParseError.headTooLarge) { _ = try parseHeads(Array(text.utf8)) }
        // Also before the end of the head has arrived, and for a 1 MiB header line.
        let partial = Array(text.utf8.prefix(Limits.default.headLength + 10))
        #expect(throws: HTTP.ParseError.headTooLarge) { _ = try parseHeads(partial) }
        let huge = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 1 << 20) + "\r\n\r\n"
        #expect(throws: HTTP.ParseError.headTooLarge) { _ = try parseHeads(Array(huge.utf8)) }
        #expect(HTTP.ParseError.headTooLarge.status == 431)
        let body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(Limits.default.requestLength + 1)\r\n\r\n"
        #expect(throws: HTTP.ParseError.bodyTooLarge) { _ = try parseHeads(Array(body.utf8)) }
        #expect(HTTP.ParseError.bodyTooLarge.response.status == 413)
        let response = String(
            decoding: HTTP.ParseError.badRequest("invalid header value").response.encoded(), as: UTF8.self)
        #expect(
            response.hasPrefix("HTTP/1.1 400 Bad Request\r\n")
                && response.hasSuffix("400 Bad Request: invalid header value\n"))
    }

    @Test func responsesEncodeByteExactly() {
        let response = HTTP.Response(status: 200, headers: [("Content-Type", "text/plain")], body: Array("hi".utf8))
        #expect(
            String(decoding: response.encoded(), as: UTF8.self)
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi")
        #expect(
            String(decoding: response.encoded(headOnly: true), as: UTF8.self)
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n")
        var closing = response
        closing.close = true
        #expect(String(decoding: closing.encoded(), as: UTF8.self).contains("Connection: close\r\n"))
    }
}
