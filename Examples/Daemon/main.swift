// A single-threaded daemon under swift-service-lifecycle: a TCP echo server, a UDP echo server and a
// once-a-second timer share one reactor loop; SIGTERM or SIGINT starts a graceful shutdown that lets
// requests in progress finish. The servers log through swift-log.
//
// Usage: daemon [TCP-PORT] [UDP-PORT]   (default 0 and 0: free ports, printed at start)
import Logging
import Reactor
import ServiceLifecycle
import SocketServer

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

let arguments = CommandLine.arguments.dropFirst().compactMap(Int.init)
let logger = Logger(label: "daemon")
let loop = try EventLoop()
let tcp = try ReactorTCPServer(
    try SocketAddress(ipv4: "127.0.0.1", port: arguments.first ?? 0), handler: Echo.self, loop: loop)
let udp = try ReactorUDPServer(
    try SocketAddress(ipv4: "127.0.0.1", port: arguments.dropFirst().first ?? 0), handler: DatagramEcho.self, loop: loop
)
logger.info("serving", metadata: ["tcp": "\(tcp.serverAddress)", "udp": "\(udp.serverAddress)"])

nonisolated(unsafe) var ticker: LoopTimer?
let reactor = EventLoopService(
    loop: loop, servers: [tcp, udp],
    setUp: { loop in
        var ticks = 0
        ticker = try loop.scheduleRepeating(every: .seconds(1)) { _ in
            ticks += 1
            let active = (tcp.mixIn as? ReactorMixIn)?.activeRequests ?? 0
            logger.debug("tick", metadata: ["ticks": "\(ticks)", "connections": "\(active)"])
        }
    },
    tearDown: { _ in ticker?.cancel() })

let group = ServiceGroup(
    configuration: .init(
        services: [.init(service: reactor)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
try await group.run()
logger.info("stopped")
