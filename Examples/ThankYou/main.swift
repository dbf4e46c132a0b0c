// The seed document's example server, in each mode: it thanks every client that connects.
// Usage: thank-you [sequential|threading|forking|reactor] [HOST:PORT]   (default sequential, 127.0.0.1:1234)
import Glibc
import Reactor
import SocketServer

final class Handler: StreamRequestHandler {
    override func handle() throws {
        print("Got connection from", clientAddress)
        try wfile.write("Thank you for connecting\n")
    }
}

/// The same handler for reactor mode: `async`, and `await` on the write.
final class AsyncHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        print("Got connection from", clientAddress)
        try await wfile.write("Thank you for connecting\n")
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first ?? "sequential"
let address = try SocketAddress(arguments.count > 1 ? arguments[1] : "127.0.0.1:1234")

do {
    let server: BaseServer
    switch mode {
    case "sequential": server = try TCPServer(address, handler: Handler.self)
    case "threading": server = try ThreadingTCPServer(address, handler: Handler.self)
    case "forking": server = try ForkingTCPServer(address, handler: Handler.self)
    case "reactor": server = try ReactorTCPServer(address, handler: AsyncHandler.self)
    default:
        throw ServerError.handlerDoesNotMatchMode("unknown mode \(mode): sequential, threading, forking or reactor")
    }
    print("serving on \(server.serverAddress) in \(mode) mode")
    try server.serveForever()
} catch {
    print("thank-you: \(error)")
    exit(1)
}
