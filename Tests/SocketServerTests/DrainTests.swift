import Dispatch
import Foundation
import Glibc
import Logging
import MetricsTestKit
import Reactor
import SocketServer
import TestSupport
import Testing

// One command per connection: `work N` answers `ack`, works N ms, answers `done` and ends the request;
// `wait` answers `ack` and waits for the client's end of input, however long (what a drain must cut).

final class DrainBlockingHandler: StreamRequestHandler {
    override func handle() throws {
        guard let line = try rfile.readLine(strippingNewline: true) else { return }
        try wfile.write(Array("ack\n".utf8))
        if line.starts(with: Array("work ".utf8)), let ms = Int(String(decoding: line.dropFirst(5), as: UTF8.self)) {
            usleep(useconds_t(ms * 1000))
            try wfile.write(Array("done\n".utf8))
            return
        }
        while try rfile.readLine() != nil {}
    }
}

final class DrainAsyncHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        guard let line = try await rfile.readLine(strippingNewline: true) else { return }
        try await wfile.write(Array("ack\n".utf8))
        if line.starts(with: Array("work ".utf8)), let ms = Int(String(decoding: line.dropFirst(5), as: UTF8.self)) {
            try await Task.sleep(for: .milliseconds(ms))
            try await wfile.write(Array("done\n".utf8))
            return
        }
        while try await rfile.readLine() != nil {}
    }
}

final class DrainCallbackHandler: CallbackRequestHandler {
    private var timer: LoopTimer?

    override func handle(_ buffer: inout ByteBuffer) throws {
        guard timer == nil, let line = try buffer.readLine(maxLength: 100, strippingNewline: true) else { return }
        buffer.clear()
        connection.write(Array("ack\n".utf8))
        if line.starts(with: Array("work ".utf8)), let ms = Int(String(decoding: line.dropFirst(5), as: UTF8.self)) {
            timer = try connection.loop.schedule(after: .milliseconds(ms)) { [connection] in
                connection.write(Array("done\n".utf8))
                connection.close()
            }
        }
    }

    override func finish(error: (any Error)?) {
        timer?.cancel()
    }
}

/// `shutdown(gracePeriod:)` in every mode: requests that finish within the grace period are answered, longer ones
/// are cut when it ends, it returns soon after, and no descriptor is left.
@Suite(.serialized) struct DrainTests {
    static let modes = poisonableModes + ["reactor group async", "reactor group callback"]

    static func server(_ name: String) throws -> TCPServer {
        let (handler, mixIn): (RequestHandlerType, ProcessingMixIn) =
            switch name {
            case "threading": (.blocking(DrainBlockingHandler.self), ThreadingMixIn())
            case "forking": (.blocking(DrainBlockingHandler.self), ForkingMixIn())
            case "reactor async", "reactor group async": (.async(DrainAsyncHandler.self), ReactorMixIn())
            case "reactor callback", "reactor group callback": (.callback(DrainCallbackHandler.self), ReactorMixIn())
            default: (.blocking(DrainBlockingHandler.self), ProcessingMixIn())
            }
        let server = try TCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: handler, mixIn: mixIn,
            group: name.contains("group") ? testGroup : nil)
        server.logger = Logger(label: "quiet") { _ in SwiftLogNoOpLogHandler() }
        return server
    }

    /// Runs `body` with a new server in `name`'s mode, and checks that once the server is freed no descriptor
    /// it opened is left.
    static func withServer(_ name: String, _ body: (TCPServer) throws -> Void) throws {
        // The async handler's `Task.sleep` makes the process's one timer descriptor on first use: made here first.
        let slept = DispatchSemaphore(value: 0)
        Task {
            try? await Task.sleep(for: .milliseconds(1))
            slept.signal()
        }
        slept.wait()
        _ = testGroup  // the group's loops are the process's, made before counting
        let descriptors = openDescriptorCount()
        try body(try server(name))
        #expect(eventually { openDescriptorCount() == descriptors }, "\(name): no descriptor left")
    }

    /// A blocking client of `server`, its reads bounded by 10 s, and a reader of its lines.
    static func client(_ server: TCPServer) throws -> (Socket, () throws -> String?) {
        let client = try connectedClient(server.serverAddress)
        let reader = SocketReader(socket: client)
        return (client, { try reader.readLine().map { String(decoding: $0, as: UTF8.self) } })
    }

    /// A request working when the drain begins finishes and is answered; the drain returns once it has ended,
    /// long before its grace period, and the listening socket refuses new clients meanwhile.
    @Test(arguments: modes)
    func aRequestInProgressFinishes(name: String) throws {
        guard name != "forking" || forkingIsTestable else { return }
        try Self.withServer(name) { server in
            let finished = serveInBackground(server, pollInterval: .milliseconds(20))
            let (client, line) = try Self.client(server)
            try client.sendAll(Array("work 400\n".utf8))
            #expect(try line() == "ack\n", "\(name)")
            let started = ContinuousClock.now
            let report = server.shutdown(gracePeriod: .seconds(20))
            let took = ContinuousClock.now - started
            #expect(finished.wait(timeout: .now() + 5) == .success)
            #expect(report == DrainReport(finished: 1, cut: 0), "\(name): \(report)")
            #expect(took < .seconds(10), "\(name): returned after \(took), not at the end of the grace period")
            #expect(try line() == "done\n", "\(name): the answer arrives")
            #expect(closedByServer(client), "\(name)")
            #expect(throws: IOError.self) { try connectedClient(server.serverAddress, timeout: .seconds(1)) }
            client.close()
            server.serverClose()
        }
    }

    /// A request that waits for its client past the grace period is cut off when it ends: the client sees its
    /// connection end, the drain returns soon after and reports it cut; the server's metrics count the same, and
    /// what the cut request failed with is not a handler error.
    @Test(arguments: modes)
    func aRequestPastTheGracePeriodIsCut(name: String) throws {
        guard name != "forking" || forkingIsTestable else { return }
        try Self.withServer(name) { server in
            let metrics = TestMetrics()
            let dimensions = [("server", "\(server.serverAddress)")]
            server.metrics = ServerMetrics(dimensions: dimensions, factory: metrics)
            let finished = serveInBackground(server, pollInterval: .milliseconds(20))
            let (quick, quickLine) = try Self.client(server)
            let (stuck, stuckLine) = try Self.client(server)
            if name == "sequential" {
                // One request at a time: the stuck one only.
                quick.close()
            } else {
                try quick.sendAll(Array("work 200\n".utf8))
                #expect(try quickLine() == "ack\n", "\(name)")
            }
            try stuck.sendAll(Array("wait\n".utf8))
            #expect(try stuckLine() == "ack\n", "\(name)")
            let started = ContinuousClock.now
            let report = server.shutdown(gracePeriod: .milliseconds(600))
            let took = ContinuousClock.now - started
            #expect(finished.wait(timeout: .now() + 5) == .success)
            let expected = name == "sequential" ? DrainReport(finished: 0, cut: 1) : DrainReport(finished: 1, cut: 1)
            #expect(report == expected, "\(name): \(report)")
            #expect(took >= .milliseconds(550) && took < .seconds(3), "\(name): returned after \(took)")
            if name != "sequential" { #expect(try quickLine() == "done\n", "\(name)") }
            #expect(closedByServer(stuck), "\(name): the stuck connection ended (not a receive timeout)")
            func total(_ label: String) -> Int64 { metrics.counterTotal(label: label, dimensions: dimensions) }
            #expect(total("socketserver_drain_finished_total") == Int64(report.finished), "\(name)")
            #expect(total("socketserver_drain_cut_total") == 1, "\(name)")
            if name != "forking" {  // a child's errors are its own
                #expect(total("socketserver_handler_errors_total") == 0, "\(name): the cut is not a handler error")
            }
            quick.close()
            stuck.close()
            server.serverClose()
        }
    }

    /// Called after `serveForever` returned (a `requestShutdown()` from a handler or a signal), the drain runs on
    /// the calling thread: a reactor server's loop runs there until its requests finish.
    @Test(arguments: [
        "threading", "reactor async", "reactor callback", "reactor group async", "reactor group callback",
    ])
    func aDrainAfterServingStopped(name: String) throws {
        let server = try Self.server(name)
        let finished = serveInBackground(server, pollInterval: .milliseconds(20))
        let (client, line) = try Self.client(server)
        try client.sendAll(Array("work 300\n".utf8))
        #expect(try line() == "ack\n", "\(name)")
        server.requestShutdown()
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(server.shutdown(gracePeriod: .seconds(20)) == DrainReport(finished: 1, cut: 0), "\(name)")
        #expect(try line() == "done\n", "\(name)")
        client.close()
        server.serverClose()
    }
}
