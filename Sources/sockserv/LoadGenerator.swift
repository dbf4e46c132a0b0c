import Glibc
import Histogram
import Reactor

/// Where one reply ends, per protocol: the load generator's only protocol knowledge.
enum ReplyFramer {
    case fixed(Int)
    case line
    case http

    /// The length of the first complete reply in `bytes`, or `nil`.
    func replyLength(_ bytes: UnsafeRawBufferPointer) -> Int? {
        switch self {
        case .fixed(let length):
            return bytes.count >= length ? length : nil
        case .line:
            return bytes.firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }
        case .http:
            guard bytes.count >= 4 else { return nil }
            for end in 3..<bytes.count
            where bytes[end] == 10 && bytes[end - 1] == 13 && bytes[end - 2] == 10 && bytes[end - 3] == 13 {
                let length = Self.contentLength(UnsafeRawBufferPointer(rebasing: bytes[..<end]))
                return bytes.count >= end + 1 + length ? end + 1 + length : nil
            }
            return nil
        }
    }

    /// The value of a response head's `Content-Length` (0 if absent), read without copying the head.
    private static let contentLengthName = Array("\r\ncontent-length:".utf8)

    private static func contentLength(_ head: UnsafeRawBufferPointer) -> Int {
        let name = contentLengthName
        var index = 0
        while index + name.count <= head.count {
            var matches = true
            for offset in name.indices where head[index + offset] | (offset >= 2 ? 0x20 : 0) != name[offset] {
                matches = false
                break
            }
            if matches {
                var value = 0
                var position = index + name.count
                while position < head.count && head[position] == UInt8(ascii: " ") { position += 1 }
                while position < head.count, (48...57).contains(head[position]) {
                    value = value * 10 + Int(head[position] - 48)
                    position += 1
                }
                return value
            }
            index += 1
        }
        return 0
    }
}

/// A closed-loop load on one Reactor loop: each client sends a request (or a pipelined batch),
/// waits for the replies, and sends again, until the loop is told to stop.
final class LoadGenerator {
    struct Workload {
        var address: SocketAddress
        var request: [UInt8]
        var framer: ReplyFramer
        var connections: Int
        var pipeline: Int
        var connectPerRequest: Bool
        /// TLS for every connection (its handshake counts in the first request's latency); `nil` for plain TCP.
        var tls: TLSContext? = nil
        /// A second request, sent instead of `request` every `every`th time any client sends (pipeline 1).
        var slow: (request: [UInt8], every: Int)? = nil
    }

    let loop: EventLoop
    let workload: Workload
    /// Request latencies in microseconds (up to an hour), with the requests still unanswered when the run
    /// ended counted by ``finish(at:elapsed:)``.
    private(set) var histogram = Histogram<UInt64>(
        highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// Replies received.
    private(set) var completed = 0
    /// Connections that failed: refused, timed out, reset or closed by the server.
    private(set) var errors = 0
    /// Connections the generator started (established or not): every one of them counts.
    private(set) var opened = 0
    /// Connections that received at least one reply.
    private(set) var answeredClients = 0
    /// The longest any connection waited for its first reply, from the start of its connect, in nanoseconds;
    /// a connection still unanswered when the run ended counts as waiting until then.
    private(set) var slowestFirstReply: UInt64 = 0
    private var running = true
    /// Requests sent by every client, for the workload's `slow` cadence (spread over the clients, not in step).
    fileprivate var sent = 0
    private var clients: [ObjectIdentifier: Client] = [:]
    private let batch: [UInt8]

    init(loop: EventLoop, workload: Workload) {
        self.loop = loop
        self.workload = workload
        batch = Array([[UInt8]](repeating: workload.request, count: workload.pipeline).joined())
    }

    /// Starts every client; the load runs while the loop does.
    func start() {
        for _ in 0..<workload.connections { startClient() }
    }

    /// Accounts for the clients still waiting when the run ended at `end` (a ``now()`` reading), `elapsed`
    /// nanoseconds after it started. A request still unanswered counts as answered at `end`, and, as HdrHistogram's
    /// coordinated-omission correction does, also stands for the round trips its connection would have made
    /// meanwhile at the run's mean pace per connection; so a connection starved for the whole run weighs as much
    /// in the percentiles as one that was served. A connection never answered counts as a first reply at `end`.
    func finish(at end: UInt64, elapsed: UInt64) {
        let roundTrips = UInt64(completed / workload.pipeline)
        let interval = roundTrips > 0 ? elapsed * UInt64(workload.connections) / roundTrips : 0
        for client in clients.values {
            if !client.answered { slowestFirstReply = max(slowestFirstReply, end - client.startedAt) }
            // A connect still in progress is a request waiting too.
            let waiting = client.connection == nil ? 1 : client.outstanding
            guard waiting > 0 else { continue }
            let since = client.connection == nil ? client.startedAt : client.sentAt
            _ = histogram.recordCorrectedValue(
                max(1, (end - since) / 1000), count: UInt64(waiting), expectedInterval: interval / 1000)
        }
    }

    /// Stops sending and closes every connection.
    func stop() {
        running = false
        for client in clients.values { client.connection?.reset() }
        clients = [:]
    }

    private func startClient() {
        guard running else { return }
        opened += 1
        let client = Client(generator: self)
        clients[ObjectIdentifier(client)] = client
        client.connect()
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    fileprivate func record(latency nanoseconds: UInt64) {
        completed += 1
        _ = histogram.record(max(1, nanoseconds / 1000))
    }

    fileprivate func failed(_ client: Client) {
        errors += 1
        clients[ObjectIdentifier(client)] = nil
        // Keep the load closed-loop: a failed client is replaced, after a pause so a refusing server is not hammered.
        guard running else { return }
        do {
            try loop.schedule(after: .milliseconds(50)) { [weak self] in self?.startClient() }
        } catch {
            startClient()  // no timer: replace it at once
        }
    }

    fileprivate func finished(_ client: Client) {
        clients[ObjectIdentifier(client)] = nil
        startClient()
    }

    /// One virtual client.
    fileprivate final class Client: ConnectionDelegate {
        /// Weak: a connect (or TLS handshake) still in flight when its run ended completes during a later one.
        weak var owner: LoadGenerator?
        /// The generator, for the callbacks of connections it still holds (it resets them all when it stops).
        var generator: LoadGenerator { owner! }
        var connection: Connection?
        /// When the connect began.
        var startedAt: UInt64 = 0
        /// When the batch in flight was sent.
        var sentAt: UInt64 = 0
        /// Replies still expected for the batch in flight.
        var outstanding = 0
        var answered = false

        init(generator: LoadGenerator) {
            owner = generator
        }

        func connect() {
            startedAt = LoadGenerator.now()
            sentAt = startedAt
            let workload = generator.workload
            let connected: (Result<Connection, any Error>) -> Void = { [self] result in
                guard let owner, owner.running else {  // the run is over
                    if case .success(let connection) = result { connection.reset() }
                    return
                }
                switch result {
                case .success(let connection):
                    self.connection = connection
                    connection.delegate = self
                    send()
                case .failure:
                    generator.failed(self)
                }
            }
            if let tls = workload.tls {
                Connection.connect(to: workload.address, on: generator.loop, timeout: .seconds(10), tls: tls, connected)
            } else {
                Connection.connect(to: workload.address, on: generator.loop, timeout: .seconds(10), connected)
            }
        }

        func send() {
            guard generator.running, let connection else { return }
            if !generator.workload.connectPerRequest { sentAt = LoadGenerator.now() }
            outstanding = generator.workload.pipeline
            generator.sent += 1
            if let slow = generator.workload.slow, generator.sent % slow.every == 0 {
                connection.write(slow.request)
            } else {
                connection.write(generator.batch)
            }
        }

        func connection(_ connection: Connection, didReceive buffer: inout ByteBuffer) {
            let framer = generator.workload.framer
            while outstanding > 0, let length = buffer.withUnsafeReadableBytes({ framer.replyLength($0) }) {
                buffer.moveReaderIndex(forwardBy: length)
                outstanding -= 1
                generator.record(latency: LoadGenerator.now() - sentAt)
                if !answered {
                    answered = true
                    generator.answeredClients += 1
                    generator.slowestFirstReply = max(generator.slowestFirstReply, LoadGenerator.now() - startedAt)
                }
            }
            guard outstanding == 0 else { return }
            if generator.workload.connectPerRequest {
                connection.delegate = nil
                connection.close()
                self.connection = nil
                generator.finished(self)
            } else {
                send()
            }
        }

        func connectionDidReachEnd(_ connection: Connection) {
            connection.close()
        }

        func connection(_ connection: Connection, didCloseWith error: (any Error)?) {
            self.connection = nil
            if generator.running { generator.failed(self) }
        }
    }
}
