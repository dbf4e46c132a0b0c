import CoreMetrics
import Reactor

/// What a server counts, through `swift-metrics`: the program chooses the backend
/// (`MetricsSystem.bootstrap`, Prometheus for instance); without one, nothing is recorded.
///
/// Every metric has the dimension `server` (the address served). A "request" is Python's: a
/// connection for a stream server, a datagram for a datagram server.
///
/// | label | kind | counts |
/// |---|---|---|
/// | `socketserver_requests_accepted_total` | counter | requests taken by `getRequest` |
/// | `socketserver_requests_refused_total` | counter | requests `verifyRequest` turned down |
/// | `socketserver_requests_in_progress` | meter | accepted and not yet finished: open connections |
/// | `socketserver_requests_finished_total` | counter | requests whose handler has finished |
/// | `socketserver_handler_errors_total` | counter | errors passed to `handleError` |
/// | `socketserver_bytes_received_total` | counter | bytes read by handlers |
/// | `socketserver_bytes_sent_total` | counter | bytes written by handlers |
/// | `socketserver_loop_callbacks_total` | counter | callbacks the server's loop ran (readiness, timers, wake-ups) |
/// | `socketserver_drain_finished_total` | counter | requests that finished in a drain's grace period |
/// | `socketserver_drain_cut_total` | counter | requests cut off at the end of a drain's grace period |
///
/// Forking mode counts in the parent what the parent sees (accepted, refused, in progress, finished);
/// bytes and errors happen in the children, and count only with a backend whose values the children share
/// (sockserv's keeps them in shared memory).
///
/// A backend that exposes the metrics (Prometheus's text format needs a `# HELP` line per family) finds
/// their descriptions in ``help``.
public final class ServerMetrics: @unchecked Sendable {
    /// What each metric counts, by label: the `# HELP` text of an exposition.
    public static let help: [String: String] = [
        "socketserver_requests_accepted_total": "Requests taken by getRequest: connections, or datagrams.",
        "socketserver_requests_refused_total": "Requests verifyRequest turned down.",
        "socketserver_requests_in_progress": "Requests accepted and not yet finished: open connections.",
        "socketserver_requests_finished_total": "Requests whose handler has finished.",
        "socketserver_handler_errors_total": "Errors passed to handleError.",
        "socketserver_bytes_received_total": "Bytes read by handlers.",
        "socketserver_bytes_sent_total": "Bytes written by handlers.",
        "socketserver_loop_callbacks_total":
            "Callbacks the server's loops ran (its group's too): readiness, timers, wake-ups.",
        "socketserver_drain_finished_total": "Requests that finished within a drain's grace period.",
        "socketserver_drain_cut_total": "Requests cut off at the end of a drain's grace period.",
    ]

    let accepted: Counter
    let refused: Counter
    let inProgress: Meter
    let finished: Counter
    let errors: Counter
    let bytesReceived: Counter
    let bytesSent: Counter
    let loopCallbacks: Counter
    let drainFinished: Counter
    let drainCut: Counter
    /// Metrics with `dimensions`, made by `factory` (by default the bootstrapped one).
    public init(dimensions: [(String, String)], factory: any MetricsFactory = MetricsSystem.factory) {
        func counter(_ name: String) -> Counter {
            Counter(label: "socketserver_\(name)", dimensions: dimensions, factory: factory)
        }
        accepted = counter("requests_accepted_total")
        refused = counter("requests_refused_total")
        inProgress = Meter(label: "socketserver_requests_in_progress", dimensions: dimensions, factory: factory)
        finished = counter("requests_finished_total")
        errors = counter("handler_errors_total")
        bytesReceived = counter("bytes_received_total")
        bytesSent = counter("bytes_sent_total")
        loopCallbacks = counter("loop_callbacks_total")
        drainFinished = counter("drain_finished_total")
        drainCut = counter("drain_cut_total")
    }

    /// Counts bytes a handler read (for handlers beyond this module's, which count their own).
    public func countReceived(_ count: Int) {
        bytesReceived.increment(by: count)
    }

    /// Counts bytes a handler wrote.
    public func countSent(_ count: Int) {
        bytesSent.increment(by: count)
    }

    func requestFinished() {
        inProgress.decrement()
        finished.increment()
    }

    /// Adds the callbacks `loop` ran since the last report, whose count is `reported`. Call on the loop thread.
    func reportLoop(_ loop: EventLoop, since reported: inout UInt64) {
        let now = loop.callbacksRun
        if now > reported { loopCallbacks.increment(by: now - reported) }
        reported = now
    }
}
