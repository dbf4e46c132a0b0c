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
    /// Counters shared with forked children (and with the group's loops).
    let stats: SharedCounters
    /// Reactor mode: run a session's blocking work on the loop thread itself (`--blocking-work loop`, stalling the
    /// loop's other clients, for comparison) rather than on the loop's blocking pool.
    let blockingWorkOnLoop: Bool
    /// `serve proxy`'s upstream; `nil` for the other protocols.
    let proxy: ProxyConfiguration?

    init(
        makeSession: @escaping @Sendable () -> any Session, idleTimeout: Duration?, stats: SharedCounters,
        blockingWorkOnLoop: Bool = false, proxy: ProxyConfiguration? = nil
    ) {
        self.makeSession = makeSession
        self.idleTimeout = idleTimeout
        self.stats = stats
        self.blockingWorkOnLoop = blockingWorkOnLoop
        self.proxy = proxy
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

/// The tool's own counts, series of ``SharedMetrics`` (so forked children's count too): what the library's
/// `ServerMetrics` cannot know (protocol requests, why a connection was refused or closed) and connections as the
/// tool serves them (after a TLS handshake, refusals not counted). Bytes are the library's.
final class SharedCounters: @unchecked Sendable {  // immutable, and its values are atomics
    /// A "request" is one echo line, RESP command, HTTP request or datagram; a connection may carry many.
    enum Counter: Int, CaseIterable {
        case connections, open, requests, errors
    }

    /// The backend every count of `serve` is in, the library's included.
    let metrics: SharedMetrics
    /// The counters' values, added to and read directly (the path of every connection and request).
    private let values: [UnsafeMutablePointer<Atomic<UInt64>>]
    private let reasons: [SharedMetrics.Series]

    /// The `# HELP` text of each family the tool makes.
    static let help: [String: String] = [
        "sockserv_connections_accepted_total": "Connections accepted and served (refused ones are not counted).",
        "sockserv_connections_open": "Connections being served now.",
        "sockserv_connections_refused_total":
            "Connections refused before serving, by reason: --max-connections reached or not in an --allow range.",
        "sockserv_connections_closed_total":
            "Connections the server closed, by reason (closes by the client are not counted).",
        "sockserv_requests_total":
            "Requests answered: echo lines, RESP commands, HTTP requests or datagrams; proxy: connections passed upstream.",
        "sockserv_handler_errors_total": "Errors that ended a connection (a client's failed TLS handshake is not one).",
    ]

    /// Makes the tool's series in `metrics`, in the order `/metrics` lists them. Call before any child is forked.
    init(metrics: SharedMetrics) {
        self.metrics = metrics
        values = Counter.allCases.map { counter in
            switch counter {
            case .connections: return metrics.series("sockserv_connections_accepted_total", [], kind: .counter)
            case .open: return metrics.series("sockserv_connections_open", [], kind: .gauge)
            case .requests: return metrics.series("sockserv_requests_total", [], kind: .counter)
            case .errors: return metrics.series("sockserv_handler_errors_total", [], kind: .counter)
            }
        }.map(\.value)
        let refusals = CloseReason.allCases.filter(\.isRefusal)
        let closes = CloseReason.allCases.filter { !$0.isRefusal }
        var reasons: [CloseReason: SharedMetrics.Series] = [:]
        for reason in refusals + closes {
            let family = reason.isRefusal ? "sockserv_connections_refused_total" : "sockserv_connections_closed_total"
            reasons[reason] = metrics.series(family, [("reason", reason.label)], kind: .counter)
        }
        self.reasons = CloseReason.allCases.map { reasons[$0]! }
    }

    /// Adds `amount` (negative for the open connections' gauge, an integer here).
    func add(_ counter: Counter, _ amount: Int = 1) {
        values[counter.rawValue].pointee.wrappingAdd(UInt64(bitPattern: Int64(amount)), ordering: .relaxed)
    }

    subscript(_ counter: Counter) -> Int {
        Int(Int64(bitPattern: values[counter.rawValue].pointee.load(ordering: .relaxed)))
    }

    /// Counts a connection refused or closed by the server (``closed(_:_:_:)`` also logs it).
    func add(_ reason: CloseReason) {
        reasons[reason.rawValue].increment(by: Int64(1))
    }

    subscript(_ reason: CloseReason) -> Int { Int(reasons[reason.rawValue].current) }

    /// The sum of every series of the library's family `label` (one per address served): bytes.
    func library(_ label: String) -> Int {
        metrics.series.filter { $0.label == label }.reduce(0) { $0 + Int($1.current) }
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
        let bytesIn = library("socketserver_bytes_received_total")
        let bytesOut = library("socketserver_bytes_sent_total")
        return "\(self[.connections]) connections, \(self[.requests]) requests, \(bytesIn) bytes in, "
            + "\(bytesOut) bytes out, \(self[.errors]) errors, "
            + "\(refused.count) refused\(refused.count > 0 ? " (\(refused.reasons))" : ""), "
            + "\(closed.count) closed by the server\(closed.count > 0 ? " (\(closed.reasons))" : "")"
    }
}
