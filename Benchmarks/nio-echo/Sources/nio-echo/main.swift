import NIOCore
import NIOPosix

// SwiftNIO echo server on ONE event loop thread. Usage: nio-echo PORT   (PORT may be 0)
// Binds 127.0.0.1:PORT, prints "listening on 127.0.0.1:<port>", echoes every byte back on each connection.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes every inbound buffer straight back; flushes once per read burst, so one wakeup's reads leave in one write.
/// Stateless, hence Sendable.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)  // e.g. reset by the peer: drop the connection quietly
    }
}

guard CommandLine.arguments.count > 1, let port = Int(CommandLine.arguments[1]) else {
    print("usage: nio-echo PORT")
    exit(2)
}

// SIGTERM ends the process at once (its default action, restored in case it was inherited as ignored);
// NIO ignores SIGPIPE itself.
signal(SIGTERM, SIG_DFL)

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }

let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("listening on 127.0.0.1:\(channel.localAddress?.port ?? port)")
fflush(nil)  // flushes stdout without naming the C global, which Swift 6 rejects as shared mutable state

// Never returns: nothing closes the server channel, the process ends on SIGTERM.
try channel.closeFuture.wait()
