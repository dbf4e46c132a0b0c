import Foundation
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// Answers every GET with the name of the thread that served it.
final class ThreadNamePageHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }

    override func doGET() throws {
        let name = Array(
            (fileText("/proc/thread-self/comm") ?? "").trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        sendResponse(200)
        sendHeader("Content-Length", "\(name.count)")
        try endHeaders()
        try wfile.write(name)
    }
}

@Suite struct GroupHTTPTests {
    /// A reactor HTTP server on a group: new connections go to its loops in turn; a keep-alive connection's
    /// requests stay on the loop it went to.
    @Test func connectionsAreServedOnEveryLoopAndStayThere() throws {
        let group = try LoopGroup(loops: 2, blockingThreads: 1)
        defer { group.shutdown() }
        let server = try ReactorHTTPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: ThreadNamePageHandler.self, group: group)
        try serving(server) { address in
            let names = try (0..<4).map { _ in String(decoding: try request(address, "GET", "/").body, as: UTF8.self) }
            #expect(names == ["loop-1", "loop-2", "loop-1", "loop-2"])
            let client = try Client(address)
            var kept: Set<String> = []
            for _ in 0..<3 {
                try client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                kept.insert(String(decoding: try #require(try client.response()).body, as: UTF8.self))
            }
            #expect(kept == ["loop-1"], "the fifth connection, on the first loop, all along")
        }
        #expect(server.reactor.connectionsPerLoop == [3, 2])
    }
}
