import CoreMetrics
import Foundation
import Logging
import MetricsTestKit
import Reactor
import ServiceLifecycle
import SocketServer
import Synchronization
import TestSupport
import Testing

@Suite struct MetricsTests {
    /// Accepted, refused, in progress, finished, errors and bytes, as the server sees them, in each mode.
    @Test(arguments: ["sequential", "threading", "reactor async", "reactor callback"])
    func serversCountWhatTheyServe(mode: String) throws {
        let metrics = TestMetrics()
        let (handler, mixIn) = poisonableSetup(mode)
        let server = try RecordingServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: handler, mixIn: mixIn)
        let dimensions = [("server", "\(server.serverAddress)")]
        server.metrics = ServerMetrics(dimensions: dimensions, factory: metrics)
        server.allowedClients = [try AddressRange("127.0.0.1/32")]
        try withServing(server, pollInterval: .milliseconds(20)) {
            for line in ["one\n", "two\n"] {
                let client = try connectedClient(server.serverAddress)
                try client.sendAll(Array(line.utf8))
                #expect(try client.receive(maxCount: 100) == Array(line.utf8))
                hangUp(client)
            }
            let poisoned = try connectedClient(server.serverAddress)
            try poisoned.sendAll(Array("poison\n".utf8))
            _ = try? poisoned.receive(maxCount: 100)
            hangUp(poisoned)
            // From 127.0.0.2, outside the allowed range.
            let refused = try Socket(
                binding: try SocketAddress(ipv4: "127.0.0.2", port: 0), kind: .stream, nonBlocking: false)
            refused.timeout = .seconds(10)
            try refused.connect(to: server.serverAddress)
            _ = try? refused.receive(maxCount: 100)
            hangUp(refused)
            #expect(
                eventually {
                    metrics.counterTotal(label: "socketserver_requests_finished_total", dimensions: dimensions) == 3
                })
        }
        func total(_ label: String) -> Int64 { metrics.counterTotal(label: label, dimensions: dimensions) }
        #expect(total("socketserver_requests_accepted_total") == 4)
        #expect(total("socketserver_requests_refused_total") == 1)
        #expect(total("socketserver_requests_finished_total") == 3)
        #expect(total("socketserver_handler_errors_total") == 1)
        #expect(total("socketserver_bytes_received_total") >= 15, "one\\n two\\n poison\\n")
        #expect(total("socketserver_bytes_sent_total") == 8)
        #expect(total("socketserver_loop_callbacks_total") > 0)
        let inProgress = try metrics.expectMeter("socketserver_requests_in_progress", dimensions)
        #expect(inProgress.lastValue == 0)
    }
}

@Suite struct ServiceLifecycleTests {
    /// A server under a ServiceGroup serves until a graceful shutdown, then returns.
    @Test func aServerIsAServiceThatStopsGracefully() async throws {
        let server = try ReactorTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: AsyncPoisonableHandler.self)
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let address = server.serverAddress
            let reply = try await Task.detached {
                let client = try connectedClient(address)
                defer { hangUp(client) }
                try client.sendAll(Array("hi\n".utf8))
                return try client.receive(maxCount: 100)
            }.value
            #expect(reply == Array("hi\n".utf8))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(server.socket.fileDescriptor == -1, "closed after the service returned")
    }

    /// With a grace period, a client that stays connected cannot hold a graceful shutdown: the server drains, cuts
    /// it off when the period ends, and the service returns (without one it would wait for that client forever).
    @Test func aGracePeriodBoundsTheShutdown() async throws {
        let server = try ReactorTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: AsyncPoisonableHandler.self)
        server.shutdownGracePeriod = .milliseconds(300)
        try await expectGracefulShutdownCutsOff(server, clients: [try connectedClient(server.serverAddress)])
    }

    /// An EventLoopService's grace period bounds its servers' drains the same way, every server drained at once
    /// within one period (a client of each stays connected).
    @Test func anEventLoopServiceDrainsWithinItsGracePeriod() async throws {
        let loop = try EventLoop()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let callback = try ReactorTCPServer(address, handler: CallbackPoisonableHandler.self, loop: loop)
        let async = try ReactorTCPServer(address, handler: AsyncPoisonableHandler.self, loop: loop)
        let service = EventLoopService(loop: loop, servers: [callback, async], gracePeriod: .milliseconds(300))
        try await expectGracefulShutdownCutsOff(
            service,
            clients: [try connectedClient(callback.serverAddress), try connectedClient(async.serverAddress)])
    }

    /// Runs `service` in a group while each client is served once and then stays connected, idle; the group's
    /// graceful shutdown returns within 3 s and every client is cut off.
    private func expectGracefulShutdownCutsOff(_ service: some Service, clients: [Socket]) async throws {
        defer { for client in clients { client.close() } }
        let group = ServiceGroup(services: [service], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for client in clients {
                #expect(try await Task.detached { try echoes(client, "idle next\n") }.value)
            }
            let started = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(ContinuousClock.now - started < .seconds(3))
        }
        for client in clients { #expect(closedByServer(client), "cut off at the end of the grace period") }
    }

    /// Two servers and a timer on one loop, as the daemon example runs them.
    @Test func oneLoopServesTwoServersAndATimer() async throws {
        let loop = try EventLoop()
        let tcp = try ReactorTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: CallbackPoisonableHandler.self, loop: loop)
        let udp = try ReactorUDPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: AsyncEchoDatagramHandler.self, loop: loop)
        let ticks = Mutex<Int>.Shared(0)
        nonisolated(unsafe) var timer: LoopTimer?
        let service = EventLoopService(
            loop: loop, servers: [tcp, udp],
            setUp: { loop in
                timer = try loop.scheduleRepeating(every: .milliseconds(10)) { _ in ticks.value.withLock { $0 += 1 } }
            },
            tearDown: { _ in timer?.cancel() })
        let group = ServiceGroup(services: [service], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let (tcpAddress, udpAddress) = (tcp.serverAddress, udp.serverAddress)
            let (streamReply, datagramReply) = try await Task.detached {
                let client = try connectedClient(tcpAddress)
                defer { hangUp(client) }
                try client.sendAll(Array("tcp\n".utf8))
                return (try client.receive(maxCount: 100), try datagramExchange(udpAddress, Array("udp".utf8)))
            }.value
            #expect(streamReply == Array("tcp\n".utf8))
            #expect(datagramReply == Array("udp".utf8))
            #expect(eventually { ticks.value.withLock { $0 } >= 3 })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(tcp.socket.fileDescriptor == -1 && udp.socket.fileDescriptor == -1)
    }
}
