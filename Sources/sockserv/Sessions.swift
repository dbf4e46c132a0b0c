import Glibc
import Protocols
import Reactor

/// One connection's protocol state, sans I/O: bytes in, replies out. Blocking and async handlers
/// are thin shells around it.
protocol Session {
    /// Consumes what it can of `input` (leaving an incomplete request there), appending replies to `output`.
    /// - Returns: how many requests were answered, and false when the connection should close after `output`.
    mutating func consume(_ input: inout ByteBuffer, into output: inout [UInt8]) -> (requests: Int, keepOpen: Bool)
}

/// Each line back.
struct EchoSession: Session {
    let maxLineLength: Int

    init(limits: Limits = .default) {
        maxLineLength = limits.lineLength
    }

    mutating func consume(_ input: inout ByteBuffer, into output: inout [UInt8]) -> (requests: Int, keepOpen: Bool) {
        // Copy every complete line straight from the input to the output, checking each line's length.
        let (lines, end, tooLong) = input.withUnsafeReadableBytes { bytes -> (Int, Int, Bool) in
            var lines = 0
            var start = 0
            while start < bytes.count, let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                if newline - start > maxLineLength { return (lines, start, true) }
                lines += 1
                start = newline + 1
            }
            if bytes.count - start > maxLineLength { return (lines, start, true) }
            output.append(contentsOf: bytes[..<start])
            return (lines, start, false)
        }
        input.moveReaderIndex(forwardBy: end)
        return (lines, !tooLong)
    }
}

/// A small Redis: pipelined RESP2 commands against a shared store.
struct RESPSession: Session {
    let store: RedisStore
    var limits = Limits.default

    mutating func consume(_ input: inout ByteBuffer, into output: inout [UInt8]) -> (requests: Int, keepOpen: Bool) {
        var requests = 0
        while true {
            let parsed: (arguments: [[UInt8]], consumed: Int)?
            do {
                parsed = try input.withUnsafeReadableBytes { (bytes) throws(RESP.ProtocolError) in
                    try RESP.parseCommand(bytes, limits: limits)
                }
            } catch {
                RESP.Reply.error("ERR \(error.message)").encode(into: &output)
                return (requests, false)
            }
            guard let (arguments, consumed) = parsed else { return (requests, true) }
            input.moveReaderIndex(forwardBy: consumed)
            if arguments.isEmpty { continue }
            let outcome = store.execute(arguments, now: monotonicMilliseconds())
            outcome.reply.encode(into: &output)
            requests += 1
            if outcome.close { return (requests, false) }
        }
    }
}

/// HTTP/1.1 with keep-alive and pipelining.
struct HTTPSession: Session {
    let responder: HTTPResponder
    let limits: Limits
    /// Request body bytes still to skip.
    var bodyToSkip = 0

    init(responder: HTTPResponder, limits: Limits = .default) {
        self.responder = responder
        self.limits = limits
    }

    mutating func consume(_ input: inout ByteBuffer, into output: inout [UInt8]) -> (requests: Int, keepOpen: Bool) {
        var requests = 0
        while true {
            if bodyToSkip > 0 {
                let skipped = min(bodyToSkip, input.readableBytes)
                input.moveReaderIndex(forwardBy: skipped)
                bodyToSkip -= skipped
                if bodyToSkip > 0 { return (requests, true) }
            }
            let parsed: (head: HTTP.RequestHead, consumed: Int)?
            do {
                parsed = try input.withUnsafeReadableBytes { (bytes) throws(HTTP.ParseError) in
                    try HTTP.parseRequestHead(bytes, limits: limits)
                }
            } catch {
                output += error.response.encoded()
                return (requests + 1, false)
            }
            guard let (head, consumed) = parsed else { return (requests, true) }
            input.moveReaderIndex(forwardBy: consumed)
            bodyToSkip = head.bodyLength
            let response = responder.respond(to: head)
            output += response.encoded(headOnly: head.method == "HEAD")
            requests += 1
            if response.close { return (requests, false) }
        }
    }
}

/// Milliseconds of the monotonic clock, for key expiry.
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
