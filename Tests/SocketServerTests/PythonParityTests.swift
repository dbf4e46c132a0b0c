import Foundation
import Glibc
import Reactor
import SocketServer
import TestSupport
import Testing

/// Python's defaults and orders, where SocketServer used to differ.
@Suite struct PythonParityTests {
    /// Holds its connection until the test lets it go.
    final class HeldHandler: StreamRequestHandler {
        nonisolated(unsafe) static var release = DispatchSemaphore(value: 0)
        nonisolated(unsafe) static var started = DispatchSemaphore(value: 0)
        override func handle() throws {
            Self.started.signal()
            Self.release.wait()
        }
    }

    /// `serverClose()` closes the listening socket before it waits for the request threads, as Python's
    /// `server_close` does: a client arriving meanwhile is refused at once, not left in the backlog.
    @Test func serverCloseRefusesNewClientsWhileItWaits() throws {
        HeldHandler.release = DispatchSemaphore(value: 0)
        HeldHandler.started = DispatchSemaphore(value: 0)
        let server = try ThreadingTCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: HeldHandler.self)
        let address = server.serverAddress
        let finished = serveInBackground(server)
        let held = try connectedClient(address)
        #expect(HeldHandler.started.wait(timeout: .now() + 10) == .success)
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 10) == .success)
        let closed = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            server.serverClose()  // waits for the held thread
            closed.signal()
        }
        // While serverClose waits, the port refuses: the socket is already closed.
        #expect(eventually { (try? connectedClient(address)) == nil }, "a new client is refused during the wait")
        #expect(closed.wait(timeout: .now() + 0.2) == .timedOut, "serverClose is still waiting for the thread")
        HeldHandler.release.signal()
        #expect(closed.wait(timeout: .now() + 10) == .success)
        held.close()
    }

    /// The empty host is every IPv4 interface, as Python's `('', port)`.
    @Test func theEmptyHostIsAllInterfaces() throws {
        let address = try #require(try SocketAddress.resolve(host: "", port: 0).first)
        #expect(address.host == "0.0.0.0")
        let server = try TCPServer(address, handler: EchoStreamHandler.self)
        let port = try #require(server.serverAddress.port)
        try withServing(server) { () throws in
            #expect(try streamExchange(try SocketAddress(ipv4: "127.0.0.1", port: port)) == testLine)
        }
    }

    /// `ForkingMixIn.timeout` is Python's 300 s: `handleRequest()` without a request times out and reaps.
    @Test func forkingHandleRequestTimesOutAndReaps() throws {
        #expect(ForkingMixIn().timeout == .seconds(300))
        #expect(ThreadingMixIn().timeout == nil && ProcessingMixIn().timeout == nil && ReactorMixIn().timeout == nil)
        guard forkingIsTestable else { return }
        final class Counting: ForkingTCPServer, @unchecked Sendable {
            nonisolated(unsafe) var timeouts = 0
            override func handleTimeout() {
                timeouts += 1
                super.handleTimeout()
            }
        }
        let server = try Counting(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: EchoStreamHandler.self)
        defer { server.serverClose() }
        let client = try connectedClient(server.serverAddress)
        try client.sendAll(testLine)
        try server.handleRequest()  // forks the child that answers
        #expect(readToEnd(client) == testLine)
        #expect(server.forking.activeChildren.count == 1, "not reaped yet")
        server.forking.timeout = .milliseconds(50)  // the mode's timeout applies: the server's own is nil
        #expect(server.timeout == nil)
        #expect(
            eventually(within: .seconds(10)) {
                try? server.handleRequest()  // no client: times out, handleTimeout reaps
                return server.forking.activeChildren.isEmpty
            })
        #expect(server.timeouts >= 1)
    }

    /// A flush in `finish()` that fails because the client reset is not a server error.
    @Test func aFinishFlushToAResetClientIsNotAnError() throws {
        final class LateWriter: StreamRequestHandler {
            override var writeBufferSize: Int { 64 * 1024 }
            override func handle() throws {
                _ = try rfile.readLine()
                _ = try? rfile.readAll()  // until the client's reset (ECONNRESET) ends the input
                try wfile.write(Array(repeating: UInt8(ascii: "x"), count: 1000))  // buffered for finish()
            }
        }
        final class Recording: TCPServer, @unchecked Sendable {
            nonisolated(unsafe) var errors: [String] = []
            override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
                errors.append("\(error)")
            }
        }
        let server = try Recording(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: .blocking(LateWriter.self),
            mixIn: ProcessingMixIn())
        defer { server.serverClose() }
        let client = try connectedClient(server.serverAddress)
        try client.sendAll(Array("go\n".utf8))
        reset(client)
        try server.handleRequest()
        #expect(server.errors.isEmpty, "\(server.errors)")
    }
}

/// A TCPServer on `::` takes IPv4 clients (Python's on Linux does), unless `ipv6Only`.
@Suite struct TCPServerDualStackTests {
    @Test(arguments: [false, true])
    func ipv4ClientsOnTheIPv6Wildcard(ipv6Only: Bool) throws {
        let server = try TCPServer(
            try SocketAddress(ipv6: "::", port: 0), handler: EchoStreamHandler.self, bindAndActivate: false)
        defer { server.serverClose() }
        server.ipv6Only = ipv6Only
        try server.serverBind()
        try server.serverActivate()
        let v4 = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.serverAddress.port))
        let connected = (try? connectedClient(v4, timeout: .seconds(5))) != nil
        #expect(connected == !ipv6Only)
    }
}
