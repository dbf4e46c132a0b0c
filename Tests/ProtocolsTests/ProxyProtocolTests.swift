import Protocols
import Testing

/// The PROXY protocol header, sans I/O: what haproxy's `send-proxy` and `send-proxy-v2` write, read back; every way
/// a header can be cut, bent or blown up.
@Suite struct ProxyProtocolTests {
    func parse(_ bytes: [UInt8]) throws(ProxyProtocolError) -> (header: ProxyHeader, length: Int)? {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(ProxyProtocolError) in try ProxyProtocol.parse(buffer) }
        }.get()
    }

    func parse(_ text: String) throws(ProxyProtocolError) -> (header: ProxyHeader, length: Int)? {
        try parse(Array(text.utf8))
    }

    func address(_ family: ProxyAddress.Family, _ host: String, _ port: Int) throws -> ProxyAddress {
        try #require(ProxyAddress(family, host: host, port: String(port)))
    }

    @Test func versionOneLines() throws {
        let line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
        let parsed = try #require(try parse(line + "GET / HTTP/1.1\r\n"))
        #expect(parsed.length == line.utf8.count, "the header only: what follows is the client's")
        #expect(
            parsed.header
                == .proxied(
                    source: try address(.ipv4, "192.0.2.1", 56324), destination: try address(.ipv4, "198.51.100.2", 443)
                ))
        guard case .proxied(let source, _) = parsed.header else { return }
        #expect(source.description == "192.0.2.1:56324")
        let six = try #require(try parse("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"))
        guard case .proxied(let from, let to) = six.header else {
            Issue.record("\(six)")
            return
        }
        #expect(from.description == "[2001:db8::1]:65535" && to.description == "[::1]:0")
        #expect(try parse("PROXY UNKNOWN\r\n")?.header == .local)
        #expect(try parse("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n")?.header == .local)
    }

    /// Every prefix of a header asks for more; the whole one is read; the same for version 2.
    @Test func aHeaderCutAnywhereWaitsForTheRest() throws {
        let headers = [
            Array("PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n".utf8),
            ProxyProtocol.encode(
                .proxied(
                    source: try address(.ipv6, "2001:db8::1", 1234), destination: try address(.ipv4, "10.0.0.1", 80)),
                version: 2),
        ]
        for header in headers {
            for cut in 0..<header.count {
                #expect(try parse(Array(header.prefix(cut))) == nil, "\(cut) of \(header.count) bytes")
            }
            #expect(try parse(header)?.length == header.count)
        }
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\n", ProxyProtocolError.notAHeader),
        ("PROXZ", .notAHeader),
        ("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", .notAHeader),
        ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", .malformed("unknown protocol 'TCP5'")),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", .malformed("TCP4 takes 4 fields, got 3")),
        ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", .malformed("TCP4 takes 4 fields, got 5")),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", .malformed("a line not ending in CRLF")),
        ("PROXY\r\n", .notAHeader),
    ])
    func badVersionOneLines(text: String, error: ProxyProtocolError) {
        #expect(throws: error) { try parse(text) }
    }

    /// Addresses and ports exactly as the specification writes them: no leading zeros, no family mix-up, ports to 65535.
    @Test(arguments: [
        "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "PROXY TCP6 ::1::2 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    ])
    func badAddressesAndPorts(text: String) {
        #expect(throws: ProxyProtocolError.self) { try parse(text) }
    }

    /// A version 1 line with no CRLF in its first 107 bytes is refused there, not buffered further.
    @Test func aLineWithoutItsEndIsRefusedAt107Bytes() throws {
        let long = Array(("PROXY TCP6 " + String(repeating: "f", count: 200)).utf8)
        #expect(try parse(Array(long.prefix(106))) == nil)
        #expect(throws: ProxyProtocolError.malformed("no CRLF within 107 bytes")) { try parse(Array(long.prefix(107))) }
    }

    /// What each version writes, read back: IPv4, IPv6, a mixed pair (as IPv6, IPv4 mapped), Unix paths, LOCAL.
    @Test func everyHeaderReadsBackAsWritten() throws {
        let four = ProxyHeader.proxied(
            source: try address(.ipv4, "192.0.2.1", 1), destination: try address(.ipv4, "10.0.0.2", 65535))
        let six = ProxyHeader.proxied(
            source: try address(.ipv6, "2001:db8::7", 443), destination: try address(.ipv6, "::1", 6379))
        let mixed = ProxyHeader.proxied(
            source: try address(.ipv4, "192.0.2.1", 5), destination: try address(.ipv6, "::1", 6))
        let mapped = ProxyHeader.proxied(
            source: try address(.ipv6, "::ffff:192.0.2.1", 5), destination: try address(.ipv6, "::1", 6))
        let unix = ProxyHeader.proxied(
            source: ProxyAddress(family: .unix, bytes: Array("/run/client".utf8), port: 0),
            destination: ProxyAddress(family: .unix, bytes: Array("/run/server.sock".utf8), port: 0))
        for version in [1, 2] {
            for (header, expected) in [(four, four), (six, six), (mixed, mapped), (ProxyHeader.local, .local)] {
                let bytes = ProxyProtocol.encode(header, version: version)
                #expect(try parse(bytes + [0x2A])?.header == expected, "version \(version): \(header)")
                #expect(try parse(bytes + [0x2A])?.length == bytes.count, "version \(version): \(header)")
            }
        }
        #expect(try parse(ProxyProtocol.encode(unix, version: 2))?.header == unix)
        #expect(ProxyProtocol.encode(unix, version: 1) == Array("PROXY UNKNOWN\r\n".utf8), "version 1 has no Unix")
        #expect(ProxyProtocol.encode(four, version: 1) == Array("PROXY TCP4 192.0.2.1 10.0.0.2 1 65535\r\n".utf8))
        #expect(ProxyProtocol.encode(.local, version: 2).count == 16)
    }

    /// Version 2: TLVs after the addresses are part of the header; LOCAL skips its payload; a header over the bound is
    /// refused from its first 16 bytes; bad version, command, family or too few address bytes are refused.
    @Test func versionTwoBlocks() throws {
        let signature = ProxyProtocol.v2Signature
        let addresses: [UInt8] = [192, 0, 2, 1, 10, 0, 0, 2, 0x01, 0xBB, 0x00, 0x50]
        let alpn: [UInt8] = [0x01, 0x00, 0x02, 0x68, 0x32]  // ALPN "h2"
        let withTLV = signature + [0x21, 0x11, 0x00, UInt8(addresses.count + alpn.count)] + addresses + alpn
        let parsed = try #require(try parse(withTLV + [0x2A]))
        #expect(parsed.length == withTLV.count)
        #expect(
            parsed.header
                == .proxied(
                    source: try address(.ipv4, "192.0.2.1", 443), destination: try address(.ipv4, "10.0.0.2", 80)))
        let local = signature + [0x20, 0x11, 0x00, 0x0C] + addresses
        #expect(try parse(local)?.header == .local)
        #expect(try parse(local)?.length == local.count)
        #expect(throws: ProxyProtocolError.tooLong("2000 bytes of addresses and TLVs, more than 1024")) {
            try parse(signature + [0x21, 0x11, 0x07, 0xD0])
        }
        #expect(throws: ProxyProtocolError.malformed("version 1, not 2")) {
            try parse(signature + [0x11, 0x11, 0, 12] + addresses)
        }
        #expect(throws: ProxyProtocolError.malformed("command 2, neither LOCAL nor PROXY")) {
            try parse(signature + [0x22, 0x11, 0, 12] + addresses)
        }
        #expect(throws: ProxyProtocolError.malformed("address family 4")) {
            try parse(signature + [0x21, 0x41, 0, 12] + addresses)
        }
        #expect(throws: ProxyProtocolError.malformed("4 address bytes for IPv4, fewer than 12")) {
            try parse(signature + [0x21, 0x11, 0, 4, 1, 2, 3, 4])
        }
        #expect(throws: ProxyProtocolError.notAHeader) { try parse([0x0D, 0x0A, 0x0D, 0x0B]) }
        #expect(try parse(signature + [0x21, 0x01, 0, 0])?.header == .local, "UNSPEC: the socket's addresses stand")
    }
}
