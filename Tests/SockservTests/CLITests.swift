import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

@testable import sockserv

@Suite struct CLITests {
    @Test(arguments: [["sequential"], ["threading"], ["forking"], ["reactor"], ["reactor", "--handler", "async"]])
    func listeningLineThenGracefulStopWithASummary(mode: [String]) throws {
        let server = try SockservProcess(["serve", "echo", "--mode"] + mode)
        let line = server.readFirstLine()
        #expect(line.hasPrefix("listening on 127.0.0.1:"), "first line: \(line)")
        let port = try #require(server.port)
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: port))
        try client.sendAll(Array("one\ntwo\n".utf8))
        var reply: [UInt8] = []
        while reply.count < 8 { reply += try client.receive(maxCount: 100) }
        #expect(reply == Array("one\ntwo\n".utf8))
        client.close()
        #expect(server.stop(with: SIGTERM) == 0)
        let stderr = server.standardError
        #expect(stderr.contains("sockserv: 1 connections, 2 requests, 8 bytes in, 8 bytes out"), "\(stderr)")
    }

    @Test func sigintStopsAnIdleConnectionToo() throws {
        let server = try SockservProcess(["serve", "echo"])
        _ = server.readFirstLine()
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        defer { client.close() }  // open and silent while the server stops
        #expect(server.stop(with: SIGINT) == 0, "an idle client must not keep the server from stopping")
    }

    @Test(arguments: ["epoll", "poll", "select"])
    func everyBackendServes(backend: String) throws {
        let server = try SockservProcess(["serve", "resp", "--backend", backend])
        _ = server.readFirstLine()
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        try client.sendAll(Array("PING\r\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        client.close()
        #expect(server.stop() == 0)
    }

    @Test(arguments: ["reactor", "threading", "sequential"])
    func idleTimeoutClosesSilentClients(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--mode", mode, "--idle-timeout", "0.2"])
        _ = server.readFirstLine()
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        let start = ContinuousClock.now
        #expect(try client.receive(maxCount: 10) == [], "the server closes the idle connection")
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(server.stop() == 0)
    }

    @Test(arguments: ["reactor", "threading"])
    func maxConnectionsRefusesTheExtraOne(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--mode", mode, "--max-connections", "1"])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let first = try connectedClient(address)
        try first.sendAll(Array("a\n".utf8))
        #expect(try first.receive(maxCount: 10) == Array("a\n".utf8))  // the first is being served
        let second = try connectedClient(address)
        #expect((try? second.receive(maxCount: 10)) ?? [] == [], "the second connection is closed unanswered")
        try first.sendAll(Array("b\n".utf8))
        #expect(try first.receive(maxCount: 10) == Array("b\n".utf8))
        #expect(server.stop() == 0)
    }

    /// `--loops 2`: the library's `LoopGroup`; the accepting loop hands the connections to the two loops in turn,
    /// and the summary's count per loop adds up to the connections the clients made, split evenly.
    @Test(arguments: [false, true])
    func twoLoopsServeTheConnectionsInTurn(unix: Bool) throws {
        let path = temporaryPath("sock")
        let server = try SockservProcess(["serve", "echo", "--loops", "2"] + (unix ? ["--unix", path] : []))
        _ = server.readFirstLine()
        let address =
            unix
            ? try SocketAddress(unixPath: path) : try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        var clients: [Socket] = []
        for index in 0..<20 {
            let client = try connectedClient(address)
            try client.sendAll(Array("client \(index)\n".utf8))
            clients.append(client)
        }
        for (index, client) in clients.enumerated() {
            let expected = Array("client \(index)\n".utf8)
            var reply: [UInt8] = []
            while reply.count < expected.count { reply += try client.receive(maxCount: 100) }
            #expect(reply == expected)
        }
        #expect(server.stop() == 0, "SIGTERM stops every loop, idle connections included")
        // 10 lines of 9 bytes, 10 of 10, each way; 20 connections, 10 on each loop.
        let summary = server.standardError
        #expect(
            summary.contains("sockserv: \(clients.count) connections, 20 requests, 190 bytes in, 190 bytes out"),
            "\(summary)")
        #expect(summary.contains("connections per loop: 10 10\n"), "\(summary)")
    }

    @Test func ipv6ListeningLine() throws {
        let server = try SockservProcess(["serve", "echo", "--host", "::1"])
        #expect(server.readFirstLine().hasPrefix("listening on [::1]:"))
        #expect(server.stop() == 0)
    }

    @Test func unixSocketPath() throws {
        let path = temporaryPath("sock")
        let server = try SockservProcess(["serve", "resp", "--unix", path])
        #expect(server.readFirstLine() == "listening on unix:\(path)")
        let client = try Socket(family: .unix, kind: .stream)
        client.timeout = .seconds(10)
        try client.connect(to: try SocketAddress(unixPath: path))
        try client.sendAll(Array("PING\r\n".utf8))
        #expect(try client.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        client.close()
        #expect(server.stop() == 0)
        #expect(access(path, F_OK) != 0, "the socket file is removed")
    }

    @Test(arguments: ["reactor", "threading"])
    func udpEcho(mode: String) throws {
        let server = try SockservProcess(["serve", "echo", "--udp", "--mode", mode])
        _ = server.readFirstLine()
        let client = try Socket(family: .ipv4, kind: .datagram)
        client.timeout = .seconds(10)
        try Array("datagram".utf8).withUnsafeBytes {
            try client.send($0, to: try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        }
        #expect(try client.receive(maxCount: 100) == Array("datagram".utf8))
        #expect(server.stop() == 0)
    }

    @Test func unixDatagramEcho() throws {
        let path = temporaryPath("dgram.sock")
        let clientPath = path + ".client"
        let server = try SockservProcess(["serve", "echo", "--udp", "--unix", path])
        #expect(server.readFirstLine() == "listening on unix:\(path)")
        let client = try Socket(binding: try SocketAddress(unixPath: clientPath), kind: .datagram, nonBlocking: false)
        client.timeout = .seconds(10)
        try Array("over unix".utf8).withUnsafeBytes { try client.send($0, to: try SocketAddress(unixPath: path)) }
        #expect(try client.receive(maxCount: 100) == Array("over unix".utf8))
        client.close()
        #expect(server.stop() == 0)
    }

    @Test(arguments: [
        (["serve", "echo", "--mode", "fibers"], "fibers"),
        (["serve", "gopher"], "gopher"),
        (["serve", "resp", "--udp"], "--udp serves echo only"),
        (["serve", "echo", "--port", "70000"], "--port must be 0-65535, got 70000"),
        (["serve", "echo", "--port", "-1"], "--port must be 0-65535, got -1"),
        (["serve", "echo", "--idle-timeout", "-1"], "--idle-timeout must be more than 0"),
        (["serve", "echo", "--max-connections", "0"], "--max-connections must be 1-1000000, got 0"),
        (["serve", "echo", "--loops", "-2"], "--loops must be 1-64, got -2"),
        (["serve", "http", "--open-files", "8"], "--open-files is for http with --root"),
        (["serve", "http", "--root", "/tmp", "--open-files", "-1"], "--open-files must be 0-100000, got -1"),
        (["serve", "echo", "--grace", "-5"], "--grace must be 0-86400 seconds, got -5.0"),
        (["serve", "echo", "--max-line", "0"], "--max-line must be at least 1 byte, got 0"),
        (["serve", "echo", "--bogus"], "--bogus"),
        (["serve", "echo", "--loops", "2", "--mode", "threading"], "--loops is for reactor mode over streams"),
        (["serve", "resp", "--blocking-work", "loop", "--mode", "threading"], "--blocking-work is for reactor mode"),
        (["serve", "http", "--handler", "async"], "--handler is for echo and resp"),  // http: a task per connection
        (["serve", "echo", "--mode", "threading", "--handler", "async"], "--handler is for echo and resp"),
        (["serve", "echo", "--udp", "--max-connections", "5"], "--max-connections is for stream servers"),
        (["serve", "echo", "--udp", "--idle-timeout", "5"], "--idle-timeout is for stream servers"),
        (["serve", "echo", "--max-head", "100"], "--max-head is for http only"),
        (["serve", "http", "--max-bulk", "100"], "--max-bulk is for resp only"),
        (["serve", "echo", "--max-request", "100"], "--max-request is for resp and http"),
        (["serve", "echo", "--unix-mode", "660"], "--unix-mode is for --unix sockets"),
        (["serve", "echo", "--tls-handshake-timeout", "3"], "--tls-handshake-timeout needs --tls-cert"),
        (["serve", "echo", "--host", "127.0.0.1:80"], "use --host 127.0.0.1 --port 80"),
        (["serve", "echo", "--host", "[::1]:80"], "use --host ::1 --port 80"),
        (["serve", "echo", "--backend", "automatic"], "automatic"),  // one spelling per value: auto
        (["serve", "echo", "--metrics-address", "9100"], "--metrics-address takes HOST:PORT"),
        (["serve", "echo", "--metrics-address", "::1:9100"], "an IPv6 address goes in brackets"),
        (["serve", "http", "--log-level", "loud"], "loud"),
    ])
    func badOptionsAreAUsageErrorWithExit64(arguments: [String], message: String) throws {
        let server = try SockservProcess(arguments)
        #expect(server.waitForExit() == 64)
        let stderr = server.standardError
        #expect(stderr.contains(message), "\(arguments): \(stderr)")
    }

    @Test func versionPrintsTheVersion() throws {
        let version = try SockservProcess(["--version"])
        #expect(version.readFirstLine() == sockservVersion)
        #expect(version.waitForExit() == 0)
    }

    /// The help shows each value as it is typed: the backend's default is `auto`.
    @Test func helpShowsValuesAsTyped() throws {
        let help = try SockservProcess(["serve", "--help"])
        var text = ""
        while let line = help.readLine() { text += line + "\n" }
        #expect(help.waitForExit() == 0)
        let words = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("(values: auto, epoll, poll, select; default: auto)"), "\(text)")
        #expect(!text.contains("automatic"))
    }

    /// `--host [::1]`, as the server prints addresses, is accepted.
    @Test func bracketedIPv6Host() throws {
        let server = try SockservProcess(["serve", "echo", "--host", "[::1]"])
        #expect(server.readFirstLine().hasPrefix("listening on [::1]:"))
        let client = try connectedClient(try SocketAddress(ipv6: "::1", port: try #require(server.port)))
        try client.sendAll(Array("six\n".utf8))
        #expect(try client.receive(maxCount: 10) == Array("six\n".utf8))
        client.close()
        #expect(server.stop() == 0)
    }

    /// `--loops N` binds one listening socket, without SO_REUSEPORT: a port another socket listens on fails as any
    /// bind does, even one whose owner set SO_REUSEPORT (which would otherwise share its connections).
    @Test func loopsRefuseAPortAlreadyListenedOn() throws {
        let first = try SockservProcess(["serve", "echo", "--loops", "2"])
        _ = first.readFirstLine()
        let port = try #require(first.port)
        let second = try SockservProcess(["serve", "echo", "--loops", "2", "--port", "\(port)"])
        #expect(second.waitForExit() == 1)
        #expect(second.standardError.contains("Address already in use"), "\(second.standardError)")
        #expect(first.stop() == 0)
        let other = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream, reusePort: true)
        try other.listen(backlog: 1)
        let third = try SockservProcess(["serve", "echo", "--loops", "2", "--port", "\(other.localAddress?.port ?? 0)"])
        #expect(third.waitForExit() == 1)
        #expect(third.standardError.contains("Address already in use"), "\(third.standardError)")
    }
}

@Suite struct RealClientTests {
    @Test(arguments: [["reactor"], ["reactor", "--handler", "async"], ["threading"], ["forking"], ["sequential"]])
    func redisCLI(mode: [String]) throws {
        let server = try SockservProcess(["serve", "resp", "--mode"] + mode)
        _ = server.readFirstLine()
        let port = String(try #require(server.port))
        defer { #expect(server.stop() == 0) }
        guard let ping = try runClient("redis-cli", ["-p", port, "PING"]) else {
            print("skipped: redis-cli is not installed (apt-get install redis-tools)")
            return
        }
        #expect(ping.output == "PONG\n")
        #expect(try runClient("redis-cli", ["-p", port, "SET", "greeting", "hello"])?.output == "OK\n")
        #expect(try runClient("redis-cli", ["-p", port, "INCR", "n"])?.output == "1\n")
        #expect(
            try runClient("redis-cli", ["-p", port, "NOSUCH"])?.output.hasPrefix("ERR unknown command 'NOSUCH'") == true
        )
        // One connection, several commands: the store is the same for all of them in every mode.
        let session = try runClient("redis-cli", ["-p", port], input: "SET k v\nGET k\nDEL k\nEXISTS k\n")
        #expect(session?.output == "OK\nv\n1\n0\n")
    }

    @Test func redisBenchmark() throws {
        let server = try SockservProcess(["serve", "resp"])
        _ = server.readFirstLine()
        let port = String(try #require(server.port))
        defer { #expect(server.stop() == 0) }
        guard
            let result = try runClient(
                "redis-benchmark", ["-p", port, "-t", "ping,set,get,incr", "-n", "2000", "-c", "10", "-q"])
        else {
            print("skipped: redis-benchmark is not installed (apt-get install redis-tools)")
            return
        }
        #expect(result.status == 0)
        for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"] {
            #expect(result.output.contains("\(test): "), "\(result.output)")
        }
    }

    @Test(arguments: ["reactor", "threading", "forking", "sequential"])
    func curl(mode: String) throws {
        let root = NSTemporaryDirectory() + "sockserv-curl-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "served file\n".write(toFile: root + "/f.txt", atomically: true, encoding: .utf8)
        let server = try SockservProcess(["serve", "http", "--mode", mode, "--root", root])
        _ = server.readFirstLine()
        let base = "http://127.0.0.1:\(try #require(server.port))"
        defer { #expect(server.stop() == 0) }
        guard let file = try runClient("curl", ["-s", "\(base)/f.txt"]) else {
            print("skipped: curl is not installed")
            return
        }
        #expect(file.output == "served file\n")
        #expect(
            try runClient(
                "curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is", "\(base)/../../etc/passwd"])?
                .output == "404")
        #expect(
            try runClient("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "\(base)/f.txt"])?
                .output == "501", "Python's answer to a method it does not serve")
        // Two requests on one kept-alive connection.
        let twice = try runClient("curl", ["-s", "-v", "\(base)/f.txt", "\(base)/f.txt"])
        #expect(twice?.output.contains("Re-using existing connection") == true)
    }
}
