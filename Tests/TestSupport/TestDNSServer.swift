import Foundation
import Glibc
import Reactor
import Synchronization

/// A DNS server on a UDP port of 127.0.0.1, for tests: answers `A` and `AAAA` questions from its table
/// (names compared without case, as resolvers vary the case of what they ask), `NXDOMAIN` for names it does not
/// know, and can answer a family late or never. It runs on its own thread until ``stop()``.
public final class TestDNSServer: Sendable {
    /// What the server says about one name.
    public struct Entry: Sendable {
        public var ipv4: [String]
        public var ipv6: [String]
        /// How long to wait before answering each family; `nil` answers at once.
        public var ipv4Delay: Duration?
        public var ipv6Delay: Duration?
        /// Never answer that family's questions.
        public var dropIPv4: Bool
        public var dropIPv6: Bool

        public init(
            ipv4: [String] = [], ipv6: [String] = [], ipv4Delay: Duration? = nil, ipv6Delay: Duration? = nil,
            dropIPv4: Bool = false, dropIPv6: Bool = false
        ) {
            self.ipv4 = ipv4
            self.ipv6 = ipv6
            self.ipv4Delay = ipv4Delay
            self.ipv6Delay = ipv6Delay
            self.dropIPv4 = dropIPv4
            self.dropIPv6 = dropIPv6
        }
    }

    /// Where the server listens.
    public let address: SocketAddress
    private let descriptor: Int32
    private let entries: [String: Entry]
    private let stopped = Atomic<Bool>(false)
    private let finished = Mutex(false)
    private let questions = Mutex<[String]>([])

    /// Starts a server answering from `entries` (names without the trailing dot).
    public init(_ entries: [String: Entry]) throws {
        self.entries = Dictionary(uniqueKeysWithValues: entries.map { ($0.key.lowercased(), $0.value) })
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, operation: "socket") }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(descriptor, address, length) == 0 && getsockname(descriptor, address, &length) == 0
            }
        }
        guard bound else {
            close(descriptor)
            throw IOError(errnoCode: errno, operation: "bind")
        }
        self.descriptor = descriptor
        address = try SocketAddress(ipv4: "127.0.0.1", port: Int(UInt16(bigEndian: local.sin_port)))
        let server = self
        Thread.detachNewThread { server.serve() }
    }

    /// The questions received so far, as `NAME TYPE` (`dual.test AAAA`), lowercased, in order.
    public var received: [String] { questions.withLock { $0 } }

    /// Stops answering and closes the socket once the server's thread has seen the stop (within 20 ms).
    public func stop() {
        stopped.store(true, ordering: .releasing)
        while !finished.withLock({ $0 }) { usleep(1000) }
    }

    private func serve() {
        var packet = [UInt8](repeating: 0, count: 1500)
        while !stopped.load(ordering: .acquiring) {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 20) > 0 else { continue }
            var peer = sockaddr_storage()
            var peerLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(descriptor, &packet, packet.count, 0, $0, &peerLength)
                }
            }
            guard count > 12, let (name, type, questionEnd) = Self.question(packet[..<count]) else { continue }
            questions.withLock { $0.append("\(name) \(type == 28 ? "AAAA" : type == 1 ? "A" : String(type))") }
            let reply = answer(Array(packet[..<count]), name: name, type: type, questionEnd: questionEnd)
            guard let (bytes, delay) = reply else { continue }
            let peerBytes = withUnsafeBytes(of: peer) { Array($0) }
            let send: @Sendable () -> Void = { [descriptor, peerLength] in
                _ = peerBytes.withUnsafeBytes { raw in
                    sendto(
                        descriptor, bytes, bytes.count, 0, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                        peerLength)
                }
            }
            if let delay {
                let (seconds, attoseconds) = delay.components
                let nanos = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
                DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanos), execute: send)
            } else {
                send()
            }
        }
        close(descriptor)
        finished.withLock { $0 = true }
    }

    /// The question's name (lowercased, dotted), type, and where it ends.
    private static func question(_ packet: ArraySlice<UInt8>) -> (String, Int, Int)? {
        var labels: [String] = []
        var index = 12
        while index < packet.count {
            let length = Int(packet[index])
            index += 1
            if length == 0 { break }
            guard length < 64, index + length <= packet.count else { return nil }
            labels.append(String(decoding: packet[index..<index + length], as: UTF8.self).lowercased())
            index += length
        }
        guard index + 4 <= packet.count else { return nil }
        let type = Int(packet[index]) << 8 | Int(packet[index + 1])
        return (labels.joined(separator: "."), type, index + 4)
    }

    private func answer(_ query: [UInt8], name: String, type: Int, questionEnd: Int) -> ([UInt8], Duration?)? {
        var reply = Array(query[0..<2])
        let recursionDesired = query[2] & 0x01
        var records: [[UInt8]] = []
        var code: UInt8 = 0
        var delay: Duration?
        if let entry = entries[name] {
            if type == 1 {
                if entry.dropIPv4 { return nil }
                delay = entry.ipv4Delay
                records = entry.ipv4.map { text in
                    var bytes = [UInt8](repeating: 0, count: 4)
                    _ = inet_pton(AF_INET, text, &bytes)
                    return bytes
                }
            } else if type == 28 {
                if entry.dropIPv6 { return nil }
                delay = entry.ipv6Delay
                records = entry.ipv6.map { text in
                    var bytes = [UInt8](repeating: 0, count: 16)
                    _ = inet_pton(AF_INET6, text, &bytes)
                    return bytes
                }
            }
        } else {
            code = 3  // NXDOMAIN
        }
        reply += [0x84 | recursionDesired, 0x80 | code, 0, 1, 0, UInt8(records.count), 0, 0, 0, 0]
        reply += query[12..<questionEnd]
        for record in records {
            reply += [0xC0, 12, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1, 0, 0, 0, 60, 0, UInt8(record.count)]
            reply += record
        }
        return (reply, delay)
    }
}
