import Glibc
import Protocols
import Reactor
import SocketServer
import Synchronization

/// What the handlers of one server share, owned by the server (``SessionServer/context``): made before
/// serving starts and not changed afterwards.
final class ServeContext: Sendable {
    /// Makes the protocol state for a new connection.
    let makeSession: @Sendable () -> any Session
    /// Close connections idle this long; `nil` never.
    let idleTimeout: Duration?
    /// Counters shared with forked children (and with the other loops' servers).
    let stats: SharedCounters

    init(makeSession: @escaping @Sendable () -> any Session, idleTimeout: Duration?, stats: SharedCounters) {
        self.makeSession = makeSession
        self.idleTimeout = idleTimeout
        self.stats = stats
    }
}

/// What stays process-wide, because a signal handler must reach it: the wake pipe. (The stop flag is the
/// library's: `BaseServer.drainProcess()`.)
enum ProcessSignals {
    /// The write end of the pipe the signal handler wakes the loop with (the self-pipe trick); -1 before.
    static let wakeFD = Atomic<Int32>(-1)
}

/// A server whose handlers share a ``ServeContext``: every server `sockserv serve` makes.
protocol SessionServer: BaseServer {
    var context: ServeContext { get }
}

extension BaseServer {
    /// The context of the sockserv server that accepted a request.
    var sessionContext: ServeContext {
        guard let server = self as? any SessionServer else {
            preconditionFailure("\(type(of: self)) is not a sockserv server: its handlers need a SessionServer")
        }
        return server.context
    }
}

/// Counters in shared anonymous memory, so forked children's requests and bytes count too. Made before
/// any child is forked; never unmapped (the process serves until it exits).
final class SharedCounters: @unchecked Sendable {
    /// A "request" is one echo line, RESP command, HTTP request or datagram; a connection may carry many.
    enum Counter: Int, CaseIterable {
        case connections, open, requests, bytesIn, bytesOut, errors
    }

    private let base: UnsafeMutablePointer<Atomic<Int>>
    private static let slots = Counter.allCases.count + CloseReason.allCases.count

    /// - Throws: ``IOError`` if the shared memory cannot be mapped.
    init() throws(IOError) {
        let size = MemoryLayout<Atomic<Int>>.stride * Self.slots
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let memory = mapped, memory != MAP_FAILED else {
            throw IOError(errnoCode: errno, operation: "mmap of \(size) shared bytes")
        }
        base = memory.bindMemory(to: Atomic<Int>.self, capacity: Self.slots)
        for slot in 0..<Self.slots { (base + slot).initialize(to: Atomic(0)) }
    }

    func add(_ counter: Counter, _ amount: Int = 1) {
        (base + counter.rawValue).pointee.add(amount, ordering: .relaxed)
    }

    subscript(_ counter: Counter) -> Int {
        (base + counter.rawValue).pointee.load(ordering: .relaxed)
    }

    /// Counts a connection refused or closed by the server (``closed(_:_:_:)`` also logs it).
    func add(_ reason: CloseReason) {
        (base + Counter.allCases.count + reason.rawValue).pointee.add(1, ordering: .relaxed)
    }

    subscript(_ reason: CloseReason) -> Int {
        (base + Counter.allCases.count + reason.rawValue).pointee.load(ordering: .relaxed)
    }

    /// Connections refused (before serving) or closed by the server, with the nonzero reasons:
    /// `2 refused (2 connection limit)`.
    func total(refusals: Bool) -> (count: Int, reasons: String) {
        let reasons = CloseReason.allCases.filter { $0.isRefusal == refusals && self[$0] > 0 }
        return (
            reasons.reduce(0) { $0 + self[$1] },
            reasons.map { "\(self[$0]) \($0.words)" }.joined(separator: ", ")
        )
    }

    /// The one-line summary printed on exit:
    /// `3 connections, 5 requests, 30 bytes in, 30 bytes out, 0 errors, 1 refused (1 connection limit),
    /// 1 closed by the server (1 idle timeout)`.
    var summary: String {
        let refused = total(refusals: true)
        let closed = total(refusals: false)
        return "\(self[.connections]) connections, \(self[.requests]) requests, \(self[.bytesIn]) bytes in, "
            + "\(self[.bytesOut]) bytes out, \(self[.errors]) errors, "
            + "\(refused.count) refused\(refused.count > 0 ? " (\(refused.reasons))" : ""), "
            + "\(closed.count) closed by the server\(closed.count > 0 ? " (\(closed.reasons))" : "")"
    }
}
