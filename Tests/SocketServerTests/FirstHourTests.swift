import Foundation
import Glibc
import Logging
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

/// What a Python programmer porting the socketserver examples met in the first hour, each fixed.
@Suite struct FirstHourTests {
    /// C's `stdout`, which Swift 6 will not name (a global variable): looked up by its symbol.
    static var standardOutput: UnsafeMutablePointer<FILE> {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "stdout")!.load(as: UnsafeMutablePointer<FILE>.self)
    }

    /// A line printed before serving appears once, as in Python, however many children are forked: each child
    /// inherited the unflushed stdio buffer and wrote it again on its way out.
    @Test func forkedChildrenDoNotRepeatBufferedOutput() async throws {
        guard forkingIsTestable else { return }
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            // Fully buffered, as C makes stdout of any program writing to a pipe or a file (the test runner
            // makes its own unbuffered).
            setvbuf(FirstHourTests.standardOutput, nil, _IOFBF, 4096)
            print("serving once")
            let server = try ForkingTCPServer(
                try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: EchoStreamHandler.self)
            var clients: [Socket] = []
            for _ in 0..<3 {
                let client = try connectedClient(server.serverAddress)
                try client.sendAll(testLine)
                clients.append(client)
            }
            for _ in 0..<3 { try server.handleRequest() }
            for client in clients where readToEnd(client) != testLine { exit(3) }
            server.serverClose()
        }
        let output = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
        #expect(output == "serving once\n", "\(output.debugDescription)")
    }

    /// `serveForever()` or `handleRequest()` on a closed server throws at once (Python raises `ValueError`)
    /// instead of waiting forever on descriptor -1.
    @Test(arguments: Transport.allCases, [Mode.sequential, .reactor])
    func servingAClosedServerThrows(transport: Transport, mode: Mode) throws {
        let server = try makeEchoServer(transport, mode)
        server.serverClose()
        #expect(server.fileno == -1)
        for call in ["serveForever", "handleRequest"] {
            let outcome = Mutex<(any Error)?>(nil)
            let returned = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                do {
                    if call == "serveForever" { try server.serveForever() } else { try server.handleRequest() }
                } catch {
                    outcome.withLock { $0 = error }
                }
                returned.signal()
            }
            try #require(returned.wait(timeout: .now() + 5) == .success, "\(call)() after serverClose() returns")
            let error = try #require(outcome.withLock { $0 } as? ServerError, "\(call)() throws a ServerError")
            #expect(
                error == .serverClosed("\(call)() after serverClose() on \(type(of: server)) \(server.serverAddress)"))
            #expect("\(error)".hasPrefix("the server is closed: "))
        }
    }

    /// Request threads are named `Thread-N` as Python's are, for the kernel (`ps -L`, `/proc`) and the
    /// default error log.
    @Test func requestThreadsHaveNames() throws {
        final class NamingHandler: StreamRequestHandler {
            nonisolated(unsafe) static var names: [String] = []
            static let lock = NSLock()
            override func handle() throws {
                // The kernel's name of this thread, read independently of Foundation.
                let comm = try String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)
                Self.lock.withLock { Self.names.append(comm.trimmingCharacters(in: .newlines)) }
                try wfile.write(testLine)
            }
        }
        let server = try ThreadingTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: NamingHandler.self)
        try withServing(server) { () throws in
            for _ in 0..<2 { #expect(try streamExchange(server.serverAddress) == testLine) }
        }
        let names = NamingHandler.lock.withLock { NamingHandler.names }
        try #require(names.count == 2, "\(names)")
        let numbers = names.compactMap { $0.hasPrefix("Thread-") ? Int($0.dropFirst("Thread-".count)) : nil }
        #expect(numbers.count == 2 && numbers[1] > numbers[0], "\(names)")
    }

    /// The default `handleError` log line names the request thread in threading mode.
    @Test func theErrorLogNamesTheRequestThread() throws {
        final class FailingHandler: StreamRequestHandler {
            override func handle() throws { throw ReactorError.timedOut }
        }
        let messages = Mutex<[String]>.Shared([])
        let server = try ThreadingTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: FailingHandler.self)
        server.logger = Logger(label: "test") { _ in CapturingLogHandler(messages: messages) }
        try withServing(server) { () throws in
            #expect(try streamExchange(server.serverAddress) == [])
            #expect(eventually { !messages.value.withLock { $0 }.isEmpty })
        }
        let logged = messages.value.withLock { $0 }
        #expect(logged.count == 1 && logged[0].contains(" thread=Thread-"), "\(logged)")
    }

    /// Errors a first try meets say what is wrong in the user's terms.
    @Test func addressErrorsSayWhatIsWrong() throws {
        for (text, expected) in [
            ("127.0.0.1", "invalid address: 127.0.0.1: the port is missing (the forms are HOST:PORT, "),
            ("localhost", "invalid address: localhost: the port is missing ("),
            ("127.0.0.1:", "invalid address: 127.0.0.1:: the port is missing ("),
            ("localhost:http", #"invalid address: localhost:http: the port "http" is not a number ("#),
            ("::1", "invalid address: ::1: the port is missing (an IPv6 address takes brackets: [::1]:PORT)"),
            ("[::1]", "invalid address: [::1]: the port is missing ("),
        ] {
            #expect {
                try SocketAddress(text)
            } throws: { error in
                "\(error)".hasPrefix(expected)
            }
        }
        let path = temporaryPath()
        #expect {
            try TCPServer(try SocketAddress(unixPath: path), handler: EchoStreamHandler.self)
        } throws: { error in
            "\(error)" == "wrong address family: TCPServer serves [ipv4, ipv6], not unix:\(path)"
        }
        #expect("\(SocketAddress.Family.unix)" == "unix")
    }

    /// `Socket.send(_:to:)` takes bytes as `sendAll` does: the port of `sock.sendto(data, address)`.
    @Test func sendToTakesBytes() throws {
        let server = try UDPServer(try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: EchoDatagramHandler.self)
        try withServing(server) { () throws in
            let client = try Socket(family: .ipv4, kind: .datagram)
            client.timeout = .seconds(10)
            try client.send("from a string".utf8, to: server.serverAddress)
            #expect(try client.receive(maxCount: 100) == Array("from a string".utf8))
            try client.send(testLine[...], to: server.serverAddress)
            #expect(try client.receive(maxCount: 100) == testLine)
        }
    }
}
