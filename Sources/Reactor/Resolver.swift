internal import CLibevent
import Glibc

/// Resolves host names on an ``EventLoop`` without blocking it; loop-bound.
///
/// Built on libevent's `evdns` (the library the loop already links): it reads `/etc/hosts` and
/// `/etc/resolv.conf` (nameservers, `search`, `options timeout: attempts: ndots:`) as the C library does, and
/// sends its queries over the loop's own sockets, so while a nameserver thinks (or never answers) every other
/// client of the loop is served. The system's resolver is ``EventLoop/resolver``; a resolver of its own (a
/// test's nameserver, a split-horizon DNS) is ``init(on:nameservers:hostsFile:queryTimeout:attempts:)``.
///
/// Each lookup asks for IPv6 (`AAAA`) and IPv4 (`A`) addresses separately, as Happy Eyeballs needs. A name the
/// hosts file knows is answered from it alone, without asking a nameserver for the other family (the C
/// library's `files` before `dns`); IP literals are answered at once.
///
/// Why not `getaddrinfo` on the ``BlockingPool``: it holds a pool thread per lookup for as long as the
/// nameserver takes, and cannot be cancelled; `evdns` costs no thread, cancels, and is the one the loop
/// already links. What `evdns` lacks against glibc's NSS: no mDNS, LDAP or `nsswitch.conf` sources.
///
/// Ownership: a resolver keeps its loop alive; a lookup in flight keeps its resolver alive until it completes
/// or is cancelled.
public final class Resolver {
    /// The loop the resolver's queries run on.
    public let loop: EventLoop
    let base: OpaquePointer
    private let ownsBase: Bool

    init(loop: EventLoop, systemBase: OpaquePointer) {
        self.loop = loop
        self.base = systemBase
        self.ownsBase = false
    }

    /// A resolver that asks `nameservers` (in turn, as `resolv.conf`'s are asked) instead of the system's.
    ///
    /// - Parameters:
    ///   - loop: the loop the queries run on.
    ///   - nameservers: IPv4 or IPv6 addresses with ports (`127.0.0.1:53`).
    ///   - hostsFile: a hosts file read first; `nil` knows only `localhost`.
    ///   - queryTimeout: how long one query waits for its answer before it is sent again.
    ///   - attempts: how many times a query is sent before the lookup fails.
    /// - Throws: ``ReactorError/invalidAddress(_:)`` for a Unix address, ``ReactorError/libevent(_:)`` if libevent
    ///   refuses the configuration.
    public init(
        on loop: EventLoop, nameservers: [SocketAddress], hostsFile: String? = nil,
        queryTimeout: Duration = .seconds(5), attempts: Int = 2
    ) throws(ReactorError) {
        loop.preconditionInEventLoop()
        guard let base = evdns_base_new(loop.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE) else {
            throw .libevent("evdns_base_new")
        }
        self.loop = loop
        self.base = base
        self.ownsBase = true
        for nameserver in nameservers {
            guard nameserver.family != .unix else { throw .invalidAddress("a nameserver must be IP: \(nameserver)") }
            // By its text ("127.0.0.1:53", "[::1]:53"): this file names no socket type (see the shim).
            guard evdns_base_nameserver_ip_add(base, nameserver.description) == 0 else {
                throw .libevent("evdns_base_nameserver_sockaddr_add(\(nameserver))")
            }
        }
        guard evdns_base_load_hosts(base, hostsFile) == 0 else { throw .libevent("evdns_base_load_hosts") }
        try Self.configure(base, queryTimeout: queryTimeout, attempts: attempts)
    }

    deinit {
        // Nothing is in flight: every lookup holds its resolver until it ends.
        if ownsBase { evdns_base_free(base, 0) }
    }

    static func configure(_ base: OpaquePointer, queryTimeout: Duration, attempts: Int) throws(ReactorError) {
        let seconds = Double(queryTimeout.components.seconds) + Double(queryTimeout.components.attoseconds) / 1e18
        guard evdns_base_set_option(base, "timeout", String(seconds)) == 0,
            evdns_base_set_option(base, "attempts", String(max(1, attempts))) == 0
        else { throw .libevent("evdns_base_set_option") }
    }

    /// Resolves `host` to its addresses, IPv6 ones first, each with `port`. Call on the loop thread.
    ///
    /// - Parameters:
    ///   - host: a host name, or an IPv4 or IPv6 literal (brackets allowed), answered at once.
    ///   - port: the port each address gets.
    ///   - timeout: fail with ``ResolutionError/Reason/timedOut`` if no family has answered by then; when one has
    ///     and the other has not, its addresses are the answer.
    ///   - completion: called once, on the loop thread, on a later pass of the loop (never before this returns):
    ///     the addresses, a ``ResolutionError``, or `CancellationError` after ``ResolveRequest/cancel()``.
    /// - Returns: the lookup, to cancel it.
    @discardableResult
    public func resolve(
        host: String, port: Int, timeout: Duration? = nil,
        _ completion: @escaping (Result<[SocketAddress], any Error>) -> Void
    ) -> ResolveRequest {
        loop.preconditionInEventLoop()
        let request = ResolveRequest(resolver: self, host: host, port: port, completion: completion)
        request.start(timeout: timeout)
        return request
    }

    /// Resolves `host` to its addresses, IPv6 ones first; call from a task on the loop.
    /// - Throws: ``ResolutionError``, or `CancellationError` if the task is cancelled.
    public func resolve(host: String, port: Int, timeout: Duration? = nil) async throws -> [SocketAddress] {
        let request = LoopBound(value: RequestSlot<ResolveRequest>())
        let loop = self.loop
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                request.value.request = resolve(host: host, port: port, timeout: timeout) { result in
                    continuation.resume(with: result)
                }
                if Task.isCancelled { request.value.request?.cancel() }
            }
        } onCancel: {
            loop.execute { request.value.request?.cancel() }
        }
    }
}

/// Where an async wrapper keeps the request it started, for its cancellation handler (loop thread only).
final class RequestSlot<Request: AnyObject> {
    var request: Request?
}

extension EventLoop {
    /// The system's resolver on this loop (`/etc/hosts`, `/etc/resolv.conf`), created on first use. Loop thread.
    public var resolver: Resolver {
        preconditionInEventLoop()
        return Resolver(loop: self, systemBase: systemDNSBase())
    }
}

/// Why a name did not resolve.
public struct ResolutionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Reason: Equatable, Sendable, CustomStringConvertible {
        /// The name does not exist (the nameserver said `NXDOMAIN`).
        case nameNotFound
        /// The hosts file lists the name with no address of the families asked for. (A nameserver's empty
        /// answer is ``failed(_:)``: `evdns` reports it as it reports a server failure.)
        case noAddress
        /// No answer came by the lookup's deadline.
        case timedOut
        /// The lookup failed otherwise: no nameserver answered in its attempts, or one refused (the resolver's text).
        case failed(String)

        public var description: String {
            switch self {
            case .nameNotFound: return "name not found"
            case .noAddress: return "the name has no address"
            case .timedOut: return "timed out"
            case .failed(let text): return text
            }
        }
    }

    /// The name looked up.
    public let host: String
    /// Why it did not resolve.
    public let reason: Reason

    public init(host: String, reason: Reason) {
        self.host = host
        self.reason = reason
    }

    public var description: String { "cannot resolve \(host): \(reason)" }

    init(host: String, code: Int32) {
        self.host = host
        switch code {
        case clibevent_eai_noname: reason = .nameNotFound
        case clibevent_eai_nodata, clibevent_eai_addrfamily: reason = .noAddress
        default: reason = .failed(String(cString: evutil_gai_strerror(code)))
        }
    }
}

/// One resolution of a name to its addresses of both families; loop-bound. ``cancel()`` ends it.
public final class ResolveRequest {
    let resolver: Resolver
    /// The name being resolved.
    public let host: String
    let port: Int
    private var completion: ((Result<[SocketAddress], any Error>) -> Void)?
    private var lookups: [DNSLookup] = []
    private var answers: [SocketAddress.Family: [SocketAddress]] = [:]
    private var errors: [ResolutionError] = []
    private var deadline: LoopTimer?
    private var starting = true

    init(
        resolver: Resolver, host: String, port: Int,
        completion: @escaping (Result<[SocketAddress], any Error>) -> Void
    ) {
        self.resolver = resolver
        self.host = host
        self.port = port
        self.completion = completion
    }

    /// Whether the lookup has not completed yet.
    public var isPending: Bool { completion != nil }

    func start(timeout: Duration?) {
        defer { starting = false }
        var waiting = 2
        let resolver = self.resolver
        let answer = { [self] (family: SocketAddress.Family, result: Result<[SocketAddress], ResolutionError>) in
            switch result {
            case .success(let addresses): answers[family] = addresses
            case .failure(let error): errors.append(error)
            }
            waiting -= 1
            if waiting == 0 { finish() }
        }
        lookups = DNSLookup.lookUpBoth(host: host, port: port, resolver: { resolver }, answer: answer)
        if let timeout, isPending {
            deadline = try? resolver.loop.schedule(after: timeout) { [self] in finish(timedOut: true) }
        }
    }

    /// Stops the lookup; its completion runs at once with `CancellationError`. Nothing happens after it completed.
    public func cancel() {
        resolver.loop.preconditionInEventLoop()
        deliver(.failure(CancellationError()))
    }

    private func finish(timedOut: Bool = false) {
        let found = (answers[.ipv6] ?? []) + (answers[.ipv4] ?? [])
        if !found.isEmpty { return deliver(.success(found)) }
        if timedOut { return deliver(.failure(ResolutionError(host: host, reason: .timedOut))) }
        // Both failed: the name's absence says most, then any failure over a family's lack of addresses.
        let error =
            errors.first { $0.reason == .nameNotFound } ?? errors.first { $0.reason != .noAddress }
            ?? ResolutionError(host: host, reason: .noAddress)
        deliver(.failure(error))
    }

    private func deliver(_ result: Result<[SocketAddress], any Error>) {
        guard let completion else { return }
        self.completion = nil
        deadline?.cancel()
        deadline = nil
        for lookup in lookups { lookup.cancel() }
        lookups = []
        if starting {
            // Answered inside resolve() (a literal, the hosts file): the completion still comes on a later pass.
            let deferred = LoopBound(value: (completion, result))
            resolver.loop.execute { deferred.value.0(deferred.value.1) }
        } else {
            completion(result)
        }
    }
}

/// One `evdns_getaddrinfo` for one family; loop-bound.
///
/// libevent may call back inside `evdns_getaddrinfo` (a literal, a hosts-file hit, an error) and then returns no
/// request; a cancelled request still calls back later, with `EVUTIL_EAI_CANCEL`. The C context is this object,
/// retained until that one callback: so a cancelled lookup is freed when libevent is done with it.
final class DNSLookup {
    let host: String
    let family: SocketAddress.Family
    let resolver: Resolver
    private var request: OpaquePointer?
    private var completion: ((Result<[SocketAddress], ResolutionError>) -> Void)?
    private var starting = false

    init(
        host: String, family: SocketAddress.Family, resolver: Resolver,
        completion: @escaping (Result<[SocketAddress], ResolutionError>) -> Void
    ) {
        self.host = host
        self.family = family
        self.resolver = resolver
        self.completion = completion
    }

    var isPending: Bool { completion != nil }

    /// Starts lookups of both families, IPv6 first. `answer` runs once for each family, possibly before this
    /// returns: an IP literal is answered at once (the other family has nothing), and a name the hosts file
    /// lists is answered from it for both families (with nothing for a family it lacks there).
    /// - Returns: the lookups still to cancel if the answers are no longer wanted.
    static func lookUpBoth(
        host: String, port: Int, resolver makeResolver: () -> Resolver,
        answer: @escaping (SocketAddress.Family, Result<[SocketAddress], ResolutionError>) -> Void
    ) -> [DNSLookup] {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if let literal = (try? SocketAddress(ipv6: bare, port: port)) ?? (try? SocketAddress(ipv4: bare, port: port)) {
            answer(.ipv6, .success(literal.family == .ipv6 ? [literal] : []))
            answer(.ipv4, .success(literal.family == .ipv4 ? [literal] : []))
            return []
        }
        let resolver = makeResolver()  // only now: the system resolver's first use opens its nameservers' sockets
        let v6 = DNSLookup(host: host, family: .ipv6, resolver: resolver) { answer(.ipv6, $0) }
        v6.start(port: port)
        // A name the hosts file lists is answered from it for both families (evdns answers 0, empty, for a family
        // the file lacks), so neither lookup then asks a nameserver: nothing to cancel here.
        let v4 = DNSLookup(host: host, family: .ipv4, resolver: resolver) { answer(.ipv4, $0) }
        v4.start(port: port)
        return [v6, v4]
    }

    func start(port: Int) {
        let context = Unmanaged.passRetained(self).toOpaque()
        starting = true
        request = clibevent_dns_lookup(
            resolver.base, host, String(port), family == .ipv6 ? 1 : 0, DNSLookup.callback, context)
        starting = false
    }

    /// Stops the lookup; its completion never runs. libevent calls back once more, later, and that frees it.
    func cancel() {
        guard completion != nil else { return }
        completion = nil
        if let request {
            self.request = nil
            evdns_getaddrinfo_cancel(request)
        }
    }

    private static let callback: clibevent_resolved_cb = { code, list, context in
        let lookup = Unmanaged<DNSLookup>.fromOpaque(context!).takeRetainedValue()
        defer { clibevent_addresses_free(list) }
        lookup.request = nil
        guard code != clibevent_eai_cancel, let completion = lookup.completion else { return }
        lookup.completion = nil
        var addresses: [SocketAddress] = []
        var entry = list
        while let current = entry {
            var length: Int32 = 0
            if let raw = clibevent_addresses_address(current, &length),
                let address = SocketAddress(raw: raw, length: Int(length)), !addresses.contains(address)
            {
                addresses.append(address)
            }
            entry = clibevent_addresses_next(current)
        }
        // A name the hosts file lists answers 0 with no address of a family it lacks there.
        let result: Result<[SocketAddress], ResolutionError> =
            code == 0 ? .success(addresses) : .failure(ResolutionError(host: lookup.host, code: code))
        if lookup.starting {
            completion(result)
        } else {
            lookup.resolver.loop.withCallbackScope { completion(result) }
        }
    }
}
