import Foundation
import Glibc
import Logging
import SocketServerHTTP
import Synchronization
import TestSupport
import Testing

/// A gate the test opens from its own thread; handlers await it on the loop.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let isOpen = state.withLock { state in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if isOpen { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Answers with its path; `/slow` first awaits the gate, `/fail` throws after awaiting it.
final class AwaitingHandler: AsyncHTTPRequestHandler {
    override var protocolVersion: String { "HTTP/1.1" }
    var gate = Gate()

    convenience init(gate: Gate) {
        self.init()
        self.gate = gate
    }

    struct Failure: Error {}

    override func doGET() async throws {
        if path == "/slow" || path == "/fail" { await gate.wait() }
        if path == "/fail" { throw Failure() }
        let body = Array(path.utf8)
        sendResponse(200)
        sendHeader("Content-Length", "\(body.count)")
        try endHeaders()
        try wfile.write(body)
    }

    override func doPOST() async throws {
        let body = try rfile.readAll()
        await Task.yield()
        sendResponse(200)
        sendHeader("Content-Length", "\(body.count)")
        try endHeaders()
        try wfile.write(body)
    }
}

@Suite struct AsyncHandlerTests {
    /// While one request awaits, other connections are served; the requests its client pipelined behind it
    /// are answered after it, in order.
    @Test func anAwaitingHandlerLeavesTheLoopToOthers() throws {
        let gate = Gate()
        let server = try ReactorHTTPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0)) {
            AwaitingHandler(gate: gate)
        }
        try serving(server) { address in
            let slow = try Client(address)
            try slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in 0..<3 {
                #expect(try request(address, "GET", "/fast").body == Array("/fast".utf8))
            }
            let posted = try request(address, "POST", "/echo", body: Array("hello".utf8))
            #expect(posted.body == Array("hello".utf8))
            gate.open()
            #expect(try slow.response()?.body == Array("/slow".utf8))
            #expect(try slow.response()?.body == Array("/after".utf8))
        }
    }

    /// An error thrown after an await goes to handleError and ends only its own connection.
    @Test func anErrorAfterAnAwaitEndsOnlyItsConnection() throws {
        let gate = Gate()
        let logs = LogCapture()
        let server = try ReactorHTTPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0)) {
            AwaitingHandler(gate: gate)
        }
        let before = openDescriptorCount()
        try serving(server, logs: logs) { address in
            let failing = try Client(address)
            try failing.send("GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            do {
                let leaving = try Client(address)  // gone (closed as it goes out of scope) while its handler awaits
                try leaving.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            }
            #expect(try request(address, "GET", "/fast").status == 200)
            gate.open()
            #expect(try failing.response() == nil, "the failed request's connection is closed without an answer")
            #expect(try request(address, "GET", "/fast").status == 200)
        }
        #expect(logs.messages.contains { $0.hasPrefix("Exception occurred during processing of request") })
        #expect(openDescriptorCount() <= before)
    }
}
