/// HTTP/1.x request heads parsed from bytes and responses encoded to bytes, sans I/O.
public enum HTTP {
    /// Why a request could not be parsed; answered with ``status`` and the connection closed.
    public enum ParseError: Error, Equatable, Sendable {
        case badRequest(String)
        /// The head is over ``Limits/headLength``.
        case headTooLarge
        /// The body announced is over ``Limits/requestLength``.
        case bodyTooLarge

        /// The status code to answer with.
        public var status: Int {
            switch self {
            case .badRequest: return 400
            case .headTooLarge: return 431
            case .bodyTooLarge: return 413
            }
        }

        /// The plain-text response to send before closing: the status and what was wrong.
        public var response: Response {
            switch self {
            case .badRequest(let detail): return .error(status, detail)
            case .headTooLarge: return .error(status, "the request head is over the limit")
            case .bodyTooLarge: return .error(status, "the request body is over the limit")
            }
        }
    }

    /// A parsed request line and headers.
    public struct RequestHead: Equatable, Sendable {
        public var method: String
        public var target: String
        /// 0 for HTTP/1.0, 1 for HTTP/1.1.
        public var minorVersion: Int
        public var headers: [(name: String, value: String)]
        /// Bytes of body that follow the head (`Content-Length`), to be skipped.
        public var bodyLength: Int

        /// The first value of a header, by case-insensitive name.
        public func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        /// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`,
        /// HTTP/1.0 only with `Connection: keep-alive`.
        public var keepAlive: Bool {
            let tokens = (header("Connection") ?? "").lowercased().split(separator: ",").map { $0.trimmingSpaces }
            if tokens.contains("close") { return false }
            return minorVersion >= 1 || tokens.contains("keep-alive")
        }

        public static func == (lhs: RequestHead, rhs: RequestHead) -> Bool {
            lhs.method == rhs.method && lhs.target == rhs.target && lhs.minorVersion == rhs.minorVersion
                && lhs.bodyLength == rhs.bodyLength
                && lhs.headers.map { [$0.name, $0.value] } == rhs.headers.map { [$0.name, $0.value] }
        }
    }

    /// Parses the request head at the start of `bytes`.
    /// - Returns: the head and the bytes it took (not counting the body), or `nil` if incomplete.
    /// - Throws: ``ParseError`` for malformed heads, or heads or bodies over `limits`.
    public static func parseRequestHead(
        _ bytes: UnsafeRawBufferPointer, limits: Limits = .default
    ) throws(ParseError) -> (head: RequestHead, consumed: Int)? {
        let maxHeadLength = limits.headLength
        // Find the blank line ending the head; bare LF line ends are accepted too.
        var lines: [Slice<UnsafeRawBufferPointer>] = []
        var lineStart = 0
        var end: Int?
        var index = 0
        let limit = min(bytes.count, maxHeadLength + 1)
        while index < limit {
            if bytes[index] == UInt8(ascii: "\n") {
                var lineEnd = index
                if lineEnd > lineStart && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                if lineEnd == lineStart {
                    if lines.isEmpty {
                        lineStart = index + 1  // tolerate blank lines before a request (RFC 9112 2.2)
                    } else {
                        end = index + 1
                        break
                    }
                } else {
                    lines.append(bytes[lineStart..<lineEnd])
                    lineStart = index + 1
                }
            }
            index += 1
        }
        guard let end else {
            if bytes.count > maxHeadLength { throw .headTooLarge }
            return nil
        }
        guard end <= maxHeadLength else { throw .headTooLarge }
        var head = try parseRequestLine(lines[0])
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                throw .badRequest("malformed header line")
            }
            let name = line[line.startIndex..<colon]
            guard name.allSatisfy(isTokenByte) else { throw .badRequest("invalid header name") }
            // RFC 9110 5.5: CR, LF and NUL in a field value are invalid (LF already ended the line).
            guard !line[(colon + 1)...].contains(where: { $0 == 0 || $0 == 13 }) else {
                throw .badRequest("invalid header value")
            }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces
            head.headers.append((String(decoding: name, as: UTF8.self), value))
        }
        if head.header("Transfer-Encoding") != nil {
            throw .badRequest("request bodies with Transfer-Encoding are not supported")
        }
        let lengths = Set(head.headers.filter { $0.name.lowercased() == "content-length" }.map(\.value))
        if let length = lengths.first {
            guard lengths.count == 1, !length.isEmpty, length.utf8.count <= 18,
                length.utf8.allSatisfy({ (48...57).contains($0) }),
                let value = Int(length)
            else { throw .badRequest("invalid Content-Length") }
            guard value <= limits.requestLength else { throw .bodyTooLarge }
            head.bodyLength = value
        }
        if head.minorVersion == 1 && head.header("Host") == nil { throw .badRequest("HTTP/1.1 request without Host") }
        return (head, end)
    }

    private static func parseRequestLine(_ line: Slice<UnsafeRawBufferPointer>) throws(ParseError) -> RequestHead {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte), !parts[1].isEmpty else {
            throw .badRequest("malformed request line")
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        let minor: Int
        switch version {
        case "HTTP/1.1": minor = 1
        case "HTTP/1.0": minor = 0
        default: throw .badRequest("unsupported version \(version)")
        }
        let target = String(decoding: parts[1], as: UTF8.self)
        guard target.hasPrefix("/") || target == "*", !parts[1].contains(where: { $0 < 0x21 || $0 == 0x7f }) else {
            throw .badRequest("invalid request target")
        }
        return RequestHead(
            method: String(decoding: parts[0], as: UTF8.self), target: target, minorVersion: minor, headers: [],
            bodyLength: 0)
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// A response to encode.
    public struct Response: Equatable, Sendable {
        public var status: Int
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]
        /// Close the connection after sending.
        public var close: Bool

        public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], close: Bool = false)
        {
            self.status = status
            self.headers = headers
            self.body = body
            self.close = close
        }

        /// A plain-text error response that closes the connection.
        public static func error(_ status: Int, _ message: String? = nil, close: Bool = true) -> Response {
            let text = "\(status) \(reason(status))\(message.map { ": \($0)" } ?? "")\n"
            return Response(
                status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(text.utf8),
                close: close)
        }

        /// The encoded response; `headOnly` leaves out the body (for HEAD) but keeps its Content-Length.
        public func encoded(headOnly: Bool = false) -> [UInt8] {
            var text = "HTTP/1.1 \(status) \(HTTP.reason(status))\r\n"
            for (name, value) in headers { text += "\(name): \(value)\r\n" }
            text += "Content-Length: \(body.count)\r\n"
            if close { text += "Connection: close\r\n" }
            text += "\r\n"
            var bytes = Array(text.utf8)
            if !headOnly { bytes += body }
            return bytes
        }

        public static func == (lhs: Response, rhs: Response) -> Bool {
            lhs.status == rhs.status && lhs.body == rhs.body && lhs.close == rhs.close
                && lhs.headers.map { [$0.name, $0.value] } == rhs.headers.map { [$0.name, $0.value] }
        }
    }

    /// The reason phrase for a status code.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 301: return "Moved Permanently"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 413: return "Content Too Large"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        default: return "Status"
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
