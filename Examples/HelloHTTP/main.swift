import Glibc
import Reactor
import SocketServerHTTP

// Python's http.server hello world, in Swift: `swift run hello-http [sequential|threading|forking|reactor] [PORT]`,
// then `curl http://127.0.0.1:8000/anything`. The handler is the same in every mode.

let usage = """
    usage: hello-http [sequential|threading|forking|reactor] [PORT]
      Python's http.server hello world on 127.0.0.1:PORT (default: threading, port 8000; 0 picks a free one).
    """

final class Hello: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }  // keep-alive; Python's default is HTTP/1.0

    override func doGET() throws {
        let body = Array("Hello, \(path)\n".utf8)
        sendResponse(200)
        sendHeader("Content-Type", "text/plain")
        sendHeader("Content-Length", "\(body.count)")
        try endHeaders()
        try wfile.write(body)
    }
}

/// One line on standard error and the exit status: 64 for a usage error, 1 for a failure.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "hello-http: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
let mode = arguments.first ?? "threading"
let port = arguments.count > 1 ? Int(arguments[1]) : 8000
guard arguments.count <= 2, ["sequential", "threading", "forking", "reactor"].contains(mode), let port,
    (0...65535).contains(port)
else {
    fail("bad arguments \(arguments.joined(separator: " "))\n\(usage)", status: 64)
}
do {
    let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
    let server: HTTPServer
    switch mode {
    case "sequential": server = try HTTPServer(address, handler: Hello.self)
    case "forking": server = try ForkingHTTPServer(address, handler: Hello.self)
    case "reactor": server = try ReactorHTTPServer(address, handler: Hello.self)
    default: server = try ThreadingHTTPServer(address, handler: Hello.self)
    }
    print("serving \(mode) on http://\(server.serverAddress)/")
    fflush(nil)
    try server.serveForever()
} catch {
    fail("\(error)")
}
