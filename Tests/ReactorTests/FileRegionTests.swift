import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// File regions in a connection's output, through both faces: `sendfile` on a plain socket, read and
/// encrypted with TLS; in order with the bytes around them; a file that shrinks; descriptors released.
@Suite struct FileRegionTests {
    enum Transport: String, CaseIterable, CustomStringConvertible {
        case plain, tls
        var description: String { rawValue }
    }

    /// A temporary file of `size` patterned bytes, opened for reading.
    final class TemporaryFile {
        let path = temporaryPath("file")
        let bytes: [UInt8]
        init(size: Int) {
            bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        }
        func region(offset: Int = 0, count: Int? = nil) -> FileRegion {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            precondition(descriptor >= 0)
            return FileRegion(fileDescriptor: descriptor, offset: offset, count: count ?? bytes.count - offset)
        }
        deinit { unlink(path) }
    }

    /// Serves one connection with `send`, reads everything from a client, and returns it with the server
    /// connection's byte count and close error.
    private func transfer(
        _ transport: Transport, _ send: @escaping (Connection) async throws -> Void
    ) throws -> (received: [UInt8], sent: Int, closeError: (any Error)?) {
        let server = transport == .tls ? try TestCertificates.serverContext() : nil
        let client = transport == .tls ? try TestCertificates.clientContext() : nil
        var received: [UInt8] = []
        var served: Connection?
        try runLoop(timeout: .seconds(60)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) { connection in
                served = connection
                loop.spawn { try? await send(connection) }
            }
            loop.test {
                let connection =
                    if let client {
                        try await Connection.connect(to: listener.localAddress, on: loop, tls: client)
                    } else {
                        try await Connection.connect(to: listener.localAddress, on: loop)
                    }
                while true {
                    let chunk = try await connection.read(upTo: 1 << 20)
                    if chunk.isEmpty { break }
                    received += chunk
                }
                connection.close()
                listener.close()
            }
        }
        let connection = try #require(served)
        #expect(connection.isClosed, "the client saw the end of input before the server's connection closed")
        return (received, connection.bytesSent, connection.closeError)
    }

    @Test(arguments: Transport.allCases)
    func callbackFaceSendsRegionsInOrder(transport: Transport) throws {
        let file = TemporaryFile(size: scaled(3 << 20) + 12_345)
        let head = Array("head\n".utf8)
        let tail = Array("tail\n".utf8)
        let send: (Connection) async throws -> Void = { connection in
            connection.write(head)
            connection.write(file: file.region())
            connection.write(tail)
            connection.write(file: file.region(offset: 100, count: 1_000))
            connection.close()
        }
        _ = try transfer(transport, send)  // once first: OpenSSL opens what it needs on its first handshake
        let before = openDescriptorCount()
        let result = try transfer(transport, send)
        let expected = head + file.bytes + tail + Array(file.bytes[100..<1_100])
        #expect(result.received.count == expected.count)
        #expect(result.received == expected)
        #expect(result.sent == expected.count)
        #expect(result.closeError == nil)
        #expect(openDescriptorCount() <= before, "a region's file stayed open")
    }

    @Test(arguments: Transport.allCases)
    func asyncFaceWaitsBelowTheHighWatermark(transport: Transport) throws {
        let file = TemporaryFile(size: scaled(2 << 20))
        let result = try transfer(transport) { connection in
            for _ in 0..<3 {
                try await connection.write(file: file.region())
                #expect(connection.bufferedOutputBytes <= connection.highWatermark)
                try await connection.write("|")
            }
            try await connection.flush()
            connection.close()
        }
        let expected = Array([file.bytes, file.bytes, file.bytes].joined(separator: [UInt8(ascii: "|")])) + [124]
        #expect(result.received == expected)
    }

    /// `sendFile` returns what it sent once the kernel has it; a file shorter than asked returns a short count
    /// and leaves the connection open; the caller's descriptor stays open.
    @Test(arguments: Transport.allCases)
    func sendFileReturnsWhatItSentAndKeepsTheCallersFile(transport: Transport) throws {
        let file = TemporaryFile(size: scaled(3 << 20))
        let descriptor = open(file.path, O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let counts = Mutex<[Int]>([])
        let result = try transfer(transport) { connection in
            let whole = try await connection.sendFile(descriptor, offset: 0, count: file.bytes.count)
            let short = try await connection.sendFile(descriptor, offset: file.bytes.count - 10, count: 100)
            try await connection.write("end")
            counts.withLock { $0 = [whole, short] }
            connection.close()
        }
        #expect(counts.withLock { $0 } == [file.bytes.count, 10])
        #expect(result.received == file.bytes + Array(file.bytes.suffix(10)) + Array("end".utf8))
        #expect(fcntl(descriptor, F_GETFD) >= 0, "the caller's descriptor was closed")
    }

    /// A region longer than its file: what the file has is sent, then the connection closes and says why.
    @Test(arguments: Transport.allCases)
    func aFileThatShrankClosesTheConnection(transport: Transport) throws {
        let file = TemporaryFile(size: 100_000)
        let result = try transfer(transport) { connection in
            connection.write(file: file.region(count: 200_000))
            connection.write("never sent")
        }
        #expect(result.received == file.bytes)
        #expect(result.closeError as? ReactorError == .fileShrank)
    }

    /// A download that lasts many times ``Connection/writeTimeout`` to a client that keeps reading is not cut:
    /// each send that makes progress moves the write deadline on. (A client that stops reading is cut: the
    /// flow-control tests.)
    @Test func progressMovesTheWriteDeadlineOn() throws {
        let file = TemporaryFile(size: 2 << 20)
        let writeTimeout = Duration.milliseconds(200)
        var served: Connection?
        var listening: Listener?
        let received = Mutex(0)
        let took = Mutex(Duration.zero)
        try runLoop(timeout: .seconds(60)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                var size: Int32 = 16 * 1024  // small buffers: the kernel holds little of the file at a time
                setsockopt(connection.fileDescriptor, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                connection.writeTimeout = writeTimeout
                connection.write(file: file.region())
                connection.close()  // graceful: bounded by the write timeout
                served = connection
            }
            listening = listener
            let address = listener.localAddress
            Thread {
                defer { loop.execute { loop.stop() } }
                guard let client = try? Socket(family: .ipv4, kind: .stream) else { return }
                defer { client.close() }
                var size: Int32 = 16 * 1024
                setsockopt(client.fileDescriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                guard (try? client.connect(to: address)) != nil else { return }
                let start = ContinuousClock.now
                while let chunk = try? client.receive(maxCount: 16 * 1024), !chunk.isEmpty {
                    received.withLock { $0 += chunk.count }
                    usleep(5_000)  // a slow, steady reader: 16 KiB per 5 ms at most
                }
                took.withLock { $0 = ContinuousClock.now - start }
            }.start()
        }
        listening?.close()
        let connection = try #require(served)
        #expect(received.withLock { $0 } == file.bytes.count)
        #expect(connection.closeError == nil)
        // Only meaningful if the download outlasted the timeout (else this test proves nothing).
        #expect(took.withLock { $0 } > writeTimeout, "\(took.withLock { $0 })")
    }
}
