import Dispatch
import Foundation
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// Records which threads served, then echoes a line.
final class ThreadRecordingEcho: AsyncStreamRequestHandler {
    static let threads = Mutex<Set<UInt>>([])
    override func handle() async throws {
        _ = Self.threads.withLock { $0.insert(UInt(pthread_self())) }
        if let line = try await rfile.readLine() { try await wfile.write(line) }
    }
}

/// "slow" waits until a "fast" request has been answered; every other line is echoed at once.
final class SlowAndFast: AsyncStreamRequestHandler {
    static let fastAnswered = Atomic<Bool>(false)
    override func handle() async throws {
        guard let line = try await rfile.readLine() else { return }
        if line == Array("slow\n".utf8) {
            while !Self.fastAnswered.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(2)) }
        }
        try await wfile.write(line)
        if line == Array("fast\n".utf8) { Self.fastAnswered.store(true, ordering: .releasing) }
    }
}

final class BigBacklogReactorServer: ReactorTCPServer, @unchecked Sendable {
    override class var requestQueueSize: Int32 { 4096 }
}

@Suite struct ReactorModeTests {
    /// Runs `clients` async exchanges of one line each on a client loop of its own thread.
    private func runClients(_ count: Int, to address: SocketAddress, line: @escaping @Sendable (Int) -> [UInt8]) throws
        -> Int
    {
        let loop = try EventLoop()
        let served = Mutex(0)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            loop.takeOwnership()
            var finished = 0
            for id in 0..<count {
                loop.spawn {
                    defer {
                        finished += 1
                        if finished == count { loop.stop() }
                    }
                    do {
                        let connection = try await Connection.connect(to: address, on: loop, timeout: .seconds(30))
                        connection.readTimeout = .seconds(30)
                        try await connection.write(line(id))
                        if try await connection.readLine() == line(id) {
                            served.withLock { $0 += 1 }
                        }
                        connection.close()
                    } catch {
                        Issue.record("client \(id): \(error)")
                    }
                }
            }
            try? loop.run()
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 120) == .success)
        return served.withLock { $0 }
    }

    @Test func fiveThousandConcurrentClientsOnOneThread() throws {
        ThreadRecordingEcho.threads.withLock { $0 = [] }
        let server = try BigBacklogReactorServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: ThreadRecordingEcho.self)
        #expect(server.requestQueueSize == 4096)
        try withServing(server) { () throws in
            let served = try runClients(5000, to: server.serverAddress) { Array("client \($0)\n".utf8) }
            #expect(served == 5000)
        }
        #expect(ThreadRecordingEcho.threads.withLock { $0.count } == 1, "every handler ran on the one loop thread")
    }

    @Test func aHandlerThatAwaitsSlowlyDoesNotDelayOthers() throws {
        SlowAndFast.fastAnswered.store(false, ordering: .releasing)
        let server = try ReactorTCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: SlowAndFast.self)
        try withServing(server) { () throws in
            let address = server.serverAddress
            let slowReply = Mutex<[UInt8]>([])
            let slowDone = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                let reply = (try? streamExchange(address, Array("slow\n".utf8))) ?? []
                slowReply.withLock { $0 = reply }
                slowDone.signal()
            }
            // The slow handler is waiting for this one: a loop that it blocked would never answer it.
            #expect(try streamExchange(address, Array("fast\n".utf8)) == Array("fast\n".utf8))
            #expect(slowDone.wait(timeout: .now() + 10) == .success)
            #expect(slowReply.withLock { $0 } == Array("slow\n".utf8))
        }
    }
}

/// Echoes lines with the callback face.
final class CallbackEcho: CallbackRequestHandler {
    static let finished = Atomic<Int>(0)
    override func handle(_ buffer: inout ByteBuffer) {
        while let line = try? buffer.readLine(maxLength: 1024) { connection.write(line) }
    }
    override func finish(error: (any Error)?) {
        Self.finished.add(1, ordering: .relaxed)
    }
}

@Suite struct CallbackHandlerTests {
    @Test(arguments: ["tcp", "unix"])
    func callbackHandlersServeOnTheLoop(transport: String) throws {
        let server: BaseServer =
            transport == "tcp"
            ? try ReactorTCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: CallbackEcho.self)
            : try ReactorUnixStreamServer(try SocketAddress(unixPath: temporaryPath()), handler: CallbackEcho.self)
        let before = CallbackEcho.finished.load(ordering: .relaxed)
        try withServing(server) { () throws in
            for _ in 0..<3 {
                let client = try Socket(family: server.serverAddress.family, kind: .stream)
                client.timeout = .seconds(10)
                try client.connect(to: server.serverAddress)
                try client.sendAll(Array("one\ntwo\n".utf8))
                var reply: [UInt8] = []
                while reply.count < 8 { reply += try client.receive(maxCount: 100) }
                #expect(reply == Array("one\ntwo\n".utf8))
            }
            // The clients are gone (closed on deinit): each handler hears the end and finishes.
            #expect(eventually { CallbackEcho.finished.load(ordering: .relaxed) - before == 3 })
            #expect(eventually { !(server.mixIn as! ReactorMixIn).hasRequestsInProgress })
        }
    }

    @Test func aCallbackHandlerNeedsReactorMode() {
        #expect(throws: ServerError.self) {
            _ = try TCPServer(
                try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: .callback(CallbackEcho.self),
                mixIn: ThreadingMixIn())
        }
    }
}
