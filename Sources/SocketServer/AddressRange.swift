import Glibc
import Reactor

/// A block of IP addresses in CIDR notation (`10.0.0.0/8`, `::1/128`, `192.168.1.7`), for allow-lists.
///
/// IPv4 and IPv4-mapped IPv6 (`::ffff:10.1.2.3`) are one: an IPv4 range matches mapped addresses,
/// as a dual-stack socket reports IPv4 peers, and a mapped range is an IPv4 range. See
/// ``BaseServer/allowedClients``.
public struct AddressRange: Sendable, Hashable, CustomStringConvertible {
    /// The network's address bytes (4 or 16), host bits cleared.
    private let network: [UInt8]
    /// The number of leading bits that must match.
    public let prefixLength: Int

    /// Parses `address/prefix`; a bare address is a range of one (`/32` or `/128`).
    /// - Throws: ``ServerError/invalidAddressRange(_:)`` for anything else.
    public init(_ text: String) throws(ServerError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let host = parts.first, !host.isEmpty,
            let address = try? SocketAddress.numericHost(String(host)),
            let bytes = address.ipAddressBytes
        else {
            throw ServerError.invalidAddressRange("\(text): expected an IPv4 or IPv6 address, optionally /PREFIX")
        }
        let maximum = bytes.count * 8
        var prefix = maximum
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maximum).contains(value) else {
                throw ServerError.invalidAddressRange("\(text): the prefix must be 0-\(maximum)")
            }
            prefix = value
        }
        var network = bytes
        if bytes.count == 16 && prefix >= 96 && bytes.prefix(12).elementsEqual(AddressRange.mappedPrefix) {
            network = Array(bytes.suffix(4))  // ::ffff:a.b.c.d/N is the IPv4 range a.b.c.d/(N-96)
            prefix -= 96
        }
        prefixLength = prefix
        self.network = AddressRange.masked(network, prefix)
    }

    /// Whether `address` is in the range. Unix addresses are never in an IP range.
    public func contains(_ address: SocketAddress) -> Bool {
        guard var bytes = address.ipAddressBytes else { return false }
        if bytes.count == 16 && network.count == 4 && bytes.prefix(12).elementsEqual(AddressRange.mappedPrefix) {
            bytes = Array(bytes.suffix(4))  // IPv4-mapped IPv6
        }
        return bytes.count == network.count && AddressRange.masked(bytes, prefixLength) == network
    }

    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = network.count == 4 ? AF_INET : AF_INET6
        let host = network.withUnsafeBytes {
            inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)).map { String(cString: $0) }
        }
        return "\(host ?? "?")/\(prefixLength)"
    }

    private static let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]

    private static func masked(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bits = min(8, max(0, prefix - index * 8))
            return bits == 0 ? 0 : byte & UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }
}

extension SocketAddress {
    /// An IPv4 or IPv6 address without a port.
    static func numericHost(_ host: String) throws -> SocketAddress {
        if host.contains(":") { return try SocketAddress(ipv6: host, port: 0) }
        return try SocketAddress(ipv4: host, port: 0)
    }
}
