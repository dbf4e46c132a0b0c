import Glibc
import Protocols
import Reactor
import SocketServer

/// The blocking shell around a ``Session``: sequential, threading and forking modes.
final class BlockingSessionHandler: StreamRequestHandler {
    /// How often a handler waiting for input looks at the stop flag and the idle timeout.
    static let pollInterval: Int32 = 250

    override func handle() throws {
        do {
            try serve()
        } catch let error as IOError where isPeerGone(error) {
            return  // the client reset or vanished: an end like any other
        }
    }

    private func serve() throws {
        let context = server.sessionContext
        let stats = context.stats
        stats.add(.connections)
        stats.add(.open)
        defer { stats.add(.open, -1) }
        var session = context.makeSession()
        var input = ByteBuffer()
        var output: [UInt8] = []
        var idleSince = ContinuousClock.now
        let metrics = server.metrics
        while !server.isDraining {
            guard waitReadable() else {
                if let idle = context.idleTimeout, ContinuousClock.now - idleSince >= idle {
                    return stats.closed(clientAddress, .idleTimeout, "no input for \(idle)")
                }
                continue
            }
            let chunk = try connection.receive(maxCount: 16 * 1024)
            if chunk.isEmpty { return }
            idleSince = .now
            metrics.countReceived(chunk.count)  // read past rfile, which would count it
            input.append(chunk)
            let (requests, keepOpen) = try session.consumeBlocking(&input, into: &output) { output in
                try wfile.write(output)
                output.removeAll(keepingCapacity: true)
            }
            stats.add(.requests, requests)
            if !output.isEmpty {
                try wfile.write(output)
                output.removeAll(keepingCapacity: true)
            }
            if !keepOpen { return stats.closed(clientAddress, session) }
        }
    }

    /// Waits up to the poll interval for input (or end of input); with TLS, bytes OpenSSL holds count.
    private func waitReadable() -> Bool {
        (try? connection.waitForInput(timeout: .milliseconds(Int(Self.pollInterval)))) ?? true
    }
}

/// The async shell around a ``Session``: reactor mode, on the loop thread.
final class AsyncSessionHandler: AsyncStreamRequestHandler {

    override func handle() async throws {
        do {
            try await serve()
        } catch let error as IOError where isPeerGone(error) {
            return  // the client reset or vanished: an end like any other
        }
    }

    private func serve() async throws {
        let context = server.sessionContext
        let stats = context.stats
        stats.add(.connections)
        stats.add(.open)
        defer { stats.add(.open, -1) }
        connection.readTimeout = context.idleTimeout
        var session = context.makeSession()
        var input = ByteBuffer()
        var output: [UInt8] = []
        while !server.isDraining {
            let chunk: [UInt8]
            do {
                chunk = try await rfile.read(upTo: 64 * 1024)
            } catch ReactorError.timedOut {
                return stats.closed(clientAddress, .idleTimeout, "no input for \(context.idleTimeout ?? .zero)")
            } catch ReactorError.alreadyClosed where server.isDraining {
                return  // closed by a drain (handleDrain)
            }
            if chunk.isEmpty { return }
            input.append(chunk)
            var (requests, keepOpen) = session.consume(&input, into: &output)
            while keepOpen, let work = session.takeBlockingWork() {
                // The replies before it go out first; the loop serves its other clients while the pool works.
                if !output.isEmpty {
                    try await wfile.write(output)
                    output.removeAll(keepingCapacity: true)
                }
                output += context.blockingWorkOnLoop ? work.run() : try await connection.loop.runBlocking(work.run)
                let more = session.consume(&input, into: &output)
                requests += more.requests
                keepOpen = more.keepOpen
            }
            stats.add(.requests, requests)
            if !output.isEmpty {
                try await wfile.write(output)
                output.removeAll(keepingCapacity: true)
            }
            if !keepOpen { return stats.closed(clientAddress, session) }
        }
    }

    /// A drain closes the connection once what was written is sent: every request read has its reply.
    override func handleDrain() {
        connection.close()
    }
}

/// The callback shell around a ``Session``: reactor mode with no task per connection, the cheapest.
final class CallbackSessionHandler: CallbackRequestHandler {
    private let context: ServeContext
    private var session: any Session
    private var output: [UInt8] = []
    /// Blocking work of the session's runs on the loop's pool: input arriving meanwhile waits for its reply.
    private var waiting = false
    private var waitingInput = ByteBuffer()
    private var inputEnded = false

    required init(connection: Connection, clientAddress: SocketAddress, server: BaseServer) {
        context = server.sessionContext
        session = context.makeSession()
        super.init(connection: connection, clientAddress: clientAddress, server: server)
    }

    override func setup() {
        context.stats.add(.connections)
        context.stats.add(.open)
        if let idle = context.idleTimeout { connection.idleTimeout = idle }
    }

    override func handle(_ buffer: inout ByteBuffer) {
        guard !waiting else {  // kept in order behind the blocking work's reply, within the connection's input limit
            buffer.withUnsafeReadableBytes { waitingInput.append($0) }
            buffer.clear()
            if waitingInput.readableBytes > connection.inputLimit {
                context.stats.closed(
                    clientAddress, .inputLimit, "over \(connection.inputLimit) bytes behind blocking work")
                connection.close()
            }
            return
        }
        serve(&buffer)
    }

    private func serve(_ input: inout ByteBuffer) {
        let stats = context.stats
        var (requests, keepOpen) =
            context.blockingWorkOnLoop
            ? session.consumeBlocking(&input, into: &output) { [connection] output in
                connection.write(output)
                output.removeAll(keepingCapacity: true)
            } : session.consume(&input, into: &output)
        stats.add(.requests, requests)
        if keepOpen, let work = session.takeBlockingWork() {  // on the pool: the replies before it go out now
            waiting = true
            input.withUnsafeReadableBytes { waitingInput.append($0) }
            input.clear()
            connection.loop.runBlocking(work.run) { [self] result in
                waiting = false
                guard connection.isOpen, case .success(let reply) = result else { return connection.close() }
                output += reply
                var rest = ByteBuffer()
                swap(&rest, &waitingInput)
                serve(&rest)
                if inputEnded && !waiting { connection.close() }
            }
            keepOpen = true
        }
        if !output.isEmpty {
            connection.write(output)
            output.removeAll(keepingCapacity: true)
        }
        if !keepOpen { stats.closed(clientAddress, session) }
        if !waiting && (!keepOpen || server.isDraining) { connection.close() }
    }

    /// A drain closes the connection once what was written is sent: every request read has its reply (one
    /// waiting for blocking work is written first).
    override func handleDrain() {
        if !waiting { connection.close() }
    }

    /// The client's end of input closes once every request read has its reply (those behind blocking work too).
    override func handleEndOfInput() {
        if waiting { inputEnded = true } else { connection.close() }
    }

    override func finish(error: (any Error)?) {
        let stats = context.stats
        stats.add(.open, -1)
        guard let error else { return }
        if let error = error as? IOError, isPeerGone(error) { return }
        if case ReactorError.timedOut = error {
            return stats.closed(clientAddress, .idleTimeout, "no input for \(context.idleTimeout ?? .zero)")
        }
        stats.add(.errors)
        stats.closed(clientAddress, CloseReason(error), error)
    }
}

/// Each datagram back (blocking modes).
final class EchoDatagramHandler: DatagramRequestHandler {
    override func handle() throws {
        let stats = server.sessionContext.stats
        stats.add(.requests)
        try wfile.write(packet)
    }
}

/// Each datagram back (reactor mode).
final class AsyncEchoDatagramHandler: AsyncDatagramRequestHandler {
    override func handle() async throws {
        let stats = server.sessionContext.stats
        stats.add(.requests)
        try wfile.write(packet)
    }
}

extension SharedCounters {
    /// Counts and logs a session's close, unless the client asked for it.
    func closed(_ client: SocketAddress, _ session: any Session) {
        guard let reason = CloseReason(session.closeReason) else { return }
        closed(client, reason, session.closeReason)
    }
}

/// Whether an error only means the client went away (reset, or closed while we wrote).
func isPeerGone(_ error: IOError) -> Bool {
    error.errnoCode == ECONNRESET || error.errnoCode == EPIPE
}
