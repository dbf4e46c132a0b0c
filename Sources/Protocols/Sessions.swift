import Foundation  // memchr

/// One connection's protocol state, sans I/O: bytes in, replies out. Blocking, async and callback
/// handlers are thin shells around it, and the fuzzers drive it directly.
public protocol Session {
    /// Consumes what it can of `input` (an incomplete request stays unconsumed), appending replies to `output`.
    /// - Returns: how many bytes of `input` were consumed, how many requests were answered, and false when the
    ///   connection should close after `output` (``closeReason`` then says why).
    mutating func consume(_ input: UnsafeRawBufferPointer, into output: inout [UInt8])
        -> (consumed: Int, requests: Int, keepOpen: Bool)

    /// Why the session asked to close; `nil` while it has not.
    var closeReason: SessionCloseReason? { get }

    /// The blocking work the last ``consume(_:into:)`` stopped at, once: a request whose reply waits for a call that
    /// may block. The caller runs it where blocking stalls no one else (the request's own thread, or a loop's
    /// blocking pool), appends its reply to the output, then consumes on; until then the session consumes nothing.
    mutating func takeBlockingWork() -> BlockingWork?
}

extension Session {
    /// Sessions that never block have none.
    public mutating func takeBlockingWork() -> BlockingWork? { nil }
}

/// Work a reply waits for that may block (a call into a library without async I/O, a disk read, Redis's
/// `DEBUG SLEEP`), handed out by ``Session/takeBlockingWork()``.
public struct BlockingWork: Sendable {
    /// Does the work; returns the reply's bytes.
    public let run: @Sendable () -> [UInt8]

    public init(_ run: @escaping @Sendable () -> [UInt8]) {
        self.run = run
    }
}

/// Why a ``Session`` asked for its connection to be closed.
public enum SessionCloseReason: Equatable, Sendable, CustomStringConvertible {
    /// The client asked (RESP's `QUIT`).
    case requested
    /// Well-formed input over one of the ``Limits``; the message is the one the client was sent, if any.
    case inputLimit(String)
    /// Malformed input; the message is the error the client was sent.
    case protocolError(String)

    public var description: String {
        switch self {
        case .requested: return "the client asked to close"
        case .inputLimit(let message), .protocolError(let message): return message
        }
    }
}

/// Line framing: where the complete lines of a byte stream end.
public enum LineFraming {
    /// Scans `bytes` for complete lines (each ending in `\n`) no longer than `maxLength` before their newline.
    /// - Returns: how many complete lines there are, where the last one ends, and whether a line (complete
    ///   or not) is longer than `maxLength`, in which case the scan stops before it.
    public static func scan(_ bytes: UnsafeRawBufferPointer, maxLength: Int) -> (lines: Int, end: Int, tooLong: Bool) {
        guard let base = bytes.baseAddress else { return (0, 0, false) }
        var lines = 0
        var start = 0
        // memchr: a generic per-byte search is tens of times slower unoptimized (the debug builds the tests run).
        while start < bytes.count, let found = memchr(base + start, Int32(UInt8(ascii: "\n")), bytes.count - start) {
            let newline = UnsafeRawPointer(found) - base
            if newline - start > maxLength { return (lines, start, true) }
            lines += 1
            start = newline + 1
        }
        return (lines, start, bytes.count - start > maxLength)
    }
}

/// Each line back.
public struct EchoSession: Session {
    public let maxLineLength: Int
    public private(set) var closeReason: SessionCloseReason?

    public init(limits: Limits = .default) {
        maxLineLength = limits.lineLength
    }

    public mutating func consume(_ input: UnsafeRawBufferPointer, into output: inout [UInt8])
        -> (consumed: Int, requests: Int, keepOpen: Bool)
    {
        // Every complete line goes straight from the input to the output; a line over the limit closes.
        let (lines, end, tooLong) = LineFraming.scan(input, maxLength: maxLineLength)
        output.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[..<end]))
        if tooLong { closeReason = .inputLimit("a line longer than \(maxLineLength) bytes") }
        return (end, lines, !tooLong)
    }
}

/// What a RESP session runs its commands against: the application (a store).
public protocol RESPCommandHandler: Sendable {
    /// Executes one command (its name and arguments).
    /// - Returns: the reply, and whether the connection should close after it (QUIT).
    func execute(_ arguments: [[UInt8]]) -> (reply: RESP.Reply, close: Bool)

    /// The blocking call a command's reply waits for, or `nil` for a command ``execute(_:)`` answers at once.
    func blockingWork(_ arguments: [[UInt8]]) -> (@Sendable () -> RESP.Reply)?
}

extension RESPCommandHandler {
    /// No command blocks.
    public func blockingWork(_ arguments: [[UInt8]]) -> (@Sendable () -> RESP.Reply)? { nil }
}

/// Pipelined RESP2 commands, each answered by the application; one that blocks
/// (``RESPCommandHandler/blockingWork(_:)``) stops the consuming until its reply is in (``takeBlockingWork()``).
public struct RESPSession<Commands: RESPCommandHandler>: Session {
    public let commands: Commands
    public let limits: Limits
    public private(set) var closeReason: SessionCloseReason?
    private var pendingWork: BlockingWork?

    public init(commands: Commands, limits: Limits = .default) {
        self.commands = commands
        self.limits = limits
    }

    public mutating func consume(_ input: UnsafeRawBufferPointer, into output: inout [UInt8])
        -> (consumed: Int, requests: Int, keepOpen: Bool)
    {
        guard pendingWork == nil else { return (0, 0, true) }  // the reply waiting for its work comes first
        var consumed = 0
        var requests = 0
        while true {
            let parsed: (arguments: [[UInt8]], consumed: Int)?
            do {
                parsed = try RESP.parseCommand(UnsafeRawBufferPointer(rebasing: input[consumed...]), limits: limits)
            } catch {
                RESP.Reply.error("ERR \(error.message)").encode(into: &output)
                closeReason = error.exceedsLimit ? .inputLimit(error.message) : .protocolError(error.message)
                return (consumed, requests, false)
            }
            guard let (arguments, length) = parsed else { return (consumed, requests, true) }
            consumed += length
            if arguments.isEmpty { continue }
            if let work = commands.blockingWork(arguments) {
                pendingWork = BlockingWork {
                    var reply: [UInt8] = []
                    work().encode(into: &reply)
                    return reply
                }
                return (consumed, requests + 1, true)
            }
            let outcome = commands.execute(arguments)
            outcome.reply.encode(into: &output)
            requests += 1
            if outcome.close {
                closeReason = .requested
                return (consumed, requests, false)
            }
        }
    }

    public mutating func takeBlockingWork() -> BlockingWork? {
        defer { pendingWork = nil }
        return pendingWork
    }
}
