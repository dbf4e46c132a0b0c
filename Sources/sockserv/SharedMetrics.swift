import CoreMetrics
import Foundation
import Glibc
import Reactor
import Synchronization

/// `serve`'s swift-metrics backend: every value is a slot of one shared anonymous mapping, so what forked
/// children count (bytes, requests, errors, in the library's `ServerMetrics` and the tool's own counters) is
/// counted in the parent too, and the threads of `--loops` add up without a lock.
///
/// A series is a label and its dimensions; asking twice for the same series gives the same slot. The names
/// of the series live in this process's memory: a series first made in a forked child counts in that child
/// only, so every handler is made before the first fork (the library makes a server's when it starts
/// serving; the tool makes its own at start).
///
/// Counters hold integers; meters a `Double` (a gauge the tool makes itself, an integer); a recorder that does
/// not aggregate is a gauge of its last value; an aggregating recorder and a timer are a summary without
/// quantiles (a sum and a count). Nothing is destroyed: a series stays until the process exits.
final class SharedMetrics: MetricsFactory, @unchecked Sendable {
    /// How a series is exposed.
    enum Kind: String {
        case counter, gauge, summary
    }

    /// One series: its identity, its kind and where its value is.
    final class Series: CounterHandler, MeterHandler, RecorderHandler, TimerHandler, @unchecked Sendable {
        let label: String
        let dimensions: [(String, String)]
        let kind: Kind
        /// The value, or for a summary its sum; integers as their bit pattern, a meter's `Double` as its bits.
        let value: UnsafeMutablePointer<Atomic<UInt64>>
        /// A summary's count.
        private let count: UnsafeMutablePointer<Atomic<UInt64>>?
        /// Whether the value is a `Double` (meters, recorders) rather than an integer (counters, timers).
        private let isDouble: Bool
        /// A timer's sum is in nanoseconds, exposed in seconds.
        private let isTimer: Bool

        fileprivate init(
            label: String, dimensions: [(String, String)], kind: Kind, isDouble: Bool, isTimer: Bool,
            value: UnsafeMutablePointer<Atomic<UInt64>>, count: UnsafeMutablePointer<Atomic<UInt64>>?
        ) {
            self.label = label
            self.dimensions = dimensions
            self.kind = kind
            self.isDouble = isDouble
            self.isTimer = isTimer
            self.value = value
            self.count = count
        }

        /// The value now: a counter's count, a gauge's level, a summary's sum (a timer's in seconds).
        var current: Double {
            let bits = value.pointee.load(ordering: .relaxed)
            if isDouble { return Double(bitPattern: bits) }
            let integer = Int64(bitPattern: bits)
            return isTimer ? Double(integer) / 1e9 : Double(integer)
        }

        /// A summary's count of observations; 0 for the other kinds.
        var observations: Int { count.map { Int($0.pointee.load(ordering: .relaxed)) } ?? 0 }

        // CounterHandler
        func increment(by amount: Int64) { value.pointee.wrappingAdd(UInt64(bitPattern: amount), ordering: .relaxed) }
        func reset() { value.pointee.store(0, ordering: .relaxed) }

        // MeterHandler
        func set(_ value: Int64) { set(Double(value)) }
        func set(_ value: Double) { self.value.pointee.store(value.bitPattern, ordering: .relaxed) }
        func increment(by amount: Double) { update { $0 + amount } }
        func decrement(by amount: Double) { update { $0 - amount } }

        // RecorderHandler: a gauge keeps the last value; a summary adds it up.
        func record(_ value: Int64) { record(Double(value)) }
        func record(_ value: Double) {
            guard let count else { return set(value) }
            update { $0 + value }
            count.pointee.wrappingAdd(1, ordering: .relaxed)
        }

        // TimerHandler
        func recordNanoseconds(_ duration: Int64) {
            value.pointee.wrappingAdd(UInt64(bitPattern: duration), ordering: .relaxed)
            count?.pointee.wrappingAdd(1, ordering: .relaxed)
        }

        private func update(_ change: (Double) -> Double) {
            var old = value.pointee.load(ordering: .relaxed)
            while true {
                let new = change(Double(bitPattern: old)).bitPattern
                let (exchanged, original) = value.pointee.compareExchange(
                    expected: old, desired: new, ordering: .relaxed)
                if exchanged { return }
                old = original
            }
        }
    }

    /// The slots in the mapping; slot 0 is the next free slot's index, shared, so that a series a child makes
    /// takes a slot of its own rather than one the parent gives out later.
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>
    private let capacity: Int
    private struct Registry {
        var series: [Series] = []
        var byKey: [String: Series] = [:]
        var overflowLogged = false
    }
    private let registry = Mutex(Registry())

    /// Maps room for `capacity` values (8 bytes each; 4,096 by default, 32 KiB).
    /// - Throws: ``IOError`` if the shared memory cannot be mapped.
    init(capacity: Int = 4096) throws(IOError) {
        let size = MemoryLayout<Atomic<UInt64>>.stride * capacity
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let memory = mapped, memory != MAP_FAILED else {
            throw IOError(errnoCode: errno, operation: "mmap of \(size) shared bytes")
        }
        self.capacity = capacity
        slots = memory.bindMemory(to: Atomic<UInt64>.self, capacity: capacity)
        for slot in 0..<capacity { (slots + slot).initialize(to: Atomic(0)) }
        slots.pointee.store(1, ordering: .relaxed)
    }

    /// Every series made so far, in the order they were first asked for.
    var series: [Series] { registry.withLock { $0.series } }

    /// The series for `label` and `dimensions`, made on first use.
    func series(
        _ label: String, _ dimensions: [(String, String)], kind: Kind, isDouble: Bool = false, isTimer: Bool = false
    ) -> Series {
        let key = ([label] + dimensions.flatMap { [$0.0, $0.1] }).joined(separator: "\u{0}")
        return registry.withLock { registry in
            if let existing = registry.byKey[key] { return existing }
            let value = slot(&registry)
            let count = kind == .summary ? slot(&registry) : nil
            let made = Series(
                label: label, dimensions: dimensions, kind: kind, isDouble: isDouble, isTimer: isTimer, value: value,
                count: count)
            registry.series.append(made)
            registry.byKey[key] = made
            return made
        }
    }

    /// A free shared slot; past the capacity, one in this process's memory (counted here only), with a warning.
    private func slot(_ registry: inout Registry) -> UnsafeMutablePointer<Atomic<UInt64>> {
        let index = Int(slots.pointee.add(1, ordering: .relaxed).oldValue)
        if index < capacity { return slots + index }
        if !registry.overflowLogged {
            registry.overflowLogged = true
            serveLogger.warning("more than \(capacity) metric values: the rest are not shared with forked children")
        }
        let own = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: 1)
        own.initialize(to: Atomic(0))
        return own
    }

    // MetricsFactory

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        series(label, dimensions, kind: .counter)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        series(label, dimensions, kind: .gauge, isDouble: true)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        series(label, dimensions, kind: aggregate ? .summary : .gauge, isDouble: true)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        series(label, dimensions, kind: .summary, isTimer: true)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    /// Every series in the Prometheus text format (0.0.4), a family's series together in the order the family
    /// was first made, each family with `# HELP` (from `help`, else its name) and `# TYPE`.
    func exposition(help: [String: String]) -> String {
        var families: [String: [Series]] = [:]
        var order: [String] = []
        for series in series {
            if families[series.label] == nil { order.append(series.label) }
            families[series.label, default: []].append(series)
        }
        var text = ""
        for name in order {
            let members = families[name] ?? []
            text += "# HELP \(name) \(help[name] ?? name)\n# TYPE \(name) \(members[0].kind.rawValue)\n"
            for series in members {
                let labels = Self.labels(series.dimensions)
                if series.kind == .summary {
                    text += "\(name)_sum\(labels) \(Self.number(series.current))\n"
                    text += "\(name)_count\(labels) \(series.observations)\n"
                } else {
                    text += "\(name)\(labels) \(Self.number(series.current))\n"
                }
            }
        }
        return text
    }

    /// `{name="value",...}` with `\`, `"` and newlines escaped; empty without dimensions.
    static func labels(_ dimensions: [(String, String)]) -> String {
        guard !dimensions.isEmpty else { return "" }
        let pairs = dimensions.map { name, value in
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }
        return "{\(pairs.joined(separator: ","))}"
    }

    /// An integer as one (`12`), anything else with its fraction (`0.250000`).
    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: "%.6f", value)
    }
}
