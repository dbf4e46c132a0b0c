import Glibc
import Reactor

/// A blocking handler for stream requests with file-like ``rfile`` and ``wfile``: Python's `StreamRequestHandler`.
///
/// Class attributes (override as computed properties): ``timeout``, ``disableNagleAlgorithm``,
/// ``writeBufferSize``. ``finish()`` flushes ``wfile``.
open class StreamRequestHandler: BaseRequestHandler {
    /// The accepted socket (Python's `connection`).
    public let connection: Socket
    /// Buffered reads from the client.
    public let rfile: SocketReader
    /// Writes to the client; sent whole.
    public private(set) var wfile: SocketWriter

    /// Each blocking read waits at most this long, and each write (`wfile.write`, a flush) takes
    /// at most this long in all, as Python's `sendall` since 3.5; past it, `ReactorError.timedOut`. `nil` waits forever.
    open var timeout: Duration? { nil }
    /// Set `TCP_NODELAY` on the connection.
    open var disableNagleAlgorithm: Bool { false }
    /// 0 sends each write at once; a positive size buffers writes until it is exceeded or ``finish()``.
    open var writeBufferSize: Int { 0 }

    public required init(request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        guard case .stream(let socket) = request else { throw ServerError.wrongRequestKind }
        connection = socket
        let metrics = server.metrics
        rfile = SocketReader {
            let bytes = try socket.receive(maxCount: 16 * 1024)
            metrics.bytesReceived.increment(by: bytes.count)
            return bytes
        }
        wfile = SocketWriter(bufferSize: 0) {
            try socket.sendAll($0)
            metrics.bytesSent.increment(by: $0.count)
        }
        try super.init(request: request, clientAddress: clientAddress, server: server)
    }

    /// Applies ``timeout``, ``disableNagleAlgorithm`` and ``writeBufferSize``. Overrides call `super.setup()`.
    open override func setup() throws {
        if let timeout { connection.timeout = timeout }
        if disableNagleAlgorithm { connection.disableNagleAlgorithm() }
        if writeBufferSize > 0 {
            let (socket, metrics) = (connection, server.metrics)
            wfile = SocketWriter(bufferSize: writeBufferSize) {
                try socket.sendAll($0)
                metrics.bytesSent.increment(by: $0.count)
            }
        }
    }

    /// Flushes ``wfile``. Overrides call `super.finish()`. A flush that fails because the client reset or
    /// closed the connection (`ECONNRESET`, `EPIPE`, `ECONNABORTED`, `ENOTCONN`) is not an error of the server's,
    /// and is dropped, as Python's `finish` drops a final socket error.
    open override func finish() throws {
        do {
            try wfile.flush()
        } catch let error as IOError where [ECONNRESET, EPIPE, ECONNABORTED, ENOTCONN].contains(error.errnoCode) {
            return
        }
    }
}
