import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// The socket families every stream test runs over.
enum Family: String, CaseIterable, CustomStringConvertible {
    case ipv4, ipv6, unix
    var description: String { rawValue }

    /// A fresh address to listen on: port 0 on loopback, or a new temporary Unix path.
    func listenAddress() throws -> SocketAddress {
        switch self {
        case .ipv4: return try SocketAddress(ipv4: "127.0.0.1", port: 0)
        case .ipv6: return try SocketAddress(ipv6: "::1", port: 0)
        case .unix: return try SocketAddress(unixPath: temporaryPath())
        }
    }
}

/// The two faces of a connection.
enum Face: String, CaseIterable, CustomStringConvertible {
    case callback, async
    var description: String { rawValue }
}

/// Runs `setUp` on a new loop, then the loop on this thread until something calls `loop.stop()`;
/// records an issue and stops if that takes longer than `timeout`.
func runLoop(
    backend: EventLoop.Backend = .automatic, timeout: Duration = .seconds(20),
    sourceLocation: SourceLocation = #_sourceLocation, _ setUp: (EventLoop) throws -> Void
) throws {
    let loop = try EventLoop(backend: backend)
    var timedOut = false
    let watchdog = try loop.schedule(after: timeout) {
        timedOut = true
        loop.stop()
    }
    try setUp(loop)
    try loop.run()
    watchdog.cancel()
    #expect(!timedOut, "the loop did not finish within \(timeout)", sourceLocation: sourceLocation)
    try settle(loop)
}

/// Runs what is ready until nothing is, for at most half a second: the server's side of a connection a test
/// closed last sees the close and ends, and a closing connection finishes, so nothing the test opened stays
/// registered (an open connection keeps itself and its loop alive, which LeakSanitizer reports).
func settle(_ loop: EventLoop) throws {
    let deadline = ContinuousClock.now + .milliseconds(500)
    var quietPasses = 0
    while quietPasses < 3 && ContinuousClock.now < deadline {
        let before = loop.callbacksRun
        try loop.runOnce(timeout: .zero)
        quietPasses = loop.callbacksRun == before ? quietPasses + 1 : 0
        if quietPasses > 0 { usleep(1000) }
    }
}

extension EventLoop {
    /// Runs `body` as a task on the loop; a thrown error is recorded as a test issue. Stops the loop when done.
    func test(sourceLocation: SourceLocation = #_sourceLocation, _ body: @escaping () async throws -> Void) {
        spawn {
            do {
                try await body()
            } catch {
                Issue.record(error, sourceLocation: sourceLocation)
            }
            self.stop()
        }
    }
}

/// Echoes every byte back: the smallest callback-face handler.
final class EchoDelegate: ConnectionDelegate {
    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { connection.write($0) }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }
}

/// Echoes every line back through the async face until end of input, then closes.
func asyncEcho(_ connection: Connection) async {
    do {
        while let line = try await connection.readLine() {
            try await connection.write(line)
        }
    } catch {}
    connection.close()
}

/// Serves `face` on an accepted connection.
func serveEcho(_ connection: Connection, face: Face) {
    switch face {
    case .callback: connection.delegate = EchoDelegate()
    case .async: connection.loop.spawn { await asyncEcho(connection) }
    }
}

/// CPU time (user + system) the calling thread has used.
func threadCPUTime() -> Duration {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
}

/// A blocking TCP or Unix client socket connected to `address`, for tests that need a plain peer.
func blockingConnect(_ address: SocketAddress) throws -> Int32 {
    let domain: Int32
    switch address.family {
    case .ipv4: domain = AF_INET
    case .ipv6: domain = AF_INET6
    case .unix: domain = AF_UNIX
    }
    let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw IOError(errnoCode: errno, operation: "socket") }
    var result: Int32 = -1
    switch address.family {
    case .ipv4:
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(address.port!).bigEndian)
        inet_pton(AF_INET, address.host!, &a.sin_addr)
        result = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    case .ipv6:
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = in_port_t(UInt16(address.port!).bigEndian)
        inet_pton(AF_INET6, address.host!, &a.sin6_addr)
        result = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    case .unix:
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &a.sun_path) { $0.copyBytes(from: address.path!.utf8) }
        result = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
    guard result == 0 else {
        let code = errno
        close(fd)
        throw IOError(errnoCode: code, operation: "connect")
    }
    return fd
}

extension Array where Element == UInt8 {
    init(_ string: String) { self = Array(string.utf8) }
}
