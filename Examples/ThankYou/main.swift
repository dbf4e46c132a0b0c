// The seed document's example server, in each mode: it thanks every client that connects.
// SIGINT or SIGTERM stops it: the plain way, a signal watcher on the server's loop, no ServiceLifecycle.
import Glibc
import Reactor
import SocketServer

let usage = """
    usage: thank-you [sequential|threading|forking|reactor] [HOST:PORT]
      Thanks every client that connects (default: sequential, on 127.0.0.1:1234; port 0 picks a free one).
    """

final class Handler: StreamRequestHandler {
    override func handle() throws {
        say("Got connection from \(clientAddress)")
        try wfile.write("Thank you for connecting\n")
    }
}

/// The same handler for reactor mode: `async`, and `await` on the write.
final class AsyncHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        say("Got connection from \(clientAddress)")
        try await wfile.write("Thank you for connecting\n")
    }
}

/// One line on standard output, flushed: it reaches a pipe or a file at once, not when a buffer fills.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// One line on standard error and the exit status: 64 for a usage error, 1 for a failure.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "thank-you: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
let mode = arguments.first ?? "sequential"
guard arguments.count <= 2, ["sequential", "threading", "forking", "reactor"].contains(mode) else {
    fail("unknown mode or option \(arguments[0])\n\(usage)", status: 64)
}
do {
    let address = try SocketAddress(arguments.count > 1 ? arguments[1] : "127.0.0.1:1234")
    let server: BaseServer
    switch mode {
    case "threading": server = try ThreadingTCPServer(address, handler: Handler.self)
    case "forking": server = try ForkingTCPServer(address, handler: Handler.self)
    case "reactor": server = try ReactorTCPServer(address, handler: AsyncHandler.self)
    default: server = try TCPServer(address, handler: Handler.self)
    }
    let stop = { (_: Int32) in server.requestShutdown() }  // serveForever returns after this pass
    let signals = [try server.loop.onSignal(SIGINT, stop), try server.loop.onSignal(SIGTERM, stop)]
    say("serving on \(server.serverAddress) in \(mode) mode")
    try server.serveForever()
    for watcher in signals { watcher.cancel() }
    server.serverClose()
    say("stopped")
} catch {
    fail("\(error)")
}
