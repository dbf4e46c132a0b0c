import Dispatch
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// Counts the request hooks it runs, in whatever mode.
final class HookCountingServer: TCPServer, @unchecked Sendable {
    let gotten = Atomic<Int>(0)
    let finished = Atomic<Int>(0)
    let shutDown = Atomic<Int>(0)

    /// Python's hook, still called by the one accept path.
    override func getRequest() throws -> (Request, SocketAddress)? {
        let request = try super.getRequest()
        if request != nil { gotten.add(1, ordering: .relaxed) }
        return request
    }

    override func finishRequest(_ request: Request, clientAddress: SocketAddress) throws {
        finished.add(1, ordering: .relaxed)
        try super.finishRequest(request, clientAddress: clientAddress)
    }

    override func finishRequest(_ request: Request, clientAddress: SocketAddress) async throws {
        finished.add(1, ordering: .relaxed)
        try await super.finishRequest(request, clientAddress: clientAddress)
    }

    override func shutdownRequest(_ request: Request) {
        shutDown.add(1, ordering: .relaxed)
        super.shutdownRequest(request)
    }
}

/// One request lifecycle in every mode: `finishRequest` and `shutdownRequest` run once per request,
/// callback handlers included, and one count of requests in progress goes up and down with them.
@Suite(.serialized) struct LifecycleTests {
    static let modes = poisonableModes

    static func setup(_ name: String) -> (RequestHandlerType, ProcessingMixIn) { poisonableSetup(name) }

    /// Overriding `getRequest`, `finishRequest` or `shutdownRequest` works in every mode that runs them in this process
    /// (a forked child runs them in its own), and each runs once per request.
    @Test(arguments: modes.filter { $0 != "forking" })
    func theRequestHooksRunOncePerRequest(name: String) throws {
        let (handler, mixIn) = Self.setup(name)
        let server = try HookCountingServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: handler, mixIn: mixIn)
        try withServing(server, pollInterval: .milliseconds(20)) {
            for index in 0..<3 {
                let client = try connectedClient(server.serverAddress)
                #expect(try echoes(client, "request \(index)\n"), "\(name)")
                hangUp(client)
            }
            #expect(
                eventually {
                    server.shutDown.load(ordering: .relaxed) == 3 && server.mixIn.requestsInProgress == 0
                }, "\(name): shutdownRequest ran \(server.shutDown.load(ordering: .relaxed)) times")
        }
        #expect(server.gotten.load(ordering: .relaxed) == 3, "\(name): getRequest")
        #expect(server.finished.load(ordering: .relaxed) == 3, "\(name): finishRequest")
        #expect(server.shutDown.load(ordering: .relaxed) == 3, "\(name): shutdownRequest")
    }

    /// A request held open counts as in progress until it ends, in every mode (a forked child until it is reaped).
    @Test(arguments: modes)
    func requestsInProgressFollowsARequest(name: String) throws {
        guard name != "forking" || forkingIsTestable else { return }
        let (handler, mixIn) = Self.setup(name)
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: handler, mixIn: mixIn)
        try withServing(server, pollInterval: .milliseconds(20)) {
            let client = try connectedClient(server.serverAddress)
            #expect(try echoes(client, "hold\n"), "\(name)")
            #expect(server.mixIn.requestsInProgress == 1, "\(name): one request in progress")
            #expect(server.mixIn.hasRequestsInProgress)
            hangUp(client)
            #expect(eventually { server.mixIn.requestsInProgress == 0 }, "\(name): the request ended")
        }
    }

    /// A `processRequest` override that serves the request itself, as Python's `BaseServer.process_request` does,
    /// or a mode of the program's own whose `processRequest` does: the request ends when the override returns (it
    /// stayed in progress for ever, and a drain waited for it until its grace period ended).
    @Test(arguments: ["server", "mode"])
    func anOverrideThatServesItselfEndsItsRequest(overriding: String) throws {
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let server: TCPServer
        if overriding == "server" {
            server = try SelfServingServer(
                address, requestHandler: .blocking(PoisonableHandler.self), mixIn: ThreadingMixIn())
        } else {
            server = try TCPServer(address, requestHandler: .blocking(PoisonableHandler.self), mixIn: OwnMode())
        }
        let finished = serveInBackground(server, pollInterval: .milliseconds(20))
        for index in 0..<3 {
            let client = try connectedClient(server.serverAddress)
            #expect(try echoes(client, "request \(index)\n"))
            hangUp(client)
        }
        #expect(eventually { server.mixIn.requestsInProgress == 0 }, "\(server.mixIn.requestsInProgress) left")
        let start = ContinuousClock.now
        #expect(server.shutdown(gracePeriod: .seconds(5)) == DrainReport(finished: 0, cut: 0))
        #expect(ContinuousClock.now - start < .seconds(2), "nothing to wait for")
        #expect(finished.wait(timeout: .now() + 10) == .success)
        server.serverClose()
    }

    /// A combined class always has its own mode: its mix-in accessor is the server's mix-in.
    @Test func combinedServersHoldTheirMode() throws {
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let threading = try ThreadingTCPServer(address, handler: PoisonableHandler.self)
        defer { threading.serverClose() }
        #expect(threading.threading === threading.mixIn)
        threading.blockOnClose = false
        #expect(!threading.mixIn.blockOnClose)
        let forking = try ForkingTCPServer(address, handler: PoisonableHandler.self)
        defer { forking.serverClose() }
        #expect(forking.forking === forking.mixIn)
        forking.maxChildren = 3
        #expect(forking.forking.maxChildren == 3)
    }
}

/// Serves each request on the accepting thread, past its mode: Python's `BaseServer.process_request`.
final class SelfServingServer: TCPServer, @unchecked Sendable {
    override func processRequest(_ request: Request, clientAddress: SocketAddress) throws {
        try finishRequest(request, clientAddress: clientAddress)
        shutdownRequest(request)
    }
}

/// A mode of the program's own, which serves on the accepting thread without calling `super`.
final class OwnMode: ProcessingMixIn, @unchecked Sendable {
    override func processRequest(_ request: Request, clientAddress: SocketAddress, server: BaseServer) throws {
        try server.finishRequest(request, clientAddress: clientAddress)
        server.shutdownRequest(request)
    }
}
