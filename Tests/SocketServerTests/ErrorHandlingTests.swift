import Foundation
import Glibc
import Reactor
import SocketServer
import TestSupport
import Testing

/// Writes each handled error as one line to a file, so a forked child's report reaches the test too
/// (CPython's `ErrorHandlerTest` does the same).
final class ErrorLog: Sendable {
    let path = temporaryPath("errors")
    func append(_ line: String) { Self.append(line, to: path) }
    /// Appends `line` to the log at `path`, from any process.
    static func append(_ line: String, to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        _ = line.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }
    var lines: [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
    deinit { unlink(path) }
}

/// A line "fail" makes the handler throw; any other line is echoed.
struct FailOnRequest: Error {}

final class FailingStreamHandler: StreamRequestHandler {
    override func handle() throws {
        guard let line = try rfile.readLine() else { return }
        if line == Array("fail\n".utf8) { throw FailOnRequest() }
        try wfile.write(line)
    }
}

final class AsyncFailingStreamHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        guard let line = try await rfile.readLine() else { return }
        if line == Array("fail\n".utf8) { throw FailOnRequest() }
        try await wfile.write(line)
    }
}

@Suite struct ErrorHandlingTests {
    /// A TCP server in `mode` whose `handleError` records to `log`.
    final class RecordingServer: TCPServer, @unchecked Sendable {
        var log: ErrorLog?
        override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
            log?.append("handled \(error) from \(clientAddress.family)\n")
        }
    }

    @Test(arguments: Mode.allCases)
    func handlerErrorsGoToHandleErrorAndTheServerGoesOn(mode: Mode) throws {
        guard mode != .forking || forkingIsTestable else { return }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let server: RecordingServer
        switch mode {
        case .sequential:
            server = try RecordingServer(
                address, requestHandler: .blocking(FailingStreamHandler.self), mixIn: ProcessingMixIn())
        case .threading:
            server = try RecordingServer(
                address, requestHandler: .blocking(FailingStreamHandler.self), mixIn: ThreadingMixIn())
        case .forking:
            server = try RecordingServer(
                address, requestHandler: .blocking(FailingStreamHandler.self), mixIn: ForkingMixIn())
        case .reactor:
            server = try RecordingServer(
                address, requestHandler: .async(AsyncFailingStreamHandler.self), mixIn: ReactorMixIn())
        }
        let log = ErrorLog()
        server.log = log
        try withServing(server) { () throws in
            // handleError runs before the request is shut down, so the client's end of input follows it.
            #expect(try streamExchange(server.serverAddress, Array("fail\n".utf8)) == [])
            #expect(try streamExchange(server.serverAddress) == testLine, "the server goes on serving")
        }
        #expect(log.lines == ["handled FailOnRequest() from ipv4"])
    }

    @Test func theDefaultHandleErrorReportsTheClientOnStandardError() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let server = try TCPServer(
                try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: FailingStreamHandler.self)
            let address = server.serverAddress
            Thread.detachNewThread { _ = try? streamExchange(address, Array("fail\n".utf8)) }
            try server.handleRequest()
            server.serverClose()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("Exception occurred during processing of request from 127.0.0.1:"))
        #expect(stderr.contains("FailOnRequest"))
    }

    @Test func shutdownFromTheServingThreadIsAPreconditionFailureNotADeadlock() async {
        await #expect(processExitsWith: .failure) {
            final class ShutsDown: StreamRequestHandler {
                override func handle() throws { server.shutdown() }
            }
            let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: ShutsDown.self)
            let address = server.serverAddress
            Thread.detachNewThread { _ = try? streamExchange(address) }
            try server.serveForever()
        }
    }

    @Test func requestShutdownFromAHandlerStopsServing() throws {
        final class AsksToStop: StreamRequestHandler {
            override func handle() throws { server.requestShutdown() }
        }
        let server = try TCPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: AsksToStop.self)
        defer { server.serverClose() }
        let finished = serveInBackground(server)
        _ = try streamExchange(server.serverAddress)
        #expect(finished.wait(timeout: .now() + 5) == .success)
    }
}

/// CPython's `ErrorHandlerTest`, driven as it is through `handleRequest()` and `serverClose()`: a handler that
/// throws is handled (`handleError`) in every blocking mode; one that traps (Python's `SystemExit`, which
/// `handle_error` never sees) is not: in sequential and threading mode it ends the whole process, asserted
/// from a child process (an exit test), and in forking mode only the child, the server going on.
@Suite struct ErrorHandlerTests {
    struct TestError: Error {}

    /// Python's `BaseErrorTestServer`: records to a file, which a forked child's report reaches too.
    final class ErrorTestServer: TCPServer, @unchecked Sendable {
        var logPath = ""
        var traps = false
        override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
            ErrorLog.append("Error handled\n", to: logPath)
        }
    }

    /// Python's `BadHandler`.
    final class BadHandler: BaseRequestHandler {
        override func handle() throws {
            let server = self.server as! ErrorTestServer
            ErrorLog.append("Handler called\n", to: server.logPath)
            if server.traps { fatalError("Test error") }
            throw TestError()
        }
    }

    /// `BaseErrorTestServer.__init__`: one connection, `handleRequest()`, then `serverClose()`, which waits for
    /// the request's thread or child.
    static func run(mode: Mode, traps: Bool, logPath: String) throws {
        let mixIn: ProcessingMixIn =
            switch mode {
            case .threading: ThreadingMixIn()
            case .forking: ForkingMixIn()
            default: ProcessingMixIn()
            }
        let server = try ErrorTestServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: .blocking(BadHandler.self), mixIn: mixIn)
        server.logPath = logPath
        server.traps = traps
        defer { server.serverClose() }
        try connectedClient(server.serverAddress).close()
        try server.handleRequest()
    }

    @Test(arguments: [Mode.sequential, .threading, .forking], [false, true])
    func handlerErrors(mode: Mode, traps: Bool) async throws {
        guard mode != .forking || forkingIsTestable else { return }
        let log = ErrorLog()
        if traps && mode != .forking {
            await #expect(processExitsWith: .failure, "a trap ends the process") {
                [mode = mode.rawValue as String, path = log.path as String] in
                try? ErrorHandlerTests.run(mode: Mode(rawValue: mode)!, traps: true, logPath: path)
            }
        } else {
            try Self.run(mode: mode, traps: traps, logPath: log.path)
        }
        #expect(log.lines == ["Handler called"] + (traps ? [] : ["Error handled"]), "\(mode)")
    }
}
