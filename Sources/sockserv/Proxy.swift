import Glibc
import Protocols
import Reactor
import SocketServer

/// `serve proxy`'s upstream, and what is sent to it first.
struct ProxyConfiguration: Sendable {
    /// The upstream's host (a name or an IP literal) and port.
    let host: String
    let port: Int
    /// How long reaching the upstream may take: resolution and every address tried.
    let connectTimeout: Duration
    /// A PROXY protocol header of this version (1 or 2) written upstream first, with the client's address.
    let sendProxy: Int?

    /// `host:port` as given (IPv6 in brackets).
    var upstream: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The PROXY header for a client at `client` that connected to `server`; `nil` without `--send-proxy`.
    func header(client: SocketAddress, server: SocketAddress?) -> [UInt8]? {
        guard let sendProxy else { return nil }
        guard let source = ProxyAddress(client), let server, let destination = ProxyAddress(server) else {
            return ProxyProtocol.encode(.local, version: sendProxy)
        }
        return ProxyProtocol.encode(.proxied(source: source, destination: destination), version: sendProxy)
    }
}

extension ProxyAddress {
    /// A socket address as a PROXY header carries it; `nil` for an unnamed Unix socket.
    init?(_ address: SocketAddress) {
        switch address.family {
        case .ipv4, .ipv6:
            guard let bytes = address.ipAddressBytes, let port = address.port else { return nil }
            self.init(family: address.family == .ipv4 ? .ipv4 : .ipv6, bytes: bytes, port: port)
        case .unix:
            guard let path = address.path, !path.isEmpty else { return nil }
            self.init(family: .unix, bytes: Array(path.utf8), port: 0)
        }
    }
}

/// Why the upstream could not be used; the client's connection is closed and counted as `upstream`.
struct UpstreamError: Error, CustomStringConvertible {
    let description: String
}

// MARK: Reactor mode

/// Reactor mode's proxy: the client's connection and the upstream's on the same loop, bytes moved as they come.
///
/// Backpressure both ways: when one side's output passes its high watermark, the other side's reading pauses until
/// it drains to the low one, so a slow reader on either side holds at most about a watermark and a read in memory,
/// and the fast side waits in its kernel's buffers. Half-closes pass through (`shutdownOutput`); the pair closes
/// once both directions have ended, or at once when either side fails (a reset, a timeout).
final class CallbackProxyHandler: CallbackRequestHandler {
    private let context: ServeContext
    private let proxy: ProxyConfiguration
    private var connecting: ConnectRequest?
    private var upstream: Connection?
    private var upstreamSide: UpstreamSide?
    private var clientEnded = false
    private var upstreamEnded = false
    /// Set once a close was counted, so that the pair's other end does not count it again.
    private var counted = false

    required init(connection: Connection, clientAddress: SocketAddress, server: BaseServer) {
        context = server.sessionContext
        guard let proxy = context.proxy else { preconditionFailure("a proxy handler without --upstream") }
        self.proxy = proxy
        super.init(connection: connection, clientAddress: clientAddress, server: server)
    }

    override func setup() {
        context.stats.add(.connections)
        context.stats.add(.open)
        if let idle = context.idleTimeout { connection.idleTimeout = idle }  // bytes either way are activity
        // Each side's reading follows the other side's output (below), not its own: paused for its own output too, a
        // side would stop reading the peer that is waiting for it to read (an echo upstream), and neither would move.
        connection.pausesReadingForOutput = false
        connection.pauseReading()  // until the upstream is there: its bytes wait in the kernel
        connecting = Connection.connect(
            host: proxy.host, port: proxy.port, on: connection.loop, timeout: proxy.connectTimeout
        ) { [self] result in connected(result) }
    }

    private func connected(_ result: Result<Connection, any Error>) {
        connecting = nil
        switch result {
        case .failure(let error):
            if error is CancellationError { return }
            upstreamFailed("cannot reach upstream \(proxy.upstream): \(error)")
        case .success(let upstream):
            guard connection.isOpen else { return upstream.close() }
            self.upstream = upstream
            upstream.pausesReadingForOutput = false
            let side = UpstreamSide(handler: self)
            upstreamSide = side
            upstream.delegate = side
            if let header = proxy.header(client: clientAddress, server: connection.localAddress) {
                upstream.write(header)
            }
            context.stats.add(.requests)
            connection.resumeReading()
        }
    }

    /// The client's bytes, to the upstream.
    override func handle(_ buffer: inout ByteBuffer) {
        guard let upstream else { return }  // kept until the upstream is there
        buffer.withUnsafeReadableBytes { upstream.write($0) }
        buffer.clear()
        if upstream.bufferedOutputBytes > upstream.highWatermark { connection.pauseReading() }
    }

    /// The client reads again: the upstream may send more.
    override func handleWritable() {
        upstream?.resumeReading()
    }

    /// The client half-closed: so does the upstream, once what the client sent is delivered.
    override func handleEndOfInput() {
        clientEnded = true
        guard let upstream else { return connection.close() }
        upstream.shutdownOutput()
        if upstreamEnded { closeBoth() }
    }

    /// The upstream's bytes, to the client.
    fileprivate func upstreamReceived(_ buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { connection.write($0) }
        buffer.clear()
        if connection.bufferedOutputBytes > connection.highWatermark { upstream?.pauseReading() }
    }

    fileprivate func upstreamWritable() {
        connection.resumeReading()
    }

    fileprivate func upstreamReachedEnd() {
        upstreamEnded = true
        connection.shutdownOutput()
        if clientEnded { closeBoth() }
    }

    fileprivate func upstreamClosed(_ error: (any Error)?) {
        upstream = nil
        upstreamSide = nil
        guard let error, connection.isOpen else {
            if connection.isOpen && !(clientEnded && upstreamEnded) { connection.close() }
            return
        }
        upstreamFailed("upstream \(proxy.upstream) \(describe(error))")
    }

    private func upstreamFailed(_ detail: String) {
        if !counted {
            counted = true
            context.stats.closed(clientAddress, .upstream, detail)
        }
        connection.close()
    }

    private func closeBoth() {
        upstream?.close()
        connection.close()
    }

    /// A drain ends the pair once what each side was sent is delivered: a stream has no request boundary to wait for.
    override func handleDrain() {
        closeBoth()
    }

    override func finish(error: (any Error)?) {
        let stats = context.stats
        stats.add(.open, -1)
        connecting?.cancel()
        connecting = nil
        if let upstream {
            // The client failed or closed first: the upstream goes too (a reset when the client reset).
            if error != nil { upstream.reset() } else { upstream.close() }
        }
        guard let error, !counted else { return }
        counted = true
        if let error = error as? IOError, isPeerGone(error) { return }
        if case ReactorError.timedOut = error {
            return stats.closed(clientAddress, .idleTimeout, "no bytes either way for \(context.idleTimeout ?? .zero)")
        }
        stats.add(.errors)
        stats.closed(clientAddress, CloseReason(error), error)
    }
}

/// The upstream connection's delegate: hands every event to the client's handler, which owns the pair. It holds the
/// handler strongly: the client's connection may close (and its request end) while the upstream still sends what it
/// was given; the upstream's close drops its delegate, and with it the handler.
private final class UpstreamSide: ConnectionDelegate {
    let handler: CallbackProxyHandler

    init(handler: CallbackProxyHandler) {
        self.handler = handler
    }

    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        handler.upstreamReceived(&buffer)
    }

    func connectionDidBecomeWritable(_ connection: Connection) {
        handler.upstreamWritable()
    }

    func connectionDidReachEnd(_ connection: Connection) {
        handler.upstreamReachedEnd()
    }

    func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
        handler.upstreamClosed(error)
    }
}

/// How an upstream's failure reads in the log: `reset the connection`, `timed out`.
private func describe(_ error: any Error) -> String {
    if let error = error as? IOError {
        return error.errnoCode == ECONNRESET ? "reset the connection" : "failed: \(error.reason)"
    }
    return "failed: \(error)"
}

// MARK: Blocking modes

/// The blocking modes' proxy (sequential, threading, forking): the request's thread (or child) connects to the
/// upstream as Python's `socket.create_connection` does (each address in turn, each within the timeout), then
/// moves bytes both ways with `poll`: a direction reads only once what it read before was sent, so each holds at most
/// one read (64 KiB) and a slow reader on either side stops the other from being read. Sends to a plaintext socket
/// never block; a TLS client's send waits until the client takes it.
final class BlockingProxyHandler: StreamRequestHandler {
    static let chunk = 64 * 1024

    override func handle() throws {
        let context = server.sessionContext
        guard let proxy = context.proxy else { preconditionFailure("a proxy handler without --upstream") }
        let stats = context.stats
        stats.add(.connections)
        stats.add(.open)
        defer { stats.add(.open, -1) }
        let upstream: Socket
        do {
            upstream = try Self.connect(proxy)
        } catch {
            return stats.closed(clientAddress, .upstream, "cannot reach upstream \(proxy.upstream): \(error)")
        }
        defer { upstream.close() }
        stats.add(.requests)
        do {
            if let header = proxy.header(client: clientAddress, server: connection.localAddress) {
                try upstream.sendAll(header)
            }
            try relay(upstream, proxy: proxy, context: context)
        } catch let failure as UpstreamError {
            stats.closed(clientAddress, .upstream, failure)
        } catch let error as IOError where isPeerGone(error) {
            return  // the client reset or vanished
        }
    }

    /// Connects to each of the upstream's addresses in turn until one answers, each bounded by the timeout.
    static func connect(_ proxy: ProxyConfiguration) throws -> Socket {
        let addresses = try SocketAddress.resolve(host: proxy.host, port: proxy.port)
        var failures: [String] = []
        for address in addresses {
            let socket = try Socket(family: address.family, kind: .stream)
            socket.timeout = proxy.connectTimeout  // SO_SNDTIMEO bounds a blocking connect
            do {
                try socket.connect(to: address)
                socket.timeout = nil
                socket.disableNagleAlgorithm()
                return socket
            } catch {
                socket.close()
                failures.append(
                    "\(address): \(error.errnoCode == EINPROGRESS ? "timed out" : error.reason)")
            }
        }
        throw UpstreamError(description: failures.joined(separator: "; "))
    }

    private func relay(_ upstream: Socket, proxy: ProxyConfiguration, context: ServeContext) throws {
        let client = connection
        let metrics = server.metrics
        var toUpstream: [UInt8] = []
        var toClient: [UInt8] = []
        var clientReading = true
        var upstreamReading = true
        var upstreamShut = false
        var clientShut = false
        var idleSince = ContinuousClock.now
        while !server.isDraining {
            // Half-closes pass on once what came before them is delivered.
            if !clientReading && toUpstream.isEmpty && !upstreamShut {
                upstreamShut = true
                try? upstream.shutdown(.write)
            }
            if !upstreamReading && toClient.isEmpty && !clientShut {
                clientShut = true
                try? client.shutdown(.write)
            }
            if !clientReading && !upstreamReading && toUpstream.isEmpty && toClient.isEmpty { return }
            // A TLS client's bytes may wait inside OpenSSL, where poll cannot see them.
            var clientReady = false
            if clientReading && toUpstream.isEmpty && client.usesTLS {
                clientReady = (try? client.waitForInput(timeout: .zero)) ?? true
            }
            var entries = [
                pollfd(
                    fd: client.fileDescriptor,
                    events: Int16(clientReading && toUpstream.isEmpty ? POLLIN : 0)
                        | Int16(toClient.isEmpty ? 0 : POLLOUT),
                    revents: 0),
                pollfd(
                    fd: upstream.fileDescriptor,
                    events: Int16(upstreamReading && toClient.isEmpty ? POLLIN : 0)
                        | Int16(toUpstream.isEmpty ? 0 : POLLOUT),
                    revents: 0),
            ]
            // A side with nothing asked of it is left out (a negative descriptor): poll would report its hang-up or
            // error at once on every pass, and spin. Its end shows when it is next read or written.
            for index in entries.indices where entries[index].events == 0 { entries[index].fd = -1 }
            let ready = clientReady ? 0 : poll(&entries, 2, BlockingSessionHandler.pollInterval)
            if ready < 0 && errno != EINTR { throw IOError(errnoCode: errno, operation: "poll") }
            if ready <= 0 && !clientReady {
                if let idle = context.idleTimeout, ContinuousClock.now - idleSince >= idle {
                    return context.stats.closed(clientAddress, .idleTimeout, "no bytes either way for \(idle)")
                }
                continue
            }
            idleSince = .now
            let clientEvents = entries[0].revents
            let upstreamEvents = entries[1].revents
            let readable = Int16(POLLIN | POLLHUP | POLLERR)
            if clientReady || (clientReading && toUpstream.isEmpty && clientEvents & readable != 0) {
                if let bytes = try client.receiveIfReady(maxCount: Self.chunk) {
                    metrics.countReceived(bytes.count)
                    if bytes.isEmpty { clientReading = false } else { toUpstream = bytes }
                }
            }
            if upstreamReading && toClient.isEmpty && upstreamEvents & readable != 0 {
                do {
                    if let bytes = try upstream.receiveIfReady(maxCount: Self.chunk) {
                        if bytes.isEmpty { upstreamReading = false } else { toClient = bytes }
                    }
                } catch let error as IOError {
                    throw UpstreamError(description: "upstream \(proxy.upstream) \(describe(error))")
                }
            }
            if !toClient.isEmpty && (client.usesTLS || clientEvents & Int16(POLLOUT | POLLERR | POLLHUP) != 0) {
                let sent: Int
                if client.usesTLS {
                    try client.sendAll(toClient)
                    sent = toClient.count
                } else {
                    sent = try toClient.withUnsafeBytes { try client.sendIfReady($0) } ?? 0
                }
                metrics.countSent(sent)
                toClient.removeFirst(sent)
            }
            if !toUpstream.isEmpty && upstreamEvents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                do {
                    let sent = try toUpstream.withUnsafeBytes { try upstream.sendIfReady($0) } ?? 0
                    toUpstream.removeFirst(sent)
                } catch let error as IOError {
                    throw UpstreamError(description: "upstream \(proxy.upstream) \(describe(error))")
                }
            }
        }
    }
}
