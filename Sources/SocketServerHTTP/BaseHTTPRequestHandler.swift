import Glibc
import Logging
import Protocols
import Reactor
import SocketServer

/// What ``BaseHTTPRequestHandler`` and ``AsyncHTTPRequestHandler`` share: the request (``command``,
/// ``path``, ``headers``, ``rfile``), the response (``sendResponse(_:_:)``, ``sendHeader(_:_:)``,
/// ``endHeaders()``, ``sendError(_:_:explain:)``, ``wfile``), the class attributes and the access log.
/// Subclass one of those two, not this.
open class HTTPRequestHandlerBase {
    // MARK: Class attributes

    /// The `Server` header's product token.
    open var serverVersion: String { "BaseHTTP/0.6" }
    /// Appended to ``serverVersion`` in the `Server` header.
    open var sysVersion: String { "Swift/6" }
    /// The version of the responses; `HTTP/1.1` keeps connections open between requests (then every
    /// response needs a `Content-Length`). Python's default, `HTTP/1.0`, closes after each response.
    open var protocolVersion: String { "HTTP/1.0" }
    /// The version assumed for a request line without one (Python's `default_request_version`).
    open var defaultRequestVersion: String { "HTTP/0.9" }
    /// The error page: `%(code)d`, `%(message)s`, `%(explain)s` as in Python's `DEFAULT_ERROR_MESSAGE`.
    open var errorMessageFormat: String { Self.defaultErrorMessage }
    /// The error page's content type.
    open var errorContentType: String { "text/html;charset=utf-8" }
    /// Every read and write on the connection waits at most this long, and a connection waits this long for
    /// its next request; then it is closed ("Request timed out", logged). `nil` waits forever, as Python's.
    open var timeout: Duration? { nil }

    /// Python's `DEFAULT_ERROR_MESSAGE`.
    public static let defaultErrorMessage = """
        <!DOCTYPE HTML>
        <html lang="en">
            <head>
                <meta charset="utf-8">
                <title>Error response</title>
            </head>
            <body>
                <h1>Error response</h1>
                <p>Error code: %(code)d</p>
                <p>Message: %(message)s.</p>
                <p>Error code explanation: %(code)s - %(explain)s.</p>
            </body>
        </html>

        """

    // MARK: The connection

    // The stored properties a request touches are `@exclusivity(unchecked)`: a handler is used by one thread
    // at a time (its connection's loop, or its thread), and the run-time check of each access was 4-5% of a
    // keep-alive GET's CPU. Reactor's `Connection` and the HTTP connection classes do the same.

    /// The client's address.
    @exclusivity(unchecked) public internal(set) var clientAddress: SocketAddress = .unnamedUnix
    /// The server serving the connection; set before ``setup()``.
    public var server: BaseServer { attachedServer! }
    @exclusivity(unchecked) private var attachedServer: BaseServer?
    /// The HTTP configuration of the connection (whether keep-alive was stopped).
    @exclusivity(unchecked) private var attachedService: HTTPService?
    /// The reactor connection in reactor mode, `nil` in the blocking modes.
    @exclusivity(unchecked) public internal(set) var reactorConnection: Connection?
    /// Bytes received on the connection, set before ``finish()``.
    @exclusivity(unchecked) public internal(set) var bytesReceived = 0
    /// Bytes sent on the connection, set before ``finish()``.
    @exclusivity(unchecked) public internal(set) var bytesSent = 0
    /// Where ``logRequest(code:size:)`` and ``logError(_:)`` report: the server's logger.
    public var logger: Logger { server.logger }

    // MARK: The request

    /// The method (Python's `command`); empty before a request line was read.
    @exclusivity(unchecked) public internal(set) var command = ""
    /// The request target as sent (`/a/b?c=d`), with a leading `//` reduced to `/`.
    @exclusivity(unchecked) public internal(set) var path = ""
    /// The request's version (`HTTP/1.1`).
    @exclusivity(unchecked) public internal(set) var requestVersion = "" {
        didSet { isHTTP09 = requestVersion == "HTTP/0.9" }
    }
    /// The request line, for logs.
    public internal(set) var requestline: String {
        get { requestLineText ?? requestHead?.requestLine ?? "" }
        set { requestLineText = newValue }
    }
    @exclusivity(unchecked) private var requestLineText: String?
    /// The parsed head, whose request line is made only if asked for (most are never logged).
    @exclusivity(unchecked) private var requestHead: HTTP.RequestHead?
    /// The request's header fields.
    @exclusivity(unchecked) public internal(set) var headers = HTTP.Headers()
    /// The request body (Python's `rfile`), bounded by its `Content-Length` or chunked framing.
    public var rfile: HTTPRequestBody {
        if let requestBody { return requestBody }
        let empty = HTTPRequestBody.empty()  // made when asked for: most requests have no body to read
        requestBody = empty
        return empty
    }
    @exclusivity(unchecked) private var requestBody: HTTPRequestBody?
    /// The response (Python's `wfile`). Set before ``setup()``.
    public var wfile: HTTPResponseWriter { writer! }
    @exclusivity(unchecked) var writer: HTTPResponseWriter?
    /// Close the connection after this response. Set from the request's version and `Connection` header,
    /// by ``sendHeader(_:_:)`` for a `Connection` header, and by ``sendError(_:_:explain:)``.
    @exclusivity(unchecked) public var closeConnection = true

    /// The status sent for this request, for the access log.
    @exclusivity(unchecked) public private(set) var responseStatus: Int?
    /// Why the server is ending the connection, once it is: a request rejected before its handler ran (a
    /// malformed or oversized head or body), or a timeout. `nil` while the connection goes on, and when the
    /// client ends it. For ``finish()``, which may log or count it.
    @exclusivity(unchecked) public internal(set) var serverCloseReason: HTTPCloseReason?
    @exclusivity(unchecked) private var headersBuffer: [UInt8] = []
    /// ``HTTPResponseWriter/bytesWritten`` when the head ended: what follows is the body.
    @exclusivity(unchecked) private var bodyStart: Int?
    @exclusivity(unchecked) private var requestStart = 0
    @exclusivity(unchecked) private var dateCache: (time: time_t, text: String) = (0, "")

    /// Made by the server, one per connection.
    public required init() {}

    // MARK: Hooks

    /// The connection is open; called before the first request. May be overridden.
    open func setup() throws {}

    /// The connection is ending; called once, after the last response, also after an error. May be overridden.
    open func finish() {}

    /// Answers `Expect: 100-continue` before the body is read: `100 Continue` by default. Return false
    /// after sending an error (a 417, say) to refuse the body. May be overridden.
    open func handleExpect100() throws -> Bool {
        sendResponseOnly(100)
        try endHeaders()
        return true
    }

    /// Python's answer to a method with no `do_` method.
    public func sendUnsupportedMethod() throws {
        try sendError(501, "Unsupported method ('\(command)')")
    }

    // MARK: Responding

    /// Starts a response: the status line, `Server` and `Date` (buffered until ``endHeaders()``).
    public func sendResponse(_ code: Int, _ message: String? = nil) {
        sendResponseOnly(code, message)
        guard !isHTTP09 else { return }
        // Both lines change at most once a second: kept as bytes, made again when the second changes.
        let now = Glibc.time(nil)
        if serverAndDate.time != now {
            var lines: [UInt8] = []
            Self.appendHeaderLine("Server", serverHeader, to: &lines)
            Self.appendHeaderLine("Date", date(now), to: &lines)
            serverAndDate = (now, lines)
        }
        headersBuffer.append(contentsOf: serverAndDate.lines)
    }

    /// The `Server` and `Date` lines of the second `time` (`Date` is to the second).
    @exclusivity(unchecked) private var serverAndDate: (time: time_t, lines: [UInt8]) = (0, [])
    /// The last status line sent with its standard reason, and its code.
    @exclusivity(unchecked) private var statusLine: (code: Int, line: [UInt8]) = (0, [])

    /// ``versionString()``, once per handler: its parts are class attributes.
    private lazy var serverHeader = versionString()
    /// ``protocolVersion``, once per handler.
    private lazy var statusLineVersion = protocolVersion

    /// The status line alone (buffered until ``endHeaders()``); nothing for an HTTP/0.9 request.
    public func sendResponseOnly(_ code: Int, _ message: String? = nil) {
        if code >= 200 || responseStatus == nil { responseStatus = code }
        guard !isHTTP09 else { return }
        if message == nil && statusLine.code == code {
            headersBuffer.append(contentsOf: statusLine.line)
            return
        }
        let version = statusLineVersion
        let reason = message ?? HTTP.reason(code)
        var line: [UInt8] = []
        Self.appendLatin1(version, to: &line)
        line.append(32)
        line.appendDecimal(code)
        line.append(32)
        Self.appendLatin1(reason, to: &line)
        line.append(13)
        line.append(10)
        headersBuffer.append(contentsOf: line)
        if message == nil { statusLine = (code, line) }
    }

    /// One header (buffered until ``endHeaders()``). A `Connection: close` or `keep-alive` header sets
    /// ``closeConnection``.
    public func sendHeader(_ keyword: String, _ value: String) {
        if !isHTTP09 { Self.appendHeaderLine(keyword, value, to: &headersBuffer) }
        if keyword.utf8.count == 10 && keyword.lowercased() == "connection" {
            sentConnectionHeader = true
            if value.lowercased() == "close" {
                closeConnection = true
            } else if value.lowercased() == "keep-alive" {
                closeConnection = false
            }
        }
    }

    /// A header with a number for its value: `sendHeader(keyword, String(value))` without the string.
    func sendHeader(_ keyword: String, _ value: Int) {
        guard !isHTTP09 else { return }
        var keyword = keyword
        let appended = withDecimalDigits(value) { digits in
            keyword.withUTF8 { Self.appendASCIILine($0, digits, to: &headersBuffer) }
        }
        if !appended { Self.appendHeaderLine(keyword, String(value), to: &headersBuffer) }
    }

    /// `keyword: value` and the line end: in one append when both are ASCII (the common case), else as Latin-1.
    private static func appendHeaderLine(_ keyword: String, _ value: String, to head: inout [UInt8]) {
        var (keyword, value) = (keyword, value)
        let appended = keyword.withUTF8 { name in value.withUTF8 { appendASCIILine(name, $0, to: &head) } }
        guard !appended else { return }
        appendLatin1(keyword, to: &head)
        head.append(UInt8(ascii: ":"))
        head.append(UInt8(ascii: " "))
        appendLatin1(value, to: &head)
        head.append(13)
        head.append(10)
    }

    /// `name: value` and the line end, put together on the stack and appended to `head` at once (each append
    /// to an array checks its uniqueness and capacity); false, and nothing appended, unless both are ASCII.
    private static func appendASCIILine(
        _ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>, to head: inout [UInt8]
    ) -> Bool {
        guard HTTP.isASCII(UnsafeRawBufferPointer(name)), HTTP.isASCII(UnsafeRawBufferPointer(value)) else {
            return false
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: name.count + value.count + 4) { line in
            var at = line.baseAddress!
            if let base = name.baseAddress { at.update(from: base, count: name.count) }
            at += name.count
            at[0] = UInt8(ascii: ":")
            at[1] = UInt8(ascii: " ")
            at += 2
            if let base = value.baseAddress { at.update(from: base, count: value.count) }
            at += value.count
            at[0] = 13
            at[1] = 10
            head.append(contentsOf: UnsafeBufferPointer(line))
        }
        return true
    }

    /// Whether the request is HTTP/0.9, which has no head in its response (kept with ``requestVersion``: asked
    /// for by every header line).
    @exclusivity(unchecked) private var isHTTP09 = false

    /// Whether the response's head has a `Connection` header already.
    @exclusivity(unchecked) private var sentConnectionHeader = false

    /// Ends the head and writes it to ``wfile``. While the server drains (`BaseServer.shutdown(gracePeriod:)`,
    /// or `HTTPService.stopKeepAlive()`), a response that would keep the connection open says `Connection: close`
    /// (unless the handler sent a `Connection` header itself) and the connection closes after it. A response whose
    /// head went out before keeps its connection: the next request is answered with `Connection: close`.
    public func endHeaders() throws {
        guard !isHTTP09 else { return }
        if !closeConnection, !sentConnectionHeader,
            attachedServer?.isDraining == true || attachedService?.isDraining == true
        {
            sendHeader("Connection", "close")
        }
        headersBuffer.append(13)
        headersBuffer.append(10)
        try flushHeaders()
    }

    /// Writes the buffered head to ``wfile``.
    public func flushHeaders() throws {
        guard !headersBuffer.isEmpty else { return }
        defer { headersBuffer.removeAll(keepingCapacity: true) }  // the next response's head reuses the space
        try wfile.write(headersBuffer)
        if let status = responseStatus, status >= 200 { bodyStart = wfile.bytesWritten }
    }

    /// Sends an error response and closes the connection after it: Python's `send_error`, with its HTML
    /// page (none for 1xx, 204, 205 and 304, and no body for HEAD).
    public func sendError(_ code: Int, _ message: String? = nil, explain: String? = nil) throws {
        let phrase = HTTP.reason(code)
        let message = message ?? (phrase.isEmpty ? "???" : phrase)
        let explain = explain ?? (phrase.isEmpty ? "???" : HTTP.explanation(code))
        logError("code \(code), message \(message)")
        sendResponse(code, message)
        sendHeader("Connection", "close")
        var body: [UInt8]?
        if HTTP1Session.responseHasBody(method: "GET", status: code) {
            let page =
                errorMessageFormat
                .replacingAll("%(code)d", "\(code)")
                .replacingAll("%(code)s", "\(code)")
                .replacingAll("%(message)s", htmlEscape(message, quote: false))
                .replacingAll("%(explain)s", htmlEscape(explain, quote: false))
            body = Array(page.utf8)
            sendHeader("Content-Type", errorContentType)
            sendHeader("Content-Length", body!.count)
        }
        try endHeaders()
        if command != "HEAD", let body { try wfile.write(body) }
    }

    // MARK: Logging

    /// Logs the request once its response has been sent: one access line at `info` level with the Common
    /// Log Format's fields (`127.0.0.1 - - [30/Nov/2026:09:15:02 +0000] "GET / HTTP/1.1" 200 1024`): the
    /// client, the time, the request line, the status and the body bytes sent. May be overridden.
    ///
    /// Unlike Python's, called at the end of the request (so the size is known), not by ``sendResponse(_:_:)``.
    /// When ``logger`` is set above `info`, the line is not formatted and ``logMessage(_:level:)`` is not
    /// called; a handler whose `logMessage` writes elsewhere and wants every line overrides this method.
    open func logRequest(code: Int?, size: Int?) {
        guard server.loggerLevel <= .info else { return }  // a quiet server formats no line it would drop
        logMessage("\"\(requestline)\" \(code.map(String.init) ?? "-") \(size.map(String.init) ?? "-")", level: .info)
    }

    /// Logs a problem with a request (an error response, a timeout) at `notice` level. May be overridden.
    open func logError(_ message: String) {
        logMessage(message, level: .notice)
    }

    /// Logs `message` prefixed with the client and the time, control characters escaped as Python does.
    open func logMessage(_ message: String, level: Logger.Level = .info) {
        logger.log(level: level, "\(addressString()) - - [\(logDateTimeString())] \(escapeControlCharacters(message))")
    }

    /// The `Server` header's value.
    public func versionString() -> String {
        "\(serverVersion) \(sysVersion)"
    }

    /// A time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`); now by default.
    public func dateTimeString(_ time: time_t? = nil) -> String {
        guard let time else { return date(Glibc.time(nil)) }
        return HTTPDate.format(time)
    }

    /// `now` as an HTTP date, formatted once a second per connection: no lock shared between threads (nor
    /// inherited by a fork).
    private func date(_ now: time_t) -> String {
        if dateCache.time != now { dateCache = (now, HTTPDate.format(now)) }
        return dateCache.text
    }

    /// Now, as the Common Log Format writes it: `30/Nov/2026:09:15:02 +0000` (UTC).
    public func logDateTimeString() -> String {
        HTTPDate.logFormat(time(nil))
    }

    /// The client's address for logs: the IP address, or the Unix path.
    public func addressString() -> String {
        clientAddress.host ?? "\(clientAddress)"
    }

    // MARK: Driven by the server

    /// Attaches the handler to a connection.
    func attach(server: BaseServer, service: HTTPService, clientAddress: SocketAddress, writer: HTTPResponseWriter) {
        attachedServer = server
        attachedService = service
        self.clientAddress = clientAddress
        self.writer = writer
    }

    /// Starts a request: resets the per-request state from a parsed head. A `nil` body is an empty one, made
    /// only if the handler asks for ``rfile``.
    func begin(_ head: HTTP.RequestHead, body: HTTPRequestBody?) {
        resetResponse()  // the request's own fields are all set below
        requestLineText = nil
        requestHead = head
        command = head.method
        path = head.target
        headers = head.headers
        requestBody = body
        let twoWords = head.versionNumber == .http09 && !head.requestLine.hasSuffix("HTTP/0.9")
        requestVersion = twoWords ? defaultRequestVersion : head.version
        closeConnection = !HTTP1Session.keepsAlive(head, serverVersion: protocolNumber)
    }

    /// ``protocolVersion`` parsed, once per handler (a class attribute: it does not change between requests).
    private lazy var protocolNumber = HTTP.Version(protocolVersion) ?? .http10

    /// Whether the request's `Expect: 100-continue` applies (both sides at HTTP/1.1).
    func wantsContinue(_ head: HTTP.RequestHead) -> Bool {
        HTTP1Session.wantsContinue(head, serverVersion: protocolNumber)
    }

    /// Answers a request that could not be parsed: Python's `send_error` from `parse_request`.
    func reject(_ error: HTTP.ParseError) throws {
        resetRequest()
        requestline = error.requestLine
        requestVersion = error.status == 414 ? "" : error.version == "HTTP/0.9" ? "HTTP/1.1" : error.version
        try sendError(error.status, error.message)
        closeConnection = true
        serverCloseReason = .rejected(status: error.status, message: error.message)
    }

    private func resetRequest() {
        command = ""
        path = ""
        requestVersion = ""
        requestLineText = nil
        requestHead = nil
        headers = HTTP.Headers()
        requestBody = nil
        closeConnection = true
        resetResponse()
    }

    private func resetResponse() {
        responseStatus = nil
        sentConnectionHeader = false
        headersBuffer.removeAll(keepingCapacity: true)
        bodyStart = nil
        requestStart = writer?.bytesWritten ?? 0
    }

    /// Ends a request once its response was sent: the access line.
    func end() {
        let size =
            bodyStart.map { (writer?.bytesWritten ?? 0) - $0 }
            ?? (requestVersion == "HTTP/0.9" ? (writer?.bytesWritten ?? 0) - requestStart : nil)
        logRequest(code: responseStatus, size: size)
    }

    /// The head buffered but not yet written (a handler that forgot ``endHeaders()``).
    var hasPendingHead: Bool { !headersBuffer.isEmpty }

    /// Appends `text` as Latin-1, as Python encodes headers (`?` for what Latin-1 cannot say).
    private static func appendLatin1(_ text: String, to head: inout [UInt8]) {
        let ascii =
            text.utf8.withContiguousStorageIfAvailable { bytes in
                let ascii = HTTP.isASCII(UnsafeRawBufferPointer(bytes))
                if ascii { head.append(contentsOf: bytes) }  // the common case
                return ascii
            } ?? false  // not contiguous (never on Linux): the Latin-1 path below says the same
        if !ascii {
            head += text.unicodeScalars.map { $0.value < 256 ? UInt8($0.value) : UInt8(ascii: "?") }
        }
    }
}

/// An HTTP/1.x request handler: Python's `http.server.BaseHTTPRequestHandler`, in every mode.
///
/// One handler serves one connection, request after request (keep-alive and pipelining when
/// ``HTTPRequestHandlerBase/protocolVersion`` is `HTTP/1.1`). For each request the server parses the request line and
/// headers (with limits), sets ``HTTPRequestHandlerBase/command``, ``HTTPRequestHandlerBase/path``, ``HTTPRequestHandlerBase/requestVersion``, ``HTTPRequestHandlerBase/headers``, and calls
/// `doGET()`, `doHEAD()`, `doPOST()`... by method: override the ones you serve; a method with no
/// override is answered 501, as Python answers a missing `do_X`.
///
/// ```swift
/// final class Hello: BaseHTTPRequestHandler {
///     override func doGET() throws {
///         let body = Array("Hello, \(path)\n".utf8)
///         sendResponse(200)
///         sendHeader("Content-Type", "text/plain")
///         sendHeader("Content-Length", "\(body.count)")
///         try endHeaders()
///         try wfile.write(body)
///     }
/// }
/// ```
///
/// The same handler runs in every mode. In the blocking modes (``HTTPServer``, ``ThreadingHTTPServer``,
/// ``ForkingHTTPServer``) ``HTTPRequestHandlerBase/rfile`` reads the body from the socket and ``HTTPRequestHandlerBase/wfile`` sends as it goes. In
/// reactor mode (``ReactorHTTPServer``) the body has been read before the `do` method is called and what
/// it writes is sent by the loop as the client reads: nothing a handler does with ``HTTPRequestHandlerBase/rfile`` and ``HTTPRequestHandlerBase/wfile``
/// waits for a client, so the `do` methods must not block in other ways either.
///
/// Class attributes (override as computed properties): ``HTTPRequestHandlerBase/serverVersion``, ``HTTPRequestHandlerBase/sysVersion``,
/// ``HTTPRequestHandlerBase/protocolVersion``, ``HTTPRequestHandlerBase/defaultRequestVersion``, ``HTTPRequestHandlerBase/errorMessageFormat``, ``HTTPRequestHandlerBase/errorContentType``,
/// ``HTTPRequestHandlerBase/timeout``. Handlers are made by the server's factory, one per connection: `init()` for a
/// handler type, or any closure (Python's `functools.partial(Handler, directory=...)`).
open class BaseHTTPRequestHandler: HTTPRequestHandlerBase {
    /// Made by the server, one per connection.
    public required init() {}

    /// Serves the request by ``HTTPRequestHandlerBase/command``: `doGET()` for GET and so on; 501 for other methods. Override
    /// it to serve methods beyond these.
    open func handleCommand() throws {
        switch command {
        case "GET": try doGET()
        case "HEAD": try doHEAD()
        case "POST": try doPOST()
        case "PUT": try doPUT()
        case "DELETE": try doDELETE()
        case "PATCH": try doPATCH()
        case "OPTIONS": try doOPTIONS()
        default: try sendUnsupportedMethod()
        }
    }

    /// GET; 501 unless overridden.
    open func doGET() throws { try sendUnsupportedMethod() }
    /// HEAD; 501 unless overridden.
    open func doHEAD() throws { try sendUnsupportedMethod() }
    /// POST; 501 unless overridden.
    open func doPOST() throws { try sendUnsupportedMethod() }
    /// PUT; 501 unless overridden.
    open func doPUT() throws { try sendUnsupportedMethod() }
    /// DELETE; 501 unless overridden.
    open func doDELETE() throws { try sendUnsupportedMethod() }
    /// PATCH; 501 unless overridden.
    open func doPATCH() throws { try sendUnsupportedMethod() }
    /// OPTIONS; 501 unless overridden.
    open func doOPTIONS() throws { try sendUnsupportedMethod() }
}

/// An HTTP/1.x request handler whose `do` methods may await: ``BaseHTTPRequestHandler``'s API (Python's
/// names, class attributes, ``HTTPRequestHandlerBase/sendResponse(_:_:)``, ``HTTPRequestHandlerBase/wfile``,
/// the access log) with `async throws` methods, for reactor mode.
///
/// ```swift
/// final class Lookup: AsyncHTTPRequestHandler {
///     override var protocolVersion: String { "HTTP/1.1" }
///
///     override func doGET() async throws {
///         let answer = try await backend.fetch(path)  // other connections are served meanwhile
///         sendResponse(200)
///         sendHeader("Content-Length", "\(answer.count)")
///         try endHeaders()
///         try wfile.write(answer)
///     }
/// }
/// let server = try ReactorHTTPServer(address) { Lookup() }
/// ```
///
/// ``ReactorHTTPServer`` runs each request's `do` method in a task on the loop, only for requests to an
/// async handler: while it awaits, the loop serves other connections; requests the same client pipelined
/// meanwhile wait for it, in order. The body has been read before the method runs; what it writes is sent
/// as the client reads. Only ``ReactorHTTPServer`` takes one: the blocking-mode servers refuse it at
/// compile time (their initializers take a ``BaseHTTPRequestHandler``).
open class AsyncHTTPRequestHandler: HTTPRequestHandlerBase {
    /// Made by the server, one per connection.
    public required init() {}

    /// Serves the request by ``HTTPRequestHandlerBase/command``: `doGET()` for GET and so on; 501 for other methods. Override
    /// it to serve methods beyond these.
    open func handleCommand() async throws {
        switch command {
        case "GET": try await doGET()
        case "HEAD": try await doHEAD()
        case "POST": try await doPOST()
        case "PUT": try await doPUT()
        case "DELETE": try await doDELETE()
        case "PATCH": try await doPATCH()
        case "OPTIONS": try await doOPTIONS()
        default: try sendUnsupportedMethod()
        }
    }

    /// GET; 501 unless overridden.
    open func doGET() async throws { try sendUnsupportedMethod() }
    /// HEAD; 501 unless overridden.
    open func doHEAD() async throws { try sendUnsupportedMethod() }
    /// POST; 501 unless overridden.
    open func doPOST() async throws { try sendUnsupportedMethod() }
    /// PUT; 501 unless overridden.
    open func doPUT() async throws { try sendUnsupportedMethod() }
    /// DELETE; 501 unless overridden.
    open func doDELETE() async throws { try sendUnsupportedMethod() }
    /// PATCH; 501 unless overridden.
    open func doPATCH() async throws { try sendUnsupportedMethod() }
    /// OPTIONS; 501 unless overridden.
    open func doOPTIONS() async throws { try sendUnsupportedMethod() }
}

/// `&`, `<`, `>` (and with `quote`, `"` and `'`) as HTML entities: Python's `html.escape`.
func htmlEscape(_ text: String, quote: Bool = true) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for character in text.unicodeScalars {
        switch character {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"" where quote: result += "&quot;"
        case "'" where quote: result += "&#x27;"
        default: result.unicodeScalars.append(character)
        }
    }
    return result
}

/// Control characters as `\xNN` and `\` doubled, as Python's `log_message` writes them.
func escapeControlCharacters(_ text: String) -> String {
    var result = ""
    for scalar in text.unicodeScalars {
        let value = scalar.value
        if value < 0x20 || (0x7f..<0xa0).contains(value) {
            let hex = String(value, radix: 16)
            result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
        } else if scalar == "\\" {
            result += "\\\\"
        } else {
            result.unicodeScalars.append(scalar)
        }
    }
    return result
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        let needle = Array(target.utf8)
        let utf8 = self.utf8
        var index = utf8.startIndex
        while index != utf8.endIndex {
            if utf8[index...].starts(with: needle) {
                return index..<utf8.index(index, offsetBy: needle.count)
            }
            index = utf8.index(after: index)
        }
        return nil
    }
}

/// HTTP dates (RFC 9110 5.6.7), in UTC.
enum HTTPDate {
    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func utc(_ time: time_t) -> tm {
        var time = time
        var parts = tm()
        gmtime_r(&time, &parts)
        return parts
    }

    private static func two(_ value: Int32) -> String {
        value < 10 ? "0\(value)" : "\(value)"
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func format(_ time: time_t) -> String {
        let t = utc(time)
        return
            "\(weekdays[Int(t.tm_wday)]), \(two(t.tm_mday)) \(months[Int(t.tm_mon)]) \(t.tm_year + 1900) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) GMT"
    }

    /// `06/Nov/1994:08:49:37 +0000`.
    static func logFormat(_ time: time_t) -> String {
        let t = utc(time)
        return
            "\(two(t.tm_mday))/\(months[Int(t.tm_mon)])/\(t.tm_year + 1900):\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) +0000"
    }

    /// Parses an HTTP date in any of the three forms RFC 9110 allows: `Sun, 06 Nov 1994 08:49:37 GMT`,
    /// `Sunday, 06-Nov-94 08:49:37 GMT` and `Sun Nov  6 08:49:37 1994`; `nil` for anything else.
    static func parse(_ text: String) -> time_t? {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        var day: Int32?
        var month: Int32?
        var year: Int32?
        var clock: [Int32]?
        switch words.count {
        case 5 where words[4] != "GMT":  // asctime: weekday month day time year
            month = months.firstIndex(of: words[1]).map(Int32.init)
            day = Int32(words[2])
            clock = words[3].split(separator: ":").compactMap { Int32($0) }
            year = Int32(words[4])
        case 6 where words[5] == "GMT":  // IMF-fixdate: weekday day month year time GMT
            day = Int32(words[1])
            month = months.firstIndex(of: words[2]).map(Int32.init)
            year = Int32(words[3])
            clock = words[4].split(separator: ":").compactMap { Int32($0) }
        case 4 where words[3] == "GMT":  // RFC 850: weekday day-month-yy time GMT
            let parts = words[1].split(separator: "-").map(String.init)
            guard parts.count == 3 else { return nil }
            day = Int32(parts[0])
            month = months.firstIndex(of: parts[1]).map(Int32.init)
            year = Int32(parts[2]).map { $0 < 70 ? $0 + 2000 : $0 < 100 ? $0 + 1900 : $0 }
            clock = words[2].split(separator: ":").compactMap { Int32($0) }
        default:
            return nil
        }
        guard let day, let month, let year, let clock, clock.count == 3, (1...31).contains(day),
            (0...23).contains(clock[0]), (0...59).contains(clock[1]), (0...60).contains(clock[2])
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month
        parts.tm_mday = day
        parts.tm_hour = clock[0]
        parts.tm_min = clock[1]
        parts.tm_sec = clock[2]
        return timegm(&parts)
    }
}

/// Why an HTTP server ended a connection (``HTTPRequestHandlerBase/serverCloseReason``).
public enum HTTPCloseReason: Equatable, Sendable {
    /// A request was answered with this error status before its handler ran (400, 413, 414, 431, 501, 505).
    case rejected(status: Int, message: String)
    /// No next request within the keep-alive timeout (`idle`), or a request not read or sent within the
    /// handler's ``HTTPRequestHandlerBase/timeout``.
    case timedOut(idle: Bool)
}
