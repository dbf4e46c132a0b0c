import Glibc
import Reactor
import TestSupport
import Testing

@Suite struct EchoTests {
    /// Connects to `address`, sends three lines (one split across writes), and checks each comes back.
    private func exchange(with address: SocketAddress, on loop: EventLoop) async throws {
        let client = try await Connection.connect(to: address, on: loop, timeout: .seconds(5))
        try await client.write("hello\n")
        #expect(try await client.readLine() == Array("hello\n"))
        try await client.write("wor")
        try await client.write("ld\nagain\r\n")
        #expect(try await client.readLine(strippingNewline: true) == Array("world"), "the newline dropped")
        #expect(try await client.readLine(strippingNewline: true) == Array("again"), "and a CRLF")
        client.shutdownOutput()
        #expect(try await client.readLine() == nil, "the server closes after end of input")
        client.close()
    }

    @Test(arguments: Family.allCases, Face.allCases)
    func echoesLines(family: Family, face: Face) throws {
        try runLoop { loop in
            let listener = try Listener(address: try family.listenAddress(), on: loop) { serveEcho($0, face: face) }
            if family != .unix { #expect(listener.localAddress.port != 0, "port 0 reports the bound port") }
            loop.test {
                try await exchange(with: listener.localAddress, on: loop)
                listener.close()
            }
        }
    }

    @Test(arguments: [EventLoop.Backend.epoll, .poll, .select])
    func echoesOnEachBackend(backend: EventLoop.Backend) throws {
        try runLoop(backend: backend) { loop in
            #expect(loop.backendName == backend.rawValue)
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) {
                serveEcho($0, face: .callback)
            }
            loop.test {
                try await exchange(with: listener.localAddress, on: loop)
                listener.close()
            }
        }
    }

    @Test func callbackClientSeesDataEndAndClose() throws {
        final class Recorder: ConnectionDelegate {
            var received: [UInt8] = []
            var events: [String] = []
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
                received += buffer.readAll()
            }
            func connectionDidReachEnd(_ connection: Connection) {
                events.append("end")
                connection.close()
            }
            func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
                events.append(error == nil ? "closed" : "closed with \(error!)")
                connection.loop.stop()
            }
        }
        let recorder = Recorder()
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                connection.write("greetings\n")
                connection.close()
            }
            Connection.connect(to: listener.localAddress, on: loop) { result in
                listener.close()
                guard case .success(let connection) = result else {
                    Issue.record("connect failed: \(result)")
                    return
                }
                connection.delegate = recorder
            }
        }
        #expect(recorder.received == Array("greetings\n"))
        #expect(recorder.events == ["end", "closed"])
    }

    @Test func halfCloseStillDeliversTheReply() throws {
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                loop.spawn {
                    // Read everything until end of input, then answer on the half-closed connection.
                    var total = 0
                    while case let bytes = try! await connection.read(upTo: 4096), !bytes.isEmpty {
                        total += bytes.count
                    }
                    try? await connection.write("got \(total)\n")
                    connection.close()
                }
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                try await client.write([UInt8](repeating: 7, count: 100_000))
                client.shutdownOutput()
                #expect(try await client.readLine(strippingNewline: true) == Array("got 100000"))
                #expect(try await client.readLine() == nil)
                client.close()
                listener.close()
            }
        }
    }

    @Test func readExactlyAndUnexpectedEndOfInput() throws {
        try runLoop { loop in
            let listener = try Listener(address: try Family.unix.listenAddress(), on: loop) { connection in
                connection.write("0123456789")
                connection.close()
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                #expect(try await client.readExactly(4) == Array("0123"))
                #expect(try await client.read(upTo: 2) == Array("45"))
                await #expect(throws: ReactorError.unexpectedEOF) { try await client.readExactly(10) }
                client.close()
                listener.close()
            }
        }
    }

    @Test func connectionRefusedIsAnIOError() throws {
        try runLoop { loop in
            // Bind a port, then close it: nothing listens there.
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { _ in }
            let address = listener.localAddress
            listener.close()
            loop.test {
                do {
                    _ = try await Connection.connect(to: address, on: loop)
                    Issue.record("connect succeeded")
                } catch let error as IOError {
                    #expect(error.errnoCode == ECONNREFUSED)
                }
            }
        }
    }

    /// `count` bytes of a pattern that repeats every 251 bytes, so misordered or lost chunks show.
    private func pattern(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count { buffer[i] = UInt8(i % 251) }
            initialized = count
        }
    }

    @Test func closeSendsEverythingWrittenFirst() throws {
        let size = 4 * 1024 * 1024
        var flushed = false
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                loop.spawn {
                    let payload = pattern(size)
                    connection.highWatermark = .max  // buffer it all: close() must still deliver every byte
                    try? await connection.write(payload)
                    #expect(connection.bufferedOutputBytes > 0, "the test needs output still buffered at close()")
                    connection.close()
                }
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                var received: [UInt8] = []
                while case let bytes = try await client.read(upTo: 65536), !bytes.isEmpty { received += bytes }
                #expect(received.count == size)
                #expect(received == pattern(size))
                try await client.write("done")
                try await client.flush()
                flushed = client.bufferedOutputBytes == 0
                client.close()
                listener.close()
            }
        }
        #expect(flushed)
    }

    @Test func delegateHearsWritableAgainAfterBackpressure() throws {
        final class Blaster: ConnectionDelegate {
            var writableAgain = 0
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
                buffer.clear()
                connection.write([UInt8](repeating: 9, count: 16 << 20))  // more than the kernel takes at once
            }
            func connectionDidBecomeWritable(_ connection: Connection) {
                writableAgain += 1
                connection.close()
            }
        }
        let blaster = Blaster()
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { $0.delegate = blaster }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                try await client.write("go\n")
                var total = 0
                while case let bytes = try await client.read(upTo: 65536), !bytes.isEmpty { total += bytes.count }
                #expect(total == 16 << 20)
                client.close()
                listener.close()
            }
        }
        #expect(blaster.writableAgain == 1)
    }

    @Test func connectTimesOutWhenTheAcceptQueueIsFull() throws {
        // A listening socket nobody accepts from, with the smallest queue: once it is full the kernel drops SYNs.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, length)
                _ = getsockname(fd, $0, &length)
            }
        }
        #expect(listen(fd, 0) == 0)
        let target = try SocketAddress(ipv4: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port)))
        var outcomes: [String] = []
        try runLoop { loop in
            var clients: [Connection] = []
            for _ in 0..<4 {
                Connection.connect(to: target, on: loop, timeout: .milliseconds(300)) { result in
                    switch result {
                    case .success(let connection):
                        clients.append(connection)
                        outcomes.append("connected")
                    case .failure(let error as ReactorError): outcomes.append("\(error)")
                    case .failure(let error): outcomes.append("other: \(error)")
                    }
                    if outcomes.count == 4 {
                        for client in clients { client.reset() }
                        loop.stop()
                    }
                }
            }
        }
        #expect(outcomes.contains("timed out"), "\(outcomes)")
        #expect(outcomes.allSatisfy { $0 == "connected" || $0 == "timed out" }, "\(outcomes)")
    }

    @Test func thousandConcurrentClientsEachGetTheirOwnBytes() throws {
        let clients = 1000
        var verified = 0
        try runLoop(timeout: .seconds(60)) { loop in
            let listener = try Listener(
                address: try Family.ipv4.listenAddress(), options: ListenOptions(backlog: 4096), on: loop
            ) { serveEcho($0, face: .callback) }
            var finished = 0
            for id in 0..<clients {
                loop.spawn {
                    defer {
                        finished += 1
                        if finished == clients {
                            listener.close()
                            loop.stop()
                        }
                    }
                    do {
                        let client = try await Connection.connect(
                            to: listener.localAddress, on: loop, timeout: .seconds(30))
                        for round in 0..<3 {
                            let line = Array("client \(id) round \(round) \(String(repeating: "x", count: id % 97))")
                            try await client.write(line + [10])
                            guard try await client.readLine(strippingNewline: true) == line else {
                                Issue.record("client \(id) got other bytes")
                                return
                            }
                        }
                        client.close()
                        verified += 1
                    } catch {
                        Issue.record("client \(id): \(error)")
                    }
                }
            }
        }
        #expect(verified == clients)
    }
}
