import Foundation  // inet_pton, inet_ntop

/// The PROXY protocol (haproxy's `doc/proxy-protocol.txt`): the header a load balancer sends before anything else
/// on a connection it forwards, saying who the client really is. Version 1 is a text line
/// (`PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n`), version 2 a binary block; ``parse(_:)`` reads either,
/// ``encode(_:version:)`` writes either. Sans I/O: bytes in, a header out.
///
/// A receiver must accept a header only from balancers it trusts, only where it was configured to expect one, and
/// must not act on any byte of the connection before the whole header has arrived.
public enum ProxyProtocol {
    /// The longest version 1 line, its CRLF included.
    public static let longestV1 = 107
    /// The most address and TLV bytes a version 2 header may carry here (the format allows 65,535): a header over it
    /// is refused rather than buffered.
    public static let longestV2Payload = 1024
    /// Version 2's first 12 bytes.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// Reads a header at the start of `bytes`.
    /// - Returns: the header and how many bytes it took, or `nil` while the bytes so far could still begin one.
    /// - Throws: ``ProxyProtocolError`` as soon as they cannot.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(ProxyProtocolError) -> (
        header: ProxyHeader, length: Int
    )? {
        let signature = min(bytes.count, v2Signature.count)
        if signature > 0 && bytes[0] == v2Signature[0] {
            guard bytes.prefix(signature).elementsEqual(v2Signature.prefix(signature)) else {
                throw .notAHeader
            }
            return try parseV2(bytes)
        }
        let prefix = Array("PROXY ".utf8)
        let start = min(bytes.count, prefix.count)
        guard bytes.prefix(start).elementsEqual(prefix.prefix(start)) else { throw .notAHeader }
        return try parseV1(bytes)
    }

    /// A header's bytes, in `version` 1 or 2. Version 1 has no Unix addresses: a Unix pair, or ``ProxyHeader/local``,
    /// is written `PROXY UNKNOWN`; a pair of different families is written as IPv6, IPv4 mapped (as haproxy does).
    public static func encode(_ header: ProxyHeader, version: Int) -> [UInt8] {
        precondition(version == 1 || version == 2, "PROXY protocol version 1 or 2, not \(version)")
        return version == 1 ? encodeV1(header) : encodeV2(header)
    }

    // MARK: Version 1

    private static func parseV1(_ bytes: UnsafeRawBufferPointer) throws(ProxyProtocolError) -> (ProxyHeader, Int)? {
        let window = bytes.prefix(longestV1)
        guard let newline = window.firstIndex(of: UInt8(ascii: "\n")) else {
            if window.count >= longestV1 { throw .malformed("no CRLF within \(longestV1) bytes") }
            return nil
        }
        guard newline > 0, bytes[newline - 1] == UInt8(ascii: "\r") else {
            throw .malformed("a line not ending in CRLF")
        }
        let line = String(decoding: bytes[..<(newline - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 2 else { throw .malformed("no protocol after PROXY") }
        let length = newline + 1
        switch fields[1] {
        case "UNKNOWN":
            return (.local, length)  // the rest of the line is ignored, as the specification says
        case "TCP4", "TCP6":
            guard fields.count == 6 else { throw .malformed("\(fields[1]) takes 4 fields, got \(fields.count - 2)") }
            let family: ProxyAddress.Family = fields[1] == "TCP4" ? .ipv4 : .ipv6
            guard let source = ProxyAddress(family, host: fields[2], port: fields[4]),
                let destination = ProxyAddress(family, host: fields[3], port: fields[5])
            else { throw .malformed("a bad \(fields[1]) address or port in '\(line)'") }
            return (.proxied(source: source, destination: destination), length)
        default:
            throw .malformed("unknown protocol '\(fields[1])'")
        }
    }

    private static func encodeV1(_ header: ProxyHeader) -> [UInt8] {
        guard case .proxied(let source, let destination) = header, source.family != .unix,
            destination.family != .unix
        else { return Array("PROXY UNKNOWN\r\n".utf8) }
        let v4 = source.family == .ipv4 && destination.family == .ipv4
        let (from, to) = v4 ? (source, destination) : (source.asIPv6, destination.asIPv6)
        let line = "PROXY \(v4 ? "TCP4" : "TCP6") \(from.host) \(to.host) \(from.port) \(to.port)\r\n"
        return Array(line.utf8)
    }

    // MARK: Version 2

    private static func parseV2(_ bytes: UnsafeRawBufferPointer) throws(ProxyProtocolError) -> (ProxyHeader, Int)? {
        guard bytes.count >= 16 else { return nil }
        let versionAndCommand = bytes[12]
        guard versionAndCommand >> 4 == 2 else { throw .malformed("version \(versionAndCommand >> 4), not 2") }
        let command = versionAndCommand & 0x0F
        guard command <= 1 else { throw .malformed("command \(command), neither LOCAL nor PROXY") }
        let familyAndTransport = bytes[13]
        let payload = Int(bytes[14]) << 8 | Int(bytes[15])
        guard payload <= longestV2Payload else {
            throw .tooLong("\(payload) bytes of addresses and TLVs, more than \(longestV2Payload)")
        }
        guard bytes.count >= 16 + payload else { return nil }
        let length = 16 + payload
        if command == 0 { return (.local, length) }  // the balancer's own connection: its payload is skipped
        let body = UnsafeRawBufferPointer(rebasing: bytes[16..<length])
        let transport = familyAndTransport & 0x0F
        guard transport <= 2 else { throw .malformed("transport \(transport)") }
        switch familyAndTransport >> 4 {
        case 0:
            return (.local, length)  // UNSPEC: the connection's own addresses stand
        case 1:
            guard body.count >= 12 else { throw .malformed("\(body.count) address bytes for IPv4, fewer than 12") }
            let source = ProxyAddress(family: .ipv4, bytes: Array(body[0..<4]), port: port(body, at: 8))
            let destination = ProxyAddress(family: .ipv4, bytes: Array(body[4..<8]), port: port(body, at: 10))
            return (.proxied(source: source, destination: destination), length)
        case 2:
            guard body.count >= 36 else { throw .malformed("\(body.count) address bytes for IPv6, fewer than 36") }
            let source = ProxyAddress(family: .ipv6, bytes: Array(body[0..<16]), port: port(body, at: 32))
            let destination = ProxyAddress(family: .ipv6, bytes: Array(body[16..<32]), port: port(body, at: 34))
            return (.proxied(source: source, destination: destination), length)
        case 3:
            guard body.count >= 216 else { throw .malformed("\(body.count) address bytes for Unix, fewer than 216") }
            func path(_ range: Range<Int>) -> [UInt8] { Array(body[range].prefix { $0 != 0 }) }
            let source = ProxyAddress(family: .unix, bytes: path(0..<108), port: 0)
            let destination = ProxyAddress(family: .unix, bytes: path(108..<216), port: 0)
            return (.proxied(source: source, destination: destination), length)
        default:
            throw .malformed("address family \(familyAndTransport >> 4)")
        }
    }

    private static func port(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
    }

    private static func encodeV2(_ header: ProxyHeader) -> [UInt8] {
        var out = v2Signature
        guard case .proxied(let source, let destination) = header else {
            return out + [0x20, 0x00, 0x00, 0x00]  // LOCAL, UNSPEC, no payload
        }
        var body: [UInt8] = []
        let family: UInt8
        if source.family == .unix && destination.family == .unix {
            family = 0x31
            for address in [source, destination] {
                body += address.bytes.prefix(107) + [UInt8](repeating: 0, count: 108 - min(address.bytes.count, 107))
            }
        } else if source.family == .ipv4 && destination.family == .ipv4 {
            family = 0x11
            body = source.bytes + destination.bytes
        } else if source.family != .unix && destination.family != .unix {
            family = 0x21
            body = source.asIPv6.bytes + destination.asIPv6.bytes
        } else {
            return out + [0x20, 0x00, 0x00, 0x00]  // an IP client of a Unix listener: nothing to say
        }
        if family != 0x31 {
            for port in [source.port, destination.port] { body += [UInt8(port >> 8), UInt8(port & 0xFF)] }
        }
        out += [0x21, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)]
        return out + body
    }
}

/// What a PROXY protocol header says.
public enum ProxyHeader: Equatable, Sendable {
    /// The client's address and port as the balancer saw them, and the address it connected to.
    case proxied(source: ProxyAddress, destination: ProxyAddress)
    /// The connection is the balancer's own (version 2 LOCAL, a health check), or its addresses are unknown (version
    /// 1 UNKNOWN, version 2 UNSPEC): the socket's own addresses stand.
    case local
}

/// An address in a PROXY header: IPv4 or IPv6 (network-order bytes) with a port, or a Unix socket path.
public struct ProxyAddress: Equatable, Sendable, CustomStringConvertible {
    public enum Family: Sendable {
        case ipv4, ipv6, unix
    }

    public let family: Family
    /// 4 or 16 bytes in network order, or a Unix path's bytes.
    public let bytes: [UInt8]
    /// The port; 0 for a Unix path.
    public let port: Int

    public init(family: Family, bytes: [UInt8], port: Int) {
        precondition(family != .ipv4 || bytes.count == 4, "an IPv4 address is 4 bytes")
        precondition(family != .ipv6 || bytes.count == 16, "an IPv6 address is 16 bytes")
        precondition((0...65535).contains(port), "a port is 0-65535")
        self.family = family
        self.bytes = bytes
        self.port = port
    }

    /// An IP address from its text (`inet_pton`'s forms: dotted decimal without leading zeros, IPv6 hex) and a port
    /// in decimal without leading zeros, as version 1 writes them; `nil` if either is not.
    public init?(_ family: Family, host: String, port: String) {
        guard family != .unix, let number = Int(port), (0...65535).contains(number), String(number) == port else {
            return nil
        }
        var storage = [UInt8](repeating: 0, count: 16)
        let converted = storage.withUnsafeMutableBytes { buffer in
            inet_pton(family == .ipv4 ? AF_INET : AF_INET6, host, buffer.baseAddress)
        }
        guard converted == 1 else { return nil }
        self.init(family: family, bytes: Array(storage.prefix(family == .ipv4 ? 4 : 16)), port: number)
    }

    /// The address as text: dotted decimal, IPv6 hex, or the Unix path.
    public var host: String {
        guard family != .unix else { return String(decoding: bytes, as: UTF8.self) }
        var text = [CChar](repeating: 0, count: 64)
        _ = bytes.withUnsafeBytes { buffer in
            inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, buffer.baseAddress, &text, socklen_t(text.count))
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String {
        switch family {
        case .ipv4: return "\(host):\(port)"
        case .ipv6: return "[\(host)]:\(port)"
        case .unix: return "unix:\(host)"
        }
    }

    /// An IPv4 address as IPv6 (`::ffff:a.b.c.d`); others as they are.
    var asIPv6: ProxyAddress {
        guard family == .ipv4 else { return self }
        return ProxyAddress(family: .ipv6, bytes: [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + bytes, port: port)
    }
}

/// Why bytes are not a PROXY protocol header. The connection should be closed.
public enum ProxyProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes start neither `PROXY ` nor with version 2's signature.
    case notAHeader
    /// A header with a field out of the format.
    case malformed(String)
    /// A version 2 header longer than ``ProxyProtocol/longestV2Payload``.
    case tooLong(String)

    public var description: String {
        switch self {
        case .notAHeader: return "no PROXY protocol header"
        case .malformed(let detail): return "malformed PROXY protocol header: \(detail)"
        case .tooLong(let detail): return "PROXY protocol header too long: \(detail)"
        }
    }
}
