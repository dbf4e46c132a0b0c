import Reactor
import SocketServer
import SocketServerHTTP

/// `serve http`: the files under `--root` (``SimpleHTTPRequestHandler``, streamed), or without it one
/// line of text at `/`. HTTP/1.1 with keep-alive; the access log at `info` level; counted in the summary.
final class SockservHTTPHandler: SimpleHTTPRequestHandler {
    /// The body of `/` without `--root`.
    static let defaultBody = Array("Hello from sockserv\n".utf8)

    override var protocolVersion: String { "HTTP/1.1" }
    override var serverVersion: String { "sockserv" }
    override var sysVersion: String { "(SocketServerHTTP)" }
    override var timeout: Duration? { idleTimeout }
    /// The server's context, looked up once per connection (the lookup is a protocol cast).
    private lazy var context = server.sessionContext
    /// Read once per connection: asked for by every request, and the context is shared by every thread.
    private lazy var idleTimeout = context.idleTimeout

    /// Whether a directory is served.
    private let servesFiles: Bool

    init(root: String?) {
        servesFiles = root != nil
        super.init(directory: root ?? "/nonexistent")
    }

    required convenience init() {
        self.init(root: nil)
    }

    override func setup() throws {
        let stats = context.stats
        stats.add(.connections)
        stats.add(.open)
    }

    override func finish() {
        let stats = context.stats
        stats.add(.open, -1)
        if let reason = serverCloseReason {
            let detail: String
            switch reason {
            case .rejected(let status, let message): detail = "\(status) \(message)"
            case .timedOut(let idle): detail = idle ? "no next request in time" : "a request not read or sent in time"
            }
            stats.closed(clientAddress, CloseReason(reason), detail)
        }
    }

    override func doGET() throws {
        guard servesFiles else { return try sendFixedPage(body: true) }
        try super.doGET()
    }

    override func doHEAD() throws {
        guard servesFiles else { return try sendFixedPage(body: false) }
        try super.doHEAD()
    }

    private func sendFixedPage(body: Bool) throws {
        guard path == "/" || path.hasPrefix("/?") else { return try sendError(404, "File not found") }
        sendResponse(200)
        sendHeader("Content-Type", "text/plain; charset=utf-8")
        sendHeader("Content-Length", "\(Self.defaultBody.count)")
        try endHeaders()
        if body { try wfile.write(Self.defaultBody) }
    }

    override func logRequest(code: Int?, size: Int?) {
        context.stats.add(.requests)
        super.logRequest(code: code, size: size)
    }
}
