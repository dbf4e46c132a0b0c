import Glibc
import Reactor
import Testing

@Suite struct EchoTests {
    /// Connects to `address`, sends three lines (one split across writes), and checks each comes back.
    private func exchange(with address: SocketAddress, on loop: EventLoop) async throws {
        let client = try await Connection.connect(to: address, on: loop, timeout: .seconds(5))
        try await client.write("hello\n")
        #expect(try await client.readLine() == Array("hello"))
        try await client.write("wor")
        try await client.write("ld\nagain\r\n")
        #expect(try await client.readLine() == Array("world"))
        #expect(try await client.readLine(strippingNewline: false) == Array("again\r\n"))
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
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { serveEcho($0, face: .callback) }
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
                guard case .success(let connection) = result else { Issue.record("connect failed: \(result)"); return }
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
                    while case let bytes = try! await connection.read(upTo: 4096), !bytes.isEmpty { total += bytes.count }
                    try? await connection.write("got \(total)\n")
                    connection.close()
                }
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                try await client.write([UInt8](repeating: 7, count: 100_000))
                client.shutdownOutput()
                #expect(try await client.readLine() == Array("got 100000"))
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
                        let client = try await Connection.connect(to: listener.localAddress, on: loop, timeout: .seconds(30))
                        for round in 0..<3 {
                            let line = Array("client \(id) round \(round) \(String(repeating: "x", count: id % 97))")
                            try await client.write(line + [10])
                            guard try await client.readLine() == line else { Issue.record("client \(id) got other bytes"); return }
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
