import Dispatch
import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// Carries a value, or a loop-bound object, from one thread to another; a semaphore orders the handover.
final class Handover<Value>: @unchecked Sendable {
    var value: Value?
}

struct TimedOut: Error {}

/// A count other threads add to.
final class Count: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

/// Runs `body` on `loop`'s thread (a group's loop, running on its own) and waits for its result, 10 s at most.
func onLoop<Value>(_ loop: EventLoop, _ body: @escaping () throws -> Value) throws -> Value {
    let result = Handover<Result<Value, any Error>>()
    let work = Handover<() throws -> Value>()
    work.value = body
    let done = DispatchSemaphore(value: 0)
    loop.execute {
        result.value = Result { try work.value!() }
        done.signal()
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TimedOut() }
    return try result.value!.get()
}

/// The threads of this process now.
func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { fileText("/proc/self/task/\($0)/comm") }
        .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}

@Suite(.serialized) struct LoopGroupTests {
    /// Each loop runs on a thread of its own, named loop-N, from the moment the group exists; `next()` goes round;
    /// `shutdown()` joins the threads.
    @Test func everyLoopHasItsOwnNamedThreadUntilShutdown() throws {
        let group = try LoopGroup(loops: 3)
        let threads = try group.loops.map { loop in try onLoop(loop) { pthread_self() } }
        #expect(Set(threads.map { UInt($0) }).count == 3, "three threads")
        #expect(group.loops.allSatisfy { $0.isRunning && !$0.inEventLoop }, "running, and not on this thread")
        let names = threadNames()
        for index in 1...3 { #expect(names.filter { $0 == "loop-\(index)" }.count == 1, "\(names)") }
        let handedOut = (0..<6).map { _ in ObjectIdentifier(group.next()) }
        #expect(handedOut == (group.loops + group.loops).map { ObjectIdentifier($0) }, "round-robin")
        group.shutdown()
        #expect(group.loops.allSatisfy { !$0.isRunning })
        #expect(!threadNames().contains { $0.hasPrefix("loop-") }, "joined: \(threadNames())")
        group.shutdown()  // a second call does nothing
    }

    /// Connections are served on every loop: one SO_REUSEPORT listener per loop on one port, 40 clients.
    @Test func connectionsAreServedOnEveryLoop() throws {
        let group = try LoopGroup(loops: 2)
        defer { group.shutdown() }
        let served = [Count(), Count()]
        let options = ListenOptions(reusePort: true)
        var port = 0
        var listeners: [Handover<Listener>] = []
        for (index, loop) in group.loops.enumerated() {
            let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
            let listener = try onLoop(loop) {
                try Listener(address: address, options: options, on: loop) { connection in
                    #expect(loop.inEventLoop)
                    served[index].add()
                    serveEcho(connection, face: .callback)
                }
            }
            port = Int(listener.localAddress.port ?? 0)
            let handover = Handover<Listener>()
            handover.value = listener
            listeners.append(handover)
        }
        let address = try SocketAddress(ipv4: "127.0.0.1", port: port)
        for index in 0..<40 {
            let client = try connectedClient(address)
            #expect(try echoes(client, "client \(index)\n"))
            client.close()
        }
        let counts = served.map(\.current)
        #expect(counts.reduce(0, +) == 40 && counts.allSatisfy { $0 > 0 }, "per loop: \(counts)")
        for (loop, listener) in zip(group.loops, listeners) {
            try onLoop(loop) { listener.value?.close() }
        }
    }
}
