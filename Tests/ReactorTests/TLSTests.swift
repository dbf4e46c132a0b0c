import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// TLS on the loop: both faces, both ends, the handshake's options, and its failures. Certificates come
/// from ``TestCertificates`` (made with the `openssl` command).
@Suite struct TLSTests {
    /// Connects with `client`, sends lines (one split across writes) and reads each back.
    private func exchange(
        with address: SocketAddress, on loop: EventLoop, client: TLSContext, serverName: String? = nil
    ) async throws -> Connection {
        let connection = try await Connection.connect(
            to: address, on: loop, timeout: .seconds(5), tls: client, serverName: serverName)
        #expect(connection.isHandshakeComplete)
        try await connection.write("hello\n")
        #expect(try await connection.readLine(strippingNewline: true) == Array("hello"))
        try await connection.write("wor")
        try await connection.write("ld\n")
        #expect(try await connection.readLine(strippingNewline: true) == Array("world"))
        return connection
    }

    @Test(arguments: Family.allCases, Face.allCases)
    func echoesOverTLS(family: Family, face: Face) throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        var serverInfo: TLSInfo?
        try runLoop { loop in
            let listener = try Listener(address: try family.listenAddress(), tls: server, on: loop) { connection in
                serverInfo = connection.tlsInfo
                serveEcho(connection, face: face)
            }
            loop.test {
                // A Unix path has no name to check: verify against localhost's certificate by name.
                let connection = try await exchange(
                    with: listener.localAddress, on: loop, client: client,
                    serverName: family == .unix ? "localhost" : nil)
                #expect(connection.tlsInfo?.version == "TLSv1.3")
                #expect(connection.tlsInfo?.cipher.hasPrefix("TLS_AES_") == true, "\(connection.tlsInfo!)")
                #expect(connection.tlsInfo?.resumed == false)
                #expect(connection.tlsInfo?.peerSubject == "CN=localhost")
                connection.shutdownOutput()
                #expect(try await connection.readLine() == nil, "the server closes after end of input")
                connection.close()
                listener.close()
            }
        }
        #expect(serverInfo?.version == "TLSv1.3")
        #expect(serverInfo?.peerSubject == nil, "no client certificate was asked for")
    }

    /// `openssl s_client` limited to TLS 1.2 is served by default, and refused by a TLS 1.3 minimum.
    @Test func tls12IsAcceptedAndTheMinimumCanBeRaised() throws {
        let lenient = try TestCertificates.serverContext()
        let strict = try TestCertificates.serverContext { $0.minimumVersion = .tls13 }
        let outputs = Outputs()
        var listeners: [Listener] = []
        try runLoop { loop in
            listeners = try [lenient, strict].map { context in
                try Listener(address: try Family.ipv4.listenAddress(), tls: context, on: loop) {
                    serveEcho($0, face: .callback)
                }
            }
            let ports = listeners.map { $0.localAddress.port! }
            Thread.detachNewThread {
                for port in ports {
                    outputs.append(
                        (try? runClient(
                            "openssl",
                            [
                                "s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-CAfile",
                                TestCertificates.caFile, "-verify_return_error", "-brief",
                            ], input: ""))?.output ?? "openssl is missing")
                }
                loop.stop()
            }
        }
        for listener in listeners { listener.close() }
        let results = outputs.values
        #expect(results.count == 2)
        #expect(results.first?.contains("Protocol version: TLSv1.2") == true, "\(results)")
        #expect(results.last?.contains("Protocol version") == false, "refused by a TLS 1.3 minimum: \(results)")
        #expect(results.last?.contains("alert protocol version") == true, "\(results)")
    }

    /// The server's `tlsInfo` tells a resumed session from a full handshake: `openssl s_client` saves its
    /// session, then offers it again, over TLS 1.2 (a session ticket) and 1.3 (a resumption ticket).
    @Test func resumedSessionsAreToldApart() throws {
        let server = try TestCertificates.serverContext()
        let session = temporaryPath("session")
        defer { unlink(session) }
        var resumed: [Bool] = []
        var listener: Listener?
        try runLoop { loop in
            listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) { connection in
                resumed.append(connection.tlsInfo?.resumed ?? false)
                connection.close()  // close_notify ends s_client (-ign_eof), after the tickets
            }
            let port = listener!.localAddress.port!
            Thread.detachNewThread {
                for version in ["-tls1_2", "-tls1_3"] {
                    for option in ["-sess_out", "-sess_in"] {
                        _ = try? runClient(
                            "openssl",
                            ["s_client", "-connect", "127.0.0.1:\(port)", version, "-ign_eof", option, session],
                            input: "")
                    }
                }
                loop.stop()
            }
        }
        listener?.close()
        #expect(resumed == [false, true, false, true])
    }

    @Test func serverNameMismatchFailsWithOpenSSLsReason() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        var serverErrors: [String] = []
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) { _ in
                Issue.record("a failed handshake reached onAccept")
            }
            listener.onHandshakeError = { error, peer in
                serverErrors.append("\(error)")
                #expect(peer?.host == "127.0.0.1")
            }
            loop.test {
                do {
                    _ = try await Connection.connect(
                        to: listener.localAddress, on: loop, tls: client, serverName: "wrong.example")
                    Issue.record("the handshake should fail")
                } catch let error as TLSError {
                    #expect("\(error)".contains("certificate verify failed"))
                    #expect("\(error)".contains("hostname mismatch"))
                }
                #expect(await eventuallyAsync { listener.failedHandshakes == 1 })
                listener.close()
            }
        }
        #expect(serverErrors.count == 1)
        #expect(serverErrors.first?.contains("TLS handshake failed") == true)
    }

    @Test func sniChoosesTheCertificateAndALPNTheProtocol() throws {
        let server = try TLSContext(
            server: TLSConfiguration(
                certificates: [TestCertificates.server, TestCertificates.other],
                applicationProtocols: ["h2", "http/1.1"]))
        let client = try TestCertificates.clientContext { $0.applicationProtocols = ["http/1.1", "h2"] }
        let plainClient = try TestCertificates.clientContext { $0.applicationProtocols = ["imap"] }
        var serverNames: [String?] = []
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                serverNames.append($0.tlsInfo?.serverName)
                serveEcho($0, face: .callback)
            }
            loop.test {
                let other = try await exchange(
                    with: listener.localAddress, on: loop, client: client, serverName: "other.test")
                #expect(other.tlsInfo?.peerSubject == "CN=other.test")
                #expect(other.tlsInfo?.applicationProtocol == "h2", "the server's preference")
                other.close()
                let local = try await exchange(
                    with: listener.localAddress, on: loop, client: plainClient, serverName: "localhost")
                #expect(local.tlsInfo?.peerSubject == "CN=localhost")
                #expect(local.tlsInfo?.applicationProtocol == nil, "no protocol in common: no ALPN")
                local.close()
                listener.close()
            }
        }
        #expect(serverNames == ["other.test", "localhost"])
    }

    @Test func mutualTLSAcceptsOnlyTheRightCA() throws {
        let server = try TestCertificates.serverContext {
            $0.clientAuthentication = .required(caFile: TestCertificates.caFile)
        }
        let anonymous = try TestCertificates.clientContext()
        let alice = try TestCertificates.clientContext { $0.certificates = [TestCertificates.alice] }
        let mallory = try TestCertificates.clientContext { $0.certificates = [TestCertificates.mallory] }
        var subjects: [String?] = []
        var refusals: [String] = []
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                subjects.append($0.tlsInfo?.peerSubject)
                serveEcho($0, face: .callback)
            }
            listener.onHandshakeError = { error, _ in refusals.append("\(error)") }
            loop.test {
                let accepted = try await exchange(with: listener.localAddress, on: loop, client: alice)
                accepted.close()
                for refused in [anonymous, mallory] {
                    // TLS 1.3: the client's handshake ends before the server has judged its certificate; the
                    // refusal arrives as an alert on the first read.
                    do {
                        let connection = try await Connection.connect(to: listener.localAddress, on: loop, tls: refused)
                        try await connection.write("hello\n")
                        _ = try await connection.readLine()
                        Issue.record("a client the CA does not vouch for was served")
                    } catch {
                        #expect(error is TLSError, "\(error)")
                    }
                }
                #expect(await eventuallyAsync { refusals.count == 2 })
                listener.close()
            }
        }
        #expect(subjects == ["CN=alice,O=Example"])
        #expect(refusals.count == 2)
        #expect(refusals.first?.contains("peer did not return a certificate") == true, "\(refusals)")
        #expect(refusals.last?.contains("unable to get local issuer certificate") == true, "\(refusals)")
    }

    @Test func plaintextToTheTLSPortEndsOnlyThatConnection() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        var refusals: [String] = []
        let result = onThread { result in
            let plain = try connectedClient(result.address.wait(), timeout: .seconds(5))
            try plain.sendAll(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            result.bytes = readToEnd(plain)
        }
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                serveEcho($0, face: .callback)
            }
            listener.onHandshakeError = { error, _ in refusals.append("\(error)") }
            result.address.set(listener.localAddress)
            loop.test {
                #expect(await eventuallyAsync { refusals.count == 1 })
                // The refusal ended that connection only: a TLS client is served after it.
                let connection = try await exchange(with: listener.localAddress, on: loop, client: client)
                connection.close()
                listener.close()
            }
        }
        result.done.wait()
        #expect(result.error == nil)
        #expect(refusals.count == 1)
        #expect(refusals.first == "\(TLSError.plainHTTPRequest)", "\(refusals)")
        // nginx's answer, in the clear.
        #expect(String(decoding: result.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
    }

    @Test func silentClientIsClosedByTheHandshakeTimeoutWhileOthersAreServed() throws {
        let server = try TestCertificates.serverContext { $0.handshakeTimeout = .milliseconds(300) }
        let client = try TestCertificates.clientContext()
        var refusals: [TLSError] = []
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                serveEcho($0, face: .callback)
            }
            listener.onHandshakeError = { error, _ in refusals.append(error as! TLSError) }
            loop.test {
                // Half a ClientHello, then silence.
                let silent = try await Connection.connect(to: listener.localAddress, on: loop)
                try await silent.write([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                let started = ContinuousClock.now
                let served = try await exchange(with: listener.localAddress, on: loop, client: client)
                served.close()
                #expect(try await silent.read(upTo: 100).isEmpty, "closed by the server")
                #expect(ContinuousClock.now - started < .seconds(5))
                silent.close()
                listener.close()
            }
        }
        #expect(refusals == [.handshakeTimedOut])
    }

    @Test(arguments: Face.allCases)
    func bulkTransferKeepsEveryByteThroughBackpressure(face: Face) throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let size = scaled(8 << 20)
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        try runLoop(timeout: .seconds(60)) { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                serveEcho($0, face: face)
            }
            loop.test {
                let connection = try await Connection.connect(to: listener.localAddress, on: loop, tls: client)
                var received: [UInt8] = []
                received.reserveCapacity(size)
                // Write in a task of its own while this one reads, so both directions fill up.
                loop.spawn {
                    var offset = 0
                    while offset < size {
                        let end = min(size, offset + 100_000)
                        try? await connection.write(payload[offset..<end])
                        offset = end
                    }
                    connection.shutdownOutput()
                }
                while true {
                    let chunk = try await connection.read(upTo: 1 << 20)
                    if chunk.isEmpty { break }
                    received += chunk
                }
                #expect(received.count == size)
                #expect(received == payload)
                #expect(connection.bytesReceived == size)
                connection.close()
                listener.close()
            }
        }
    }

    @Test func gracefulCloseDeliversWhatWasWrittenThenCloseNotify() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let big = [UInt8](repeating: 0x61, count: 1 << 20)
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                $0.write(big)
                $0.write("bye\n")
                $0.close()
            }
            loop.test {
                let connection = try await Connection.connect(to: listener.localAddress, on: loop, tls: client)
                var received: [UInt8] = []
                while true {
                    let chunk = try await connection.read(upTo: 1 << 20)
                    if chunk.isEmpty { break }
                    received += chunk
                }
                #expect(received == big + Array("bye\n".utf8))
                #expect(connection.inputClosed)
                #expect(connection.receivedCloseNotify, "a graceful close sends close_notify before its FIN")
                connection.close()
                listener.close()
            }
        }
    }

    /// A peer that closes TCP without close_notify ends the input all the same, and the connection says so.
    @Test func aCloseWithoutCloseNotifyEndsTheInputAndIsTold() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        // A blocking server for one connection: handshake, one line, then close() (no close_notify).
        let result = onThread { result in
            let listener = try Socket(
                binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream, nonBlocking: false)
            defer { listener.close() }
            try listener.listen(backlog: 1)
            guard let bound = listener.localAddress else { throw ReactorError.alreadyClosed }
            result.address.set(bound)
            guard let (accepted, _) = try listener.accept(nonBlocking: false) else { throw ReactorError.timedOut }
            defer { accepted.close() }
            accepted.timeout = .seconds(5)
            try accepted.startTLS(server)
            try accepted.sendAll(Array("truncated?\n".utf8))
        }
        try runLoop { loop in
            loop.test {
                let connection = try await Connection.connect(to: result.address.wait(), on: loop, tls: client)
                #expect(try await connection.readLine(strippingNewline: true) == Array("truncated?"))
                #expect(try await connection.readLine() == nil, "the TCP close ends the input")
                #expect(!connection.receivedCloseNotify)
                connection.close()
            }
        }
        result.done.wait()
        #expect(result.error == nil)
    }

    /// Part of a record, then silence: OpenSSL holds bytes it cannot decrypt yet, which must not make the
    /// loop look at that connection again and again (it would never poll, and nobody else would be served).
    @Test func partOfARecordThenSilenceDoesNotHoldUpTheLoop() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let loop = try EventLoop()
        let ready = SharedAddress()
        let stopped = DispatchSemaphore(value: 0)
        let clientsClosed = DispatchSemaphore(value: 0)
        let settled = DispatchSemaphore(value: 0)
        let holder = ListenerHolder()
        Thread.detachNewThread {
            loop.takeOwnership()
            holder.listener = try? Listener(address: try! Family.ipv4.listenAddress(), tls: server, on: loop) {
                serveEcho($0, face: .callback)
            }
            ready.set(holder.listener!.localAddress)
            try? loop.run()
            holder.listener?.close()
            stopped.signal()
            clientsClosed.wait()
            try? settle(loop)  // the server's side of each client ends, so nothing stays registered
            settled.signal()
        }
        let address = ready.wait()
        let stalled = try connectedClient(address, timeout: .seconds(5))
        try stalled.startTLS(client, serverName: "localhost")
        try stalled.handshake()
        // An application-data record header announcing 16 KiB, and 10 of its bytes, past OpenSSL.
        let partial: [UInt8] = [0x17, 0x03, 0x03, 0x40, 0x00] + [UInt8](repeating: 0x5A, count: 10)
        #expect(partial.withUnsafeBytes { send(stalled.fileDescriptor, $0.baseAddress, $0.count, 0) } == 15)
        // Everyone else is still served, promptly.
        for _ in 0..<3 {
            let other = try connectedClient(address, timeout: .seconds(5))
            try other.startTLS(client, serverName: "localhost")
            #expect(try echoes(other, "served\n"))
            other.close()
        }
        loop.stop()
        #expect(stopped.wait(timeout: .now() + 5) == .success, "the loop stops: it was not spinning on one connection")
        stalled.close()
        clientsClosed.signal()
        #expect(settled.wait(timeout: .now() + 5) == .success)
    }

    /// A blocking socket's `waitForInput` answers for what can be read: part of a record is not input yet.
    @Test func waitForInputIsFalseForPartOfARecord() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let listener = try Socket(
            binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream, nonBlocking: false)
        try listener.listen(backlog: 1)
        let peer = try connectedClient(try #require(listener.localAddress), timeout: .seconds(5))
        let (accepted, _) = try #require(try listener.accept(nonBlocking: false))
        accepted.timeout = .seconds(5)
        try accepted.startTLS(server)
        try peer.startTLS(client, serverName: "localhost")
        let handshake = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? accepted.handshake()
            handshake.signal()
        }
        try peer.handshake()
        handshake.wait()
        try peer.sendAll(Array("one\n".utf8))
        #expect(try accepted.waitForInput(timeout: .seconds(5)))
        #expect(try accepted.receive(maxCount: 100) == Array("one\n".utf8))
        let partial: [UInt8] = [0x17, 0x03, 0x03, 0x40, 0x00, 1, 2, 3]
        _ = partial.withUnsafeBytes { send(peer.fileDescriptor, $0.baseAddress, $0.count, 0) }
        #expect(try !accepted.waitForInput(timeout: .milliseconds(200)), "part of a record is not input")
        // The rest of that record (garbage, so the read fails) makes it input: the read reports the error.
        _ = [UInt8](repeating: 0, count: 0x4000).withUnsafeBytes {
            send(peer.fileDescriptor, $0.baseAddress, $0.count, 0)
        }
        #expect(try accepted.waitForInput(timeout: .seconds(5)))
        #expect(throws: TLSError.self) { try accepted.receive(maxCount: 100) }
        peer.close()
        accepted.close()
        listener.close()
    }

    /// The system's trust store is the default, and it does not vouch for the test CA.
    @Test func theSystemTrustStoreRefusesATestCertificate() throws {
        let server = try TestCertificates.serverContext()
        let system = try TLSContext(client: .client())
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) { _ in }
            loop.test {
                do {
                    _ = try await Connection.connect(to: listener.localAddress, on: loop, tls: system)
                    Issue.record("a certificate from an unknown CA was accepted")
                } catch let error as TLSError {
                    #expect("\(error)".contains("unable to get local issuer certificate"), "\(error)")
                }
                listener.close()
            }
        }
    }

    @Test func reloadServesNewConnectionsWithTheNewContextAndKeepsOldOnes() throws {
        let first = try TestCertificates.serverContext()
        let second = try TLSContext(server: TLSConfiguration(certificates: [TestCertificates.other]))
        let client = try TestCertificates.clientContext()
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: first, on: loop) {
                serveEcho($0, face: .callback)
            }
            loop.test {
                let old = try await exchange(with: listener.localAddress, on: loop, client: client)
                listener.tls = second
                let new = try await exchange(
                    with: listener.localAddress, on: loop, client: client, serverName: "other.test")
                #expect(new.tlsInfo?.peerSubject == "CN=other.test")
                try await old.write("still here\n")
                #expect(try await old.readLine(strippingNewline: true) == Array("still here"))
                old.close()
                new.close()
                listener.close()
            }
        }
    }

    @Test func badFilesAreConfigurationErrorsNamingTheFile() throws {
        let missing = "/nonexistent/cert.pem"
        #expect {
            try TLSContext(server: .server(certificateChain: missing, privateKey: TestCertificates.server.privateKey))
        } throws: { error in
            // The system's words, without OpenSSL's queue ("system lib" twice).
            "\(error)" == "TLS configuration: certificate chain \(missing): No such file or directory"
        }
        #expect {
            try TLSContext(server: .server(certificateChain: TestCertificates.server.chain, privateKey: "/tmp"))
        } throws: { error in
            "\(error)" == "TLS configuration: private key /tmp: Is a directory"
        }
        #expect {
            try TLSContext(
                server: .server(
                    certificateChain: TestCertificates.server.chain, privateKey: TestCertificates.other.privateKey))
        } throws: { error in
            guard case TLSError.configuration(let reason) = error else { return false }
            return reason.contains("mismatch")
        }
        #expect(throws: TLSError.self) { try TLSContext(server: TLSConfiguration()) }
        #expect(throws: TLSError.self) {
            try TLSContext(client: .client(trustRoots: .file(TestCertificates.server.privateKey)))
        }
    }

    @Test func blockingSocketsSpeakTLSToTheLoop() throws {
        let server = try TestCertificates.serverContext()
        let client = try TestCertificates.clientContext()
        let result = onThread { result in
            let socket = try connectedClient(result.address.wait(), timeout: .seconds(5))
            defer { socket.close() }
            try socket.startTLS(client, serverName: "localhost")
            try socket.handshake()
            result.info = socket.tlsInfo
            result.matched = try echoes(socket, String(repeating: "b", count: 300_000) + "\n")
            try socket.shutdown(.write)
            result.ended = try socket.receive(maxCount: 10).isEmpty
        }
        try runLoop { loop in
            let listener = try Listener(address: try Family.ipv4.listenAddress(), tls: server, on: loop) {
                $0.delegate = EchoDelegate()
            }
            result.address.set(listener.localAddress)
            let waiter = try loop.scheduleRepeating(every: .milliseconds(10)) { _ in
                if result.finished { loop.stop() }
            }
            _ = waiter
        }
        result.done.wait()
        #expect(result.error == nil)
        #expect(result.info?.peerSubject == "CN=localhost")
        #expect(result.matched)
        #expect(result.ended)
    }
}

/// An address handed from the loop's thread to a client thread.
final class SharedAddress: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var address: SocketAddress?

    func set(_ address: SocketAddress) {
        self.address = address
        ready.signal()
    }

    func wait() -> SocketAddress {
        ready.wait()
        return address!
    }
}

/// A listener made on a loop's own thread, closed there when the loop stops.
final class ListenerHolder: @unchecked Sendable {
    var listener: Listener?
}

/// Lines collected on one thread and read on another.
final class Outputs: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ item: String) { lock.withLock { items.append(item) } }
    var values: [String] { lock.withLock { items } }
}

/// Runs `body` on a thread of its own (a blocking peer of the loop's side); a thrown error is kept as the
/// box's `error`, and `done` is signalled at the end.
func onThread(_ body: @escaping @Sendable (ResultBox) throws -> Void) -> ResultBox {
    let result = ResultBox()
    Thread.detachNewThread {
        defer { result.done.signal() }
        do { try body(result) } catch { result.error = "\(error)" }
    }
    return result
}

/// What a thread of ``onThread(_:)`` saw, and the address the loop's side hands it.
final class ResultBox: @unchecked Sendable {
    let address = SharedAddress()
    let done = DispatchSemaphore(value: 0)
    var info: TLSInfo?
    var matched = false
    var ended = false
    var bytes: [UInt8] = []
    var error: String?

    /// Whether the thread has finished (without consuming its signal).
    var finished: Bool {
        guard done.wait(timeout: .now()) == .success else { return false }
        done.signal()
        return true
    }
}

/// Checks `condition` every 5 ms for up to 5 s from a task on a loop, letting the loop run meanwhile.
func eventuallyAsync(_ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() && ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
