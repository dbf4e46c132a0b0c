import Foundation
import Glibc
import Logging
import Reactor
import SocketServer
import Synchronization
import TestSupport
import Testing

struct Poisoned: Error {}

/// Echoes lines; throws on `poison`, traps on `trap`, and holds on `hold` until the client closes.
final class PoisonableHandler: StreamRequestHandler {
    override func handle() throws {
        while let line = try rfile.readLine() {
            switch line {
            case Array("poison\n".utf8): throw Poisoned()
            case Array("trap\n".utf8): fatalError("a handler that traps")
            case Array("hold\n".utf8):
                ChildCounter.shared.enter()
                defer { ChildCounter.shared.leave() }
                try wfile.write(line)
                while try rfile.readLine() != nil {}
                return
            default: try wfile.write(line)
            }
        }
    }
}

final class AsyncPoisonableHandler: AsyncStreamRequestHandler {
    override func handle() async throws {
        while let line = try await rfile.readLine() {
            if line == Array("poison\n".utf8) { throw Poisoned() }
            try await wfile.write(line)
        }
    }
}

final class CallbackPoisonableHandler: CallbackRequestHandler {
    override func handle(_ buffer: inout ByteBuffer) throws {
        let bytes = buffer.readAll()
        if bytes.starts(with: Array("poison".utf8)) { throw Poisoned() }
        connection.write(bytes)
    }
}

/// Counts handlers holding a connection across forked children, in shared memory, and keeps the peak.
final class ChildCounter: @unchecked Sendable {
    static let shared = ChildCounter()
    private let counters: UnsafeMutablePointer<Atomic<Int>>

    private init() {
        let memory = mmap(
            nil, 2 * MemoryLayout<Atomic<Int>>.stride, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)!
        counters = memory.bindMemory(to: Atomic<Int>.self, capacity: 2)
        counters.initialize(to: Atomic(0))
        (counters + 1).initialize(to: Atomic(0))
    }

    func enter() {
        let now = counters.pointee.add(1, ordering: .sequentiallyConsistent).newValue
        var peak = (counters + 1).pointee.load(ordering: .sequentiallyConsistent)
        while now > peak {
            let (exchanged, original) = (counters + 1).pointee.compareExchange(
                expected: peak, desired: now, ordering: .sequentiallyConsistent)
            if exchanged { break }
            peak = original
        }
    }

    func leave() { counters.pointee.subtract(1, ordering: .sequentiallyConsistent) }
    var peak: Int { (counters + 1).pointee.load(ordering: .sequentiallyConsistent) }
}

/// A log handler that keeps messages, for asserting what a server reported: "LEVEL MESSAGE", and " thread=NAME"
/// when the line names its thread.
struct CapturingLogHandler: LogHandler {
    let messages: Mutex<[String]>.Shared
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let thread = event.metadata?["thread"].map { " thread=\($0)" } ?? ""
        messages.value.withLock { $0.append("\(event.level) \(event.message)\(thread)") }
    }
}

extension Mutex {
    /// A reference to a mutex, for sharing one between values.
    final class Shared: Sendable where Value: Sendable {
        let value: Mutex<Value>
        init(_ initial: Value) { value = Mutex(initial) }
    }
}

/// Records handler errors the server reports.
final class RecordingServer: TCPServer, @unchecked Sendable {
    let errors = Mutex<[String]>([])
    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        errors.withLock { $0.append("\(error)") }
    }
}

@Suite(.serialized) struct CrashingHandlerTests {
    static let modes = poisonableModes

    private static func setup(_ name: String) -> (RequestHandlerType, ProcessingMixIn) { poisonableSetup(name) }

    /// A handler that throws on a poison request loses only its own connection; the error reaches
    /// `handleError` (in the child, for forking mode) and the server goes on serving.
    @Test(arguments: modes)
    func aThrowingHandlerLosesOnlyItsConnection(name: String) throws {
        guard name != "forking" || forkingIsTestable else { return }
        let (handler, mixIn) = Self.setup(name)
        let server = try RecordingServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), requestHandler: handler, mixIn: mixIn)
        try withServing(server, pollInterval: .milliseconds(50)) {
            let bystander = try connectedClient(server.serverAddress)
            if name != "sequential" { #expect(try echoes(bystander, "before\n"), "\(name)") }
            let victim = try connectedClient(server.serverAddress)
            if name == "sequential" {
                hangUp(bystander)  // one connection at a time: the bystander would hold the server
            }
            try victim.sendAll(Array("poison\n".utf8))
            #expect(closedByServer(victim), "\(name): the poisoned connection is closed")
            if name != "sequential" {
                #expect(try echoes(bystander, "after\n"), "\(name): the other connection goes on")
            }
            let next = try connectedClient(server.serverAddress)
            #expect(try echoes(next, "next\n"), "\(name): new connections are served")
            hangUp(next)
            hangUp(bystander)
        }
        if name != "forking" {  // a forked child reports in its own memory
            #expect(server.errors.withLock { $0 } == ["Poisoned()"], "\(name)")
        }
    }

    /// A forked child that traps is reaped and logged, and the server goes on.
    @Test(.enabled(if: forkingIsTestable)) func aForkedChildThatTrapsIsReapedAndLogged() throws {
        let messages = Mutex<[String]>.Shared([])
        let server = try ForkingTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: PoisonableHandler.self)
        server.logger = Logger(label: "test") { _ in CapturingLogHandler(messages: messages) }
        try withServing(server, pollInterval: .milliseconds(50)) {
            let victim = try connectedClient(server.serverAddress)
            try victim.sendAll(Array("trap\n".utf8))
            #expect(closedByServer(victim), "the trapping child's connection is closed")
            let next = try connectedClient(server.serverAddress)
            #expect(try echoes(next, "still here\n"))
            hangUp(next)
            #expect(
                eventually(within: .seconds(10)) {
                    messages.value.withLock {
                        $0.contains { $0.hasPrefix("error child") && $0.contains("killed by signal") }
                    }
                }, "\(messages.value.withLock { $0 })")
        }
    }

    /// `maxChildren` is never exceeded: with 2 allowed and 5 clients holding, at most 2 children serve at once.
    @Test(.enabled(if: forkingIsTestable)) func maxChildrenIsNeverExceeded() throws {
        _ = ChildCounter.shared.peak  // map the shared counters before any fork
        let server = try ForkingTCPServer(
            try SocketAddress(ipv4: "127.0.0.1", port: 0), handler: PoisonableHandler.self)
        (server.mixIn as! ForkingMixIn).maxChildren = 2
        try withServing(server, pollInterval: .milliseconds(50)) {
            var clients: [Socket] = []
            for _ in 0..<5 {
                let client = try connectedClient(server.serverAddress, timeout: .seconds(20))
                try client.sendAll(Array("hold\n".utf8))
                clients.append(client)
            }
            // The first two are served together (each holds until its client hangs up); then each one
            // released lets the next in. Never more than two at once.
            #expect(try clients[0].receive(maxCount: 100) == Array("hold\n".utf8))
            for (index, client) in clients.enumerated() {
                if index + 1 < clients.count {
                    #expect(try clients[index + 1].receive(maxCount: 100) == Array("hold\n".utf8))
                }
                hangUp(client)
            }
        }
        #expect(
            ChildCounter.shared.peak == 2,
            "at most 2 children at once, and 2 were needed: peak \(ChildCounter.shared.peak)")
    }
}

/// Every mode, with the reactor's two handler faces, by name.
let poisonableModes = ["sequential", "threading", "forking", "reactor async", "reactor callback"]

/// The poisonable handlers and the mix-in for a mode named in ``poisonableModes``.
func poisonableSetup(_ name: String) -> (RequestHandlerType, ProcessingMixIn) {
    switch name {
    case "threading": return (.blocking(PoisonableHandler.self), ThreadingMixIn())
    case "forking": return (.blocking(PoisonableHandler.self), ForkingMixIn())
    case "reactor async": return (.async(AsyncPoisonableHandler.self), ReactorMixIn())
    case "reactor callback": return (.callback(CallbackPoisonableHandler.self), ReactorMixIn())
    default: return (.blocking(PoisonableHandler.self), ProcessingMixIn())
    }
}

/// Ends a client connection with `shutdown(SHUT_WR)` first: a forked child of this test process holds
/// a copy of every client descriptor open at the fork, so a plain close would never reach the server.
func hangUp(_ client: Socket) {
    try? client.shutdown(.write)
    client.close()
}
