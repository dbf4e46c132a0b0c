// A daemon's loop, embedded in top-level code: a socketserver echo server, a timer, two signals and an outbound
// connection, all on one EventLoop on the main thread. SIGINT or SIGTERM shuts it down in order.
import Glibc
import SocketServer  // brings the Reactor

let usage = """
    usage: embedded [--tick SECONDS] [--grace SECONDS] [HOST:PORT]
      An echo server (127.0.0.1:7100 by default; port 0 picks a free one) and, every --tick seconds (default 1),
      a probe: an outbound connection to the server that checks it answers. SIGINT or SIGTERM stops accepting,
      lets connections finish for --grace seconds (default 2), then closes the server and exits 0.
    """

/// Echoes lines until the client closes.
final class Echo: AsyncStreamRequestHandler {
    override func handle() async throws {
        while let line = try await rfile.readLine() { try await wfile.write(line) }
    }
}

/// One line on standard output, flushed: it reaches a pipe or a file at once.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// One line on standard error and the exit status: 64 for a usage error, 1 for a failure.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "embedded: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

/// The value after `option` as seconds, if the option is given.
func seconds(_ option: String, in arguments: inout [String]) -> Duration? {
    guard let index = arguments.firstIndex(of: option) else { return nil }
    guard index + 1 < arguments.count, let value = Double(arguments[index + 1]), value > 0 else {
        fail("\(option) needs a number of seconds above 0\n\(usage)", status: 64)
    }
    arguments.removeSubrange(index...index + 1)
    return .milliseconds(Int64(value * 1000))
}

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
let tick = seconds("--tick", in: &arguments) ?? .seconds(1)
let grace = seconds("--grace", in: &arguments) ?? .seconds(2)
if let unknown = arguments.first(where: { $0.hasPrefix("-") }) {
    fail("unknown option \(unknown)\n\(usage)", status: 64)
}
guard arguments.count <= 1 else { fail("one address at most\n\(usage)", status: 64) }

// Every error of the set-up (an address in use, say) is one line and exit 1, not a crash report: top-level
// `try` without a `catch` would stop the program with a fatal error and a register dump.
do {
    let loop = try EventLoop()  // made on the main thread: it runs here, below
    let server = try ReactorTCPServer(
        SocketAddress(arguments.first ?? "127.0.0.1:7100"), handler: Echo.self, loop: loop)
    try server.startServing()  // on a loop the program runs: accept on it, no serveForever
    let address = server.serverAddress
    say("listening on \(address)")

    // The timer's probe: an outbound connection in a task on the loop. The body is `@concurrent` (nonisolated),
    // so it may use the connection; written plainly in top-level code it would be the main actor's, and the
    // compiler would refuse to send the connection from it. It may throw: the task's value is its error.
    var probes = 0  // the main actor's, like all top-level state
    let probe = try loop.scheduleRepeating(every: tick) { _ in
        loop.spawn { @concurrent in
            let connection = try await Connection.connect(to: address, on: loop, timeout: .seconds(2))
            defer { connection.close() }
            try await connection.write(Array("ping\n".utf8))
            let answered = try await connection.readLine() == Array("ping\n".utf8)
            // Back to the main actor, which runs on this loop's thread between its callbacks.
            await MainActor.run {
                probes += 1
                say("probe \(probes): \(answered ? "answered" : "wrong answer")")
            }
        }
    }

    // The shutdown, in order: stop accepting, stop the timer and the signals, give connections in progress the
    // grace period, stop the loop; the server closes once the loop has returned.
    var signals: [SignalWatcher] = []
    var stopping = false
    let shutdown = { (signal: Int32) in
        guard !stopping else { return }
        stopping = true
        say("signal \(signal): stop accepting")
        server.stopServing()
        probe.cancel()
        for watcher in signals { watcher.cancel() }
        let deadline = ContinuousClock.now + grace
        let drain = { (timer: LoopTimer) in
            let open = server.mixIn.requestsInProgress
            guard open == 0 || ContinuousClock.now >= deadline else { return }
            timer.cancel()
            say("\(open) connection(s) still open after the grace period: closing")
            loop.stop()
        }
        _ = try? loop.scheduleRepeating(every: .milliseconds(20), drain)
    }
    signals = [try loop.onSignal(SIGINT, shutdown), try loop.onSignal(SIGTERM, shutdown)]

    try loop.run()  // until the shutdown stops it
    server.mixIn.blockOnClose = false  // what is still open after the grace period is closed, not waited for
    server.serverClose()
    say("stopped")
} catch {
    fail("\(error)")
}
