import Glibc
import Reactor
import TestSupport
import Testing

@Suite struct DatagramTests {
    enum DatagramFamily: String, CaseIterable { case ipv4, ipv6, unix }

    private func addresses(_ family: DatagramFamily) throws -> (server: SocketAddress, client: SocketAddress) {
        switch family {
        case .ipv4:
            return (try SocketAddress(ipv4: "127.0.0.1", port: 0), try SocketAddress(ipv4: "127.0.0.1", port: 0))
        case .ipv6: return (try SocketAddress(ipv6: "::1", port: 0), try SocketAddress(ipv6: "::1", port: 0))
        case .unix:
            return (
                try SocketAddress(unixPath: temporaryPath("srv")), try SocketAddress(unixPath: temporaryPath("cli"))
            )
        }
    }

    @Test(arguments: DatagramFamily.allCases)
    func echoesDatagramsWithTheSendersAddress(family: DatagramFamily) throws {
        let (serverAddress, clientAddress) = try addresses(family)
        var replies: [[UInt8]] = []
        try runLoop { loop in
            let server = try DatagramSocket(binding: serverAddress, on: loop)
            server.onReceive = { bytes, sender in
                guard let sender else {
                    Issue.record("no sender address")
                    return
                }
                try? server.send(bytes, to: sender)
            }
            let client = try DatagramSocket(binding: clientAddress, on: loop)
            loop.test {
                for message in ["one", "two", String(repeating: "z", count: 8000)] {
                    try client.send(Array(message), to: server.localAddress!)
                    let (bytes, sender) = try await client.receive()
                    #expect(sender == server.localAddress)
                    replies.append(bytes)
                }
                client.close()
                server.close()
            }
        }
        #expect(replies == [Array("one"), Array("two"), Array(String(repeating: "z", count: 8000))])
        if family == .unix {
            #expect(access(serverAddress.path!, F_OK) != 0, "the socket file is removed on close")
        }
    }

    @Test func closeFailsAWaitingReceive() throws {
        try runLoop { loop in
            let socket = try DatagramSocket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), on: loop)
            try loop.schedule(after: .milliseconds(5)) { socket.close() }
            loop.test {
                await #expect(throws: ReactorError.alreadyClosed) { _ = try await socket.receive() }
            }
        }
    }
}
