import Dispatch
import Foundation
import Glibc
import Logging
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// `/` answers at once; `/slow?MARKER` creates the file MARKER (seen from the test, whatever process serves it),
/// then works for half a second before answering.
final class SlowPageHandler: BaseHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }

    override func doGET() throws {
        if path.hasPrefix("/slow?") {
            _ = FileManager.default.createFile(atPath: String(path.dropFirst(6)), contents: nil)
            usleep(500_000)
        }
        sendResponse(200)
        sendHeader("Content-Length", "2")
        try endHeaders()
        try wfile.write(Array("ok".utf8))
    }
}

/// The HTTP servers drain as `shutdown(gracePeriod:)` says: a keep-alive connection waiting for its next request
/// closes once it has waited 250 ms more, a response in progress is sent whole with `Connection: close`, and the drain returns once
/// they have ended, long before its grace period.
@Suite(.serialized) struct HTTPDrainTests {
    @Test(arguments: Mode.testable)
    func idleConnectionsCloseAndAResponseInProgressEndsTheConnection(mode: Mode) throws {
        let server = try makeServer(mode) { SlowPageHandler() }
        server.logger = Logger(label: "quiet") { _ in SwiftLogNoOpLogHandler() }
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? server.serveForever(pollInterval: .milliseconds(20))
            finished.signal()
        }
        // Sequential mode serves one connection at a time: the idle one alone there.
        let idle = try Client(server.serverAddress)
        try idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try idle.response()?.header("Connection") == nil, "\(mode): kept alive")
        let marker = temporaryPath("slow")
        defer { unlink(marker) }
        let slow = mode == .sequential ? nil : try Client(server.serverAddress)
        if let slow {
            try slow.send("GET /slow?\(marker) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(eventually { access(marker, F_OK) == 0 }, "\(mode): the slow request started")
        }
        let started = ContinuousClock.now
        let report = server.shutdown(gracePeriod: .seconds(20))
        let took = ContinuousClock.now - started
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(report == DrainReport(finished: slow == nil ? 1 : 2, cut: 0), "\(mode): \(report)")
        #expect(took < .seconds(5), "\(mode): returned after \(took)")
        #expect(idle.isClosedByServer(), "\(mode): the idle connection was closed")
        if let slow {
            let response = try #require(try slow.response())
            #expect(response.text == "ok" && response.header("Connection") == "close", "\(mode): \(response.headers)")
            #expect(slow.isClosedByServer(), "\(mode)")
        }
        server.serverClose()
    }
}
