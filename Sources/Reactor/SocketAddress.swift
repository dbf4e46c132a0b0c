import Glibc

/// An IPv4, IPv6 or Unix-domain socket address.
///
/// Printed as `127.0.0.1:8080`, `[::1]:8080` or `unix:/path`, and parsed from the same forms
/// (a bare path starting with `/` or `.` is a Unix address, and a host name is resolved).
/// This is the only file that touches raw `sockaddr` memory.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable, CustomStringConvertible {
        /// IPv4; the corresponding C constant is `AF_INET`.
        case ipv4
        /// IPv6; the corresponding C constant is `AF_INET6`.
        case ipv6
        /// Unix domain; the corresponding C constant is `AF_UNIX`.
        case unix

        /// `ipv4`, `ipv6` or `unix`.
        public var description: String {
            switch self {
            case .ipv4: return "ipv4"
            case .ipv6: return "ipv6"
            case .unix: return "unix"
            }
        }

        var rawValue: Int32 {
            switch self {
            case .ipv4: return AF_INET
            case .ipv6: return AF_INET6
            case .unix: return AF_UNIX
            }
        }
    }

    private enum Storage: @unchecked Sendable {
        case inet(sockaddr_in)
        case inet6(sockaddr_in6)
        case unix(String)
    }

    private let storage: Storage

    /// The longest Unix socket path the kernel accepts (`sizeof(sun_path) - 1`).
    public static let maxUnixPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// An IPv4 address from dotted-quad text, e.g. `"127.0.0.1"`.
    /// - Throws: ``ReactorError/invalidAddress(_:)`` when `host` is not an IPv4 literal or `port` is out of range.
    public init(ipv4 host: String, port: Int) throws(ReactorError) {
        guard (0...65535).contains(port) else { throw .invalidAddress("port \(port) out of range") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw .invalidAddress(host) }
        storage = .inet(address)
    }

    /// An IPv6 address from text, e.g. `"::1"` (no brackets).
    /// - Throws: ``ReactorError/invalidAddress(_:)`` when `host` is not an IPv6 literal or `port` is out of range.
    public init(ipv6 host: String, port: Int) throws(ReactorError) {
        guard (0...65535).contains(port) else { throw .invalidAddress("port \(port) out of range") }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET6, host, &address.sin6_addr) == 1 else { throw .invalidAddress(host) }
        storage = .inet6(address)
    }

    /// A Unix-domain address for a filesystem path.
    /// - Throws: ``ReactorError/invalidAddress(_:)`` when the path is empty or longer than ``maxUnixPathLength``.
    public init(unixPath path: String) throws(ReactorError) {
        guard !path.isEmpty, path.utf8.count <= Self.maxUnixPathLength, !path.utf8.contains(0) else {
            throw .invalidAddress("unix path must be 1-\(Self.maxUnixPathLength) bytes: \(path)")
        }
        storage = .unix(path)
    }

    /// The address of an unbound (unnamed) Unix socket, printed `unix:`.
    public static let unnamedUnix = SocketAddress(storage: .unix(""))

    private init(storage: Storage) {
        self.storage = storage
    }

    /// Parses `host:port`, `[v6]:port`, `unix:PATH` or a path starting with `/` or `.`.
    ///
    /// A host that is not an IP literal is resolved with `getaddrinfo`, and the first result is used.
    /// - Throws: ``ReactorError/invalidAddress(_:)`` when the text has none of these forms or the host does not resolve.
    public init(_ text: String) throws(ReactorError) {
        if text.hasPrefix("unix:") {
            try self.init(unixPath: String(text.dropFirst(5)))
            return
        }
        if text.hasPrefix("/") || text.hasPrefix(".") {
            try self.init(unixPath: text)
            return
        }
        let forms = "the forms are HOST:PORT, [IPV6]:PORT, unix:PATH, or a path starting with / or ."
        if (try? Self(ipv6: text, port: 0)) != nil {
            throw .invalidAddress("\(text): the port is missing (an IPv6 address takes brackets: [\(text)]:PORT)")
        }
        guard let colon = text.lastIndex(of: ":"), !text.hasSuffix("]") else {
            throw .invalidAddress("\(text): the port is missing (\(forms))")
        }
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty else { throw .invalidAddress("\(text): the port is missing (\(forms))") }
        guard let port = Int(portText) else {
            throw .invalidAddress("\(text): the port \"\(portText)\" is not a number (\(forms))")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            try self.init(ipv6: host, port: port)
            return
        }
        guard let first = try Self.resolve(host: host, port: port).first else { throw .invalidAddress(text) }
        self = first
    }

    /// Resolves a host name or IP literal with `getaddrinfo`, stream sockets only, in the resolver's order.
    /// The empty host is every IPv4 interface, `0.0.0.0`, as Python's `('', port)` is.
    /// - Throws: ``ReactorError/invalidAddress(_:)`` when resolution fails.
    public static func resolve(host: String, port: Int) throws(ReactorError) -> [SocketAddress] {
        if host.isEmpty { return [try SocketAddress(ipv4: "0.0.0.0", port: port)] }
        if let v4 = try? SocketAddress(ipv4: host, port: port) { return [v4] }
        if let v6 = try? SocketAddress(ipv6: host, port: port) { return [v6] }
        guard (0...65535).contains(port) else { throw .invalidAddress("port \(port) out of range") }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let head = list else {
            throw .invalidAddress("\(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(head) }
        var results: [SocketAddress] = []
        var node: UnsafeMutablePointer<addrinfo>? = head
        while let entry = node {
            if let address = entry.pointee.ai_addr,
                let parsed = SocketAddress(address, length: entry.pointee.ai_addrlen)
            {
                results.append(parsed)
            }
            node = entry.pointee.ai_next
        }
        return results
    }

    /// A `sockaddr` given as raw memory (the resolver's, from libevent), `length` bytes of it.
    init?(raw: UnsafeRawPointer, length: Int) {
        self.init(raw.assumingMemoryBound(to: sockaddr.self), length: socklen_t(length))
    }

    /// Reads a kernel-filled `sockaddr`; `nil` for families other than IPv4, IPv6 and Unix.
    init?(_ address: UnsafePointer<sockaddr>, length: socklen_t) {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            storage = .inet(UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self))
        case AF_INET6:
            storage = .inet6(UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self))
        case AF_UNIX:
            let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
            let count = max(0, Int(length) - pathOffset)
            let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(address) + pathOffset, count: count)
            let path = bytes.prefix { $0 != 0 }
            storage = .unix(String(decoding: path, as: UTF8.self))
        default:
            return nil
        }
    }

    /// The family of this address.
    public var family: Family {
        switch storage {
        case .inet: return .ipv4
        case .inet6: return .ipv6
        case .unix: return .unix
        }
    }

    /// The port of an IP address; `nil` for a Unix address.
    public var port: Int? {
        switch storage {
        case .inet(let a): return Int(UInt16(bigEndian: a.sin_port))
        case .inet6(let a): return Int(UInt16(bigEndian: a.sin6_port))
        case .unix: return nil
        }
    }

    /// The IP address as text (`"127.0.0.1"`, `"::1"`); `nil` for a Unix address.
    public var host: String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch storage {
        case .inet(var a):
            return inet_ntop(AF_INET, &a.sin_addr, &buffer, socklen_t(buffer.count)).map { String(cString: $0) }
        case .inet6(var a):
            return inet_ntop(AF_INET6, &a.sin6_addr, &buffer, socklen_t(buffer.count)).map { String(cString: $0) }
        case .unix:
            return nil
        }
    }

    /// The IP address in network byte order: 4 bytes for IPv4, 16 for IPv6; `nil` for a Unix address.
    public var ipAddressBytes: [UInt8]? {
        switch storage {
        case .inet(let a): return withUnsafeBytes(of: a.sin_addr) { Array($0) }
        case .inet6(let a): return withUnsafeBytes(of: a.sin6_addr) { Array($0) }
        case .unix: return nil
        }
    }

    /// The path of a Unix address; `nil` for an IP address.
    public var path: String? {
        if case .unix(let path) = storage { return path }
        return nil
    }

    public var description: String {
        switch storage {
        case .inet: return "\(host ?? "?"):\(port ?? 0)"
        case .inet6: return "[\(host ?? "?")]:\(port ?? 0)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// Gives a call that reports an address (`accept`, `recvfrom`) storage to write it into, then reads it.
    /// - Returns: what `body` returned, and the address (`nil` if the kernel wrote none or an unknown family).
    static func filledIn<R, E: Error>(
        by body: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) throws(E) -> R
    ) throws(E) -> (R, SocketAddress?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return try withUnsafeMutableBytes(of: &storage) { (raw) throws(E) -> (R, SocketAddress?) in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            let result = try body(pointer, &length)
            return (result, length > 0 ? SocketAddress(pointer, length: length) : nil)
        }
    }

    /// Calls `body` with this address as a `sockaddr` pointer and its length.
    func withSockAddr<R, E: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R) throws(E) -> R {
        switch storage {
        case .inet(var a):
            return try withUnsafeBytes(of: &a) { (raw) throws(E) -> R in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        case .inet6(var a):
            return try withUnsafeBytes(of: &a) { (raw) throws(E) -> R in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        case .unix(let path):
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &a.sun_path) { raw in
                raw.copyBytes(from: path.utf8)
            }
            let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.utf8.count + 1
            return try withUnsafeBytes(of: &a) { (raw) throws(E) -> R in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(length))
            }
        }
    }

    /// The local address a socket is bound to (`getsockname`).
    static func local(of fd: Int32) throws(IOError) -> SocketAddress {
        try query(fd, "getsockname", getsockname)
    }

    /// The address of a socket's peer (`getpeername`).
    static func peer(of fd: Int32) throws(IOError) -> SocketAddress {
        try query(fd, "getpeername", getpeername)
    }

    private static func query(
        _ fd: Int32, _ name: String,
        _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) throws(IOError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let parsed = try withUnsafeMutableBytes(of: &storage) { (raw) throws(IOError) -> SocketAddress? in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            _ = try Posix.syscall(name, { call(fd, pointer, &length) })
            return SocketAddress(pointer, length: length)
        }
        guard let parsed else { throw IOError(errnoCode: EAFNOSUPPORT, operation: name) }
        return parsed
    }

    // MARK: Hashable, by the bytes that identify the address

    private var identity: [UInt8] {
        switch storage {
        case .inet(let a):
            return withUnsafeBytes(of: a.sin_addr) { Array($0) } + withUnsafeBytes(of: a.sin_port) { Array($0) } + [4]
        case .inet6(let a):
            return withUnsafeBytes(of: a.sin6_addr) { Array($0) } + withUnsafeBytes(of: a.sin6_port) { Array($0) }
                + withUnsafeBytes(of: a.sin6_scope_id) { Array($0) } + [6]
        case .unix(let path):
            return Array(path.utf8) + [1]
        }
    }

    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        lhs.identity == rhs.identity
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(identity)
    }
}
