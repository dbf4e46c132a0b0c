import Glibc
import Protocols
import Reactor
import TestSupport
import Testing

@testable import sockserv

/// resp's `DEBUG SLEEP`, the blocking call of the mixed workload: answered in every mode, and in reactor mode run on
/// the loop's blocking pool, so that the loop's other clients are served meanwhile.
@Suite struct BlockingWorkTests {
    /// While one connection's `DEBUG SLEEP 1` sleeps, another connection's PING is answered; then the sleeper gets
    /// its `+OK`, after the replies before it and before those after it.
    @Test(
        arguments: concurrentModes + [
            ["--mode", "reactor", "--loops", "2"], ["--mode", "reactor", "--handler", "async", "--loops", "2"],
        ])
    func otherClientsAreServedWhileOneSleeps(mode: [String]) throws {
        let server = try SockservProcess(["serve", "resp"] + mode)
        _ = server.readFirstLine()
        let address = try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port))
        let sleeper = try connectedClient(address)
        try sleeper.sendAll(Array("PING\r\nDEBUG SLEEP 1\r\nECHO after\r\n".utf8))
        var heard: [UInt8] = []
        while heard.count < 7 { heard += try sleeper.receive(maxCount: 100) }
        #expect(heard == Array("+PONG\r\n".utf8), "the reply before the sleep is not held back")
        let other = try connectedClient(address)
        try other.sendAll(Array("PING\r\n".utf8))
        #expect(try other.receive(maxCount: 100) == Array("+PONG\r\n".utf8))
        var entry = pollfd(fd: sleeper.fileDescriptor, events: Int16(POLLIN), revents: 0)
        #expect(poll(&entry, 1, 0) == 0, "\(mode): the sleeper is still asleep when the other is answered")
        var rest: [UInt8] = []
        let expected = Array("+OK\r\n$5\r\nafter\r\n".utf8)
        while rest.count < expected.count { rest += try sleeper.receive(maxCount: 100) }
        #expect(rest == expected)
        sleeper.close()
        other.close()
        #expect(server.stop() == 0)
        #expect(server.standardError.contains("2 connections, 4 requests"), "\(server.standardError)")
    }

    /// `--blocking-work loop` runs it on the loop thread (the stall the pool avoids, for comparison): answered all
    /// the same.
    @Test(arguments: [["reactor"], ["reactor", "--handler", "async"]])
    func onTheLoopItIsAnsweredToo(mode: [String]) throws {
        let server = try SockservProcess(["serve", "resp", "--blocking-work", "loop", "--mode"] + mode)
        _ = server.readFirstLine()
        let client = try connectedClient(try SocketAddress(ipv4: "127.0.0.1", port: try #require(server.port)))
        try client.sendAll(Array("DEBUG SLEEP 0.1\r\nPING\r\n".utf8))
        var reply: [UInt8] = []
        while reply.count < 12 { reply += try client.receive(maxCount: 100) }
        #expect(reply == Array("+OK\r\n+PONG\r\n".utf8))
        client.close()
        #expect(server.stop() == 0)
    }

    /// The store hands out a valid `DEBUG SLEEP` as blocking work and answers the malformed ones at once.
    @Test func theStoreSleepsOnlyWhenAskedWell() {
        let store = RedisStore()
        func words(_ text: String) -> [[UInt8]] { text.split(separator: " ").map { Array($0.utf8) } }
        let work = store.blockingWork(words("debug sleep 0.05"))
        let started = ContinuousClock.now
        #expect(work?() == .ok)
        #expect(ContinuousClock.now - started >= .milliseconds(50), "it slept")
        for text in [
            "DEBUG SLEEP", "DEBUG SLEEP x", "DEBUG SLEEP -1", "DEBUG SLEEP 11", "DEBUG SLEEP nan", "DEBUG FOO 1",
        ] {
            #expect(store.blockingWork(words(text)) == nil, "\(text)")
            guard case .error = store.execute(words(text), now: 0).reply else {
                Issue.record("\(text): not an error")
                continue
            }
        }
        #expect(store.blockingWork(words("PING")) == nil)
    }
}
