/// The request side of one HTTP/1 server connection, sans I/O: bytes in, events out: a request's head,
/// its body's bytes (`Content-Length` framed or chunked, decoded), its end; or the error that ends the
/// connection. Keep-alive, `100-continue` and whether a response has a body are its decisions too. The
/// blocking and the reactor drivers are thin shells over it: they feed it what the socket gave, act on its
/// events, and write what the handler wrote.
///
/// Requests follow one another on the connection (keep-alive and pipelining): after ``Event/end`` the
/// session parses the next request's head. It never looks past the end of the current request before the
/// driver asks for the next event, so a driver decides when to go on (after the response, say).
///
/// Request bytes are copied once: a head into its strings, body bytes into the `body` array the driver
/// passes (from there the handler reads them).
public struct HTTP1Session: Sendable {
    /// What the bytes so far mean.
    public enum Event: Sendable {
        /// A request's head. Its body follows as ``body`` events, then ``end``.
        case head(HTTP.RequestHead)
        /// Bytes of the body were appended to the `body` array (decoded, for a chunked body).
        case body
        /// The request is complete: answer it.
        case end
        /// The input is malformed or over a limit: answer with the error's status, then close. The session
        /// parses nothing more.
        case error(HTTP.ParseError)
    }

    private enum State: Sendable {
        case head
        case length(remaining: Int)
        case chunked(HTTP.ChunkedDecoder)
        /// A head with no body was returned: its end is next.
        case endOfRequest
        case failed
    }

    /// The input limits: the head, the body.
    public let limits: Limits
    private var state = State.head

    public init(limits: Limits = .default) {
        self.limits = limits
    }

    /// Whether the session is between requests: the next bytes begin a request head.
    public var isBetweenRequests: Bool {
        if case .head = state { return true }
        return false
    }

    /// Whether a request's body is being read (its head was returned, its end not yet).
    public var isInBody: Bool {
        switch state {
        case .length, .chunked, .endOfRequest: return true
        case .head, .failed: return false
        }
    }

    /// The next event in `input`, and how many bytes of it were consumed (possibly some, with no event:
    /// a part of a chunked body's framing). `nil` when more input is needed.
    /// - Parameter body: where body bytes are appended.
    public mutating func next(_ input: UnsafeRawBufferPointer, body: inout [UInt8]) -> (event: Event?, consumed: Int) {
        switch state {
        case .failed:
            return (nil, 0)
        case .endOfRequest:
            state = .head
            return (.end, 0)
        case .head:
            let parsed: (head: HTTP.RequestHead, consumed: Int)?
            do {
                parsed = try HTTP.parseRequestHead(input, limits: limits)
            } catch {
                state = .failed
                return (.error(error), 0)
            }
            guard let (head, consumed) = parsed else { return (nil, 0) }
            switch head.body {
            case .none: state = .endOfRequest
            case .length(let length): state = .length(remaining: length)
            case .chunked:
                state = .chunked(HTTP.ChunkedDecoder(limit: limits.requestLength, maxLineLength: limits.headLength))
            }
            return (.head(head), consumed)
        case .length(let remaining):
            guard !input.isEmpty else { return (nil, 0) }
            let count = min(remaining, input.count)
            body.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[..<count]))
            state = count == remaining ? .endOfRequest : .length(remaining: remaining - count)
            return (.body, count)
        case .chunked(var decoder):
            let before = body.count
            let consumed: Int
            do {
                consumed = try decoder.decode(input, into: &body)
            } catch {
                state = .failed
                return (.error(error), 0)
            }
            state = decoder.isComplete ? .endOfRequest : .chunked(decoder)
            if body.count > before || decoder.isComplete { return (.body, consumed) }
            return (nil, consumed)
        }
    }

    /// Whether the connection stays open after the response to `head`, when the server speaks
    /// `serverVersion`: both sides at HTTP/1.1 or later unless either says `Connection: close`; an HTTP/1.0
    /// client that asks for `keep-alive` of an HTTP/1.1 server too. A two-word (HTTP/0.9) request never.
    public static func keepsAlive(_ head: HTTP.RequestHead, serverVersion: HTTP.Version) -> Bool {
        if head.versionNumber == .http09 { return false }
        if head.headers.containsToken("close", in: "Connection") { return false }
        if head.versionNumber >= .http11 && serverVersion >= .http11 { return true }
        return serverVersion >= .http11 && head.headers.containsToken("keep-alive", in: "Connection")
    }

    /// Whether `head` asks for `100 Continue` before its body and the server, at `serverVersion`, may send it.
    public static func wantsContinue(_ head: HTTP.RequestHead, serverVersion: HTTP.Version) -> Bool {
        head.expectsContinue && serverVersion >= .http11 && head.versionNumber >= .http11
    }

    /// Whether a response with `status` to a `method` request carries a body (RFC 9110 6.4.1): not for
    /// `HEAD`, 1xx, 204 and 304. (205 has an empty one.)
    public static func responseHasBody(method: String, status: Int) -> Bool {
        method != "HEAD" && status >= 200 && status != 204 && status != 205 && status != 304
    }
}
