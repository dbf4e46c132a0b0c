import Protocols
import Testing

@testable import sockserv

@Suite struct RedisStoreTests {
    func run(_ store: RedisStore, _ command: String, at now: UInt64 = 0) -> RESP.Reply {
        store.execute(command.split(separator: " ").map { Array($0.utf8) }, now: now).reply
    }

    @Test func commands() {
        let store = RedisStore()
        #expect(run(store, "PING") == .simple("PONG"))
        #expect(run(store, "ping hi") == .bulk(Array("hi".utf8)))
        #expect(run(store, "ECHO x") == .bulk(Array("x".utf8)))
        #expect(run(store, "SET k v") == .ok)
        #expect(run(store, "GET k") == .bulk(Array("v".utf8)))
        #expect(run(store, "GET missing") == .bulk(nil))
        #expect(run(store, "EXISTS k missing k") == .integer(2))
        #expect(run(store, "INCR n") == .integer(1))
        #expect(run(store, "INCR n") == .integer(2))
        #expect(run(store, "DECR n") == .integer(1))
        #expect(run(store, "INCR k") == .error("ERR value is not an integer or out of range"))
        #expect(run(store, "DBSIZE") == .integer(2))
        #expect(run(store, "DEL k n missing") == .integer(2))
        #expect(run(store, "SET a 1") == .ok)
        #expect(run(store, "FLUSHALL") == .ok)
        #expect(run(store, "DBSIZE") == .integer(0))
        #expect(run(store, "COMMAND") == .array([]))
        #expect(run(store, "GET") == .error("ERR wrong number of arguments for 'get' command"))
        #expect(run(store, "NOPE a b") == .error("ERR unknown command 'NOPE', with args beginning with: 'a' 'b'"))
        #expect(store.execute([Array("QUIT".utf8)], now: 0) == .init(reply: .ok, close: true))
    }

    /// Counters are stored as Redis stores them, in decimal, across the whole range and its sign.
    @Test func countersInDecimal() {
        let store = RedisStore()
        for (start, command, result) in [
            ("0", "DECR", "-1"), ("9", "INCR", "10"), ("-10", "INCR", "-9"), ("99999", "INCR", "100000"),
            ("9223372036854775806", "INCR", "9223372036854775807"),
            ("-9223372036854775807", "DECR", "-9223372036854775808"),
        ] {
            #expect(run(store, "SET n \(start)") == .ok)
            #expect(run(store, "\(command) n") == .integer(Int(result)!))
            #expect(run(store, "GET n") == .bulk(Array(result.utf8)), "\(start) \(command)")
        }
        #expect(run(store, "INCR n") == .integer(Int.min + 1))
        #expect(run(store, "SET n 9223372036854775807") == .ok)
        #expect(run(store, "INCR n") == .error("ERR increment or decrement would overflow"))
    }

    @Test func keysExpire() {
        let store = RedisStore()
        #expect(run(store, "SET a 1 EX 2", at: 1000) == .ok)
        #expect(run(store, "SET b 1 PX 10", at: 1000) == .ok)
        #expect(run(store, "GET b", at: 1009) == .bulk(Array("1".utf8)))
        #expect(run(store, "GET b", at: 1010) == .bulk(nil))
        #expect(run(store, "DBSIZE", at: 2999) == .integer(1))
        #expect(run(store, "EXISTS a", at: 3000) == .integer(0))
        #expect(run(store, "SET c 1 EX 0") == .error("ERR invalid expire time in 'set' command"))
        #expect(run(store, "SET c 1 EX 100000000000000000") == .error("ERR invalid expire time in 'set' command"))
        #expect(
            run(store, "SET c 1 PX 18446744073709551615", at: 1000)
                == .error("ERR invalid expire time in 'set' command"))
        #expect(run(store, "SET c 1 XX 5") == .error("ERR syntax error"))
        // INCR keeps a live key's expiry; an expired key counts from 0, with none.
        #expect(run(store, "SET n 41 PX 100", at: 1000) == .ok)
        #expect(run(store, "INCR n", at: 1050) == .integer(42))
        #expect(run(store, "GET n", at: 1099) == .bulk(Array("42".utf8)))
        #expect(run(store, "INCR n", at: 1100) == .integer(1))
        #expect(run(store, "GET n", at: 999_999) == .bulk(Array("1".utf8)))
    }
}
