import Foundation
import Glibc
import Protocols
import Reactor
import SocketServer
import TestSupport
import Testing

/// Answers one line with the client address the server gave the handler.
final class WhoStreamHandler: StreamRequestHandler {
    override func handle() throws {
        if try rfile.readLine() != nil { try wfile.write(Array("\(clientAddress)\n".utf8)) }
    }
}

/// The same on the loop.
final class AsyncWhoStreamHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        if try await rfile.readLine() != nil { try await wfile.write("\(clientAddress)\n") }
    }
}

/// A server of each mode whose handler tells the client address it was given, reading PROXY headers.
private func makeWhoServer(_ mode: Mode, at address: SocketAddress? = nil) throws -> BaseServer {
    let address = try address ?? SocketAddress(ipv4: "127.0.0.1", port: 0)
    let server: BaseServer
    switch mode {
    case .sequential: server = try TCPServer(address, handler: WhoStreamHandler.self)
    case .threading: server = try ThreadingTCPServer(address, handler: WhoStreamHandler.self)
    case .forking: server = try ForkingTCPServer(address, handler: WhoStreamHandler.self)
    case .reactor:
        server =
            address.family == .unix
            ? try ReactorUnixStreamServer(address, handler: AsyncWhoStreamHandler.self)
            : try ReactorTCPServer(address, handler: AsyncWhoStreamHandler.self)
    }
    server.proxyProtocol = true
    server.proxyHeaderTimeout = .milliseconds(500)
    return server
}

/// Sends `parts` one after another (a pause between them, so each may arrive alone), then reads to the end.
private func exchange(_ address: SocketAddress, _ parts: [[UInt8]]) throws -> String {
    let client = try Socket(family: address.family, kind: .stream)
    client.timeout = .seconds(10)
    try client.connect(to: address)
    defer { client.close() }
    for (index, part) in parts.enumerated() {
        if index > 0 { usleep(30_000) }
        try client.sendAll(part)
    }
    var reply: [UInt8] = []
    while let chunk = try? client.receive(maxCount: 65536), !chunk.isEmpty { reply += chunk }
    return String(decoding: reply, as: UTF8.self)
}

private let modes: [Mode] = forkingIsTestable ? Mode.allCases : [.sequential, .threading, .reactor]

@Suite struct ProxyProtocolServerTests {
    private let v1 = Array("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n".utf8)
    private var v2: [UInt8] {
        let source = ProxyAddress(.ipv6, host: "2001:db8::9", port: "4444")!
        let destination = ProxyAddress(.ipv6, host: "::1", port: "80")!
        return ProxyProtocol.encode(.proxied(source: source, destination: destination), version: 2)
    }

    /// The client a header names is the handler's client address: a version 1 line, a version 2 block, each whole
    /// or cut in pieces (the bytes after the header stay for the handler); LOCAL leaves the socket's peer.
    @Test(arguments: modes)
    func theHeadersClientIsTheClientAddress(mode: Mode) throws {
        let server = try makeWhoServer(mode)
        let address = server.serverAddress
        try withServing(server, pollInterval: .milliseconds(50)) {
            let reply1 = try exchange(address, [v1 + testLine])
            #expect(reply1 == "203.0.113.7:5555\n")
            let reply2 = try exchange(address, [Array(v1[..<9]), Array(v1[9...]) + testLine])
            #expect(reply2 == "203.0.113.7:5555\n")
            let reply3 = try exchange(address, [v2, testLine])
            #expect(reply3 == "[2001:db8::9]:4444\n")
            let reply4 = try exchange(address, [Array(v2[..<14]), Array(v2[14...]) + testLine])
            #expect(reply4 == "[2001:db8::9]:4444\n")
            let local = try exchange(address, [ProxyProtocol.encode(.local, version: 2) + testLine])
            #expect(local.hasPrefix("127.0.0.1:"), "a LOCAL header leaves the peer: \(local)")
        }
    }

    /// A connection without a valid header is closed unanswered (malformed, not a header at all, ended early, or
    /// silent past the timeout), and the server goes on serving.
    @Test(arguments: modes)
    func badOrMissingHeadersAreClosed(mode: Mode) throws {
        let server = try makeWhoServer(mode)
        let address = server.serverAddress
        try withServing(server, pollInterval: .milliseconds(50)) {
            let reply5 = try exchange(address, [Array("PROXY TCP4 300.0.0.1 127.0.0.1 1 2\r\n".utf8) + testLine])
            #expect(reply5 == "")
            let reply6 = try exchange(address, [testLine])
            #expect(reply6 == "", "no header at all")
            let reply7 = try exchange(address, [Array(String(repeating: "PROXY ", count: 30).utf8)])
            #expect(reply7 == "", "too long")
            let started = ContinuousClock.now
            let reply8 = try exchange(address, [Array("PROXY TCP4 ".utf8)])
            #expect(reply8 == "", "cut short, then silent")
            #expect(ContinuousClock.now - started < .seconds(5), "closed at the header timeout")
            let reply9 = try exchange(address, [v1 + testLine])
            #expect(reply9 == "203.0.113.7:5555\n", "still serving")
        }
    }

    /// --allow judges the header's client, not the balancer.
    @Test(arguments: [Mode.threading, .reactor])
    func theAllowListSeesTheHeadersClient(mode: Mode) throws {
        let server = try makeWhoServer(mode)
        server.allowedClients = [try AddressRange("203.0.113.0/24")]
        let address = server.serverAddress
        try withServing(server, pollInterval: .milliseconds(50)) {
            let reply10 = try exchange(address, [v1 + testLine])
            #expect(reply10 == "203.0.113.7:5555\n")
            let other = Array("PROXY TCP4 198.51.100.1 127.0.0.1 5555 80\r\n".utf8)
            let reply11 = try exchange(address, [other + testLine])
            #expect(reply11 == "", "refused: not in the range")
        }
    }

    /// A Unix socket behind a balancer (haproxy's usual set-up): the header's IP client on a Unix server.
    @Test func unixServerReadsTheHeader() throws {
        let server = try makeWhoServer(.reactor, at: try SocketAddress(unixPath: temporaryPath()))
        let address = server.serverAddress
        try withServing(server, pollInterval: .milliseconds(50)) {
            let reply12 = try exchange(address, [v2 + testLine])
            #expect(reply12 == "[2001:db8::9]:4444\n")
        }
    }

    /// The header comes before the TLS handshake (haproxy's send-proxy in front of a TLS server): read below TLS,
    /// exactly its bytes, and the handshake reads the rest.
    @Test(arguments: [Mode.threading, .reactor])
    func headerBeforeTLS(mode: Mode) throws {
        let server = try makeWhoServer(mode)
        (server as! TCPServer).tls = try TestCertificates.serverContext()
        let address = server.serverAddress
        let context = try TestCertificates.clientContext()
        try withServing(server, pollInterval: .milliseconds(50)) {
            let client = try Socket(family: .ipv4, kind: .stream)
            client.timeout = .seconds(10)
            try client.connect(to: address)
            defer { client.close() }
            try client.sendAll(v1)
            try client.startTLS(context, serverName: "localhost")
            try client.sendAll(testLine)
            let reply = String(decoding: try client.receive(maxCount: 1024), as: UTF8.self)
            #expect(reply == "203.0.113.7:5555\n")
        }
    }
}
