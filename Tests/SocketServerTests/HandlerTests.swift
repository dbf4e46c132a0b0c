import Dispatch
import Foundation
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

@Suite struct HandlerTests {
    @Test func aReadPastTheHandlersTimeoutIsAnError() throws {
        final class Impatient: StreamRequestHandler {
            override var timeout: Duration? { .milliseconds(100) }
            override func handle() throws { _ = try rfile.readLine() }
        }
        final class Recording: TCPServer, @unchecked Sendable {
            let errors = Mutex<[String]>([])
            override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
                errors.withLock { $0.append("\(error)") }
            }
        }
        let server = try Recording(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: .blocking(Impatient.self),
            mixIn: ProcessingMixIn())
        try withServing(server) { () throws in
            let client = try Socket(family: .ipv4, kind: .stream)
            client.timeout = .seconds(10)
            try client.connect(to: server.serverAddress)
            #expect(try client.receive(maxCount: 10) == [], "the server gave up on the silent client")
        }
        #expect(server.errors.withLock { $0 } == ["timed out"])
    }

    @Test func bufferedWritesAreSentByFinish() throws {
        final class Buffered: StreamRequestHandler {
            override var writeBufferSize: Int { 1 << 20 }
            override func handle() throws {
                for i in 0..<100 { try wfile.write("line \(i)\n") }
                precondition(wfile.bufferedBytes.count > 0, "still buffered: finish() must send it")
            }
        }
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Buffered.self)
        try withServing(server) { () throws in
            let reply = String(decoding: try streamExchange(server.serverAddress, []), as: UTF8.self)
            #expect(reply == (0..<100).map { "line \($0)\n" }.joined())
        }
    }

    @Test func disableNagleAlgorithmSetsTCPNoDelay() throws {
        final class NoDelay: StreamRequestHandler {
            override var disableNagleAlgorithm: Bool { true }
            override func handle() throws {
                var value: Int32 = 0
                var length = socklen_t(4)
                getsockopt(connection.fileDescriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length)
                try wfile.write(value == 0 ? "delay\n" : "nodelay\n")
            }
        }
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: NoDelay.self)
        try withServing(server) { () throws in
            #expect(try streamExchange(server.serverAddress, []) == Array("nodelay\n".utf8))
        }
    }

    @Test func rfileReadsLinesAndExactCounts() throws {
        final class Reader: StreamRequestHandler {
            override func handle() throws {
                let header = try rfile.read(4)
                var lines: [String] = []
                try rfile.forEachLine(strippingNewline: true) { lines.append(String(decoding: $0, as: UTF8.self)) }
                try wfile.write("\(String(decoding: header, as: UTF8.self))|\(lines.joined(separator: ","))")
            }
        }
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Reader.self)
        try withServing(server) { () throws in
            let client = try Socket(family: .ipv4, kind: .stream)
            client.timeout = .seconds(10)
            try client.connect(to: server.serverAddress)
            try client.sendAll(Array("HEADa\r\nb\nlast".utf8))
            try client.shutdown(.write)
            var reply: [UInt8] = []
            while case let chunk = try client.receive(maxCount: 4096), !chunk.isEmpty { reply += chunk }
            #expect(String(decoding: reply, as: UTF8.self) == "HEAD|a,b,last")
        }
    }

    @Test func serverCloseWaitsForNonDaemonThreads() throws {
        final class Held: StreamRequestHandler {
            static let release = DispatchSemaphore(value: 0)
            static let finished = Atomic<Bool>(false)
            override func handle() throws {
                _ = Held.release.wait(timeout: .now() + 30)
                Held.finished.store(true, ordering: .releasing)
            }
        }
        let server = try ThreadingTCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Held.self)
        #expect(server.blockOnClose && !server.daemonThreads)
        let finished = serveInBackground(server)
        let client = try Socket(family: .ipv4, kind: .stream)
        try client.connect(to: server.serverAddress)
        #expect(eventually { server.threading.activeThreads == 1 })
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 5) == .success)
        Thread.detachNewThread {
            usleep(50_000)
            Held.release.signal()
        }
        server.serverClose()
        let finishedBeforeClose = Held.finished.load(ordering: .acquiring)
        #expect(finishedBeforeClose, "serverClose() returned before the request thread ended")
    }

    @Test func noRequestIsAcceptedAfterShutdownWasAsked() throws {
        final class StopsTheServer: StreamRequestHandler {
            static let handled = Atomic<Int>(0)
            override func handle() throws {
                StopsTheServer.handled.add(1, ordering: .relaxed)
                server.requestShutdown()
            }
        }
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: StopsTheServer.self)
        // Both clients wait in the backlog before serving starts.
        let first = try Socket(family: .ipv4, kind: .stream)
        try first.connect(to: server.serverAddress)
        let second = try Socket(family: .ipv4, kind: .stream)
        try second.connect(to: server.serverAddress)
        let finished = serveInBackground(server)
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(StopsTheServer.handled.load(ordering: .relaxed) == 1)
        server.serverClose()
        second.timeout = .seconds(5)
        #expect((try? second.receive(maxCount: 10)) ?? [] == [], "the second client was never served")
    }
}
