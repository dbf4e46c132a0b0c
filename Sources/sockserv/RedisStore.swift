import Glibc
import Protocols
import Synchronization

/// A key-value store that executes the commands of a small Redis: PING, ECHO, SET (EX/PX), GET, DEL,
/// EXISTS, INCR, DECR, DBSIZE, FLUSHALL, COMMAND, CONFIG GET, QUIT, and DEBUG SLEEP (a blocking call, handed out by
/// ``blockingWork(_:)``). Thread-safe; keys expire lazily.
public final class RedisStore: Sendable {
    private struct Entry {
        var value: [UInt8]
        /// Monotonic milliseconds after which the key no longer exists.
        var expiresAt: UInt64?
    }

    /// A key, hashed in one call over its bytes (an array of bytes would feed the hasher byte by byte).
    private struct Key: Hashable {
        let bytes: [UInt8]

        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    private let entries = Mutex<[Key: Entry]>([:])

    public init() {}

    /// What a command produced: the reply, and whether to close the connection after sending it (QUIT).
    public struct Outcome: Equatable, Sendable {
        public let reply: RESP.Reply
        public let close: Bool

        public init(reply: RESP.Reply, close: Bool) {
            self.reply = reply
            self.close = close
        }
    }

    /// Executes one command. `now` is monotonic milliseconds, for expiry.
    public func execute(_ arguments: [[UInt8]], now: UInt64) -> Outcome {
        guard let first = arguments.first else { return Outcome(reply: .error("ERR empty command"), close: false) }
        // The lowercased name is a small string (no allocation), compared by its bits.
        let name = Self.commandName(first)
        let args = arguments.dropFirst()
        func reply(_ reply: RESP.Reply) -> Outcome { Outcome(reply: reply, close: false) }
        func arity(_ valid: Bool) -> RESP.Reply? {
            valid ? nil : .error("ERR wrong number of arguments for '\(name)' command")
        }
        switch name {  // the names compared in this order: the commonest first
        case "set":
            return reply(set(args, name: name, now: now))
        case "get":
            if let error = arity(args.count == 1) { return reply(error) }
            return reply(.bulk(entries.withLock { Self.live(&$0, Key(bytes: args.first!), now)?.value }))
        case "incr", "decr":
            if let error = arity(args.count == 1) { return reply(error) }
            return reply(increment(args.first!, by: name == "incr" ? 1 : -1, now: now))
        case "ping":
            if let error = arity(args.count <= 1) { return reply(error) }
            return reply(args.first.map { .bulk($0) } ?? .simple("PONG"))
        case "echo":
            if let error = arity(args.count == 1) { return reply(error) }
            return reply(.bulk(args.first!))
        case "quit":
            return Outcome(reply: .ok, close: true)
        case "command":
            return reply(.array([]))
        case "config":
            // Enough for redis-benchmark's start-up probe (CONFIG GET save / appendonly).
            guard args.count >= 2, String(decoding: args.first!, as: UTF8.self).lowercased() == "get" else {
                return reply(.error("ERR only CONFIG GET is supported"))
            }
            return reply(.array(args.dropFirst().flatMap { [RESP.Reply.bulk($0), .bulk([])] }))
        case "del", "exists":
            if let error = arity(!args.isEmpty) { return reply(error) }
            let count = entries.withLock { entries in
                args.reduce(0) { count, bytes in
                    let key = Key(bytes: bytes)
                    guard Self.live(&entries, key, now) != nil else { return count }
                    if name == "del" { entries[key] = nil }
                    return count + 1
                }
            }
            return reply(.integer(count))
        case "dbsize":
            return reply(
                .integer(
                    entries.withLock { entries in
                        Array(entries.keys).filter { Self.live(&entries, $0, now) != nil }.count
                    }))
        case "flushall":
            entries.withLock { $0.removeAll() }
            return reply(.ok)
        case "debug":  // a valid DEBUG SLEEP is blocking work (blockingWork), never executed here
            guard let subcommand = args.first, Self.commandName(subcommand) == "sleep" else {
                return reply(.error("ERR DEBUG supports only SLEEP seconds"))
            }
            if let error = arity(args.count == 2) { return reply(error) }
            return reply(.error("ERR DEBUG SLEEP takes 0 to \(Int(Self.longestSleep)) seconds"))
        default:
            let preview = args.prefix(3).map { "'\(String(decoding: $0, as: UTF8.self))'" }.joined(separator: " ")
            return reply(
                .error(
                    "ERR unknown command '\(String(decoding: first, as: UTF8.self))', with args beginning with: \(preview)"
                ))
        }
    }

    /// The longest `DEBUG SLEEP`, in seconds: a client cannot hold a thread longer.
    public static let longestSleep = 10.0

    /// `DEBUG SLEEP seconds` (0 to ``longestSleep``, fractions allowed, as Redis's): the calling thread sleeps, then
    /// the reply is `+OK`. A blocking call as real handlers make, for a workload that mixes them in. Anything else,
    /// a malformed DEBUG included, is `nil`: ``execute(_:now:)`` answers it.
    public func blockingWork(_ arguments: [[UInt8]]) -> (@Sendable () -> RESP.Reply)? {
        guard arguments.count == 3, Self.commandName(arguments[0]) == "debug",
            Self.commandName(arguments[1]) == "sleep",
            let seconds = Double(String(decoding: arguments[2], as: UTF8.self)),
            (0...Self.longestSleep).contains(seconds)
        else { return nil }
        return {
            var asked = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
            var left = timespec()
            while nanosleep(&asked, &left) != 0 && errno == EINTR { asked = left }
            return .ok
        }
    }

    /// The command's name in lowercase ASCII (names longer than 16 bytes are never known commands).
    private static func commandName(_ bytes: [UInt8]) -> String {
        guard bytes.count <= 16 else { return "" }
        // Lowered straight into the string's storage: no copy of the array (a name this short is a small string).
        return String(unsafeUninitializedCapacity: bytes.count) { storage in
            for (index, byte) in bytes.enumerated() { storage[index] = (65...90).contains(byte) ? byte | 0x20 : byte }
            return bytes.count
        }
    }

    private func set(_ args: ArraySlice<[UInt8]>, name: String, now: UInt64) -> RESP.Reply {
        guard args.count == 2 || args.count == 4 else {
            return .error("ERR wrong number of arguments for 'set' command")
        }
        let first = args.startIndex  // a slice of the command: indices go on from the name's
        var expiresAt: UInt64?
        if args.count == 4 {
            let option = String(decoding: args[first + 2], as: UTF8.self).uppercased()
            guard option == "EX" || option == "PX" else { return .error("ERR syntax error") }
            guard let amount = UInt64(String(decoding: args[first + 3], as: UTF8.self)), amount > 0 else {
                return .error("ERR invalid expire time in 'set' command")
            }
            let (milliseconds, overflow) = amount.multipliedReportingOverflow(by: option == "EX" ? 1000 : 1)
            let (deadline, late) = now.addingReportingOverflow(milliseconds)
            guard !overflow, !late else { return .error("ERR invalid expire time in 'set' command") }
            expiresAt = deadline
        }
        entries.withLock { $0[Key(bytes: args[first])] = Entry(value: args[first + 1], expiresAt: expiresAt) }
        return .ok
    }

    private func increment(_ bytes: [UInt8], by delta: Int, now: UInt64) -> RESP.Reply {
        let key = Key(bytes: bytes)
        return entries.withLock { entries in
            // One hash of the key for a live entry: found by index, replaced in place.
            var index = entries.index(forKey: key)
            if let found = index, let expiresAt = entries.values[found].expiresAt, expiresAt <= now {
                entries.remove(at: found)
                index = nil
            }
            let current = index.map { entries.values[$0] }
            let value: Int
            if let current {
                guard let parsed = Self.integer(current.value) else {
                    return .error("ERR value is not an integer or out of range")
                }
                value = parsed
            } else {
                value = 0
            }
            let (result, overflow) = value.addingReportingOverflow(delta)
            if overflow { return .error("ERR increment or decrement would overflow") }
            let entry = Entry(value: Self.decimal(result), expiresAt: current?.expiresAt)
            if let index { entries.values[index] = entry } else { entries[key] = entry }
            return .integer(result)
        }
    }

    /// `value` in decimal.
    private static func decimal(_ value: Int) -> [UInt8] {
        var digits: [UInt8] = []
        digits.reserveCapacity(20)
        digits.appendDecimal(value)
        return digits
    }

    /// A decimal integer as Redis stores it (optional `-`, digits, no spaces), or `nil`.
    private static func integer(_ bytes: [UInt8]) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        let negative = bytes[0] == UInt8(ascii: "-")
        let digits = negative ? bytes.dropFirst() : bytes[...]
        guard !digits.isEmpty else { return nil }
        var value = 0
        for byte in digits {
            guard (48...57).contains(byte) else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) =
                negative
                ? shifted.subtractingReportingOverflow(Int(byte - 48)) : shifted.addingReportingOverflow(Int(byte - 48))
            if overflow1 || overflow2 { return nil }
            value = next
        }
        return value
    }

    /// The entry for `key` unless it has expired (then it is removed).
    private static func live(_ entries: inout [Key: Entry], _ key: Key, _ now: UInt64) -> Entry? {
        guard let entry = entries[key] else { return nil }
        if let expiresAt = entry.expiresAt, expiresAt <= now {
            entries[key] = nil
            return nil
        }
        return entry
    }
}
