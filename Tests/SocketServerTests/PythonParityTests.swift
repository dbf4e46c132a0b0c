import Foundation
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// The signals `writesAreImmediateAndSignalsDoNotTruncateThem` delivered.
private let interruptions = Atomic<Int>(0)

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

    /// `self.wfile.write(self.rfile.readline())` ported word for word echoes the line as it came, its `\r\n`
    /// included: `readLine()` keeps the newline by default, blocking (`SocketReader`) and async (`Connection`)
    /// alike, and so does `forEachLine` (Python's `for line in rfile`).
    @Test(arguments: [Mode.sequential, .reactor])
    func readLineKeepsTheNewline(mode: Mode) throws {
        final class Lines: StreamRequestHandler {
            override func handle() throws {
                try wfile.write(try rfile.readLine() ?? [])
                try rfile.forEachLine { try wfile.write($0) }
            }
        }
        final class AsyncLines: AsyncStreamRequestHandler {
            override func handle() async throws {
                try await wfile.write(try await rfile.readLine() ?? [])
                for try await line in rfile.lines() { try await wfile.write(line) }
            }
        }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let server =
            mode == .reactor
            ? try TCPServer(address, requestHandler: .async(AsyncLines.self), mixIn: ReactorMixIn())
            : try TCPServer(address, handler: Lines.self)
        try withServing(server) { () throws in
            let client = try connectedClient(server.serverAddress)
            let sent = Array("one\r\ntwo\nthree".utf8)
            try client.sendAll(sent)
            try client.shutdown(.write)
            #expect(readToEnd(client) == sent)
        }
    }

    /// The handler's `timeout` bounds a whole `wfile.write`, as Python's `sendall` deadline does: a client
    /// that keeps reading a little at a time cannot stretch a large write send by send.
    @Test func aHandlerTimeoutBoundsAWholeWrite() throws {
        final class BigWriter: StreamRequestHandler {
            nonisolated(unsafe) static var outcome = ""
            nonisolated(unsafe) static var done = DispatchSemaphore(value: 0)
            override var timeout: Duration? { .milliseconds(500) }
            override func handle() throws {
                let started = ContinuousClock.now
                defer { Self.done.signal() }
                do {
                    try wfile.write([UInt8](repeating: 0, count: 64 << 20))
                    Self.outcome = "sent"
                } catch ReactorError.timedOut {
                    Self.outcome = ContinuousClock.now - started < .seconds(10) ? "timed out in time" : "timed out late"
                } catch {
                    Self.outcome = "\(error)"
                }
            }
        }
        BigWriter.done = DispatchSemaphore(value: 0)
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: BigWriter.self)
        try withServing(server) { () throws in
            let client = try connectedClient(server.serverAddress)
            let reading = Atomic<Bool>(true)
            let stopped = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                // 4 KiB every 10 ms: the 64 MiB would take almost 3 minutes at this pace.
                let deadline = ContinuousClock.now + .seconds(30)
                while reading.load(ordering: .relaxed), ContinuousClock.now < deadline {
                    _ = try? client.receive(maxCount: 4096)
                    Thread.sleep(forTimeInterval: 0.01)
                }
                stopped.signal()
            }
            #expect(BigWriter.done.wait(timeout: .now() + 60) == .success)
            reading.store(false, ordering: .relaxed)
            #expect(stopped.wait(timeout: .now() + 60) == .success)
            client.close()
            #expect(BigWriter.outcome == "timed out in time")
        }
    }

    /// Python's `test_write`: a write is sent at once, without a flush, so the handler can then read the client's
    /// answer; and a large write that signals interrupt (`EINTR`, a handler installed without `SA_RESTART`)
    /// is sent whole, with the handler's timeout (non-blocking sends and `poll`) and without (blocking sends).
    @Test(arguments: [nil, Duration.seconds(30)])
    func writesAreImmediateAndSignalsDoNotTruncateThem(timeout: Duration?) throws {
        final class Writer: StreamRequestHandler {
            static let size = 16 << 20  // test.support.SOCK_MAX_SIZE
            nonisolated(unsafe) static var configuredTimeout: Duration?
            nonisolated(unsafe) static var received: [UInt8]?
            static let thread = Atomic<UInt>(0)
            override var timeout: Duration? { Self.configuredTimeout }
            override func handle() throws {
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGUSR2)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                Self.thread.store(UInt(pthread_self()), ordering: .releasing)
                try wfile.write("write data\n")  // no flush: the client reads it before it answers
                Self.received = try rfile.readLine()
                try wfile.write([UInt8](repeating: 0, count: Self.size))
            }
        }
        Writer.configuredTimeout = timeout
        Writer.received = nil
        Writer.thread.store(0, ordering: .releasing)
        interruptions.store(0, ordering: .relaxed)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptions.add(1, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: a blocked send or poll returns EINTR
        var original = sigaction()
        sigaction(SIGUSR2, &action, &original)
        defer { sigaction(SIGUSR2, &original, nil) }

        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Writer.self)
        defer { server.serverClose() }
        let handled = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? server.handleRequest()
            handled.signal()
        }
        let client = try connectedClient(server.serverAddress)
        let reader = SocketReader(socket: client)
        #expect(try reader.readLine() == Array("write data\n".utf8))
        try client.sendAll(Array("client response\n".utf8))
        #expect(try reader.read(100).count == 100)
        // The handler now blocks in its big write (the client reads no more): signal it until one lands.
        let thread = pthread_t(Writer.thread.load(ordering: .acquiring))
        #expect(
            eventually(within: .seconds(10)) {
                pthread_kill(thread, SIGUSR2)
                return eventually(within: .milliseconds(100)) { interruptions.load(ordering: .relaxed) > 0 }
            })
        #expect(try reader.readAll().count == Writer.size - 100, "the write was not truncated")
        #expect(handled.wait(timeout: .now() + 10) == .success)
        #expect(Writer.received == Array("client response\n".utf8))
        client.close()
    }

    /// Sequential mode's lingering close runs on the server's loop, not on its one serving thread: while a
    /// client that left input unread and reads its reply slowly holds its close, the next client is served
    /// at once; the slow client still gets every byte and a clean end; `serverClose()` waits for the linger.
    @Test func aLingeringCloseDoesNotHoldTheSequentialServer() throws {
        final class Replier: StreamRequestHandler {
            static let reply = [UInt8](repeating: UInt8(ascii: "r"), count: 128 * 1024)
            nonisolated(unsafe) static var replied = DispatchSemaphore(value: 0)
            override func setup() throws {
                try super.setup()
                try connection.setOption(level: SOL_SOCKET, name: SO_SNDBUF, value: 1 << 20)  // the reply fits
            }
            override func handle() throws {
                // Exactly the first line, no more (rfile would buffer what follows): the rest stays unread.
                let first = try connection.receive(maxCount: testLine.count)
                try wfile.write(first == testLine ? Self.reply : testLine)
                if first == testLine { Self.replied.signal() }
            }
        }
        Replier.replied = DispatchSemaphore(value: 0)
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Replier.self)
        server.lingerTimeout = .seconds(30)
        let descriptors = openDescriptorCount()
        let finished = serveInBackground(server)
        // A small receive window, not read yet: the reply stays queued in the server's send buffer.
        let slow = try Socket(family: .ipv4, kind: .stream)
        try slow.setOption(level: SOL_SOCKET, name: SO_RCVBUF, value: 4096)
        slow.timeout = .seconds(10)
        try slow.connect(to: server.serverAddress)
        try slow.sendAll(testLine + Array("never read\n".utf8))
        #expect(Replier.replied.wait(timeout: .now() + 10) == .success)
        let start = ContinuousClock.now
        #expect(try streamExchange(server.serverAddress, Array("next\n".utf8)) == testLine)
        #expect(ContinuousClock.now - start < .seconds(5), "the next client waited for the first one's close")
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 10) == .success)
        let closed = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            server.serverClose()
            closed.signal()
        }
        #expect(closed.wait(timeout: .now() + 0.3) == .timedOut, "serverClose waits for the lingering close")
        #expect(readToEnd(slow) == Replier.reply, "every byte of the reply, then the end")
        slow.close()
        #expect(closed.wait(timeout: .now() + 10) == .success, "the client's close ends the linger")
        #expect(openDescriptorCount() == descriptors - 1, "only the listening socket closed: none left lingering")
    }

    /// `SocketWriterTest.test_basics`: `wfile` writes to the request's own socket (Python compares `fileno()`s;
    /// this `wfile` has none, as the guide says) and holds nothing back by default: the client has the bytes
    /// while the handler, before `finish()`, waits for it to say so.
    @Test func wfileWritesToTheRequestsSocketUnbuffered() throws {
        final class Handler: StreamRequestHandler {
            nonisolated(unsafe) static var heldBack = -1
            nonisolated(unsafe) static var clientHadThem = DispatchSemaphore(value: 0)
            nonisolated(unsafe) static var heardInTime = false
            override func handle() throws {
                try wfile.write("unbuffered\n")
                Self.heldBack = wfile.bufferedBytes.count
                Self.heardInTime = Self.clientHadThem.wait(timeout: .now() + 10) == .success
            }
        }
        Handler.clientHadThem = DispatchSemaphore(value: 0)
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: Handler.self)
        defer { server.serverClose() }
        let client = try connectedClient(server.serverAddress)
        let handled = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? server.handleRequest()
            handled.signal()
        }
        #expect(try SocketReader(socket: client).readLine() == Array("unbuffered\n".utf8))
        Handler.clientHadThem.signal()
        #expect(handled.wait(timeout: .now() + 10) == .success)
        #expect(Handler.heardInTime && Handler.heldBack == 0)
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
