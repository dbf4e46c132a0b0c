/// HTTP/1.x request heads and chunked bodies parsed from bytes, sans I/O: what `http.server`'s
/// `parse_request` does, with limits, and the chunked decoding Python leaves out.
public enum HTTP {
    /// Why a request could not be served: Python's `send_error(status, message, explain)` arguments.
    /// The server answers with ``status`` and closes the connection.
    public struct ParseError: Error, Equatable, Sendable {
        /// The status to answer with: 400, 413, 414, 431, 501 or 505.
        public var status: Int
        /// The short message, as Python words it (`Bad request version ('HTTP/1.2.3')`).
        public var message: String
        /// What the request line said before the error, for the access log; empty when unreadable.
        public var requestLine: String
        /// The request's version when it was read before the error (`HTTP/0.9` until then).
        public var version: String

        public init(status: Int, message: String, requestLine: String = "", version: String = "HTTP/0.9") {
            self.status = status
            self.message = message
            self.requestLine = requestLine
            self.version = version
        }
    }

    /// A protocol version, `HTTP/major.minor`.
    public struct Version: Comparable, Sendable, CustomStringConvertible {
        public var major: Int
        public var minor: Int

        public init(_ major: Int, _ minor: Int) {
            self.major = major
            self.minor = minor
        }

        /// Parses `HTTP/1.1` as Python does: two dot-separated runs of at most 10 digits.
        public init?(_ text: some StringProtocol) {
            // One pass over the bytes: no substrings, no split (this runs for every request).
            var major = 0
            var minor = 0
            var digits = 0
            var sawDot = false
            var index = 0
            for byte in text.utf8 {
                defer { index += 1 }
                if index < 5 {
                    guard byte == Self.prefix[index] else { return nil }
                    continue
                }
                if byte == UInt8(ascii: ".") {
                    guard !sawDot, digits > 0 else { return nil }
                    sawDot = true
                    digits = 0
                    continue
                }
                guard (48...57).contains(byte), digits < 10 else { return nil }
                digits += 1
                if sawDot { minor = minor * 10 + Int(byte - 48) } else { major = major * 10 + Int(byte - 48) }
            }
            guard index > 5, sawDot, digits > 0 else { return nil }
            self.init(major, minor)
        }

        private static let prefix = Array("HTTP/".utf8)

        public static let http09 = Version(0, 9)
        public static let http10 = Version(1, 0)
        public static let http11 = Version(1, 1)

        public var description: String { "HTTP/\(major).\(minor)" }

        public static func < (lhs: Version, rhs: Version) -> Bool {
            (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
        }
    }

    /// One header field.
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Header fields in the order received, looked up by case-insensitive name (Python's `headers`).
    public struct Headers: Sequence, Sendable, ExpressibleByDictionaryLiteral {
        public private(set) var fields: [Field] = []

        public init() {}

        public init(dictionaryLiteral elements: (String, String)...) {
            fields = elements.map { Field(name: $0.0, value: $0.1) }
        }

        public mutating func add(_ name: String, _ value: String) {
            fields.append(Field(name: name, value: value))
        }

        /// Room for `count` fields without growing.
        public mutating func reserveCapacity(_ count: Int) {
            fields.reserveCapacity(count)
        }

        /// Whether a field `name` is present.
        public func contains(_ name: String) -> Bool {
            fields.contains { sameName($0.name, name) }
        }

        /// Whether `token` (lowercase ASCII) is one of the comma-separated tokens of the `name` fields, compared
        /// without regard to case: ``tokens(_:)``'s `contains`, with no array or string made.
        public func containsToken(_ token: StaticString, in name: String) -> Bool {
            fields.contains { field in
                guard sameName(field.name, name) else { return false }
                var value = field.value
                return value.withUTF8 { bytes in
                    var start = 0
                    while start <= bytes.count {  // each item between commas, spaces and tabs around it trimmed
                        var end = start
                        while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
                        var (first, last) = (start, end)
                        while first < last && (bytes[first] == 32 || bytes[first] == 9) { first += 1 }
                        while last > first && (bytes[last - 1] == 32 || bytes[last - 1] == 9) { last -= 1 }
                        if isToken(token, UnsafeBufferPointer(rebasing: bytes[first..<last])) { return true }
                        start = end + 1
                    }
                    return false
                }
            }
        }

        /// Whether `item` is `token` (lowercase ASCII) in any case.
        private func isToken(_ token: StaticString, _ item: UnsafeBufferPointer<UInt8>) -> Bool {
            guard item.count == token.utf8CodeUnitCount else { return false }
            for offset in 0..<item.count where asciiLowercased(item[offset]) != token.utf8Start[offset] {
                return false
            }
            return true
        }

        /// The first value of the field `name`, or `nil` (Python's `headers.get(name)`).
        public subscript(_ name: String) -> String? {
            fields.first { sameName($0.name, name) }?.value
        }

        /// Every value of the field `name`, in order (Python's `headers.get_all(name)`).
        public func values(_ name: String) -> [String] {
            fields.filter { sameName($0.name, name) }.map(\.value)
        }

        /// The comma-separated tokens of every `name` field, lowercased.
        public func tokens(_ name: String) -> [String] {
            values(name).flatMap { $0.lowercased().split(separator: ",").map { $0.trimmingSpaces } }
        }

        public var count: Int { fields.count }

        public func makeIterator() -> IndexingIterator<[Field]> {
            fields.makeIterator()
        }

        private func asciiLowercased(_ byte: UInt8) -> UInt8 {
            byte >= 65 && byte <= 90 ? byte | 0x20 : byte
        }

        /// ASCII case-insensitive equality, without allocating.
        private func sameName(_ a: String, _ b: String) -> Bool {
            guard a.utf8.count == b.utf8.count else { return false }
            var (x, y) = (a.utf8.makeIterator(), b.utf8.makeIterator())
            while let p = x.next(), let q = y.next() {
                if p != q && asciiLowercased(p) != asciiLowercased(q) { return false }
            }
            return true
        }
    }

    /// How the request's body is framed.
    public enum Body: Equatable, Sendable {
        /// No body.
        case none
        /// `Content-Length` bytes.
        case length(Int)
        /// `Transfer-Encoding: chunked`: decode with ``ChunkedDecoder``.
        case chunked
    }

    /// A parsed request line and headers.
    public struct RequestHead: Sendable {
        /// The request line without its line end (Python's `requestline`).
        public var requestLine: String {
            get { storedRequestLine ?? "\(method) \(target) \(version)" }
            set { storedRequestLine = newValue }
        }
        /// The line as sent when it is not its three words joined by single spaces (a common line is rebuilt
        /// only when asked for: most are never logged).
        var storedRequestLine: String?
        /// The method (Python's `command`).
        public var method: String
        /// The request target, with a leading `//...` reduced to one `/` as Python does (an open-redirect guard).
        public var target: String
        /// The version as sent (Python's `request_version`); `HTTP/0.9` for a two-word request line.
        public var version: String
        /// ``version`` as numbers.
        public var versionNumber: Version
        public var headers: Headers
        public var body: Body

        /// Whether the client asked for `100 Continue` before sending its body (`Expect: 100-continue`).
        public var expectsContinue: Bool {
            headers["Expect"]?.lowercased() == "100-continue"
        }
    }

    /// The most header fields in one request, as Python's `http.client._MAXHEADERS`; over it is 431.
    public static let maxHeaderCount = 100

    /// Parses the request head at the start of `bytes`, as Python's `parse_request` and `parse_headers`.
    ///
    /// A two-word request line is HTTP/0.9 (`GET` only) and has no headers. Limits: the request line is at most
    /// `limits.headLength` bytes (over: 414), the whole head too (over: 431), at most ``maxHeaderCount`` fields
    /// (over: 431), a body at most `limits.requestLength` bytes (over: 413). Beyond Python: header names must be
    /// tokens and values free of CR and NUL, obsolete line folding is refused, `Content-Length` must be one
    /// decimal number, and `Transfer-Encoding` may only be `chunked` (501 otherwise), never with `Content-Length`.
    /// - Returns: the head and the bytes it took (not counting the body), or `nil` if incomplete.
    /// - Throws: ``ParseError`` with the status and Python's message.
    public static func parseRequestHead(
        _ bytes: UnsafeRawBufferPointer, limits: Limits = .default
    ) throws(ParseError) -> (head: RequestHead, consumed: Int)? {
        let maxHead = limits.headLength
        // Blank lines before a request are skipped (RFC 9112 2.2).
        var start = 0
        while start < bytes.count, bytes[start] == 13 || bytes[start] == 10 { start += 1 }
        guard let lineEnd = lineFeed(in: bytes, from: start, within: maxHead + 2) else {
            if bytes.count - start > maxHead + 1 { throw ParseError(status: 414, message: "Request-URI Too Long") }
            return nil
        }
        var requestLineBytes = bytes[start..<lineEnd]
        if requestLineBytes.last == 13 { requestLineBytes = requestLineBytes.dropLast() }
        guard requestLineBytes.count <= maxHead else { throw ParseError(status: 414, message: "Request-URI Too Long") }
        // Latin-1, as Python decodes it: every byte is one character.
        var head: RequestHead
        if let common = commonRequestLine(requestLineBytes) {
            head = common
        } else {
            head = try parseRequestLine(latin1(requestLineBytes))
        }
        if head.versionNumber == .http09 { return (head, lineEnd + 1) }

        // The header lines, up to the blank one: each read in one pass over its bytes (this runs for every
        // request; the generic collection algorithms over slices cost several times more).
        head.headers.reserveCapacity(8)
        var lineStart = lineEnd + 1
        while true {
            guard let end = lineFeed(in: bytes, from: lineStart, within: maxHead + 2) else {
                if bytes.count - start > maxHead {
                    throw ParseError(
                        status: 431, message: "Line too long", requestLine: head.requestLine, version: head.version)
                }
                return nil
            }
            guard end + 1 - start <= maxHead else {
                throw ParseError(
                    status: 431, message: "Request header fields too large", requestLine: head.requestLine,
                    version: head.version)
            }
            var lineEnd = end
            if lineEnd > lineStart && bytes[lineEnd - 1] == 13 { lineEnd -= 1 }
            let first = lineStart
            lineStart = end + 1
            if lineEnd == first { break }
            func bad(_ message: String) -> ParseError {
                ParseError(status: 400, message: message, requestLine: head.requestLine, version: head.version)
            }
            guard head.headers.count < maxHeaderCount else {
                throw ParseError(
                    status: 431, message: "Too many headers", requestLine: head.requestLine, version: head.version)
            }
            guard bytes[first] != 32 && bytes[first] != 9 else { throw bad("Obsolete line folding") }
            // The name: at least one token byte, then the colon.
            var colon = first
            while colon < lineEnd && isTokenByte(bytes[colon]) { colon += 1 }
            guard colon > first, colon < lineEnd, bytes[colon] == UInt8(ascii: ":") else {
                throw bad("Bad header line")
            }
            // RFC 9110 5.5: CR and NUL in a field value are invalid (LF already ended the line).
            for index in (colon + 1)..<lineEnd where bytes[index] == 0 || bytes[index] == 13 {
                throw bad("Bad header value")
            }
            head.headers.add(
                String(decoding: bytes[first..<colon], as: UTF8.self), latin1(trimmed(bytes[(colon + 1)..<lineEnd])))
        }
        head.body = try bodyFraming(head, limits: limits)
        return (head, lineStart)
    }

    /// The common request line, `METHOD TARGET HTTP/1.x` in printable ASCII with one space between the words,
    /// read straight from its bytes; `nil` for any other (``parseRequestLine(_:)`` then says what it is).
    private static func commonRequestLine(_ bytes: Slice<UnsafeRawBufferPointer>) -> RequestHead? {
        var spaces = (bytes.startIndex, bytes.startIndex)
        var count = 0
        for index in bytes.startIndex..<bytes.endIndex {  // not .indices: its type's metadata is looked up per call
            let byte = bytes[index]
            if byte == 32 {
                count += 1
                if count == 1 { spaces.0 = index } else if count == 2 { spaces.1 = index } else { return nil }
            } else if byte < 0x21 || byte > 0x7E {
                return nil
            }
        }
        guard count == 2, spaces.0 > bytes.startIndex, spaces.1 > spaces.0 + 1, spaces.1 + 1 < bytes.endIndex else {
            return nil
        }
        let methodBytes = bytes[bytes.startIndex..<spaces.0]
        guard methodBytes.allSatisfy(isTokenByte) else { return nil }
        // HTTP/1.1 and HTTP/1.0 are recognized from their bytes and named by literals (no string is made).
        let versionBytes = bytes[(spaces.1 + 1)...]
        let versionText: String
        let number: Version
        if bytesEqual(versionBytes, "HTTP/1.1") {
            (versionText, number) = ("HTTP/1.1", .http11)
        } else if bytesEqual(versionBytes, "HTTP/1.0") {
            (versionText, number) = ("HTTP/1.0", .http10)
        } else {
            versionText = String(decoding: versionBytes, as: UTF8.self)
            guard let parsed = Version(versionText), parsed < Version(2, 0) else { return nil }
            number = parsed
        }
        let targetBytes = bytes[(spaces.0 + 1)..<spaces.1]
        var target = String(decoding: targetBytes, as: UTF8.self)
        var requestLine: String?  // the three words as sent, unless the target changes
        if targetBytes.count > 1 && targetBytes[targetBytes.startIndex + 1] == UInt8(ascii: "/")
            && targetBytes.first == UInt8(ascii: "/")
        {
            requestLine = String(decoding: bytes, as: UTF8.self)
            target = "/" + target.drop { $0 == "/" }
        }
        return RequestHead(
            storedRequestLine: requestLine,
            method: bytesEqual(methodBytes, "GET") ? "GET" : String(decoding: methodBytes, as: UTF8.self),
            target: target,
            version: versionText, versionNumber: number, headers: Headers(), body: .none)
    }

    /// The request line's method, target and version, with Python's checks and messages.
    private static func parseRequestLine(_ requestLine: String) throws(ParseError) -> RequestHead {
        let words = requestLine.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        var version = "HTTP/0.9"
        var number = Version.http09
        if words.count >= 3 {
            let last = words[words.count - 1]
            guard let parsed = Version(last) else {
                throw ParseError(status: 400, message: "Bad request version ('\(last)')", requestLine: requestLine)
            }
            guard parsed < Version(2, 0) else {
                throw ParseError(
                    status: 505, message: "Invalid HTTP version (\(last.dropFirst(5)))", requestLine: requestLine)
            }
            (version, number) = (last, parsed)
        }
        guard (2...3).contains(words.count) else {
            throw ParseError(
                status: 400, message: "Bad request syntax ('\(requestLine)')", requestLine: requestLine,
                version: version)
        }
        let (method, target) = (words[0], words[1])
        if words.count == 2 && method != "GET" {
            throw ParseError(status: 400, message: "Bad HTTP/0.9 request type ('\(method)')", requestLine: requestLine)
        }
        guard method.utf8.allSatisfy(isTokenByte) else {
            throw ParseError(
                status: 400, message: "Bad request method ('\(method)')", requestLine: requestLine, version: version)
        }
        guard !target.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7f }) else {
            throw ParseError(
                status: 400, message: "Bad request target", requestLine: requestLine, version: version)
        }
        var path = target
        if path.hasPrefix("//") { path = "/" + path.drop { $0 == "/" } }
        return RequestHead(
            storedRequestLine: requestLine, method: method, target: path, version: version, versionNumber: number,
            headers: Headers(), body: .none)
    }

    private static func bodyFraming(_ head: RequestHead, limits: Limits) throws(ParseError) -> Body {
        func fail(_ status: Int, _ message: String) -> ParseError {
            ParseError(status: status, message: message, requestLine: head.requestLine, version: head.version)
        }
        // Most requests have neither field: one pass to say so, before the sets and arrays below.
        guard head.headers.contains("Content-Length") || head.headers.contains("Transfer-Encoding") else {
            return .none
        }
        let lengths = Set(head.headers.values("Content-Length"))
        let codings = head.headers.tokens("Transfer-Encoding")
        if !codings.isEmpty {
            guard lengths.isEmpty else { throw fail(400, "Both Transfer-Encoding and Content-Length") }
            guard codings == ["chunked"] else { throw fail(501, "Unsupported Transfer-Encoding") }
            return .chunked
        }
        guard let length = lengths.first else { return .none }
        guard lengths.count == 1, !length.isEmpty, length.utf8.count <= 18,
            length.utf8.allSatisfy({ (48...57).contains($0) }), let value = Int(length)
        else { throw fail(400, "Bad Content-Length") }
        guard value <= limits.requestLength else { throw fail(413, "Request body too large") }
        return value == 0 ? .none : .length(value)
    }

    /// Bytes as Latin-1 text, as Python decodes a request head: every byte is one character.
    static func latin1(_ bytes: Slice<UnsafeRawBufferPointer>) -> String {
        if isASCII(UnsafeRawBufferPointer(rebasing: bytes)) { return String(decoding: bytes, as: UTF8.self) }
        return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
    }

    /// Whether every byte is ASCII (below 0x80): eight bytes at a time (the last eight overlapping), one by one
    /// below eight. Head fields and header values are checked with it on every message.
    @inlinable
    public static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        guard count >= 8 else {
            var high: UInt8 = 0
            for offset in 0..<count { high |= base.load(fromByteOffset: offset, as: UInt8.self) }
            return high < 0x80
        }
        var high = base.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
        var offset = 0
        while offset < count - 8 {
            high |= base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        return high & 0x8080_8080_8080_8080 == 0
    }

    /// Without leading and trailing spaces and tabs.
    static func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, bytes[start] == 32 || bytes[start] == 9 { start += 1 }
        while end > start, bytes[end - 1] == 32 || bytes[end - 1] == 9 { end -= 1 }
        return bytes[start..<end]
    }

    /// Whether `bytes` are exactly `literal`'s.
    @inline(__always)
    static func bytesEqual(_ bytes: Slice<UnsafeRawBufferPointer>, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        var offset = 0
        while offset < bytes.count && bytes[bytes.startIndex + offset] == literal.utf8Start[offset] { offset += 1 }
        return offset == bytes.count
    }

    /// The index of the first line feed in `bytes` at or after `start`, looking at most `limit` bytes.
    @inline(__always)
    static func lineFeed(in bytes: UnsafeRawBufferPointer, from start: Int, within limit: Int) -> Int? {
        var index = start
        let end = min(bytes.count, start + limit)
        while index < end {
            if bytes[index] == 10 { return index }
            index += 1
        }
        return nil
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Decodes a chunked body (RFC 9112 7.1) as its bytes arrive: sizes, data, trailers skipped.
    public struct ChunkedDecoder: Sendable {
        private enum State: Sendable {
            case size
            case data(Int)
            case dataEnd
            case trailer
            case done
        }
        private var state = State.size
        /// The decoded bytes so far, against ``limit``.
        public private(set) var decodedCount = 0
        /// The most decoded bytes accepted (over: 413).
        public let limit: Int
        /// The longest size or trailer line.
        public let maxLineLength: Int

        public init(limit: Int, maxLineLength: Int = 8 * 1024) {
            self.limit = limit
            self.maxLineLength = maxLineLength
        }

        /// Whether the last chunk and the trailers were read.
        public var isComplete: Bool {
            if case .done = state { return true }
            return false
        }

        /// Decodes what it can of `input`, appending the body's bytes to `output`.
        /// - Returns: how many bytes of `input` were consumed; stops after the end of the body.
        /// - Throws: ``ParseError`` (400, or 413 past ``limit``).
        public mutating func decode(_ input: UnsafeRawBufferPointer, into output: inout [UInt8]) throws(ParseError)
            -> Int
        {
            var offset = 0
            while offset < input.count {
                switch state {
                case .done:
                    return offset
                case .data(let remaining):
                    let count = min(remaining, input.count - offset)
                    output.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[offset..<(offset + count)]))
                    offset += count
                    state = remaining == count ? .dataEnd : .data(remaining - count)
                case .size, .dataEnd, .trailer:
                    guard let newline = input[offset...].prefix(maxLineLength + 2).firstIndex(of: 10) else {
                        if input.count - offset > maxLineLength + 1 {
                            throw ParseError(status: 400, message: "Chunk line too long")
                        }
                        return offset
                    }
                    var line = input[offset..<newline]
                    if line.last == 13 { line = line.dropLast() }
                    offset = newline + 1
                    try take(line)
                }
            }
            return offset
        }

        private mutating func take(_ line: Slice<UnsafeRawBufferPointer>) throws(ParseError) {
            switch state {
            case .dataEnd:
                guard line.isEmpty else { throw ParseError(status: 400, message: "Bad chunk end") }
                state = .size
            case .trailer:
                if line.isEmpty { state = .done }
            case .size:
                let digits = line.prefix { $0 != UInt8(ascii: ";") }.reversed().drop { $0 == 32 || $0 == 9 }
                guard !digits.isEmpty, digits.count <= 15,
                    let size = Int(String(decoding: digits.reversed(), as: UTF8.self), radix: 16), size >= 0,
                    digits.allSatisfy({ isHexDigit($0) })
                else { throw ParseError(status: 400, message: "Bad chunk size") }
                guard decodedCount + size <= limit else {
                    throw ParseError(status: 413, message: "Request body too large")
                }
                decodedCount += size
                state = size == 0 ? .trailer : .data(size)
            case .data, .done:
                break
            }
        }

        private func isHexDigit(_ byte: UInt8) -> Bool {
            (48...57).contains(byte) || (65...70).contains(byte) || (97...102).contains(byte)
        }
    }

    /// The reason phrase for a status code (Python's `HTTPStatus.phrase`), `""` for an unknown one.
    public static func reason(_ status: Int) -> String {
        statusTexts[status]?.phrase ?? ""
    }

    /// The longer explanation Python's error page shows (`HTTPStatus.description`), `""` for an unknown code.
    public static func explanation(_ status: Int) -> String {
        statusTexts[status]?.description ?? ""
    }

    /// Python's `HTTPStatus` phrases and descriptions.
    static let statusTexts: [Int: (phrase: String, description: String)] = [
        100: ("Continue", "Request received, please continue"),
        101: ("Switching Protocols", "Switching to new protocol; obey Upgrade header"),
        200: ("OK", "Request fulfilled, document follows"),
        201: ("Created", "Document created, URL follows"),
        202: ("Accepted", "Request accepted, processing continues off-line"),
        203: ("Non-Authoritative Information", "Request fulfilled from cache"),
        204: ("No Content", "Request fulfilled, nothing follows"),
        205: ("Reset Content", "Clear input form for further input"),
        206: ("Partial Content", "Partial content follows"),
        300: ("Multiple Choices", "Object has several resources -- see URI list"),
        301: ("Moved Permanently", "Object moved permanently -- see URI list"),
        302: ("Found", "Object moved temporarily -- see URI list"),
        303: ("See Other", "Object moved -- see Method and URL list"),
        304: ("Not Modified", "Document has not changed since given time"),
        307: ("Temporary Redirect", "Object moved temporarily -- see URI list"),
        308: ("Permanent Redirect", "Object moved permanently -- see URI list"),
        400: ("Bad Request", "Bad request syntax or unsupported method"),
        401: ("Unauthorized", "No permission -- see authorization schemes"),
        403: ("Forbidden", "Request forbidden -- authorization will not help"),
        404: ("Not Found", "Nothing matches the given URI"),
        405: ("Method Not Allowed", "Specified method is invalid for this resource"),
        406: ("Not Acceptable", "URI not available in preferred format"),
        408: ("Request Timeout", "Request timed out; try again later"),
        409: ("Conflict", "Request conflict"),
        410: ("Gone", "URI no longer exists and has been permanently removed"),
        411: ("Length Required", "Client must specify Content-Length"),
        412: ("Precondition Failed", "Precondition in headers is false"),
        413: ("Content Too Large", "Content is too large"),
        414: ("URI Too Long", "URI is too long"),
        415: ("Unsupported Media Type", "Entity body in unsupported format"),
        416: ("Range Not Satisfiable", "Cannot satisfy request range"),
        417: ("Expectation Failed", "Expect condition could not be satisfied"),
        418: ("I'm a Teapot", "Server refuses to brew coffee because it is a teapot."),
        421: ("Misdirected Request", "Server is not able to produce a response"),
        422: ("Unprocessable Content", "Server is not able to process the contained instructions"),
        426: ("Upgrade Required", "Client should switch to a different protocol"),
        428: ("Precondition Required", "The origin server requires the request to be conditional"),
        429: (
            "Too Many Requests",
            "The user has sent too many requests in a given amount of time (\"rate limiting\")"
        ),
        431: (
            "Request Header Fields Too Large",
            "The server is unwilling to process the request because its header fields are too large"
        ),
        500: ("Internal Server Error", "Server got itself in trouble"),
        501: ("Not Implemented", "Server does not support this operation"),
        502: ("Bad Gateway", "Invalid responses from another server/proxy."),
        503: ("Service Unavailable", "The server cannot process the request due to a high load"),
        504: ("Gateway Timeout", "The gateway server did not receive a timely response"),
        505: ("HTTP Version Not Supported", "Cannot fulfill request"),
    ]
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
