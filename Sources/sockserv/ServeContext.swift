import Glibc
import Reactor
import Synchronization

/// What the handlers of one `sockserv serve` process share. Set once before serving starts and only
/// read afterwards, which is why the plain static variables are safe.
enum ServeContext {
    /// Makes the protocol state for a new connection.
    nonisolated(unsafe) static var makeSession: () -> any Session = { EchoSession() }
    /// Close connections idle this long; `nil` never.
    nonisolated(unsafe) static var idleTimeout: Duration?
    /// Counters shared with forked children.
    static let stats = SharedCounters()
    /// Set by SIGINT or SIGTERM: finish what was read, accept nothing new.
    static let stopping = Atomic<Bool>(false)
    /// Requests in progress cut off at the end of the grace period, over all loops.
    static let cutOff = Atomic<Int>(0)
    /// Written by the signal handler to wake the loop (the self-pipe trick).
    nonisolated(unsafe) static var wakeFD: Int32 = -1
    /// One registry per loop, filled before serving starts.
    nonisolated(unsafe) static var idleRegistries: [ObjectIdentifier: IdleRegistry] = [:]

    /// The registry of connections waiting for input on `loop`.
    static func idle(on loop: EventLoop) -> IdleRegistry {
        idleRegistries[ObjectIdentifier(loop)]!
    }
}

/// The open connections of one loop, closed when the server stops. Touched only on that loop's thread.
final class IdleRegistry: @unchecked Sendable {
    var connections: [ObjectIdentifier: Connection] = [:]
    private var additions = 0

    /// Registers `connection` until it has closed completely (an async handler may return while its
    /// last replies are still being sent).
    func add(_ connection: Connection) {
        connections[ObjectIdentifier(connection)] = connection
        additions += 1
        if additions % 1024 == 0 { prune() }  // amortized: entries of handlers that returned early
    }

    func remove(_ connection: Connection) {
        if connection.isClosed { connections[ObjectIdentifier(connection)] = nil }
    }

    /// Forgets connections that have closed; returns how many are left.
    @discardableResult
    func prune() -> Int {
        connections = connections.filter { !$0.value.isClosed }
        return connections.count
    }

    /// Closes every connection once what was written to it is sent (each leaves the registry when closed).
    func closeAll() {
        for connection in Array(connections.values) { connection.close() }
    }

    /// Closes every connection still open at once with a reset, dropping unsent output.
    func resetAll() {
        for connection in Array(connections.values) { connection.reset() }
    }
}

/// Counters in shared anonymous memory, so forked children's requests and bytes count too.
final class SharedCounters: @unchecked Sendable {
    enum Counter: Int, CaseIterable {
        case connections, open, requests, bytesIn, bytesOut, errors, refused
    }

    private let base: UnsafeMutablePointer<Atomic<Int>>

    init() {
        let size = MemoryLayout<Atomic<Int>>.stride * Counter.allCases.count
        guard let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
            memory != MAP_FAILED
        else {
            fatalError("mmap of \(size) shared bytes failed: errno \(errno)")
        }
        base = memory.bindMemory(to: Atomic<Int>.self, capacity: Counter.allCases.count)
        for counter in Counter.allCases { (base + counter.rawValue).initialize(to: Atomic(0)) }
    }

    func add(_ counter: Counter, _ amount: Int = 1) {
        (base + counter.rawValue).pointee.add(amount, ordering: .relaxed)
    }

    subscript(_ counter: Counter) -> Int {
        (base + counter.rawValue).pointee.load(ordering: .relaxed)
    }

    /// The one-line summary printed on exit.
    var summary: String {
        "\(self[.connections]) connections, \(self[.requests]) requests, \(self[.bytesIn]) bytes in, \(self[.bytesOut]) bytes out, \(self[.errors]) errors, \(self[.refused]) refused"
    }
}
