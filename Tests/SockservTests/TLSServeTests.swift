import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// `sockserv serve ... --tls-cert --tls-key` against real clients (redis-cli, curl, openssl s_client)
/// in every stream mode, mutual TLS, reloading, bad input, and many handshakes in a row.
@Suite(.serialized) struct TLSServeTests {
    static let modes = ["sequential", "threading", "forking", "reactor"]

    /// Starts `sockserv serve SERVICE` with the test certificates (and `extra` options) and reads its first line.
    private func start(_ service: String, mode: String, _ extra: [String] = []) throws -> SockservProcess {
        let server = try SockservProcess(
            [
                "serve", service, "--mode", mode, "--tls-cert", TestCertificates.server.chain, "--tls-key",
                TestCertificates.server.privateKey,
            ] + extra)
        let line = server.readFirstLine()
        #expect(line.hasPrefix("listening on 127.0.0.1:") && line.hasSuffix(" (tls)"), "first line: \(line)")
        return server
    }

    /// `openssl s_client` to `port` with `arguments`, sending `input`; its output (`-quiet`: only the peer's bytes).
    private func sClient(_ port: Int, _ arguments: [String], input: String) throws -> (status: Int32, output: String)? {
        try runClient(
            "openssl",
            ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", TestCertificates.caFile, "-verify_return_error"]
                + arguments, input: input)
    }

    @Test(arguments: modes)
    func redisCliTalksTLSToServeResp(mode: String) throws {
        let server = try start("resp", mode: mode)
        let port = try #require(server.port)
        let cli = ["--tls", "--cacert", TestCertificates.caFile, "-p", "\(port)"]
        guard let set = try runClient("redis-cli", cli + ["SET", "greeting", "hello"]) else {
            print("skipped: redis-cli is not installed")
            _ = server.stop()
            return
        }
        #expect(set.output == "OK\n")
        // Forking mode: each connection's child has its own store.
        #expect(
            try runClient("redis-cli", cli + ["GET", "greeting"])?.output == (mode == "forking" ? "\n" : "hello\n"))
        #expect(try runClient("redis-cli", cli + ["PING"])?.output == "PONG\n")
        // Without TLS the server hears garbage and closes; redis-cli reports the error.
        let plain = try runClient("redis-cli", ["-p", "\(port)", "PING"])
        #expect(plain?.output.contains("PONG") == false)
        // A TCP probe (a health check) that connects and closes is a routine close, not an error.
        try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: port)).close()
        #expect(server.waitForStandardError(containing: "TLS handshake failed: the peer closed the connection"))
        #expect(server.stop() == 0)
        let summary = server.standardError
        // The plaintext client never reached a handler: three connections served, one error.
        #expect(summary.contains("3 connections, 3 requests"), "\(summary)")
        #expect(summary.contains("1 errors"), "the plaintext client is the one error: \(summary)")
        #expect(summary.contains("2 closed by the server (2 tls handshake)"), "\(summary)")
        #expect(
            summary.contains("info sockserv: [sockserv] closed 127.0.0.1:")
                && summary.contains(": tls handshake: TLS handshake failed: the peer closed the connection"),
            "\(summary)")
        #expect(summary.contains("wrong version number") || summary.contains("packet length too long"), "\(summary)")
    }

    @Test(arguments: modes)
    func curlFetchesOverHTTPS(mode: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
            print("skipped: curl is not installed")
            return
        }
        let root = temporaryPath("site")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        #expect(FileManager.default.createFile(atPath: root + "/big.bin", contents: Data(big)))
        let server = try start("http", mode: mode, ["--root", root, "--log-level", "warning"])
        let port = try #require(server.port)
        let download = root + "/downloaded"
        let curl = try #require(
            try runClient(
                "curl",
                [
                    "-sS", "--cacert", TestCertificates.caFile, "-o", download, "-w", "%{http_code} %{http_version}",
                    "https://localhost:\(port)/big.bin",
                ]))
        #expect(curl.status == 0, "\(curl.output)")
        #expect(curl.output == "200 1.1", "ALPN picked HTTP/1.1: \(curl.output)")
        #expect(FileManager.default.contents(atPath: download) == Data(big), "the 3 MiB file arrived byte-exact")
        let head = try runClient(
            "curl", ["-sSI", "--cacert", TestCertificates.caFile, "https://127.0.0.1:\(port)/big.bin"])
        #expect(head?.output.contains("Content-Length: \(big.count)") == true, "\(head?.output ?? "")")
        // A client that does not trust our CA refuses the server.
        let untrusting = try runClient("curl", ["-sS", "https://localhost:\(port)/"])
        #expect(
            untrusting?.status == 60, "curl's 'peer certificate cannot be authenticated': \(untrusting?.output ?? "")")
        #expect(server.stop() == 0)
    }

    @Test func sClientNegotiatesALPNAndServerNameWithServeHTTP() throws {
        let server = try start("http", mode: "reactor", ["--log-level", "warning"])
        let port = try #require(server.port)
        let result = try #require(
            try sClient(port, ["-alpn", "h2,http/1.1", "-servername", "localhost"], input: ""))
        #expect(result.output.contains("ALPN protocol: http/1.1"), "\(result.output)")
        #expect(result.output.contains("Verify return code: 0 (ok)"), "\(result.output)")
        #expect(result.output.contains("New, TLSv1.3"), "\(result.output)")
        let echo = try start("echo", mode: "reactor")
        let echoPort = try #require(echo.port)
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: echoPort), timeout: .seconds(10))
        try client.startTLS(TestCertificates.clientContext(), serverName: "localhost")
        #expect(try echoes(client, "over TLS\n"))
        client.close()
        #expect(server.stop() == 0)
        #expect(echo.stop() == 0)
    }

    /// Session tickets are on (a second connection resumes), renegotiation is off (refused, and the server goes on).
    @Test func sessionsResumeAndRenegotiationIsRefused() throws {
        // The idle timeout closes each connection, so s_client (-ign_eof) stays until the tickets have arrived.
        let server = try start("echo", mode: "reactor", ["--idle-timeout", "0.5"])
        let port = try #require(server.port)
        let session = temporaryPath("session")
        defer { unlink(session) }
        for version in ["-tls1_2", "-tls1_3"] {
            let first = try #require(try sClient(port, [version, "-ign_eof", "-sess_out", session], input: ""))
            #expect(first.output.contains("New, TLSv1."), "\(first.output)")
            let second = try #require(try sClient(port, [version, "-ign_eof", "-sess_in", session], input: ""))
            #expect(second.output.contains("Reused, TLSv1."), "\(version): \(second.output)")
        }
        // s_client's R command asks to renegotiate (TLS 1.2 has it; 1.3 has none at all).
        let renegotiate = try #require(try sClient(port, ["-tls1_2"], input: "R\n"))
        #expect(renegotiate.output.contains("no renegotiation"), "\(renegotiate.output)")
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: port), timeout: .seconds(10))
        try client.startTLS(TestCertificates.clientContext(), serverName: "localhost")
        #expect(try echoes(client, "still serving\n"))
        client.close()
        #expect(server.stop() == 0)
    }

    @Test(arguments: modes)
    func mutualTLSAcceptsOnlyCertificatesFromTheClientCA(mode: String) throws {
        let server = try start("echo", mode: mode, ["--tls-client-ca", TestCertificates.caFile])
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        func attempt(_ certificate: TLSConfiguration.CertificateFiles?) -> Bool {
            guard let client = try? connectedClient(address, timeout: .seconds(10)),
                let context = try? TestCertificates.clientContext({ $0.certificates = certificate.map { [$0] } ?? [] })
            else { return false }
            defer { client.close() }
            guard (try? client.startTLS(context, serverName: "localhost")) != nil else { return false }
            return (try? echoes(client, "hello\n")) ?? false
        }
        #expect(attempt(TestCertificates.alice), "a certificate from the right CA is served")
        #expect(!attempt(nil), "no client certificate: refused")
        #expect(!attempt(TestCertificates.mallory), "a certificate from another CA: refused")
        #expect(attempt(TestCertificates.alice), "and the server goes on")
        #expect(server.stop() == 0)
        let errors = server.standardError
        #expect(errors.contains("peer did not return a certificate"), "\(errors)")
        #expect(errors.contains("unable to get local issuer certificate") || errors.contains("unknown ca"), "\(errors)")
    }

    @Test func usageAndFileErrors() throws {
        let missing = try SockservProcess([
            "serve", "echo", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key",
        ])
        #expect(missing.waitForExit() == 1)
        let message = missing.standardError
        #expect(message.contains("/nonexistent.pem") && message.contains("No such file"), "\(message)")
        let mismatch = try SockservProcess([
            "serve", "echo", "--tls-cert", TestCertificates.server.chain, "--tls-key",
            TestCertificates.other.privateKey,
        ])
        #expect(mismatch.waitForExit() == 1)
        #expect(mismatch.standardError.contains("mismatch"), "\(mismatch.standardError)")
        for arguments in [
            ["serve", "echo", "--tls-cert", TestCertificates.server.chain],
            ["serve", "echo", "--tls-client-ca", TestCertificates.caFile],
            [
                "serve", "echo", "--udp", "--tls-cert", TestCertificates.server.chain, "--tls-key",
                TestCertificates.server.privateKey,
            ],
        ] {
            let server = try SockservProcess(arguments)
            #expect(server.waitForExit() == 64, "\(arguments): a usage error")
        }
    }

    /// SIGHUP reads the files again: new connections get the new certificate, an open one goes on, and a
    /// bad file on reload keeps the certificate in use.
    @Test func sighupReloadsTheCertificateFiles() throws {
        let directory = temporaryPath("tls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (cert, key) = (directory + "/cert.pem", directory + "/key.pem")
        func install(_ files: TLSConfiguration.CertificateFiles) throws {
            try? FileManager.default.removeItem(atPath: cert)
            try? FileManager.default.removeItem(atPath: key)
            try FileManager.default.copyItem(atPath: files.chain, toPath: cert)
            try FileManager.default.copyItem(atPath: files.privateKey, toPath: key)
        }
        try install(TestCertificates.server)
        let server = try SockservProcess(["serve", "echo", "--tls-cert", cert, "--tls-key", key])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        func connect(_ name: String) throws -> Socket {
            let client = try connectedClient(address, timeout: .seconds(10))
            try client.startTLS(TestCertificates.clientContext(), serverName: name)
            try client.handshake()
            return client
        }
        let before = try connect("localhost")
        try install(TestCertificates.other)
        kill(server.process.processIdentifier, SIGHUP)
        // The reload is logged once done; a new connection then gets the other certificate.
        #expect(eventually { (try? connect("other.test"))?.tlsInfo?.peerSubject == "CN=other.test" })
        #expect(try echoes(before, "still served\n"), "the connection made before the reload goes on")
        before.close()
        // A broken file: the reload fails, logged, and the certificate in use stays.
        try "not a certificate".write(toFile: cert, atomically: true, encoding: .utf8)
        kill(server.process.processIdentifier, SIGHUP)
        usleep(300_000)  // no event tells that a failed reload is over; the assertions below hold either way
        let after = try connect("other.test")
        #expect(try echoes(after, "after a bad reload\n"))
        after.close()
        #expect(server.stop() == 0)
        let log = server.standardError
        #expect(log.contains("SIGHUP: reloaded the TLS certificate"), "\(log)")
        #expect(log.contains("SIGHUP: keeping the TLS certificates in use"), "\(log)")
    }

    /// Bad input on the TLS port ends only its own connection: plaintext, garbage records, a reset in the
    /// middle of a handshake, and half a hello followed by silence (closed by the handshake timeout) while
    /// another client is served.
    @Test(arguments: ["threading", "forking", "reactor"])
    func badInputEndsOnlyItsOwnConnection(mode: String) throws {
        let server = try start("echo", mode: mode, ["--tls-handshake-timeout", "1"])
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let before = descriptorCount(of: server.process.processIdentifier)
        let silent = try connectedClient(address, timeout: .seconds(10))
        try silent.sendAll([0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00])  // half a ClientHello
        let plaintext = try connectedClient(address, timeout: .seconds(10))
        try plaintext.sendAll(Array("PING\r\n".utf8))
        #expect(closedByServer(plaintext))
        plaintext.close()
        let garbage = try connectedClient(address, timeout: .seconds(10))
        try garbage.sendAll([0x17, 0x03, 0x03, 0x00, 0x10] + [UInt8](repeating: 0xAA, count: 16))
        #expect(closedByServer(garbage))
        garbage.close()
        let resetting = try connectedClient(address, timeout: .seconds(10))
        try resetting.sendAll([0x16, 0x03, 0x01, 0x01, 0x00])
        reset(resetting)
        // Meanwhile a good client is served at once.
        let good = try connectedClient(address, timeout: .seconds(10))
        try good.startTLS(TestCertificates.clientContext(), serverName: "localhost")
        #expect(try echoes(good, "served\n"))
        good.close()
        let started = ContinuousClock.now
        #expect(closedByServer(silent), "closed by the 1 s handshake timeout")
        #expect(ContinuousClock.now - started < .seconds(3))
        silent.close()
        #expect(eventually { descriptorCount(of: server.process.processIdentifier) == before })
        #expect(server.stop() == 0)
    }

    /// 2,000 TLS connections in a row, each a full handshake and an echo: the server's descriptors come
    /// back to where they were and its resident memory stays flat.
    @Test(arguments: ["threading", "reactor"])
    func twoThousandHandshakesLeaveDescriptorsAndMemoryFlat(mode: String) throws {
        let server = try start("echo", mode: mode)
        let pid = server.process.processIdentifier
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let client = try TestCertificates.clientContext()
        func handshakes(_ count: Int) throws -> Int {
            var served = 0
            for _ in 0..<count {
                let socket = try connectedClient(address, timeout: .seconds(10))
                try socket.startTLS(client, serverName: "localhost")
                if try echoes(socket, "x\n") { served += 1 }
                socket.close()
            }
            return served
        }
        // The baseline is the idle server's, before any connection: after the warm-up one may still be closing.
        let descriptors = descriptorCount(of: pid)
        #expect(try handshakes(scaled(200)) == scaled(200), "warm-up")
        #expect(eventually { descriptorCount(of: pid) == descriptors }, "back to \(descriptors) after the warm-up")
        let memory = server.residentKiB
        #expect(try handshakes(scaled(2000)) == scaled(2000))
        #expect(eventually { descriptorCount(of: pid) == descriptors }, "descriptors back to \(descriptors)")
        if measuresMemory {
            let growth = server.residentKiB - memory
            #expect(growth < 4 * 1024, "resident memory grew by \(growth) KiB over 2,000 handshakes")
        }
        #expect(server.stop() == 0)
        // The summary's plaintext counts against what the clients sent and received: "x\n" each way.
        let connections = scaled(200) + scaled(2000)
        let summary = server.standardError
        #expect(
            summary.contains(
                "\(connections) connections, \(connections) requests, \(2 * connections) bytes in, \(2 * connections) bytes out, 0 errors"
            ), "\(summary)")
    }
}
