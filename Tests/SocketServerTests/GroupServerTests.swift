import Dispatch
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// Answers each line with the name of the thread that served it (`loop-N` on a group).
final class AsyncThreadNameHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        while try await rfile.readLine() != nil { try await wfile.write("\(currentThreadName())\n") }
    }
}

/// ``AsyncThreadNameHandler`` in the callback style.
final class CallbackThreadNameHandler: CallbackRequestHandler {
    override func handle(_ buffer: inout ByteBuffer) throws {
        while try buffer.readLine(maxLength: 100) != nil { connection.write("\(currentThreadName())\n") }
    }
}

/// A reactor server on a `LoopGroup`: its loop accepts and hands each connection to the group's loops in turn.
@Suite(.serialized) struct GroupServerTests {
    static func server(_ style: String, unix: Bool = false) throws -> TCPServer {
        let address =
            unix ? try SocketAddress(unixPath: temporaryPath()) : try SocketAddress(ipv4: "127.0.0.1", port: 0)
        if unix {
            return style == "async"
                ? try ReactorUnixStreamServer(address, handler: AsyncThreadNameHandler.self, group: testGroup)
                : try ReactorUnixStreamServer(address, handler: CallbackThreadNameHandler.self, group: testGroup)
        }
        return style == "async"
            ? try ReactorTCPServer(address, handler: AsyncThreadNameHandler.self, group: testGroup)
            : try ReactorTCPServer(address, handler: CallbackThreadNameHandler.self, group: testGroup)
    }

    /// Connections open side by side go to the loops in turn, each served on its loop's thread; the mode counts
    /// them per loop; the server leaves no descriptor behind.
    @Test(arguments: ["async", "callback"], [false, true])
    func connectionsAreServedOnEveryLoop(style: String, unix: Bool) throws {
        _ = testGroup
        let descriptors = openDescriptorCount()
        var names: [String] = []
        var perLoop: [Int] = []
        do {
            let server = try Self.server(style, unix: unix)
            try withServing(server) {
                let clients = try (0..<6).map { _ in try connectedClient(server.serverAddress) }
                for client in clients {
                    try client.sendAll(Array("which\n".utf8))
                    let line = try SocketReader(socket: client).readLine(strippingNewline: true) ?? []
                    names.append(String(decoding: line, as: UTF8.self))
                }
                for client in clients { client.close() }
            }
            perLoop = (server.mixIn as? ReactorMixIn)?.connectionsPerLoop ?? []
            #expect(server.mixIn.requestsInProgress == 0)
        }
        #expect(names.sorted() == ["loop-1", "loop-1", "loop-1", "loop-2", "loop-2", "loop-2"], "\(names)")
        #expect(perLoop == [3, 3])
        #expect(eventually { openDescriptorCount() <= descriptors }, "no descriptor left")
    }

    /// `serverClose()` waits for the handlers still running on the group's loops, as it does on one loop.
    @Test func serverCloseWaitsForTheGroupsHandlers() throws {
        let server = try ReactorTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: DrainAsyncHandler.self, group: testGroup)
        let finished = serveInBackground(server, pollInterval: .milliseconds(20))
        let clients = try (0..<2).map { _ in try connectedClient(server.serverAddress) }
        for client in clients {
            try client.sendAll(Array("work 300\n".utf8))
            #expect(try SocketReader(socket: client).readLine() == Array("ack\n".utf8))
        }
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 5) == .success)
        server.serverClose()
        #expect(server.mixIn.requestsInProgress == 0, "both finished before serverClose returned")
        for client in clients {
            #expect(String(decoding: readToEnd(client), as: UTF8.self) == "done\n")
            client.close()
        }
    }

    /// A group serves reactor mode only: another mode is refused when the server is made.
    @Test func aGroupNeedsReactorMode() throws {
        #expect(throws: ServerError.self) {
            _ = try TCPServer(
                try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: .blocking(EchoStreamHandler.self),
                mixIn: ThreadingMixIn(), group: testGroup)
        }
    }
}
