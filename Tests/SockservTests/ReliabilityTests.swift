import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

@Suite struct ReliabilityTests {
    /// One echo request on a fresh connection.
    private func echoOnce(_ address: SocketAddress, _ text: String = "ping\n") throws -> Bool {
        try echoes(try connectedClient(address, timeout: .seconds(5)), text)
    }

    @Test(arguments: ["reactor", "threading"])
    func slowClientsAreClosedByTheIdleTimeoutWhileOthersAreServed(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--mode", mode, "--idle-timeout", "1"])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let pid = server.process.processIdentifier
        let baseline = descriptorCount(of: pid)
        // 500 clients send half a line and stall (slowloris).
        var stalled: [Socket] = []
        let stalledCount = scaled(500)
        for _ in 0..<stalledCount {
            let client = try connectedClient(address)
            try client.sendAll(Array("half a li".utf8))
            stalled.append(client)
        }
        // Meanwhile everyone else is served.
        var served = 0
        let others = scaled(200)
        for index in 0..<others where try echoOnce(address, "request \(index)\n") { served += 1 }
        #expect(served == others)
        // Each stalled client is closed by the server: end of input (or a reset) within the bound.
        // A timeout does not count: the idle timeout (1 s) must close them within the clients' 10 s.
        let closed = stalled.filter(closedByServer).count
        #expect(closed == stalledCount)
        stalled.removeAll()
        #expect(
            eventually(within: .seconds(5)) { descriptorCount(of: pid) == baseline }, "descriptors back to \(baseline)")
        #expect(server.stop() == 0)
    }

    @Test(arguments: ["reactor", "threading"])
    func abruptPeersLeakNothing(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--mode", mode])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let pid = server.process.processIdentifier
        // The baseline before any connection: a handler still finishing a warm-up request would inflate it.
        let baseline = descriptorCount(of: pid)
        #expect(try echoOnce(address))
        // `make soak` runs 10,000 peers (SOCKSERV_ABRUPT_PEERS); 2,000 keeps make check short, same paths.
        let peers = ProcessInfo.processInfo.environment["SOCKSERV_ABRUPT_PEERS"].flatMap(Int.init) ?? scaled(2_000)
        var rssAfterWarmUp = 0
        for index in 0..<peers {
            if index == peers / 4 {
                #expect(eventually(within: .seconds(30)) { descriptorCount(of: pid) == baseline })
                rssAfterWarmUp = server.residentKiB
            }
            let client = try connectedClient(address)
            switch index % 4 {
            case 0: break  // vanish before sending anything
            case 1: try client.sendAll(Array("mid-req".utf8))  // mid-request
            case 2: try client.sendAll(Array(String(repeating: "x", count: 16_000).utf8) + [10])  // mid-reply
            default: try client.sendAll(Array(String(repeating: "p\n", count: 500).utf8))  // mid-pipeline
            }
            reset(client)
        }
        #expect(try echoOnce(address), "still serving")
        #expect(
            eventually(within: .seconds(30)) { descriptorCount(of: pid) == baseline },
            "descriptors back to \(baseline): \(descriptorCount(of: pid))")
        // Memory back to where it was after the first quarter (allocator caches warm): flat within 10% + 4 MiB.
        let rss = server.residentKiB
        #expect(
            rss <= rssAfterWarmUp + rssAfterWarmUp / 10 + 4096 || !measuresMemory,
            "RSS \(rssAfterWarmUp) KiB -> \(rss) KiB")
        print(
            "abrupt peers \(mode): \(peers) peers reset before, mid-request, mid-reply and mid-pipeline; descriptors \(baseline) -> \(descriptorCount(of: pid)); RSS \(rssAfterWarmUp) -> \(rss) KiB; still serving"
        )
        #expect(server.stop() == 0, "no crash: a clean exit on SIGTERM")
        #expect(!server.standardError.contains("Fatal error"))
    }
}
