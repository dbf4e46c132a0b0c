import Reactor
import TestSupport
import Testing

@Suite struct SocketAddressTests {
    @Test(arguments: [
        ("127.0.0.1:8080", "127.0.0.1:8080", SocketAddress.Family.ipv4),
        ("[::1]:443", "[::1]:443", .ipv6),
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock", .unix),
        ("/tmp/y.sock", "unix:/tmp/y.sock", .unix),
        ("localhost:80", "127.0.0.1:80", .ipv4),
    ])
    func parsesAndPrints(text: String, printed: String, family: SocketAddress.Family) throws {
        let address = try SocketAddress(text)
        #expect(address.description == printed)
        #expect(address.family == family)
        #expect(try SocketAddress(address.description) == address)
    }

    @Test(arguments: ["", "127.0.0.1", "1.2.3.4:99999", "[::1:80", "no-such-host.invalid:80", "unix:"])
    func rejectsBadText(text: String) {
        #expect(throws: ReactorError.self) { try SocketAddress(text) }
    }

    @Test func rejectsOverlongUnixPaths() {
        #expect(throws: ReactorError.self) { try SocketAddress(unixPath: "/" + String(repeating: "p", count: 200)) }
    }

    @Test func exposesHostAndPort() throws {
        let v6 = try SocketAddress(ipv6: "::1", port: 9)
        #expect(v6.host == "::1")
        #expect(v6.port == 9)
        #expect(v6.path == nil)
        #expect(try SocketAddress(unixPath: "/a").port == nil)
        #expect(try SocketAddress(ipv4: "10.1.2.3", port: 1) != SocketAddress(ipv4: "10.1.2.3", port: 2))
    }
}
