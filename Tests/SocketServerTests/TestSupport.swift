import Dispatch
import Foundation
import Glibc
import Reactor
import SocketServer
import TestSupport
import Testing

let testLine = Array("hello world\n".utf8)

/// Whether this test process may fork: not under ThreadSanitizer, which does not support forking a
/// multithreaded process (a child can inherit a runtime lock held by another thread and spin on it).
let forkingIsTestable = ProcessInfo.processInfo.environment["SOCKETSERVER_SANITIZER"] != "thread"

/// Echoes one line: Python's test `MyStreamHandler`.
final class EchoStreamHandler: StreamRequestHandler {
    override func handle() throws {
        if let line = try rfile.readLine() { try wfile.write(line) }
    }
}

/// Echoes the datagram: Python's test `MyDatagramHandler`.
final class EchoDatagramHandler: DatagramRequestHandler {
    override func handle() throws {
        try wfile.write(try rfile.readAll())
    }
}

/// Echoes one line on the loop.
final class AsyncEchoStreamHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        if let line = try await rfile.readLine() { try await wfile.write(line) }
    }
}

/// Echoes the datagram on the loop.
final class AsyncEchoDatagramHandler: AsyncDatagramRequestHandler {
    override func handle() async throws {
        try wfile.write(try rfile.readAll())
    }
}

enum Transport: String, CaseIterable, CustomStringConvertible {
    case tcp, udp, unixStream, unixDatagram
    var description: String { rawValue }
    var isStream: Bool { self == .tcp || self == .unixStream }

    func address() throws -> SocketAddress {
        switch self {
        case .tcp, .udp: return try SocketAddress(ipv4: "127.0.0.1", port: 0)
        case .unixStream, .unixDatagram: return try SocketAddress(unixPath: temporaryPath())
        }
    }
}

enum Mode: String, CaseIterable, CustomStringConvertible {
    case sequential, threading, forking, reactor
    var description: String { rawValue }
}

/// Makes the server Python names for this transport and mode, with the echo handlers.
func makeEchoServer(_ transport: Transport, _ mode: Mode, at address: SocketAddress? = nil) throws -> BaseServer {
    let address = try address ?? transport.address()
    switch (transport, mode) {
    case (.tcp, .sequential): return try TCPServer(address, handler: EchoStreamHandler.self)
    case (.tcp, .threading): return try ThreadingTCPServer(address, handler: EchoStreamHandler.self)
    case (.tcp, .forking): return try ForkingTCPServer(address, handler: EchoStreamHandler.self)
    case (.tcp, .reactor): return try ReactorTCPServer(address, handler: AsyncEchoStreamHandler.self)
    case (.udp, .sequential): return try UDPServer(address, handler: EchoDatagramHandler.self)
    case (.udp, .threading): return try ThreadingUDPServer(address, handler: EchoDatagramHandler.self)
    case (.udp, .forking): return try ForkingUDPServer(address, handler: EchoDatagramHandler.self)
    case (.udp, .reactor): return try ReactorUDPServer(address, handler: AsyncEchoDatagramHandler.self)
    case (.unixStream, .sequential): return try UnixStreamServer(address, handler: EchoStreamHandler.self)
    case (.unixStream, .threading): return try ThreadingUnixStreamServer(address, handler: EchoStreamHandler.self)
    case (.unixStream, .forking): return try ForkingUnixStreamServer(address, handler: EchoStreamHandler.self)
    case (.unixStream, .reactor): return try ReactorUnixStreamServer(address, handler: AsyncEchoStreamHandler.self)
    case (.unixDatagram, .sequential): return try UnixDatagramServer(address, handler: EchoDatagramHandler.self)
    case (.unixDatagram, .threading): return try ThreadingUnixDatagramServer(address, handler: EchoDatagramHandler.self)
    case (.unixDatagram, .forking): return try ForkingUnixDatagramServer(address, handler: EchoDatagramHandler.self)
    case (.unixDatagram, .reactor):
        return try ReactorUnixDatagramServer(address, handler: AsyncEchoDatagramHandler.self)
    }
}

/// Runs `serveForever` on a new thread; the returned semaphore is signalled when it returns.
func serveInBackground(_ server: BaseServer, pollInterval: Duration = .milliseconds(500)) -> DispatchSemaphore {
    let finished = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        do {
            try server.serveForever(pollInterval: pollInterval)
        } catch {
            Issue.record("serveForever: \(error)")
        }
        finished.signal()
    }
    return finished
}

/// Serves in the background while `body` runs, then shuts down, waits, and closes the server.
func withServing(_ server: BaseServer, pollInterval: Duration = .milliseconds(500), _ body: () throws -> Void) throws {
    let finished = serveInBackground(server, pollInterval: pollInterval)
    defer {
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 10) == .success, "serveForever did not return after shutdown()")
        server.serverClose()
    }
    try body()
}

/// One line to a stream server and its reply, over a blocking socket with a timeout.
func streamExchange(_ address: SocketAddress, _ bytes: [UInt8] = testLine) throws -> [UInt8] {
    let client = try Socket(family: address.family, kind: .stream)
    client.timeout = .seconds(10)
    try client.connect(to: address)
    try client.sendAll(bytes)
    var reply: [UInt8] = []
    while true {
        let chunk = try client.receive(maxCount: 65536)
        if chunk.isEmpty { break }
        reply += chunk
    }
    return reply
}

/// One datagram to a datagram server and its reply.
func datagramExchange(_ address: SocketAddress, _ bytes: [UInt8] = testLine) throws -> [UInt8] {
    let client: Socket
    if address.family == .unix {
        client = try Socket(
            binding: try SocketAddress(unixPath: temporaryPath("client")), kind: .datagram, nonBlocking: false)
    } else {
        client = try Socket(family: address.family, kind: .datagram)
    }
    client.timeout = .seconds(10)
    try client.send(bytes, to: address)  // Python's sock.sendto(data, address)
    return try client.receive(maxCount: 65536)
}

/// The loop group the tests serve on: two loops, made on first use and kept for the process (as a daemon's).
/// Each loop has run a task that slept, so what a loop makes on first use (the process's timer descriptor) is there
/// before a test counts descriptors.
let testGroup: LoopGroup = {
    let group: LoopGroup
    do { group = try LoopGroup(loops: 2, blockingThreads: 2) } catch { fatalError("LoopGroup: \(error)") }
    let slept = DispatchSemaphore(value: 0)
    for loop in group.loops {
        loop.execute {
            loop.spawn {
                try? await Task.sleep(for: .milliseconds(1))
                slept.signal()
            }
        }
    }
    for _ in group.loops { slept.wait() }
    return group
}()

/// The name of the calling thread (`loop-1` on a group's first loop).
func currentThreadName() -> String {
    (fileText("/proc/thread-self/comm") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}
