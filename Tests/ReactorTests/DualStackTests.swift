import Glibc
import Reactor
import TestSupport
import Testing

/// One rule across the package: an IPv6 socket on `::` is dual stack unless asked otherwise.
@Suite struct DualStackTests {
    /// Whether an IPv4 client can connect to `port` on 127.0.0.1.
    func ipv4Connects(_ port: Int) -> Bool {
        guard let address = try? SocketAddress(ipv4: "127.0.0.1", port: port),
            let client = try? connectedClient(address, timeout: .seconds(5))
        else { return false }
        client.close()
        return true
    }

    @Test(arguments: [false, true])
    func aListenerOnTheIPv6WildcardTakesIPv4ClientsUnlessIPv6Only(ipv6Only: Bool) throws {
        var connected: Bool?
        try runLoop { loop in
            var options = ListenOptions()
            options.ipv6Only = ipv6Only
            let listener = try Listener(address: try SocketAddress(ipv6: "::", port: 0), options: options, on: loop) {
                $0.close()
            }
            // The kernel completes the connection; no accept is needed.
            connected = ipv4Connects(try #require(listener.localAddress.port))
            listener.close()
            loop.stop()
        }
        #expect(connected == !ipv6Only)
    }

    @Test(arguments: [false, true])
    func aDatagramSocketOnTheIPv6WildcardHearsIPv4SendersUnlessIPv6Only(ipv6Only: Bool) throws {
        let server = try Socket(
            binding: try SocketAddress(ipv6: "::", port: 0), kind: .datagram, nonBlocking: false, ipv6Only: ipv6Only)
        server.timeout = .milliseconds(500)
        let port = try #require(server.localAddress?.port)
        let sender = try Socket(family: .ipv4, kind: .datagram)
        try Array("over v4".utf8).withUnsafeBytes {
            try sender.send($0, to: try SocketAddress(ipv4: "127.0.0.1", port: port))
        }
        let heard = (try? server.receive(maxCount: 100)) == Array("over v4".utf8)
        #expect(heard == !ipv6Only)
    }

    @Test func theDefaultsAreDualStack() {
        #expect(ListenOptions().ipv6Only == false)
    }
}
