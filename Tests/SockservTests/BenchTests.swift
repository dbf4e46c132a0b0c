import Foundation
import Glibc
import TestSupport
import Testing

@testable import sockserv

/// `sockserv bench` end to end: its figures against the servers' own accounts, starvation, progress,
/// interruption, and its errors.
@Suite struct BenchTests {
    struct Document: Decodable {
        var workload: String
        var results: [BenchResult]
    }

    static func temporaryDirectory() -> String { temporaryPath("bench") }

    /// How many sockets process `pid` has open, from `/proc/PID/fd`.
    static func socketCount(of pid: pid_t) -> Int {
        let directory = "/proc/\(pid)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.filter {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\($0)"))?.hasPrefix("socket:")
                == true
        }.count
    }

    static func results(in directory: String) throws -> Document {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/results.json"))
        return try JSONDecoder().decode(Document.self, from: data)
    }

    /// --protocol proxy: the lines the upstream echo server answered are the served count (every one the load counted,
    /// at most those in flight more), and the CPU is the proxy's own, within its lifetime's.
    @Test func proxyFiguresAgreeWithTheUpstreamAndTheProxy() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bench = try SockservProcess([
            "bench", "--protocol", "proxy", "--modes", "threading,reactor", "--connections", "3", "--duration", "1",
            "--output", directory,
        ])
        #expect(bench.waitForExit() == 0, "\(bench.standardError)")
        let document = try Self.results(in: directory)
        #expect(document.workload.hasPrefix("proxy: 32-byte lines through the proxy to a reactor echo server"))
        #expect(document.results.map(\.mode) == ["threading", "reactor"])
        for result in document.results {
            let label = "\(result.mode): \(result)"
            #expect(result.requests > 100 && result.errors == 0, "\(label)")
            let served = try #require(result.serverRequests, "\(label)")
            #expect(served >= result.requests && served <= result.requests + result.connections, "\(label)")
            let lifetime = try #require(result.serverLifetimeCPUSeconds, "\(label)")
            #expect(result.cpuSeconds > 0.02 && result.cpuSeconds <= lifetime + 0.02, "\(label)")
        }
    }

    /// Each figure against what the server says of itself on exit (requests answered, CPU over its life), and
    /// a sequential server's starved connections in the answered count, the first-reply column and p99.
    @Test func figuresAgreeWithTheServersAndStarvationShows() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bench = try SockservProcess([
            "bench", "--modes", "sequential,threading,forking,reactor", "--connections", "3", "--duration", "1",
            "--output", directory,
        ])
        var progress: [String] = []
        while progress.count < 4, let line = bench.readLine(timeout: .seconds(30)) {
            if line.hasPrefix("[") { progress.append(line) }
        }
        #expect(bench.waitForExit() == 0)
        // Standard output is a pipe here: a line per run, as it finishes.
        #expect(progress.map { String($0.prefix(5)) } == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"])
        let document = try Self.results(in: directory)
        #expect(document.results.map(\.mode) == ["sequential", "threading", "forking", "reactor"])
        for result in document.results {
            let label = "\(result.mode): \(result)"
            #expect(!result.interrupted && abs(result.seconds - 1) < 0.5, "\(label)")
            #expect(result.requests > 100 && result.errors == 0, "\(label)")
            // The server answered every reply the load counted, and at most the ones in flight when it stopped.
            let served = try #require(result.serverRequests, "\(label)")
            #expect(served >= result.requests && served <= result.requests + result.connections, "\(label)")
            #expect(abs(result.requestsPerSecond - Double(result.requests) / result.seconds) < 1)
            // CPU: the bench samples the run; the server's getrusage covers its whole life, a little more.
            let lifetime = try #require(result.serverLifetimeCPUSeconds, "\(label)")
            #expect(result.cpuSeconds > 0.05 && result.cpuSeconds <= lifetime + 0.02, "\(label)")
            #expect(result.cpuSeconds >= 0.7 * lifetime - 0.02, "\(label)")
            let perRequest = try #require(result.cpuMicrosecondsPerRequest)
            #expect(abs(perRequest - result.cpuSeconds * 1e6 / Double(result.requests)) < 0.01)
            #expect(result.connectionsOpened == 3, "\(label)")
        }
        let sequential = document.results[0]
        #expect(sequential.connectionsAnswered == 1, "one connection served, two starved")
        #expect(sequential.slowestFirstReply >= 900, "a starved connection waited the whole run")
        #expect(sequential.p99 >= 500, "starved connections show in p99: \(sequential.p99) ms")
        for result in document.results.dropFirst() {
            #expect(result.connectionsAnswered == 3, "\(result.mode)")
            #expect(result.slowestFirstReply < 900 && result.p99 < 500, "\(result.mode)")
        }
        // The table shows what the JSON holds.
        let table = bench.standardOutputRest
        #expect(table.contains("echo: 32-byte lines, one request per round trip, 1 s per run"))
        #expect(table.contains("1/3"))
    }

    /// `--tls`: every mode is served and loaded over TLS, and the figures still agree with the servers' own
    /// counts; with a new connection per request, every request is a full handshake the server counts.
    @Test func tlsRunsAgreeWithTheServers() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (modes, perRequest) in [(["forking", "reactor"], false), (["reactor"], true)] {
            let bench = try SockservProcess(
                [
                    "bench", "--tls", "--modes", modes.joined(separator: ","), "--connections", "3", "--duration", "1",
                    "--output", directory,
                ] + (perRequest ? ["--connect-per-request"] : []))
            while bench.readLine(timeout: .seconds(60)) != nil {}  // to the end of its output
            #expect(bench.waitForExit() == 0)
            let document = try Self.results(in: directory)
            #expect(document.workload.contains("over TLS"), "\(document.workload)")
            #expect(document.results.map(\.mode) == modes)
            for result in document.results {
                let label = "\(perRequest) \(result.mode): \(result)"
                #expect(result.requests > 20 && result.errors == 0, "\(label)")
                let served = try #require(result.serverRequests, "\(label)")
                #expect(served >= result.requests && served <= result.requests + result.connections, "\(label)")
                // The CPU column: sampled over the run, within what the server's getrusage says of its life.
                let lifetime = try #require(result.serverLifetimeCPUSeconds, "\(label)")
                #expect(result.cpuSeconds > 0.02 && result.cpuSeconds <= lifetime + 0.02, "\(label)")
                if perRequest {
                    // One request per connection: as many connections opened and answered as requests.
                    #expect(result.connectionsOpened >= result.requests, "\(label)")
                    #expect(abs(result.connectionsAnswered - result.requests) <= result.connections, "\(label)")
                } else {
                    #expect(result.connectionsOpened == 3 && result.connectionsAnswered == 3, "\(label)")
                }
            }
        }
    }

    /// `--mixed`: every 20th request sleeps 10 ms. The figures agree with the servers' counts; plain reactor runs the
    /// sleep on its loop, which then answers at most 100 sleeps a second and so at most 20 times as many requests,
    /// while reactor-pool runs it on its pool.
    @Test func mixedRunsAgreeWithTheServersAndOnTheLoopTheSleepsBound() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bench = try SockservProcess([
            "bench", "--protocol", "resp", "--mixed", "20", "--modes", "reactor,reactor-pool,threading",
            "--connections", "10", "--duration", "1", "--output", directory,
        ])
        while bench.readLine(timeout: .seconds(60)) != nil {}
        #expect(bench.waitForExit() == 0)
        let document = try Self.results(in: directory)
        #expect(document.workload.hasPrefix("resp: PING, every 20th request DEBUG SLEEP 0.01"), "\(document.workload)")
        #expect(document.results.map(\.mode) == ["reactor", "reactor-pool", "threading"])
        for result in document.results {
            let label = "\(result.mode): \(result)"
            #expect(result.requests > 40 && result.errors == 0, "\(label)")
            let served = try #require(result.serverRequests, "\(label)")
            #expect(served >= result.requests && served <= result.requests + result.connections, "\(label)")
        }
        let onTheLoop = document.results[0]
        let sleeps = Int(onTheLoop.seconds / 0.01) + 1
        #expect(onTheLoop.requests <= sleeps * 20 + onTheLoop.connections, "\(onTheLoop)")
    }

    /// SIGTERM or SIGINT mid-run: the load stops, the server is stopped and reaped (no process left behind),
    /// the runs measured so far are written, and the exit status is 128 + the signal.
    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalMidRunWritesPartialResultsAndLeavesNoServer(signal: Int32) throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bench = try SockservProcess([
            "bench", "--modes", "reactor,threading", "--connections", "2", "--duration", "5",
            "--output", directory,
        ])
        let pid = bench.process.processIdentifier
        // Wait until the first server serves the load: both connections accepted (its listener and two more
        // sockets), then its CPU time rising by 50 ms from there (its start-up alone, a sanitized binary
        // loading OpenSSL, may take longer than that).
        var server: pid_t?
        var busySince: Double?
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if server == nil { server = ProcessSample.children(of: pid).first }
            if let server {
                let cpu = ProcessSample.cpuSeconds(server)
                if let busySince, cpu >= busySince + 0.05 { break }
                if busySince == nil && Self.socketCount(of: server) >= 3 { busySince = cpu }
            }
            usleep(20_000)
        }
        let child = try #require(server, "the bench started a server")
        kill(pid, signal)
        #expect(bench.waitForExit() == 128 + signal)
        // Reaped by the bench before it exited: not even a zombie is left.
        #expect(kill(child, 0) == -1 && errno == ESRCH, "server \(child) is gone")
        let document = try Self.results(in: directory)
        #expect(document.results.count == 1)
        let result = try #require(document.results.first)
        #expect(result.mode == "reactor" && result.interrupted && result.seconds < 4.5 && result.requests > 0)
        #expect(bench.standardOutputRest.contains("interrupted by signal \(signal)"))
    }

    /// An output directory that cannot be written is an error before any run.
    @Test func anUnwritableOutputFailsAtOnce() throws {
        let started = ContinuousClock.now
        let bench = try SockservProcess([
            "bench", "--modes", "reactor", "--connections", "1", "--output", "/dev/null/results",
        ])
        #expect(bench.waitForExit() == 1)
        #expect(bench.standardError.contains("cannot write results to --output /dev/null/results"))
        #expect(ContinuousClock.now - started < .seconds(5), "no run was started")
    }

    @Test(arguments: [
        (["--duration", "0"], "--duration must be more than 0 and at most 600 seconds"),
        (["--connections", "10,6000"], "--connections takes counts from 1 to 5000"),
        (["--modes", "reactor,bogus"], "--modes takes sequential, threading, forking, reactor and reactor-pool"),
        (["--protocol", "resp", "--mixed", "1"], "--mixed must be 2 to 1000000"),
        (["--mixed", "100"], "--mixed is for --protocol resp"),
        (["--blocking-threads", "0"], "--blocking-threads must be 1 to 1024"),
        (["--pipeline", "0"], "--pipeline must be 1 to 1024"),
    ])
    func badArgumentsNameTheRealRange(arguments: [String], message: String) throws {
        let bench = try SockservProcess(["bench"] + arguments)
        #expect(bench.waitForExit() == 64)
        #expect(bench.standardError.contains(message))
    }

    @Test func helpShowsEveryLimit() throws {
        let bench = try SockservProcess(["bench", "--help"])
        #expect(bench.waitForExit() == 0)
        let help = bench.standardOutputRest
        for limit in ["1 to 5000", "at most 600", "2 to 1048576", "1 to 1024"] {
            #expect(help.contains(limit), "--help names \(limit)")
        }
    }

    /// The header says what ran.
    @Test func theHeaderNamesTheWorkload() throws {
        #expect(try Bench.parse([]).workload == "echo: 32-byte lines, one request per round trip, 2 s per run")
        #expect(
            try Bench.parse(["--protocol", "resp", "--pipeline", "16", "--duration", "0.5"]).workload
                == "resp: PING, 16 requests pipelined per round trip, 0.5 s per run")
        #expect(
            try Bench.parse(["--protocol", "http", "--connect-per-request"]).workload
                == "http: GET /, one request per round trip, a new connection per request, 2 s per run")
    }

    @Test func numbersAndTicks() {
        #expect(BenchReport.grouped(1_234_567.6) == "1,234,568")
        #expect(BenchReport.grouped(999) == "999")
        #expect(BenchReport.decimal(1234.5678, maximumDecimals: 1) == "1,234.6")
        #expect(BenchReport.milliseconds(0.0345) == "0.035" && BenchReport.milliseconds(2000) == "2,000")
        #expect(BenchReport.linearTicks(upTo: 66_716) == [0, 20_000, 40_000, 60_000, 80_000])
        #expect(BenchReport.linearTicks(upTo: 9) == [0, 2.5, 5, 7.5, 10])
        #expect(BenchReport.linearTicks(upTo: 100) == [0, 25, 50, 75, 100])
        #expect(BenchReport.linearTicks(upTo: 12.6) == [0, 5, 10, 15])
        #expect(BenchReport.logarithmicTicks(0.08, 2000) == [0.01, 0.1, 1, 10, 100, 1000, 10000])
        #expect(
            BenchReport.tickLabel(7.5, step: 2.5) == "7.5" && BenchReport.tickLabel(20_000, step: 20_000) == "20,000")
    }
}
