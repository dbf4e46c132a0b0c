import Dispatch
import Foundation
import Glibc
import Logging
import Reactor
import SocketServer
import SocketServerHTTP
import Synchronization
import TestSupport
import Testing

/// The modes an HTTP server runs in.
enum Mode: String, CaseIterable, CustomStringConvertible {
    case sequential, threading, forking, reactor
    var description: String { rawValue }

    /// The modes an in-process test can run: forking is left out under ThreadSanitizer.
    static var testable: [Mode] {
        ProcessInfo.processInfo.environment["SOCKETSERVER_SANITIZER"] == "thread"
            ? [.sequential, .threading, .reactor] : allCases
    }
}

/// Makes the HTTP server class of `mode`.
func makeServer(
    _ mode: Mode, at address: SocketAddress? = nil, handler: @escaping @Sendable () -> BaseHTTPRequestHandler
) throws -> HTTPServer {
    let address = try address ?? SocketAddress(ipv4: "127.0.0.1", port: 0)
    switch mode {
    case .sequential: return try HTTPServer(address, handler: handler)
    case .threading: return try ThreadingHTTPServer(address, handler: handler)
    case .forking:
        // Each child inherits the test's own client sockets (client and server share this process), so a
        // client's close is not seen while a later child lives: bound the wait for a next request.
        let server = try ForkingHTTPServer(address, handler: handler)
        server.http.keepAliveTimeout = .seconds(1)
        return server
    case .reactor: return try ReactorHTTPServer(address, handler: handler)
    }
}

/// Log lines kept in memory, to check what a server logged.
final class LogCapture: @unchecked Sendable {
    let lines = Mutex<[(Logger.Level, String)]>([])
    /// The level of ``logger``.
    let level: Logger.Level

    init(level: Logger.Level = .trace) {
        self.level = level
    }

    var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(capture: self, logLevel: self.level) }
    }

    var messages: [String] { lines.withLock { $0.map(\.1) } }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            capture.lines.withLock { $0.append((event.level, "\(event.message)")) }
        }
    }
}

/// Serves `server` on a background thread while `body` runs with its address, then shuts it down and closes it.
func serving<T>(_ server: HTTPServer, logs: LogCapture? = nil, _ body: (SocketAddress) throws -> T) throws -> T {
    // Quiet by default; and a forked child must not inherit a lock (stdio's, a Mutex) another test thread holds.
    server.logger = logs?.logger ?? Logger(label: "quiet") { _ in SwiftLogNoOpLogHandler() }
    let finished = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        do {
            try server.serveForever(pollInterval: .milliseconds(50))
        } catch {
            Issue.record("serveForever: \(error)")
        }
        finished.signal()
    }
    defer {
        server.shutdown()
        #expect(finished.wait(timeout: .now() + 10) == .success, "serveForever did not return after shutdown()")
        server.serverClose()
    }
    return try body(server.serverAddress)
}

/// A parsed response.
struct Response {
    var version = ""
    var status = 0
    var reason = ""
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    var statusLine: String { "\(version) \(status) \(reason)" }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A blocking client that sends requests and reads responses, keeping what it read beyond each one.
final class Client {
    let socket: Socket
    private var buffer: [UInt8] = []

    init(_ address: SocketAddress, timeout: Duration = .seconds(10)) throws {
        socket = try connectedClient(address, timeout: timeout)
    }

    deinit { socket.close() }

    func send(_ text: String) throws {
        try socket.sendAll(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        try socket.sendAll(bytes)
    }

    /// Receives more; false at the end of input.
    private func fill() throws -> Bool {
        let chunk = try socket.receive(maxCount: 256 * 1024)
        buffer += chunk
        return !chunk.isEmpty
    }

    private func readLine() throws -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { return nil }
        }
    }

    /// Reads one response; `head` for the response to a HEAD request (no body whatever its headers say).
    func response(head: Bool = false) throws -> Response? {
        guard let statusLine = try readLine() else { return nil }
        var response = Response()
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        response.version = String(parts[0])
        response.status = parts.count > 1 ? Int(parts[1]) ?? -1 : -1
        response.reason = parts.count > 2 ? String(parts[2]) : ""
        while let line = try readLine(), !line.isEmpty {
            let colon = line.firstIndex(of: ":") ?? line.endIndex
            response.headers.append(
                (String(line[..<colon]), String(line[colon...].dropFirst()).trimmingCharacters(in: .whitespaces)))
        }
        if head || response.status < 200 || response.status == 204 || response.status == 304 { return response }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            while buffer.count < length, try fill() {}
            response.body = Array(buffer.prefix(length))
            buffer.removeFirst(min(length, buffer.count))
        } else {
            while try fill() {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    /// Everything until the server closes.
    func rest() throws -> [UInt8] {
        while try fill() {}
        defer { buffer = [] }
        return buffer
    }

    /// Whether the server closed the connection (nothing more arrives).
    func isClosedByServer() -> Bool {
        buffer.isEmpty && closedByServer(socket)
    }
}

/// One request on a new connection, and its response.
func request(
    _ address: SocketAddress, _ method: String = "GET", _ target: String, version: String = "HTTP/1.1",
    headers: [(String, String)] = [], body: [UInt8] = []
) throws -> Response {
    let client = try Client(address)
    var text = "\(method) \(target) \(version)\r\nHost: localhost\r\n"
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if !body.isEmpty { text += "Content-Length: \(body.count)\r\n" }
    try client.send(Array((text + "\r\n").utf8) + body)
    return try #require(try client.response(head: method == "HEAD"))
}

/// Runs an installed client program; `nil` if it is not installed.
func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String)? {
    guard
        let path = ["/usr/bin/", "/bin/", "/usr/local/bin/"].map({ $0 + program }).first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        })
    else { return nil }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
}
