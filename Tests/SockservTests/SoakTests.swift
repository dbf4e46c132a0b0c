import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

/// How long the soak runs: `SOAK_SECONDS` (`make soak` sets 60), 10 s by default.
let soakSeconds = ProcessInfo.processInfo.environment["SOAK_SECONDS"].flatMap(Int.init) ?? 10

/// Counters shared between the churn threads and the test.
final class ChurnCounters: Sendable {
    let requests = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let running = Atomic<Bool>(true)
}

@Suite(.serialized) struct SoakTests {
    /// Connect/request/close churn plus 1,000 long-lived connections for `soakSeconds`: no errors, and
    /// the server's descriptors and memory, sampled every second, stay flat.
    @Test(arguments: ["reactor", "threading", "forking"])
    func churnAndLongLivedConnectionsStayFlat(mode: String) throws {
        let longLived = scaled(1_000)
        let server = try SockservProcess(["serve", "echo", "--mode", mode])
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let pid = server.process.processIdentifier
        var clients: [Socket] = []
        for index in 0..<longLived {
            let client = try connectedClient(address, timeout: .seconds(20))
            try client.sendAll(Array("long \(index)\n".utf8))
            clients.append(client)
        }
        for (index, client) in clients.enumerated() {
            #expect(try client.receive(maxCount: 100) == Array("long \(index)\n".utf8))
        }
        let counters = ChurnCounters()
        let churners = DispatchGroup()
        for worker in 0..<2 {
            churners.enter()
            Thread.detachNewThread {
                defer { churners.leave() }
                var sequence = 0
                while counters.running.load(ordering: .relaxed) {
                    sequence += 1
                    do {
                        let client = try connectedClient(address, timeout: .seconds(10))
                        if try echoes(client, "churn \(worker) \(sequence)\n") {
                            counters.requests.add(1, ordering: .relaxed)
                        } else {
                            counters.errors.add(1, ordering: .relaxed)
                        }
                    } catch {
                        counters.errors.add(1, ordering: .relaxed)
                    }
                }
            }
        }
        var samples: [(fds: Int, rssKiB: Int, errors: Int)] = []
        for _ in 0..<soakSeconds {
            usleep(1_000_000)  // the sampling period itself, not a wait for an event
            samples.append((descriptorCount(of: pid), server.residentKiB, counters.errors.load(ordering: .relaxed)))
        }
        counters.running.store(false, ordering: .relaxed)
        churners.wait()
        // The long-lived connections all survived and still answer.
        var alive = 0
        for (index, client) in clients.enumerated() {
            let line = Array("again \(index)\n".utf8)
            if (try? client.sendAll(line)) != nil, (try? client.receive(maxCount: 100)) == line { alive += 1 }
        }
        #expect(alive == longLived)
        #expect(counters.errors.load(ordering: .relaxed) == 0)
        // Flat: after the first second, descriptors move only by the few connections in flight, and
        // memory ends within 10% (plus 4 MiB of allocator slack) of where it was.
        let settled = samples.dropFirst()
        let fds = settled.map(\.fds)
        if let low = fds.min(), let high = fds.max() {
            #expect(high - low <= 8, "descriptors \(low)...\(high)")
        }
        if let first = settled.first?.rssKiB, let last = settled.last?.rssKiB {
            #expect(last <= first + first / 10 + 4096 || !measuresMemory, "RSS \(first) KiB -> \(last) KiB")
        }
        print(
            "soak \(mode) \(soakSeconds) s: \(counters.requests.load(ordering: .relaxed)) churn requests, \(longLived) long-lived connections alive, 0 errors; descriptors \(fds.min() ?? 0)...\(fds.max() ?? 0), RSS \(settled.first?.rssKiB ?? 0) -> \(settled.last?.rssKiB ?? 0) KiB"
        )
        for client in clients { client.close() }
        #expect(server.stop() == 0)
    }
}
