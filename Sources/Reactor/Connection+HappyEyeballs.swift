extension Connection {
    /// Opens a connection to `host` (a name or an IP literal) without blocking the loop, trying its addresses
    /// as Happy Eyeballs version 2 (RFC 8305) does. Call on the loop thread.
    ///
    /// The name is resolved on the loop (``Resolver``), IPv6 and IPv4 side by side. An IPv6 answer starts
    /// connecting at once; an IPv4 one first waits 50 ms for IPv6's. Attempts then alternate families, IPv6
    /// first, a new one every 250 ms while the earlier ones are still pending, or at once when every earlier one
    /// has failed; the first to connect wins and the others, and the lookups, are abandoned. So an address that
    /// drops SYNs costs 250 ms, not a connect timeout, and one that refuses costs nothing.
    ///
    /// - Parameters:
    ///   - host: a host name, or an IPv4 or IPv6 literal (brackets allowed).
    ///   - port: the TCP port.
    ///   - loop: the loop the connection will belong to.
    ///   - timeout: fail with a ``ConnectError`` whose ``ConnectError/timedOut`` is true if not connected by then
    ///     (resolution included; a TLS handshake has its own timeout, its context's).
    ///   - tls: a client context to complete a TLS handshake before `completion`; `nil` for plain TCP.
    ///   - serverName: with `tls`, the name sent as SNI and verified in the server's certificate; by default `host`.
    ///   - resolver: by default the loop's (``EventLoop/resolver``).
    ///   - completion: called once, on the loop thread, on a later pass of the loop: the connection, a
    ///     ``ResolutionError`` when no address was found, a ``ConnectError`` naming each address tried and why it
    ///     failed, the handshake's ``TLSError``, or `CancellationError` after ``ConnectRequest/cancel()``.
    /// - Returns: the attempt, to cancel it.
    @discardableResult
    public static func connect(
        host: String, port: Int, on loop: EventLoop, timeout: Duration? = nil, tls: TLSContext? = nil,
        serverName: String? = nil, resolver: Resolver? = nil,
        _ completion: @escaping (Result<Connection, any Error>) -> Void
    ) -> ConnectRequest {
        loop.preconditionInEventLoop()
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let request = ConnectRequest(
            host: bare, port: port, loop: loop, resolver: resolver,
            tls: tls.map { ($0, serverName ?? bare) }, completion: completion)
        request.start(timeout: timeout)
        return request
    }

    /// Opens a connection to `host` as ``connect(host:port:on:timeout:tls:serverName:resolver:_:)`` does; call
    /// from a task on `loop`. Cancelling the task abandons the attempt.
    /// - Throws: ``ResolutionError``, ``ConnectError``, a ``TLSError``, or `CancellationError`.
    public static func connect(
        host: String, port: Int, on loop: EventLoop, timeout: Duration? = nil, tls: TLSContext? = nil,
        serverName: String? = nil, resolver: Resolver? = nil
    ) async throws -> Connection {
        let slot = LoopBound(value: RequestSlot<ConnectRequest>())
        let bound: LoopBound<Connection> = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                slot.value.request = connect(
                    host: host, port: port, on: loop, timeout: timeout, tls: tls, serverName: serverName,
                    resolver: resolver
                ) { result in
                    continuation.resume(with: result.map { LoopBound(value: $0) })
                }
                if Task.isCancelled { slot.value.request?.cancel() }
            }
        } onCancel: {
            loop.execute { slot.value.request?.cancel() }
        }
        return bound.value
    }
}

/// Why ``Connection/connect(host:port:on:timeout:tls:serverName:resolver:_:)`` found no connection: every
/// address it tried, and why each failed, in the order tried.
public struct ConnectError: Error, CustomStringConvertible {
    /// One address tried.
    public struct Attempt: Sendable {
        public let address: SocketAddress
        /// Why it failed: an ``IOError`` such as `ECONNREFUSED` or `ENETUNREACH`.
        public let error: any Error
    }

    /// The host asked for.
    public let host: String
    public let port: Int
    /// The addresses tried, in order, each with its error; those still pending at a timeout are not listed.
    public let attempts: [Attempt]
    /// A family that did not resolve (when the other did, or both failed after an attempt).
    public let resolution: [ResolutionError]
    /// The connect timeout expired first.
    public let timedOut: Bool

    public var description: String {
        var parts = attempts.map { "\($0.address): \(($0.error as? IOError)?.reason ?? "\($0.error)")" }
        parts += resolution.map(\.description)
        let tried = parts.isEmpty ? "" : " (\(parts.joined(separator: "; ")))"
        let target = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return "cannot connect to \(target): " + (timedOut ? "timed out" : "every address failed") + tried
    }
}

/// One Happy Eyeballs connection attempt to a host: its lookups, its connect attempts, its timers; loop-bound.
/// ``cancel()`` abandons it.
public final class ConnectRequest {
    /// RFC 8305's resolution delay: how long an IPv4 answer waits for the IPv6 one.
    static let resolutionDelay = Duration.milliseconds(50)
    /// RFC 8305's connection attempt delay: how long an attempt has before the next one starts beside it.
    static let attemptDelay = Duration.milliseconds(250)

    /// The host being connected to.
    public let host: String
    let port: Int
    let loop: EventLoop
    /// The resolver asked for, or `nil` for the loop's, fetched only for a name (an IP literal needs none).
    let resolver: Resolver?
    let tls: (context: TLSContext, serverName: String?)?
    private var completion: ((Result<Connection, any Error>) -> Void)?
    private var starting = true
    private var lookups: [DNSLookup] = []
    private var answered: Set<SocketAddress.Family> = []
    private var targets: [SocketAddress.Family: [SocketAddress]] = [:]
    private var lastFamily: SocketAddress.Family?
    private var connecting = false
    private var opening = false
    private var attempts: [ConnectAttempt] = []
    private var failures: [ConnectError.Attempt] = []
    private var resolutionErrors: [ResolutionError] = []
    private var resolutionDelayTimer: LoopTimer?
    private var attemptTimer: LoopTimer?
    private var deadline: LoopTimer?

    init(
        host: String, port: Int, loop: EventLoop, resolver: Resolver?, tls: (TLSContext, String?)?,
        completion: @escaping (Result<Connection, any Error>) -> Void
    ) {
        self.host = host
        self.port = port
        self.loop = loop
        self.resolver = resolver
        self.tls = tls
        self.completion = completion
    }

    /// Whether the attempt has not completed yet.
    public var isPending: Bool { completion != nil }

    /// Abandons the attempt: lookups cancelled, sockets closed; its completion runs at once with
    /// `CancellationError`. A TLS handshake already under way ends with the connection closed. Nothing happens
    /// after it completed.
    public func cancel() {
        loop.preconditionInEventLoop()
        deliver(.failure(CancellationError()))
    }

    func start(timeout: Duration?) {
        if let timeout {
            deadline = try? loop.schedule(after: timeout) { [self] in
                deadline = nil
                deliver(.failure(connectError(timedOut: true)))
            }
        }
        let lookups = DNSLookup.lookUpBoth(
            host: host, port: port, resolver: { [loop, resolver] in resolver ?? loop.resolver },
            answer: { [self] family, result in resolved(family, result) })
        if isPending { self.lookups = lookups } else { for lookup in lookups { lookup.cancel() } }
        starting = false
    }

    private func resolved(_ family: SocketAddress.Family, _ result: Result<[SocketAddress], ResolutionError>) {
        guard isPending else { return }
        answered.insert(family)
        switch result {
        case .success(let addresses):
            for address in addresses where !(targets[family] ?? []).contains(address) {
                targets[family, default: []].append(address)
            }
        case .failure(let error):
            resolutionErrors.append(error)
        }
        if !connecting {
            if family == .ipv6 || answered.contains(.ipv6) {
                beginConnecting()
            } else if !(targets[.ipv4] ?? []).isEmpty && resolutionDelayTimer == nil {
                resolutionDelayTimer = try? loop.schedule(after: Self.resolutionDelay) { [self] in
                    resolutionDelayTimer = nil
                    beginConnecting()
                }
            }
        } else if attemptTimer == nil {
            startNextAttempt()  // the last attempt started at least 250 ms ago, or all have failed
        }
        if isPending { endIfExhausted() }
    }

    private func beginConnecting() {
        connecting = true
        resolutionDelayTimer?.cancel()
        resolutionDelayTimer = nil
        startNextAttempt()
    }

    /// The next address, alternating families, IPv6 first.
    private func nextTarget() -> SocketAddress? {
        let preferred: SocketAddress.Family = lastFamily == .ipv6 ? .ipv4 : .ipv6
        for family in [preferred, preferred == .ipv6 ? .ipv4 : .ipv6] where !(targets[family] ?? []).isEmpty {
            lastFamily = family
            return targets[family]!.removeFirst()
        }
        return nil
    }

    private func startNextAttempt() {
        attemptTimer?.cancel()
        attemptTimer = nil
        guard isPending else { return }
        guard let target = nextTarget() else { return endIfExhausted() }
        let attempt = ConnectAttempt(address: target, loop: loop, timeout: nil) { [self] result in
            attemptEnded(target, result)
        }
        attempts.append(attempt)
        attempt.start()
        attemptTimer = try? loop.schedule(after: Self.attemptDelay) { [self] in
            attemptTimer = nil
            startNextAttempt()
        }
    }

    private func attemptEnded(_ target: SocketAddress, _ result: Result<Int32, any Error>) {
        attempts.removeAll { $0.address == target }
        switch result {
        case .success(let fd):
            guard isPending else { return Posix.close(fd) }
            won(fd)
        case .failure(let error):
            guard isPending else { return }  // an attempt whose failure was already on its way when this ended
            failures.append(.init(address: target, error: error))
            if attempts.isEmpty { startNextAttempt() }  // none pending: the next need not wait its turn
        }
    }

    private func won(_ fd: Int32) {
        opening = true
        stopEverything()
        Connection.open(fd, on: loop, tls: tls) { [self] result in
            opening = false
            guard isPending else {
                if case .success(let connection) = result { connection.close() }  // cancelled during the handshake
                return
            }
            deliver(result)
        }
    }

    /// Fails once nothing is left to try: every family answered, every address tried and failed.
    private func endIfExhausted() {
        guard isPending, !opening, attempts.isEmpty, answered.count == 2,
            targets.values.allSatisfy(\.isEmpty)
        else { return }
        if failures.isEmpty {
            // Nothing to connect to: the lookups say why.
            let error =
                resolutionErrors.first { $0.reason == .nameNotFound } ?? resolutionErrors.first
                ?? ResolutionError(host: host, reason: .noAddress)
            return deliver(.failure(error))
        }
        deliver(.failure(connectError(timedOut: false)))
    }

    private func connectError(timedOut: Bool) -> ConnectError {
        ConnectError(host: host, port: port, attempts: failures, resolution: resolutionErrors, timedOut: timedOut)
    }

    private func stopEverything() {
        for lookup in lookups { lookup.cancel() }
        lookups = []
        for attempt in attempts { attempt.cancel() }
        attempts = []
        for timer in [resolutionDelayTimer, attemptTimer, deadline] { timer?.cancel() }
        resolutionDelayTimer = nil
        attemptTimer = nil
        deadline = nil
    }

    private func deliver(_ result: Result<Connection, any Error>) {
        guard let completion else { return }
        self.completion = nil
        stopEverything()
        if starting {
            let deferred = LoopBound(value: (completion, result))
            loop.execute { deferred.value.0(deferred.value.1) }
        } else {
            completion(result)
        }
    }
}
