import Glibc
import Reactor
import TestSupport
import Testing

/// Backpressure, line limits and timeouts.
@Suite struct FlowControlTests {
    /// With pausesReadingForOutput off, a connection whose own output is far above its high watermark still reads
    /// (a proxy's side, paused by the other side's output instead).
    @Test func readingNeedNotPauseForOwnOutput() throws {
        final class Recorder: ConnectionDelegate {
            var received: [UInt8] = []
            var peer: Connection?
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
                received += buffer.readAll()
                guard received.last == 10 else { return }
                connection.reset()  // both ends at once: an open connection would outlive the test
                peer?.reset()
                connection.loop.stop()
            }
        }
        let recorder = Recorder()
        var backlog = 0
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                connection.pausesReadingForOutput = false
                connection.delegate = recorder
                // 8 MiB to a peer that reads nothing: most of it stays queued here, far above the high watermark.
                connection.write([UInt8](repeating: 0x61, count: 8 << 20))
                backlog = connection.bufferedOutputBytes  // before this side reads anything: the line waits
            }
            Connection.connect(to: listener.localAddress, on: loop) { result in
                listener.close()
                let peer = try? result.get()
                recorder.peer = peer
                peer?.pauseReading()  // never reads what the server sends
                peer?.write("still heard\n")
            }
        }
        recorder.peer = nil
        #expect(backlog > 64 * 1024, "the output was above the high watermark: \(backlog)")
        #expect(recorder.received == Array("still heard\n".utf8))
    }

    /// pauseReading() leaves what the peer sends in the kernel, its end included, until resumeReading().
    @Test func pausedReadingDeliversNothingUntilResumed() throws {
        final class Recorder: ConnectionDelegate {
            var received: [UInt8] = []
            var ended = false
            var client: Connection?
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
                received += buffer.readAll()
            }
            func connectionDidReachEnd(_ connection: Connection) {
                ended = true
                connection.close()
                client?.reset()  // it has no delegate to close it on the end this side sends
                client = nil
                connection.loop.stop()
            }
        }
        let recorder = Recorder()
        var whilePaused: (count: Int, ended: Bool)?
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                connection.pauseReading()
                #expect(connection.isReadingPaused)
                connection.delegate = recorder
                // The peer's bytes and end are in this side's kernel buffer by the time the timer fires.
                try! loop.schedule(after: .milliseconds(100)) {
                    whilePaused = (recorder.received.count, recorder.ended)
                    connection.resumeReading()
                }
            }
            Connection.connect(to: listener.localAddress, on: loop) { result in
                listener.close()
                guard case .success(let client) = result else { return loop.stop() }
                recorder.client = client
                client.write("held back\n")
                client.shutdownOutput()
            }
        }
        #expect(whilePaused?.count == 0 && whilePaused?.ended == false, "\(String(describing: whilePaused))")
        #expect(recorder.received == Array("held back\n".utf8) && recorder.ended)
    }

    @Test(arguments: Face.allCases)
    func aPeerThatNeverReadsDoesNotGrowTheServersBuffer(face: Face) throws {
        var serverSide: Connection?
        var peakOutput = 0
        var clientBacklog = 0
        try runLoop(timeout: .seconds(30)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                serverSide = connection
                serveEcho(connection, face: face)
            }
            Connection.connect(to: listener.localAddress, on: loop) { result in
                guard case .success(let client) = result else {
                    Issue.record("connect: \(result)")
                    return loop.stop()
                }
                // The client writes without ever reading: no delegate and no reader, so it reads at most
                // its input limit and then leaves the rest in the kernel.
                let line = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024 - 1) + [10]
                let chunk = Array([[UInt8]](repeating: line, count: 8).joined())
                var stable = 0
                try! loop.scheduleRepeating(every: .milliseconds(20)) { timer in
                    if client.bufferedOutputBytes < 8 * 1024 * 1024 { client.write(chunk) }
                    let output = serverSide?.bufferedOutputBytes ?? 0
                    peakOutput = max(peakOutput, output)
                    // Done once the server has stopped reading for a while and the client still has output waiting.
                    stable = client.bufferedOutputBytes > 1024 * 1024 ? stable + 1 : 0
                    if stable == 10 {
                        timer.cancel()
                        clientBacklog = client.bufferedOutputBytes
                        client.reset()
                        serverSide?.close()
                        listener.close()
                        loop.stop()
                    }
                }
            }
        }
        let watermark = 64 * 1024
        #expect(clientBacklog > 1024 * 1024, "the client could not get rid of its bytes: the server stopped reading")
        #expect(peakOutput > 0)
        // One read (64 KiB) or one line beyond the high watermark, no more.
        #expect(peakOutput <= watermark + 64 * 1024, "server buffered \(peakOutput) bytes")
    }

    @Test func aLineLongerThanTheLimitIsATypedErrorAndCloses() throws {
        var serverError: (any Error)?
        try runLoop { loop in
            let listener = try Listener(address: try Family.unix.listenAddress(), on: loop) { connection in
                loop.spawn {
                    do {
                        _ = try await connection.readLine(maxLength: 100)
                    } catch {
                        serverError = error
                    }
                    #expect(!connection.isOpen)
                }
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                try await client.write([UInt8](repeating: 65, count: 5000))
                // The server closes: end of input (or a reset) on the client side.
                let reply = try? await client.read(upTo: 10)
                #expect(reply == nil || reply == [])
                client.close()
                listener.close()
            }
        }
        #expect(serverError as? ReactorError == .lineTooLong(limit: 100))
    }

    @Test func aLineOfExactlyTheLimitIsAccepted() throws {
        var buffer = ByteBuffer()
        buffer.append(Array(String(repeating: "b", count: 100) + "\r\n"))
        #expect(
            try buffer.readLine(maxLength: 100, strippingNewline: true) == Array(String(repeating: "b", count: 100)))
        buffer.append(Array(String(repeating: "c", count: 101) + "\n"))
        #expect(throws: ReactorError.lineTooLong(limit: 100)) { try buffer.readLine(maxLength: 100) }
    }

    @Test func anIdleConnectionIsClosedByItsIdleTimeout() throws {
        final class CloseRecorder: ConnectionDelegate {
            var error: (any Error)?
            var closed = false
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) { buffer.clear() }
            func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
                closed = true
                self.error = error
            }
        }
        let recorder = CloseRecorder()
        let start = ContinuousClock.now
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                connection.delegate = recorder
                connection.idleTimeout = .milliseconds(100)
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                // Activity postpones the timeout; silence then ends it.
                for _ in 0..<3 {
                    try await Task.sleep(for: .milliseconds(40))
                    try await client.write("ping\n")
                }
                #expect(try await client.read(upTo: 10) == [], "the server closed the idle connection")
                client.close()
                listener.close()
            }
        }
        #expect(recorder.closed)
        #expect(recorder.error as? ReactorError == .timedOut)
        #expect(ContinuousClock.now - start >= .milliseconds(200))
    }

    @Test func aReadTimeoutThrowsAndLeavesTheConnectionOpen() throws {
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) {
                serveEcho($0, face: .callback)
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                client.readTimeout = .milliseconds(50)
                await #expect(throws: ReactorError.timedOut) { _ = try await client.readLine() }
                #expect(client.isOpen)
                try await client.write("still here\n")
                #expect(try await client.readLine(strippingNewline: true) == Array("still here"))
                client.close()
                listener.close()
            }
        }
    }

    @Test func aWriteTimeoutClosesAConnectionWhoseOutputCannotDrain() throws {
        try runLoop(timeout: .seconds(30)) { loop in
            var serverSide: Connection?
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                serverSide = connection  // never reads
            }
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                client.writeTimeout = .milliseconds(100)
                await #expect(throws: ReactorError.timedOut) {
                    while true { try await client.write([UInt8](repeating: 1, count: 1 << 20)) }
                }
                #expect(!client.isOpen)
                serverSide?.reset()
                listener.close()
            }
        }
    }
}
