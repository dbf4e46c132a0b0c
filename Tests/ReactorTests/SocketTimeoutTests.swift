import Foundation
import Glibc
import Reactor
import Testing

/// A blocking socket's timeouts (`timeout` bounds receives and sends, `receiveTimeout` receives alone), and
/// receiving straight into a buffer.
@Suite struct SocketTimeoutTests {
    /// Two connected blocking stream sockets (`socketpair`).
    func pair() throws -> (Socket, Socket) {
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        return (Socket(adopting: fds[0]), Socket(adopting: fds[1]))
    }

    @Test func aShortReceiveTimeoutLeavesSendsTheLongOne() throws {
        let (a, b) = try pair()
        defer {
            a.close()
            b.close()
        }
        a.timeout = .seconds(30)
        #expect(a.receiveTimeout == .seconds(30), "timeout sets both")
        a.receiveTimeout = .milliseconds(50)
        let start = ContinuousClock.now
        #expect(throws: ReactorError.timedOut) { _ = try a.receive(maxCount: 10) }
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(40) && waited < .seconds(2), "\(waited)")

        // The kernel's options: sends keep the long timeout.
        var sendTimeout = timeval()
        var length = socklen_t(MemoryLayout<timeval>.size)
        #expect(getsockopt(a.fileDescriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, &length) == 0)
        #expect(sendTimeout.tv_sec == 30)
        var receiveTimeout = timeval()
        #expect(getsockopt(a.fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &receiveTimeout, &length) == 0)
        #expect(receiveTimeout.tv_sec == 0 && (40_000...60_000).contains(receiveTimeout.tv_usec), "in jiffies")

        // Input that arrives is received as before.
        try b.sendAll(Array("hello".utf8))
        #expect(try a.receive(maxCount: 10) == Array("hello".utf8))

        a.timeout = nil
        #expect(a.receiveTimeout == nil)
    }

    @Test func receiveIntoAppendsToTheBuffer() throws {
        let (a, b) = try pair()
        defer { a.close() }
        var buffer = ByteBuffer()
        buffer.append(Array("held ".utf8))
        buffer.moveReaderIndex(forwardBy: 1)  // "eld " readable
        try b.sendAll(Array("and new".utf8))
        #expect(try a.receive(into: &buffer, maxCount: 64) == 7)
        #expect(buffer.readAll() == Array("eld and new".utf8))
        b.close()
        #expect(try a.receive(into: &buffer, maxCount: 64) == 0, "the end of input")
        let left = buffer.readableBytes
        #expect(left == 0)
    }
}
