import Glibc
import Reactor
import TestSupport
import Testing

@Suite struct ListenerTests {
    @Test func unixListenerReplacesAStaleSocketFileAndRemovesItsOwn() throws {
        let path = temporaryPath()
        // A stale socket file: bound, never listened on, closed (as a crashed server leaves it).
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        close(stale)
        #expect(access(path, F_OK) == 0)

        try runLoop { loop in
            let listener = try Listener(address: try SocketAddress(unixPath: path), on: loop) {
                serveEcho($0, face: .callback)
            }
            // A second listener on the live path must fail, and must not remove the live file.
            #expect {
                _ = try Listener(address: try SocketAddress(unixPath: path), on: loop) { _ in }
            } throws: { ($0 as? IOError)?.errnoCode == EADDRINUSE }
            #expect(access(path, F_OK) == 0)
            loop.test {
                let client = try await Connection.connect(to: listener.localAddress, on: loop)
                try await client.write("x\n")
                #expect(try await client.readLine(strippingNewline: true) == Array("x"))
                client.close()
                listener.close()
                #expect(access(path, F_OK) != 0, "the listener removes its socket file on close")
            }
        }
    }

    @Test func unixListenerRefusesAPathThatIsNotASocket() throws {
        let path = temporaryPath()
        let file = open(path, O_CREAT | O_WRONLY, 0o600)
        close(file)
        defer { unlink(path) }
        try runLoop { loop in
            #expect {
                _ = try Listener(address: try SocketAddress(unixPath: path), on: loop) { _ in }
            } throws: { ($0 as? IOError)?.errnoCode == EADDRINUSE }
            loop.stop()
        }
        #expect(access(path, F_OK) == 0, "a regular file is never removed")
    }

    @Test func failedBindsLeakNoDescriptor() throws {
        try runLoop { loop in
            let listener = try Listener(
                address: try Family.ipv4.listenAddress(), options: ListenOptions(reuseAddress: false), on: loop
            ) { _ in }
            let before = openDescriptorCount()
            for _ in 0..<1024 {
                #expect(throws: IOError.self) {
                    _ = try Listener(
                        address: listener.localAddress, options: ListenOptions(reuseAddress: false), on: loop
                    ) { _ in }
                }
            }
            #expect(openDescriptorCount() == before)
            listener.close()
            loop.stop()
        }
    }

    @Test func reusePortLetsTwoListenersShareAPort() throws {
        try runLoop { loop in
            let options = ListenOptions(reusePort: true)
            let first = try Listener(address: try Family.ipv4.listenAddress(), options: options, on: loop) { _ in }
            let second = try Listener(address: first.localAddress, options: options, on: loop) { _ in }
            #expect(second.localAddress == first.localAddress)
            first.close()
            second.close()
            loop.stop()
        }
    }

    @Test func noDescriptorLeaksAfterTenThousandConnectCloseCycles() throws {
        let cycles = 10_000
        let before = openDescriptorCount()
        var completed = 0
        var serverClosed = 0
        final class ClosingEcho: ConnectionDelegate {
            let onClose: () -> Void
            init(onClose: @escaping () -> Void) { self.onClose = onClose }
            func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
                buffer.withUnsafeReadableBytes { connection.write($0) }
                buffer.clear()
            }
            func connection(_ connection: Connection, didCloseWith error: (any Error)?) { onClose() }
        }
        try runLoop(timeout: .seconds(120)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                connection.delegate = ClosingEcho { serverClosed += 1 }
            }
            var started = 0
            func next() {
                guard started < cycles else { return }
                started += 1
                Connection.connect(to: listener.localAddress, on: loop) { result in
                    guard case .success(let client) = result else {
                        Issue.record("connect: \(result)")
                        return loop.stop()
                    }
                    // Alternate orderly closes and resets, with and without a byte exchanged.
                    if started % 2 == 0 { client.write("x") }
                    if started % 3 == 0 { client.reset() } else { client.close() }
                    completed += 1
                    next()
                }
            }
            for _ in 0..<50 { next() }
            try loop.scheduleRepeating(every: .milliseconds(10)) { timer in
                if completed == cycles && serverClosed == cycles {
                    timer.cancel()
                    listener.close()
                    loop.stop()
                }
            }
        }
        #expect(completed == cycles)
        #expect(serverClosed == cycles)
        #expect(openDescriptorCount() == before)
    }

    @Test func acceptUnderEMFILEDoesNotSpinAndResumesWhenDescriptorsAreFree() throws {
        var limits = rlimit()
        getrlimit(rlimitNoFile, &limits)
        let saved = limits
        defer {
            var restore = saved
            setrlimit(rlimitNoFile, &restore)
        }
        let clients = 20
        var accepted: [Connection] = []
        var totalAccepted = 0
        var errors: [IOError] = []
        var cpuWhileExhausted = Duration.zero
        var clientFDs: [Int32] = []
        defer { for fd in clientFDs { close(fd) } }

        try runLoop(timeout: .seconds(30)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), on: loop) { connection in
                accepted.append(connection)
                totalAccepted += 1
            }
            listener.onError = { errors.append($0) }
            // Queue the clients in the backlog, then leave the server room for only a few of them.
            for _ in 0..<clients { clientFDs.append(try blockingConnect(listener.localAddress)) }
            var lowered = saved
            lowered.rlim_cur = rlim_t(openDescriptorCount() + 3)
            setrlimit(rlimitNoFile, &lowered)

            let cpuStart = threadCPUTime()
            try loop.schedule(after: .seconds(1)) {
                cpuWhileExhausted = threadCPUTime() - cpuStart
                #expect(totalAccepted < clients, "the lowered limit must stop accepting")
                #expect(!listener.isAccepting)
                // Free descriptors: closing connections resumes accepting without waiting for the retry timer.
                try! loop.scheduleRepeating(every: .milliseconds(5)) { timer in
                    for connection in accepted { connection.close() }
                    accepted = []
                    if totalAccepted == clients {
                        timer.cancel()
                        listener.close()
                        loop.stop()
                    }
                }
            }
        }
        #expect(totalAccepted == clients, "accepting resumed once descriptors were free")
        #expect(!errors.isEmpty)
        #expect(errors.allSatisfy { $0.errnoCode == EMFILE })
        // Pausing, not spinning: about one report per 100 ms back-off, and little CPU.
        #expect(errors.count < 40, "\(errors.count) accept errors in about a second")
        #expect(cpuWhileExhausted < .milliseconds(300), "loop used \(cpuWhileExhausted) of CPU in one second of EMFILE")
    }
}

/// `RLIMIT_NOFILE` imports as an enum case in Glibc; the raw value setrlimit takes.
let rlimitNoFile = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
