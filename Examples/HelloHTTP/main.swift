import Glibc
import Reactor
import SocketServerHTTP

// Python's http.server hello world, in Swift: `swift run hello-http [sequential|threading|forking|reactor] [PORT]`,
// then `curl http://127.0.0.1:8000/anything`. The handler is the same in every mode.

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

let arguments = CommandLine.arguments.dropFirst()
let mode = arguments.first ?? "threading"
let address = try SocketAddress(ipv4: "127.0.0.1", port: arguments.dropFirst().first.flatMap { Int($0) } ?? 8000)
let server: HTTPServer
switch mode {
case "sequential": server = try HTTPServer(address, handler: Hello.self)
case "threading": server = try ThreadingHTTPServer(address, handler: Hello.self)
case "forking": server = try ForkingHTTPServer(address, handler: Hello.self)
case "reactor": server = try ReactorHTTPServer(address, handler: Hello.self)
default:
    print("usage: hello-http [sequential|threading|forking|reactor] [PORT]")
    exit(2)
}
print("serving \(mode) on http://\(server.serverAddress)/")
fflush(nil)
try server.serveForever()
