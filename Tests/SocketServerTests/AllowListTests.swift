import Reactor
import SocketServer
import TestSupport
import Testing

@Suite struct AllowListTests {
    private func address(_ host: String) throws -> SocketAddress {
        host.contains(":") ? try SocketAddress(ipv6: host, port: 1) : try SocketAddress(ipv4: host, port: 1)
    }

    @Test func rangesMatchTheirAddressesOnly() throws {
        let cases: [(String, String, Bool)] = [
            ("10.0.0.0/8", "10.255.1.2", true), ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true), ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "203.0.113.9", true), ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
            ("10.1.2.3/8", "10.9.9.9", true),  // host bits are ignored
            ("::1/128", "::1", true), ("::1", "::2", false), ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false), ("fe80::/10", "febf::1", true), ("fe80::/10", "fec0::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),  // an IPv4 peer on a dual-stack socket
            ("::ffff:10.0.0.0/104", "10.3.3.3", true),  // a mapped range is an IPv4 range
            ("10.0.0.0/8", "::1", false), ("::/0", "10.0.0.1", false),
        ]
        for (range, host, expected) in cases {
            #expect(try AddressRange(range).contains(address(host)) == expected, "\(range) contains \(host)")
        }
        #expect(try !AddressRange("10.0.0.0/8").contains(SocketAddress(unixPath: "/tmp/x")))
        #expect(try AddressRange("10.1.2.3/8").description == "10.0.0.0/8")
        #expect(try AddressRange("2001:db8::1/32").description == "2001:db8::/32")
    }

    @Test(arguments: [
        "", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "host.example/8", "10.0.0.0/-1", "10.0.0.0/8/8",
        "1.2.3.4/٣",
    ])
    func invalidRangesAreClearErrors(text: String) {
        #expect { try AddressRange(text) } throws: { error in
            guard case .invalidAddressRange(let detail) = error as? ServerError else { return false }
            return detail.hasPrefix(text + ":")
        }
    }

    @Test func theDefaultVerifyRequestHonoursTheAllowList() throws {
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: EchoStreamHandler.self)
        defer { server.serverClose() }
        let request = Request.datagram(packet: [], socket: server.socket)
        #expect(server.verifyRequest(request, clientAddress: try address("10.0.0.1")))
        server.allowedClients = [try AddressRange("127.0.0.0/8")]
        #expect(server.verifyRequest(request, clientAddress: try address("127.0.0.1")))
        #expect(!server.verifyRequest(request, clientAddress: try address("10.0.0.1")))
        #expect(server.verifyRequest(request, clientAddress: .unnamedUnix), "Unix peers are guarded by the file's mode")
    }
}
