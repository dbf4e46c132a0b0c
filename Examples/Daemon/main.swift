// A single-threaded daemon under swift-service-lifecycle: a TCP echo server, a UDP echo server and a
// timer that logs every few seconds share one reactor loop; SIGTERM or SIGINT starts a graceful shutdown that lets
// requests in progress finish. The servers log through swift-log, on standard error.
import Glibc
import Logging
import Reactor
import ServiceLifecycle
import SocketServer

let usage = """
    usage: daemon [--log-level LEVEL] [--tick SECONDS] [TCP-PORT] [UDP-PORT]
      TCP and UDP echo on 127.0.0.1 (default ports 0 and 0: free ones, logged at start) and a timer, on one loop.
      --log-level   trace, debug, info (the default: the timer's line), notice, warning, error or critical
      --tick        the timer's interval in seconds (default 5)
    """

/// Echoes each chunk as it arrives: a callback handler, no task per connection.
final class Echo: CallbackRequestHandler {
    override func handle(_ buffer: inout ByteBuffer) throws {
        connection.write(buffer.readAll())
    }
}

/// Echoes each datagram.
final class DatagramEcho: AsyncDatagramRequestHandler {
    override func handle() async throws {
        try wfile.write(packet)
    }
}

/// One line on standard error and the exit status: 64 for a usage error, 1 for a failure.
func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "daemon: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
/// The value of `option` (removed from `arguments` with it), if given; a usage error if it is not one `parse` takes.
func option<Value>(_ option: String, _ arguments: inout [String], _ parse: (String) -> Value?) -> Value? {
    guard let index = arguments.firstIndex(of: option) else { return nil }
    guard index + 1 < arguments.count, let value = parse(arguments[index + 1]) else {
        fail("bad or missing value for \(option)\n\(usage)", status: 64)
    }
    arguments.removeSubrange(index...(index + 1))
    return value
}
let level = option("--log-level", &arguments) { Logger.Level(rawValue: $0) } ?? .info
let tick = option("--tick", &arguments) { Double($0).flatMap { $0 > 0 && $0 <= 3600 ? $0 : nil } } ?? 5
let ports = arguments.compactMap { Int($0) }.filter { (0...65535).contains($0) }
guard ports.count == arguments.count, ports.count <= 2 else { fail("bad arguments\n\(usage)", status: 64) }
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    return handler
}

let logger = Logger(label: "daemon")
let loop: EventLoop
let tcp: ReactorTCPServer
let udp: ReactorUDPServer
do {
    loop = try EventLoop()
    tcp = try ReactorTCPServer(
        try SocketAddress(ipv4: "127.0.0.1", port: ports.first ?? 0), handler: Echo.self, loop: loop)
    udp = try ReactorUDPServer(
        try SocketAddress(ipv4: "127.0.0.1", port: ports.dropFirst().first ?? 0), handler: DatagramEcho.self,
        loop: loop)
} catch {
    fail("\(error)")
}
logger.info("serving", metadata: ["tcp": "\(tcp.serverAddress)", "udp": "\(udp.serverAddress)"])

nonisolated(unsafe) var ticker: LoopTimer?
let reactor = EventLoopService(
    loop: loop, servers: [tcp, udp],
    setUp: { loop in
        var ticks = 0
        ticker = try loop.scheduleRepeating(every: .milliseconds(Int(tick * 1000))) { _ in
            ticks += 1
            let active = (tcp.mixIn as? ReactorMixIn)?.activeRequests ?? 0
            logger.info("tick", metadata: ["ticks": "\(ticks)", "connections": "\(active)"])
        }
    },
    tearDown: { _ in ticker?.cancel() })

let group = ServiceGroup(
    configuration: .init(
        services: [.init(service: reactor)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
try await group.run()
logger.info("stopped")
