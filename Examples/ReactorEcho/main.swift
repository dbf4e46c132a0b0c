// An echo server on the Reactor: every byte a client sends comes back.
// Usage: reactor-echo [--async] [HOST:PORT]   (default 127.0.0.1:7000; port 0 picks a free one)
import Glibc
import Reactor

/// The callback face: echo whatever arrived, consume it all.
final class Echo: ConnectionDelegate {
    func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { connection.write($0) }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }
}

/// The async face: one task per connection, line by line. Nonisolated, so the task runs on the loop.
nonisolated func echoLines(_ connection: Connection) {
    connection.loop.spawn {
        while let line = try? await connection.readLine(strippingNewline: false) {
            guard (try? await connection.write(line)) != nil else { break }
        }
        connection.close()
    }
}

let arguments = CommandLine.arguments.dropFirst()
let useAsync = arguments.contains("--async")
let address = try SocketAddress(arguments.first { !$0.hasPrefix("--") } ?? "127.0.0.1:7000")

let loop = try EventLoop()
let listener = try Listener(address: address, on: loop) { connection in
    if useAsync { echoLines(connection) } else { connection.delegate = Echo() }
}
let interrupt = try loop.onSignal(SIGINT) { _ in loop.stop() }
let terminate = try loop.onSignal(SIGTERM) { _ in loop.stop() }
print("listening on \(listener.localAddress) (\(useAsync ? "async" : "callback") face, \(loop.backendName))")
fflush(nil)
try loop.run()
listener.close()
