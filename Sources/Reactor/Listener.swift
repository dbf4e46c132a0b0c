import Glibc

/// A listening TCP (IPv4 or IPv6) or Unix stream socket that accepts ``Connection``s on a loop; loop-bound.
///
/// When accepting fails for lack of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`),
/// the listener reports the error, stops accepting, and resumes after ``acceptBackoff`` or as soon as
/// a connection on its loop closes, so a full descriptor table never spins the loop.
///
/// Ownership: the listener owns its descriptor and its event, and for a Unix address the socket file,
/// which it removes on ``close()`` if that file is still its own. An open listener keeps itself alive
/// (through its event) until ``close()``.
public final class Listener {
    /// The loop the listener accepts on.
    public let loop: EventLoop
    /// The bound address; for port 0, the port the kernel chose.
    public let localAddress: SocketAddress
    /// The listening socket (owned).
    public let fileDescriptor: Int32
    /// How long to pause accepting after a resource error, unless a connection closes first.
    public var acceptBackoff: Duration = .milliseconds(100)
    /// Receives accept errors (each pause reports one). The default writes one line to standard error.
    public var onError: ((IOError) -> Void)?
    /// Whether the listener is currently accepting (false while paused and after close).
    public private(set) var isAccepting = false

    private let options: ListenOptions
    private var event: LoopEvent?
    private var onAccept: ((Connection) -> Void)?
    private var retryTimer: LoopTimer?
    private var unixFile: UnixSocketFile?

    /// Most connections accepted per readiness callback, so one busy listener cannot starve the loop.
    static let acceptsPerWakeup = 64

    /// Binds, listens and starts accepting. Call on the loop thread.
    /// - Parameters:
    ///   - address: an IP address (port 0 picks a free port) or a Unix path.
    ///   - options: backlog and socket options.
    ///   - loop: the loop that accepts; the listener belongs to it.
    ///   - onAccept: called on the loop thread with each accepted connection, which is already reading.
    /// - Throws: ``IOError`` if the socket cannot be created, bound or put in listening state (the socket is closed).
    public init(
        address: SocketAddress, options: ListenOptions = ListenOptions(), on loop: EventLoop,
        onAccept: @escaping (Connection) -> Void
    ) throws {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.options = options
        self.onAccept = onAccept
        let (fd, unixFile) = try Socket.bound(
            to: address, type: Socket.stream, reuseAddress: options.reuseAddress, reusePort: options.reusePort,
            unixPermissions: options.unixPermissions)
        do {
            try Posix.listen(fd, backlog: options.backlog)
            localAddress = try address.family == .unix ? address : SocketAddress.local(of: fd)
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
        fileDescriptor = fd
        self.unixFile = unixFile
        do {
            event = try LoopEvent(loop: loop, fileDescriptor: fd, watching: .readable, persistent: true) { [self] _ in
                acceptReady()
            }
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
        resumeAccepting()
    }

    private func acceptReady() {
        for _ in 0..<Self.acceptsPerWakeup {
            guard event != nil, isAccepting else { return }
            let fd: Int32
            do {
                guard let accepted = try Posix.accept(fileDescriptor) else { return }
                fd = accepted
            } catch {
                switch error.errnoCode {
                case ECONNABORTED, EPROTO, EPERM, EINTR:
                    continue  // that one connection failed; others may be waiting
                default:
                    return pause(error)
                }
            }
            if options.noDelay && localAddress.family != .unix { Socket.disableNagle(fd) }
            guard let connection = try? Connection(adopting: fd, on: loop, nonBlocking: true) else { continue }
            onAccept?(connection)
        }
    }

    private func pause(_ error: IOError) {
        isAccepting = false
        event?.remove()
        loop.pausedListeners.append(self)
        // Without a timer (out of memory), the next connection that closes resumes accepting.
        retryTimer = try? loop.schedule(after: acceptBackoff) { [weak self] in
            self?.retryTimer = nil
            self?.resumeAccepting()
        }
        if let onError {
            onError(error)
        } else {
            let line =
                "Reactor: accepting on \(localAddress): \(error); paused for \(acceptBackoff) or until a connection closes\n"
            reportToStandardError(line)
        }
    }

    /// Starts accepting again after a pause.
    func resumeAccepting() {
        guard let event, !isAccepting else { return }
        retryTimer?.cancel()
        retryTimer = nil
        loop.pausedListeners.removeAll { $0 === self }
        isAccepting = event.add()
    }

    /// Stops accepting, closes the socket and removes its Unix socket file. Connections already
    /// accepted stay open. Safe to call more than once.
    public func close() {
        loop.preconditionInEventLoop()
        guard let event else { return }
        event.remove()
        isAccepting = false
        retryTimer?.cancel()
        retryTimer = nil
        loop.pausedListeners.removeAll { $0 === self }
        Posix.close(fileDescriptor)
        unixFile?.remove()
        onAccept = nil
        self.event = nil
        event.free()  // last: it keeps the listener alive
    }
}
