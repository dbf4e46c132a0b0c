import Protocols
import Reactor

/// Reads a PROXY protocol header (haproxy's version 1 or 2) from the start of an accepted socket, below any TLS,
/// taking exactly the header's bytes: what follows (the request, or a TLS handshake) is left for the handler.
///
/// Bytes are peeked, parsed (``ProxyProtocol/parse(_:)``) and taken only once they are known to be the header's:
/// all of them while it is incomplete, its exact length once it is whole.
struct ProxyHeaderReader {
    /// The longest header: version 2's 16 bytes and its longest payload.
    static let longest = 16 + ProxyProtocol.longestV2Payload
    private var taken: [UInt8] = []

    /// Reads what is waiting now: the header once it is whole, `nil` while more must come.
    /// - Throws: ``ServerError/proxyHeader(_:)`` for bytes that are not a header, or an end of input before one.
    mutating func step(_ socket: Socket) throws -> ProxyHeader? {
        while true {
            guard let peeked = try socket.receiveBelowTLS(maxCount: Self.longest - taken.count, peek: true) else {
                return nil
            }
            if peeked.isEmpty {
                throw ServerError.proxyHeader("the connection ended before its PROXY protocol header did")
            }
            let candidate = taken + peeked
            let parsed: (header: ProxyHeader, length: Int)?
            do {
                parsed = try candidate.withUnsafeBytes { bytes throws(ProxyProtocolError) in
                    try ProxyProtocol.parse(bytes)
                }
            } catch {
                throw ServerError.proxyHeader("\(error)")
            }
            if let parsed {
                _ = try socket.receiveBelowTLS(maxCount: parsed.length - taken.count)
                return parsed.header
            }
            _ = try socket.receiveBelowTLS(maxCount: peeked.count)  // all the header's: it goes on past them
            taken = candidate
        }
    }

    /// The client the header names: the balancer's client, or for LOCAL (a health check) and UNKNOWN the peer.
    static func client(of header: ProxyHeader, peer: SocketAddress) -> SocketAddress {
        guard case .proxied(let source, _) = header else { return peer }
        switch source.family {
        case .ipv4: return (try? SocketAddress(ipv4: source.host, port: source.port)) ?? peer
        case .ipv6: return (try? SocketAddress(ipv6: source.host, port: source.port)) ?? peer
        case .unix: return (try? SocketAddress(unixPath: source.host)) ?? .unnamedUnix
        }
    }

    /// Reads the header on the calling thread, waiting for its bytes until `timeout` passes (the blocking modes).
    static func read(_ socket: Socket, peer: SocketAddress, timeout: Duration) throws -> SocketAddress {
        var reader = ProxyHeaderReader()
        let deadline = ContinuousClock.now + timeout
        while true {
            if let header = try reader.step(socket) { return client(of: header, peer: peer) }
            let left = deadline - ContinuousClock.now
            guard left > .zero, try socket.waitForInput(timeout: left) else { throw timedOut(timeout) }
        }
    }

    static func timedOut(_ timeout: Duration) -> ServerError {
        .proxyHeader("no PROXY protocol header within \(timeout)")
    }

    /// Reads the header on `loop` as its bytes arrive, then calls `completion` there with the client it names;
    /// at `timeout` it fails. Call on `loop`'s thread.
    static func read(
        _ socket: Socket, peer: SocketAddress, timeout: Duration, on loop: EventLoop,
        _ completion: @escaping (Result<SocketAddress, any Error>) -> Void
    ) {
        var reader = ProxyHeaderReader()
        var watcher: IOWatcher?
        var timer: LoopTimer?
        var done = false
        let finish: (Result<SocketAddress, any Error>) -> Void = { result in
            guard !done else { return }
            done = true
            watcher?.cancel()
            timer?.cancel()
            watcher = nil
            timer = nil
            completion(result)
        }
        let attempt = {
            do {
                if let header = try reader.step(socket) { finish(.success(client(of: header, peer: peer))) }
            } catch {
                finish(.failure(error))
            }
        }
        attempt()  // often the header came with the connection
        guard !done else { return }
        do {
            watcher = try IOWatcher(fileDescriptor: socket.fileDescriptor, events: .readable, on: loop) { _ in attempt()
            }
            timer = try loop.schedule(after: timeout) { finish(.failure(timedOut(timeout))) }
        } catch {
            finish(.failure(error))
        }
    }
}

extension BaseServer {
    /// The blocking modes' step between the mode and `finishRequest`: with ``proxyProtocol``, reads the header on
    /// this thread (or child), then verifies the client it names (``verifyRequest(_:clientAddress:)``); a refused
    /// one is counted and not served. Without it, `finishRequest` at once.
    final func finishAccepted(_ request: Request, clientAddress: SocketAddress) throws {
        guard proxyProtocol, case .stream(let socket) = request else {
            return try finishRequest(request, clientAddress: clientAddress)
        }
        let client = try ProxyHeaderReader.read(socket, peer: clientAddress, timeout: proxyHeaderTimeout)
        guard verifyRequest(request, clientAddress: client) else { return metrics.refused.increment() }
        try finishRequest(request, clientAddress: client)
    }
}
