import Glibc
import Protocols
import Reactor

extension Session {
    /// Runs the session over the readable bytes of `input` and moves its reader past what was consumed:
    /// the one place the tool's handlers meet Protocols' sessions.
    /// - Returns: how many requests were answered, and false when the connection should close after `output`.
    mutating func consume(_ input: inout ByteBuffer, into output: inout [UInt8]) -> (requests: Int, keepOpen: Bool) {
        let (consumed, requests, keepOpen) = input.withUnsafeReadableBytes { consume($0, into: &output) }
        input.moveReaderIndex(forwardBy: consumed)
        return (requests, keepOpen)
    }
}

extension Session {
    /// ``consume(_:into:)``, running any blocking work the session hands out right here, on the calling thread (the
    /// blocking modes' request thread or child, or a loop told to: `--blocking-work loop`); the replies before the
    /// work go to `flush` first.
    mutating func consumeBlocking(
        _ input: inout ByteBuffer, into output: inout [UInt8], flush: (inout [UInt8]) throws -> Void
    ) rethrows -> (requests: Int, keepOpen: Bool) {
        var (requests, keepOpen) = consume(&input, into: &output)
        while keepOpen, let work = takeBlockingWork() {
            if !output.isEmpty { try flush(&output) }
            output += work.run()
            let more = consume(&input, into: &output)
            requests += more.requests
            keepOpen = more.keepOpen
        }
        return (requests, keepOpen)
    }
}

extension RedisStore: RESPCommandHandler {
    public func execute(_ arguments: [[UInt8]]) -> (reply: RESP.Reply, close: Bool) {
        let outcome = execute(arguments, now: monotonicMilliseconds())
        return (outcome.reply, outcome.close)
    }
}

/// Milliseconds of the monotonic clock, for key expiry: the coarse clock (the kernel's last tick, a few
/// milliseconds at most behind, read without the time stamp counter), as Redis reads its clock once per
/// pass of its loop rather than per command.
func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}
