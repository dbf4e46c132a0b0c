import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// The examples, run as a user would: `--help`, a port in use, a signal, output into a pipe.
@Suite struct ExampleTests {
    static let examples = ["reactor-echo", "thank-you", "hello-http", "daemon", "embedded"]

    /// An example built next to sockserv (`swift build` builds them all).
    func path(_ name: String) throws -> String {
        let path = URL(fileURLWithPath: sockservPath).deletingLastPathComponent().appendingPathComponent(name).path
        try #require(FileManager.default.isExecutableFile(atPath: path), "\(name) is not built: run swift build")
        return path
    }

    @Test(arguments: examples)
    func helpPrintsUsageAndExits(name: String) throws {
        let example = try SockservProcess(["--help"], executable: try path(name))
        #expect(example.readFirstLine().hasPrefix("usage: \(name) "), "\(example.firstLine)")
        #expect(example.waitForExit() == 0)
    }

    /// A port in use: one line naming the problem, exit 1, no crash report.
    @Test(arguments: examples)
    func aPortInUseIsOneLineAndExit1(name: String) throws {
        let taken = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream)
        try taken.listen(backlog: 1)
        let port = try #require(taken.localAddress?.port)
        let arguments: [String]
        switch name {
        case "reactor-echo", "embedded": arguments = ["127.0.0.1:\(port)"]
        case "thank-you": arguments = ["sequential", "127.0.0.1:\(port)"]
        case "hello-http": arguments = ["sequential", "\(port)"]
        default: arguments = ["\(port)"]
        }
        let example = try SockservProcess(arguments, executable: try path(name))
        #expect(example.waitForExit() == 1)
        let stderr = example.standardError
        let lines = stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("\(name): "), "\(stderr)")
        #expect(stderr.contains("Address already in use"), "\(stderr)")
        #expect(!stderr.contains("Fatal error"))
    }

    /// thank-you's lines reach a pipe as they are printed, and SIGTERM stops it, without ServiceLifecycle.
    @Test(arguments: ["sequential", "threading", "forking", "reactor"])
    func thankYouFlushesAndStopsOnSIGTERM(mode: String) throws {
        let example = try SockservProcess([mode, "127.0.0.1:0"], executable: try path("thank-you"))
        let line = example.readFirstLine()
        #expect(line.hasPrefix("serving on 127.0.0.1:") && line.hasSuffix(" in \(mode) mode"), "\(line)")
        let port = Int(line.split(separator: " ")[2].split(separator: ":").last ?? "")
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(port)))
        #expect(readToEnd(client) == Array("Thank you for connecting\n".utf8))
        #expect(example.readLine()?.hasPrefix("Got connection from 127.0.0.1:") == true, "flushed into the pipe")
        #expect(example.stop(with: SIGTERM) == 0)
        #expect(example.standardOutputRest == "stopped\n")
    }

    /// The embedded loop, in top-level code: the server echoes, the timer's outbound probes are answered and
    /// counted on the main actor (which runs on the loop's thread, the main one), and SIGTERM shuts down in
    /// order, closing a client still open after the grace period; exit 0.
    @Test func embeddedLoopServesProbesAndShutsDownInOrder() throws {
        let example = try SockservProcess(
            ["--tick", "0.05", "--grace", "0.3", "127.0.0.1:0"], executable: try path("embedded"))
        let line = example.readFirstLine()
        #expect(line.hasPrefix("listening on 127.0.0.1:"), "\(line)")
        let port = Int(line.split(separator: ":").last ?? "")
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(port)))
        #expect(try echoes(client, "hello\n"))
        for probe in 1...3 { #expect(example.readLine() == "probe \(probe): answered") }
        kill(example.process.processIdentifier, SIGTERM)
        #expect(example.waitForExit() == 0)
        let rest = example.standardOutputRest.split(separator: "\n").filter { !$0.hasPrefix("probe ") }
        #expect(
            rest == [
                "signal 15: stop accepting", "1 connection(s) still open after the grace period: closing", "stopped",
            ], "\(rest)")
        #expect(readToEnd(client) == [], "the server closed the idle client")
        #expect(example.standardError.isEmpty, "\(example.standardError)")
    }

    /// The daemon's timer shows at the default level, and --log-level warning hides it.
    @Test func daemonTimerLogsAtTheLevelAsked() throws {
        let daemon = try SockservProcess(["--tick", "0.1"], executable: try path("daemon"))
        let quiet = try SockservProcess(["--tick", "0.1", "--log-level", "warning"], executable: try path("daemon"))
        let bad = try SockservProcess(["--log-level", "loud"], executable: try path("daemon"))
        #expect(bad.waitForExit() == 64)
        #expect(daemon.waitForStandardError(containing: "tick"), "the timer's line within 10 s")
        #expect(quiet.waitForStandardError(containing: "tick", timeout: .seconds(1)) == false)
        #expect(daemon.stop(with: SIGTERM) == 0)
        #expect(quiet.stop(with: SIGTERM) == 0)
        #expect(daemon.standardError.contains("connections=0"))
    }
}
