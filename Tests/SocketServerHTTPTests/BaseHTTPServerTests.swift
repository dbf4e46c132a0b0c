import Foundation
import Glibc
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// CPython's `BaseHTTPServerTestCase` handler: answers its made-up methods.
final class PythonTestHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }
    override var defaultRequestVersion: String { "HTTP/1.1" }

    override func handleCommand() throws {
        switch command {
        case "TEST", "KEEP":
            sendResponse(204)
            sendHeader("Content-Type", "text/html")
            sendHeader("Connection", command == "TEST" ? "close" : "keep-alive")
            try endHeaders()
        case "KEYERROR":
            try sendError(999)
        case "NOTFOUND":
            try sendError(404)
        case "EXPLAINERROR":
            try sendError(999, "Short Message", explain: "This is a long \n explanation")
        case "CUSTOM":
            sendResponse(999)
            sendHeader("Content-Type", "text/html")
            sendHeader("Connection", "close")
            try endHeaders()
        case "LATINONEHEADER":
            sendResponse(999)
            sendHeader("X-Special", "Dängerous Mind")
            sendHeader("Connection", "close")
            try endHeaders()
            try wfile.write(headers["x-special-incoming"] ?? "")
        case "SEND_ERROR", "HEAD":
            try sendError(Int(path.dropFirst()) ?? 0)
        default:
            try super.handleCommand()
        }
    }
}

/// CPython's `SocketlessRequestHandler`: a GET that answers a fixed page.
final class FixedPageHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }
    static let page = Array("<html><body>Data</body></html>\r\n".utf8)

    override func doGET() throws {
        sendResponse(200)
        sendHeader("Content-Type", "text/html")
        sendHeader("Content-Length", "\(Self.page.count)")
        try endHeaders()
        try wfile.write(Self.page)
    }
}

/// Answers each path with its own status line and headers: `/`, `/fine` (200 with a reason of its own), `/made`
/// (201), `/latin` (a Latin-1 value), `/length/N` (N in a header).
final class StatusLineHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }

    override func doGET() throws {
        switch path {
        case "/fine": sendResponse(200, "Fine")
        case "/made": sendResponse(201)
        default: sendResponse(200)
        }
        if path == "/latin" { sendHeader("X-Name", "Dängerous Mind \u{2603}") }
        if path.hasPrefix("/length/") { sendHeader("X-Number", String(path.dropFirst(8))) }
        sendHeader("Content-Length", "0")
        try endHeaders()
    }
}

/// Refuses `Expect: 100-continue` with 417: CPython's `RejectingSocketlessRequestHandler`.
final class RejectingHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }
    override func handleExpect100() throws -> Bool {
        try sendError(417)
        return false
    }
    override func doGET() throws {
        Issue.record("GET called after a refused 100-continue")
    }
}

/// CPython's `test_httpservers.BaseHTTPServerTestCase` and `BaseHTTPRequestHandlerTestCase`, over real
/// sockets, in every mode.
@Suite struct BaseHTTPServerTests {
    @Test(arguments: Mode.testable)
    func requestLinesAndVersions(mode: Mode) throws {
        try serving(try makeServer(mode) { PythonTestHandler() }) { address in
            for (line, status) in [
                ("GET / HTTP/1.1", 501),  // test_command: no doGET
                ("XYZBOGUS / HTTP/1.1", 501),  // test_request_line_trimming
                ("GET / FUBAR", 400),  // test_version_bogus
                ("GET / HTTP/9.9.9", 400),  // test_version_digits
                ("GET / HTTP/-9_9_9.+9_9_9", 400),  // test_version_signs_and_underscores
                ("GET / HTTP/909876543210.0", 400),  // test_major_version_number_too_long
                ("GET / HTTP/1.909876543210", 400),  // test_minor_version_number_too_long
                ("GET / ", 501),  // test_version_none_get: HTTP/0.9, with a status line (default version 1.1)
                ("CUSTOM / ", 400),  // test_version_none: HTTP/0.9 allows only GET
                ("GET / HTTP/9.9", 505),  // test_version_invalid
                (" / ", 400),  // test_send_blank
                ("TEST / HTTP/1.1", 204),  // test_handler
                ("KEYERROR / HTTP/1.1", 999),  // test_internal_key_error
                ("CUSTOM / HTTP/1.1", 999),  // test_return_custom_status
            ] {
                let client = try Client(address)
                try client.send("\(line)\r\nHost: localhost\r\nAccept-Encoding: identity\r\n\r\n")
                let response = try #require(try client.response(), "\(line)")
                #expect(response.status == status, "\(line): \(response.statusLine)")
                #expect(response.version == "HTTP/1.1", "\(line)")
            }
        }
    }

    @Test(arguments: Mode.testable)
    func headersAndErrorPages(mode: Mode) throws {
        try serving(try makeServer(mode) { PythonTestHandler() }) { address in
            // test_header_close, test_header_keep_alive
            #expect(try request(address, "GET", "/", headers: [("Connection", "close")]).status == 501)
            #expect(try request(address, "GET", "/", headers: [("Connection", "keep-alive")]).status == 501)
            // test_return_header_keep_alive: the connection stays open for the next request.
            let client = try Client(address)
            try client.send("KEEP / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try client.response()?.header("Connection") == "keep-alive")
            try client.send("TEST / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try client.response()?.status == 204)
            // test_return_explain_error
            let explained = try request(address, "EXPLAINERROR", "/")
            #expect(explained.status == 999 && Int(explained.header("Content-Length") ?? "") ?? 0 > 0)
            #expect(explained.text.contains("This is a long \n explanation"))
            // test_error_content_length, and Python's error page.
            let notFound = try request(address, "NOTFOUND", "/")
            #expect(notFound.status == 404 && Int(notFound.header("Content-Length") ?? "") == notFound.body.count)
            #expect(notFound.text.contains("<p>Error code: 404</p>"))
            #expect(notFound.text.contains("<p>Error code explanation: 404 - Nothing matches the given URI.</p>"))
            #expect(notFound.header("Content-Type") == "text/html;charset=utf-8")
            #expect(notFound.header("Connection") == "close")
            #expect(notFound.header("Server")?.hasPrefix("BaseHTTP/0.6 ") == true && notFound.header("Date") != nil)
            // test_send_error: no body, Content-Length or Content-Type for 1xx, 204, 205, 304.
            for code in [204, 304, 102, 205, 101] {
                let client = try Client(address)
                try client.send("SEND_ERROR /\(code) HTTP/1.1\r\nHost: a\r\n\r\n")
                let response = try #require(try client.response())
                #expect(response.status == code)
                #expect(response.header("Content-Length") == nil && response.header("Content-Type") == nil)
                #expect(try client.rest().isEmpty, "\(code): no body, and the connection closes")
            }
            // test_head_via_send_error: HEAD gets the headers of the error page but never its body.
            for code in [200, 204, 304, 205, 101] {
                let client = try Client(address)
                try client.send("HEAD /\(code) HTTP/1.1\r\nHost: a\r\n\r\n")
                let response = try #require(try client.response(head: true))
                #expect(response.status == code)
                if code == 200 {
                    #expect(Int(response.header("Content-Length") ?? "") ?? 0 > 0)
                    #expect(response.header("Content-Type")?.contains("text/html") == true)
                } else {
                    #expect(response.header("Content-Length") == nil && response.header("Content-Type") == nil)
                }
                #expect(try client.rest().isEmpty)
            }
        }
    }

    /// A handler keeps its last status line and its `Server` and `Date` lines between requests: each
    /// response on one connection still carries its own status, reason and headers, in every mode.
    @Test(arguments: Mode.testable)
    func eachResponseHasItsOwnHead(mode: Mode) throws {
        try serving(try makeServer(mode) { StatusLineHandler() }) { address in
            let client = try Client(address)
            let expected = [
                ("/", "HTTP/1.1 200 OK"), ("/", "HTTP/1.1 200 OK"), ("/fine", "HTTP/1.1 200 Fine"),
                ("/", "HTTP/1.1 200 OK"), ("/made", "HTTP/1.1 201 Created"), ("/", "HTTP/1.1 200 OK"),
                ("/length/-12", "HTTP/1.1 200 OK"), ("/length/9876543210", "HTTP/1.1 200 OK"),
            ]
            for (path, statusLine) in expected {
                try client.send("GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n")
                let response = try #require(try client.response())
                #expect(response.statusLine == statusLine, "\(path)")
                #expect(response.headers.filter { $0.0 == "Server" }.count == 1, "\(path)")
                #expect(response.headers.filter { $0.0 == "Date" }.count == 1, "\(path)")
                let date = response.header("Date") ?? ""
                #expect(date.count == 29 && date.hasSuffix(" GMT"), "\(path): \(date)")
                if path.hasPrefix("/length/") { #expect(response.header("X-Number") == String(path.dropFirst(8))) }
            }
            // A value beyond ASCII goes out as Latin-1, `?` for what Latin-1 cannot say.
            try client.send("GET /latin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            let raw = try client.rest()
            let value: [UInt8] = Array("X-Name: D".utf8) + [0xE4] + Array("ngerous Mind ?\r\n".utf8)
            #expect(raw.firstRange(of: value) != nil)
        }
    }

    /// test_latin1_header: header values are Latin-1 both ways, as in Python.
    @Test func latin1Headers() throws {
        try serving(try makeServer(.reactor) { PythonTestHandler() }) { address in
            let client = try Client(address)
            let incoming: [UInt8] = Array("X-Special-Incoming: ".utf8) + [0xC4] + Array("rger mit Unicode".utf8)
            try client.send(Array("LATINONEHEADER / HTTP/1.1\r\nHost: a\r\n".utf8) + incoming + [13, 10, 13, 10])
            let raw = try client.rest()
            let special: [UInt8] = Array("X-Special: D".utf8) + [0xE4] + Array("ngerous Mind\r\n".utf8)
            #expect(raw.firstRange(of: special) != nil, "the header goes out in Latin-1")
            #expect(raw.suffix(18) == ArraySlice(Array("Ärger mit Unicode".utf8)), "the body is its UTF-8")
        }
    }

    @Test(arguments: Mode.testable)
    func versionsAndContinue(mode: Mode) throws {
        try serving(try makeServer(mode) { FixedPageHandler() }) { address in
            // test_http_1_1 and test_http_1_0: one Server, Date and Content-Type each, the body last.
            for version in ["HTTP/1.1", "HTTP/1.0"] {
                let response = try request(address, "GET", "/", version: version)
                #expect(response.statusLine == "HTTP/1.1 200 OK")
                for name in ["Server", "Date", "Content-Type"] {
                    #expect(response.headers.filter { $0.0 == name }.count == 1, "\(version) \(name)")
                }
                #expect(response.body == FixedPageHandler.page)
            }
            // test_http_0_9: the body alone, no status line or headers.
            let simple = try Client(address)
            try simple.send("GET / HTTP/0.9\r\n\r\n")
            #expect(try simple.rest() == FixedPageHandler.page)
            // test_extra_space
            let spaced = try request(address, "GET", "/spaced out")
            #expect(spaced.status == 400)
            // test_with_continue_1_0: no 100 for HTTP/1.0.
            let old = try request(address, "GET", "/", version: "HTTP/1.0", headers: [("Expect", "100-continue")])
            #expect(old.status == 200)
            // test_with_continue_1_1: 100 Continue first, without Server or Date, then the response.
            let client = try Client(address)
            try client.send("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
            let interim = try #require(try client.response())
            #expect(interim.statusLine == "HTTP/1.1 100 Continue" && interim.headers.isEmpty)
            #expect(try client.response()?.status == 200)
        }
    }

    /// `Expect: 100-continue` on a request with a body: the 100 is sent before the body is read, and the
    /// handler reads the body; test_with_continue_rejected: a 417 refuses it and closes.
    @Test(arguments: Mode.testable)
    func continueBeforeTheBody(mode: Mode) throws {
        try serving(try makeServer(mode) { EchoBodyHandler() }) { address in
            let client = try Client(address)
            try client.send("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            #expect(try client.response()?.status == 100, "answered before any byte of the body was sent")
            try client.send("hello")
            let response = try #require(try client.response())
            #expect(response.status == 200 && response.text == "hello")
        }
        try serving(try makeServer(mode) { RejectingHandler() }) { address in
            let client = try Client(address)
            try client.send("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
            let response = try #require(try client.response())
            #expect(response.statusLine == "HTTP/1.1 417 Expectation Failed")
            #expect(response.headers.filter { $0 == ("Connection", "close") }.count == 1)
            #expect(try client.rest().isEmpty)
        }
    }

    /// test_request_length, test_header_length, test_too_many_headers, test_html_escape_on_error.
    @Test(arguments: Mode.testable)
    func limits(mode: Mode) throws {
        try serving(try makeServer(mode) { FixedPageHandler() }) { address in
            let long = try Client(address)
            try long.send("GET " + String(repeating: "x", count: 65537))
            #expect(try long.response()?.statusLine == "HTTP/1.1 414 Request-URI Too Long")
            #expect(long.isClosedByServer(), "a 414 closes the connection")

            let header = try Client(address)
            try header.send("GET / HTTP/1.1\r\nX-Foo: bar" + String(repeating: "r", count: 65537) + "\r\n\r\n")
            #expect(try header.response()?.statusLine == "HTTP/1.1 431 Line too long")

            let many = try Client(address)
            try many.send("GET / HTTP/1.1\r\n" + String(repeating: "X-Foo: bar\r\n", count: 101) + "\r\n")
            #expect(try many.response()?.statusLine == "HTTP/1.1 431 Too many headers")

            // Python answers 501 to this method; a method must be a token (RFC 9110), so here it is 400.
            let script = try Client(address)
            try script.send("<script>alert(\"hello\")</script> / HTTP/1.1\r\nHost: a\r\n\r\n")
            let escaped = try #require(try script.response())
            #expect(escaped.status == 400)
            #expect(escaped.text.contains("&lt;script&gt;alert(\"hello\")&lt;/script&gt;"))
            #expect(!escaped.text.contains("<script>"))

            // Every refused request closed only its own connection.
            #expect(try request(address, "GET", "/").status == 200)
        }
    }

    /// RequestHandlerLoggingTestCase: an access line per request with the Common Log Format's fields, the
    /// size being the body bytes the client received; an error line before an error's access line;
    /// control characters escaped (test_unprintable_not_logged).
    @Test(arguments: [Mode.sequential, .threading, .reactor])
    func accessLog(mode: Mode) throws {
        let logs = LogCapture()
        try serving(try makeServer(mode) { FixedPageHandler() }, logs: logs) { address in
            let ok = try request(address, "GET", "/")
            let missing = try request(address, "ERROR", "/")
            let control = try Client(address)
            try control.send("GET /\u{1b}bar\u{7f} HTTP/1.1\r\nHost: a\r\n\r\n")
            let refused = try #require(try control.response())
            #expect(
                eventually { logs.messages.count >= 5 }, "\(logs.messages)")
            let lines = logs.messages
            let pattern = #/^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] /#
            #expect(lines.allSatisfy { $0.firstMatch(of: pattern) != nil }, "\(lines)")
            // Threads log in their own order; each request's lines come in order.
            func index(_ suffix: String) -> Int? { lines.firstIndex { $0.hasSuffix(suffix) } }
            #expect(index("\"GET / HTTP/1.1\" 200 \(ok.body.count)") != nil, "\(lines)")
            let error = index("code 501, message Unsupported method ('ERROR')")
            let access = index("\"ERROR / HTTP/1.1\" 501 \(missing.body.count)")
            #expect(error != nil && access != nil && error! < access!, "\(lines)")
            #expect(index(#""GET /\x1bbar\x7f HTTP/1.1" 400 \#(refused.body.count)"#) != nil, "\(lines)")
            #expect(!lines.joined().contains("\u{1b}"))
        }
    }

    /// A server logging at `notice` or above writes no access line (nor formats one), and still its errors.
    @Test(arguments: [Mode.threading, .reactor])
    func aQuietLoggerHasNoAccessLines(mode: Mode) throws {
        let logs = LogCapture(level: .notice)
        try serving(try makeServer(mode) { FixedPageHandler() }, logs: logs) { address in
            let ok = try request(address, "GET", "/")
            let unsupported = try request(address, "ERROR", "/")
            #expect(ok.status == 200 && unsupported.status == 501)
            #expect(eventually { !logs.messages.isEmpty })
        }
        let lines = logs.messages
        #expect(lines.count == 1 && lines[0].hasSuffix("code 501, message Unsupported method ('ERROR')"), "\(lines)")
    }

    /// test_date_time_string.
    @Test func dates() {
        let handler = FixedPageHandler()
        #expect(handler.dateTimeString(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(handler.dateTimeString(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
    }

    /// A drain (``HTTPService/stopKeepAlive()``) loses no request that arrived: a request sent on a new connection
    /// to a draining server is answered, and the connection closes after it rather than waiting for another.
    @Test(arguments: [Mode.threading, .reactor])
    func aDrainingServerAnswersARequestThatArrived(mode: Mode) throws {
        let server = try makeServer(mode) { FixedPageHandler() }
        server.http.stopKeepAlive()
        try serving(server) { address in
            let client = try Client(address)
            try client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            let response = try #require(try client.response())
            #expect(response.status == 200 && response.body == FixedPageHandler.page)
            #expect(try client.response() == nil, "closed after the one response")
        }
    }
}

/// Answers a POST with its body: read through `rfile`, whatever its framing.
final class EchoBodyHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }

    override func doPOST() throws {
        let body = try rfile.readAll()
        sendResponse(200)
        sendHeader("Content-Length", "\(body.count)")
        try endHeaders()
        try wfile.write(body)
    }
}

/// Request bodies: `Content-Length`, chunked (decoded, which Python does not), pipelined requests after them.
@Suite struct RequestBodyTests {
    @Test(arguments: Mode.testable)
    func bodies(mode: Mode) throws {
        try serving(try makeServer(mode) { EchoBodyHandler() }) { address in
            let client = try Client(address)
            try client.send(
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                    + "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n"
                    + String(repeating: "d", count: 16) + "\r\n0\r\nTrailer: x\r\n\r\n"
                    + "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            #expect(try client.response()?.text == "hello")
            #expect(try client.response()?.text == "abc" + String(repeating: "d", count: 16))
            #expect(try client.response()?.body == [])
            #expect(try client.rest().isEmpty)
            // A malformed chunk size: 400, and that connection is closed.
            let bad = try Client(address)
            try bad.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            #expect(try bad.response()?.status == 400)
            #expect(bad.isClosedByServer())
            // Content-Length and Transfer-Encoding together: 400; another coding: 501.
            let both = try request(
                address, "POST", "/", headers: [("Transfer-Encoding", "chunked"), ("Content-Length", "3")])
            #expect(both.status == 400)
            #expect(try request(address, "POST", "/", headers: [("Transfer-Encoding", "gzip")]).status == 501)
        }
    }
}
