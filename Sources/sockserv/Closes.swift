import Logging
import Protocols
import Reactor
import SocketServer
import SocketServerHTTP

/// Why the server refused or closed a connection. Each one is logged once, at its ``level``, and
/// counted by reason in the exit summary and the metrics.
enum CloseReason: Int, CaseIterable {
    /// Refused: `--max-connections` were open.
    case connectionLimit
    /// Refused: the client is in no `--allow` range.
    case allowList
    /// Idle longer than `--idle-timeout` (http: no next request in time, or a request not read in time).
    case idleTimeout
    /// Input over `--max-line`, `--max-head`, `--max-bulk` or `--max-request`.
    case inputLimit
    /// Malformed input.
    case protocolError
    /// The TLS handshake failed (a plaintext client, an unknown certificate, a timeout).
    case tlsHandshake
    /// Still busy at the end of the `--grace` period after SIGINT or SIGTERM.
    case gracePeriod
    /// proxy: the upstream did not resolve, refused, timed out, or reset the connection.
    case upstream
    /// `--proxy-protocol`: no valid PROXY protocol header (malformed, cut short, or not within its timeout).
    case proxyHeader
    /// Any other error in serving it.
    case error

    /// The value of the metrics' `reason` label.
    var label: String {
        switch self {
        case .connectionLimit: return "connection_limit"
        case .allowList: return "allow_list"
        case .idleTimeout: return "idle_timeout"
        case .inputLimit: return "input_limit"
        case .protocolError: return "protocol_error"
        case .tlsHandshake: return "tls_handshake"
        case .gracePeriod: return "grace_period"
        case .upstream: return "upstream"
        case .proxyHeader: return "proxy_header"
        case .error: return "error"
        }
    }

    /// How the summary and the log say it.
    var words: String { label.replacingOccurrences(of: "_", with: " ") }

    /// Whether the connection was refused before it was served.
    var isRefusal: Bool { self == .connectionLimit || self == .allowList }

    /// Errors and limits show at the default level (info); an idle timeout is routine and shows at info,
    /// an allow-list refusal at notice.
    var level: Logger.Level {
        switch self {
        case .idleTimeout: return .info
        case .allowList: return .notice
        case .connectionLimit, .inputLimit, .protocolError, .gracePeriod, .upstream, .proxyHeader: return .warning
        case .tlsHandshake, .error: return .error
        }
    }

    /// The reason a session asked to close for; `nil` when the client asked (QUIT).
    init?(_ reason: SessionCloseReason?) {
        switch reason {
        case .inputLimit?: self = .inputLimit
        case .protocolError?: self = .protocolError
        case .requested?, nil: return nil
        }
    }

    /// The reason an HTTP connection was ended for.
    init(_ reason: HTTPCloseReason) {
        switch reason {
        case .rejected(let status, _): self = [413, 414, 431].contains(status) ? .inputLimit : .protocolError
        case .timedOut: self = .idleTimeout
        }
    }

    /// The reason for an error that ended a connection.
    init(_ error: any Error) {
        switch error {
        case let error as TLSError:
            switch error {
            case .handshakeFailed, .closedDuringHandshake, .handshakeTimedOut, .plainHTTPRequest: self = .tlsHandshake
            default: self = .error
            }
        case ReactorError.timedOut: self = .idleTimeout
        case ServerError.proxyHeader: self = .proxyHeader
        default: self = .error
        }
    }
}

/// sockserv's log: swift-log, bootstrapped by `serve` (`--log-level`) to standard error.
let serveLogger = Logger(label: "sockserv")

extension SharedCounters {
    /// Counts and logs, once, that the server refused or closed the connection from `client` (at the reason's
    /// level unless `level` is given).
    func closed(_ client: SocketAddress, _ reason: CloseReason, _ detail: Any? = nil, level: Logger.Level? = nil) {
        add(reason)
        let verb = reason.isRefusal ? "refused" : "closed"
        serveLogger.log(
            level: level ?? reason.level,
            "\(verb) \(client): \(reason.words)\(detail.map { ": \(String(describing: $0))" } ?? "")")
    }
}
