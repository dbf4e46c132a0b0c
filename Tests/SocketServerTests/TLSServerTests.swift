import Dispatch
import Foundation
import Glibc
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// Echoes one line, prefixed by the client certificate's subject (`-` without one).
final class SubjectEchoHandler: StreamRequestHandler {
    override func handle() throws {
        guard let line = try rfile.readLine() else { return }
        try wfile.write("\(connection.tlsInfo?.peerSubject ?? "-") ")
        try wfile.write(line)
    }
}

/// ``SubjectEchoHandler`` on the loop.
final class AsyncSubjectEchoHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        guard let line = try await rfile.readLine() else { return }
        try await wfile.write("\(connection.tlsInfo?.peerSubject ?? "-") ")
        try await wfile.write(line)
    }
}

/// ``SubjectEchoHandler`` in the callback style.
final class CallbackSubjectEchoHandler: CallbackRequestHandler {
    override func handle(_ buffer: inout ByteBuffer) throws {
        guard let line = try buffer.readLine(maxLength: 1024) else { return }
        connection.write("\(connection.tlsInfo?.peerSubject ?? "-") ")
        connection.write(line)
        connection.close()
    }
}

/// The modes TLS is tested in: Python's three and the reactor with each handler style.
enum TLSMode: String, CaseIterable, CustomStringConvertible {
    case sequential, threading, forking, reactorAsync, reactorCallback, reactorGroup
    var description: String { rawValue }
    var testable: Bool { self != .forking || forkingIsTestable }

    func mixIn() -> ProcessingMixIn {
        switch self {
        case .sequential: return ProcessingMixIn()
        case .threading: return ThreadingMixIn()
        case .forking: return ForkingMixIn()
        case .reactorAsync, .reactorCallback, .reactorGroup: return ReactorMixIn()
        }
    }

    var handler: RequestHandlerType {
        switch self {
        case .sequential, .threading, .forking: return .blocking(SubjectEchoHandler.self)
        case .reactorAsync, .reactorGroup: return .async(AsyncSubjectEchoHandler.self)
        case .reactorCallback: return .callback(CallbackSubjectEchoHandler.self)
        }
    }
}

/// A TCP or Unix stream server that records what reached handleError.
final class RecordingTLSServer: TCPServer, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    let errors = Mutex<[String]>([])

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        errors.withLock { $0.append("\(error)") }
    }
}

/// TLS in every mode of SocketServer: a blocking client with `Socket.startTLS`, the server's `tls`.
@Suite struct TLSServerTests {
    private func makeServer(
        _ mode: TLSMode, unix: Bool = false, _ configure: (inout TLSConfiguration) -> Void = { _ in }
    ) throws -> RecordingTLSServer {
        let address =
            unix ? try SocketAddress(unixPath: temporaryPath()) : try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let server = try RecordingTLSServer(
            address, requestHandler: mode.handler, mixIn: mode.mixIn(), group: mode == .reactorGroup ? testGroup : nil)
        server.tls = try TestCertificates.serverContext(configure)
        return server
    }

    /// One line over TLS and everything the server sends back until it closes (with close_notify).
    private func exchange(_ address: SocketAddress, client: TLSContext? = nil, line: String = "hello\n") throws
        -> String
    {
        let socket = try connectedClient(address, timeout: .seconds(10))
        defer { socket.close() }
        try socket.startTLS(client ?? TestCertificates.clientContext(), serverName: "localhost")
        try socket.sendAll(Array(line.utf8))
        return String(decoding: readToEnd(socket), as: UTF8.self)
    }

    @Test(arguments: TLSMode.allCases, [false, true])
    func servesTLSInEveryMode(mode: TLSMode, unix: Bool) throws {
        guard mode.testable else { return }
        let server = try makeServer(mode, unix: unix)
        try withServing(server) { () throws in
            for _ in 0..<3 { #expect(try exchange(server.serverAddress) == "- hello\n") }
        }
        #expect(server.errors.withLock { $0 } == [])
    }

    @Test(arguments: TLSMode.allCases)
    func handlersSeeTheVerifiedClientCertificate(mode: TLSMode) throws {
        guard mode.testable else { return }
        let server = try makeServer(mode) { $0.clientAuthentication = .required(caFile: TestCertificates.caFile) }
        let alice = try TestCertificates.clientContext { $0.certificates = [TestCertificates.alice] }
        let mallory = try TestCertificates.clientContext { $0.certificates = [TestCertificates.mallory] }
        try withServing(server) { () throws in
            #expect(try exchange(server.serverAddress, client: alice) == "CN=alice,O=Example hello\n")
            // Refused: the handshake fails on the server, which the client sees on its first read (TLS 1.3).
            #expect((try? exchange(server.serverAddress, client: mallory)) ?? "" == "")
            #expect((try? exchange(server.serverAddress)) ?? "" == "", "no certificate at all")
            #expect(try exchange(server.serverAddress, client: alice) == "CN=alice,O=Example hello\n")
        }
        if mode != .forking {  // a forked child reports to its own handleError
            let errors = server.errors.withLock { $0 }
            #expect(errors.count == 2, "\(errors)")
            #expect(errors.allSatisfy { $0.contains("TLS handshake failed") }, "\(errors)")
        }
    }

    @Test(arguments: TLSMode.allCases)
    func plaintextClientGetsHandleErrorWithTheReasonAndOthersGoOn(mode: TLSMode) throws {
        guard mode.testable else { return }
        let server = try makeServer(mode)
        try withServing(server) { () throws in
            let plain = try connectedClient(server.serverAddress, timeout: .seconds(10))
            try plain.sendAll(Array("hello\n".utf8))
            #expect(closedByServer(plain))
            plain.close()
            #expect(try exchange(server.serverAddress) == "- hello\n")
        }
        if mode != .forking {
            let errors = server.errors.withLock { $0 }
            #expect(errors.count == 1, "\(errors)")
            #expect(errors.first?.contains("wrong version number") == true, "\(errors)")
        }
    }

    /// The handshake runs in the request's thread, child or on the loop, never in the accept loop: a
    /// client that stalls its handshake does not hold up the next one, and is closed by the timeout.
    @Test(arguments: [TLSMode.threading, .forking, .reactorAsync, .reactorCallback, .reactorGroup])
    func aStalledHandshakeDoesNotHoldUpTheAcceptLoop(mode: TLSMode) throws {
        guard mode.testable else { return }
        let server = try makeServer(mode) { $0.handshakeTimeout = .seconds(1) }
        try withServing(server) { () throws in
            let silent = try connectedClient(server.serverAddress, timeout: .seconds(10))
            try silent.sendAll([0x16, 0x03, 0x01, 0x02, 0x00])  // half a record header, then nothing
            let started = ContinuousClock.now
            #expect(try exchange(server.serverAddress) == "- hello\n")
            #expect(ContinuousClock.now - started < .milliseconds(900), "served before the stalled one timed out")
            #expect(closedByServer(silent))
            silent.close()
        }
        if mode != .forking {
            #expect(server.errors.withLock { $0 } == ["\(TLSError.handshakeTimedOut)"])
        }
    }

    @Test func certificatesReloadForNewConnectionsOnly() throws {
        let server = try makeServer(.threading)
        let otherClient = try TestCertificates.clientContext()
        try withServing(server) { () throws in
            // A connection made before the reload, finished after it.
            let before = try connectedClient(server.serverAddress, timeout: .seconds(10))
            try before.startTLS(otherClient, serverName: "localhost")
            try before.handshake()
            server.tls = try TLSContext(server: TLSConfiguration(certificates: [TestCertificates.other]))
            let after = try connectedClient(server.serverAddress, timeout: .seconds(10))
            try after.startTLS(otherClient, serverName: "other.test")
            try after.handshake()
            #expect(after.tlsInfo?.peerSubject == "CN=other.test")
            for socket in [before, after] {
                try socket.sendAll(Array("hi\n".utf8))
                #expect(String(decoding: readToEnd(socket), as: UTF8.self) == "- hi\n")
                socket.close()
            }
        }
    }
}
