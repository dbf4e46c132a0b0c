// An echo server on the Reactor: every byte a client sends comes back. SIGINT or SIGTERM stops it.
import Glibc
import Reactor

let usage = """
    usage: reactor-echo [--async] [HOST:PORT]
      An echo server on the bare Reactor, on HOST:PORT (default 127.0.0.1:7000; port 0 picks a free one).
      --async   one task per connection, line by line (default: the callback face, no task per connection)
    """

/// The callback face: echo whatever arrived, consume it all.
final class Echo: ConnectionDelegate {
    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { connection.write($0) }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }
}

/// One line on standard error and the exit status: 64 for a usage error, 1 for a failure.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "reactor-echo: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
if let unknown = arguments.first(where: { $0.hasPrefix("-") && $0 != "--async" }) {
    fail("unknown option \(unknown)\n\(usage)", status: 64)
}
let useAsync = arguments.contains("--async")
do {
    let address = try SocketAddress(arguments.first { !$0.hasPrefix("-") } ?? "127.0.0.1:7000")
    let loop = try EventLoop()
    let listener = try Listener(address: address, on: loop) { connection in
        guard useAsync else {
            connection.delegate = Echo()
            return
        }
        // The async face: one task per connection, line by line. Spawned from top-level code, the body is the
        // main actor's, which runs on this loop's thread (the main one); the reads and writes run on the loop.
        loop.spawn { @concurrent in
            defer { connection.close() }  // sends what is left, then closes
            while let line = try await connection.readLine() { try await connection.write(line) }
        }
    }
    // The plain way to stop on a signal: the loop turns it into a callback on its own thread.
    let interrupt = try loop.onSignal(SIGINT) { _ in loop.stop() }
    let terminate = try loop.onSignal(SIGTERM) { _ in loop.stop() }
    print("listening on \(listener.localAddress) (\(useAsync ? "async" : "callback") face, \(loop.backendName))")
    fflush(nil)
    try loop.run()
    interrupt.cancel()
    terminate.cancel()
    listener.close()
} catch {
    fail("\(error)")
}
