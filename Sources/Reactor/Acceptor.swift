import Glibc

/// Drives a listening socket on a loop: the package's one accept path. ``Listener`` accepts its
/// connections through one, and SocketServer's servers their requests.
///
/// On each readiness it calls `accept` up to `acceptsPerWakeup` times, so one busy socket cannot
/// starve the loop. A failure that concerns one peer is skipped: `ECONNABORTED`, `EPROTO`, `EPERM`,
/// `EINTR`, and on a datagram socket the ICMP reports of an earlier send (`ECONNREFUSED`,
/// `EHOSTUNREACH`, `ENETUNREACH`). Any other failure, above all a lack of descriptors or memory (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`), pauses accepting, so a socket that stays readable never spins the loop.
/// The pause is reported once, through `onPause`. Accepting resumes after ``backoff``, or as soon as a
/// connection or datagram socket on the loop closes and frees a descriptor.
///
/// Loop-bound. Ownership: the acceptor owns its event and its retry timer, **not** the descriptor. An
/// acceptor keeps itself alive until ``close()``.
public final class Acceptor {
    /// The loop the acceptor runs on.
    public let loop: EventLoop
    /// The listening socket (not owned).
    public let fileDescriptor: Int32
    /// How long to pause after a failure, unless a descriptor frees first.
    public var backoff: Duration
    /// Whether the acceptor is waiting for connections (false while paused and after close).
    public private(set) var isAccepting = false

    private let acceptsPerWakeup: Int
    private var accept: (() throws(IOError) -> Bool)?
    private var onPause: ((IOError) -> Void)?
    private var event: LoopEvent?
    private var retryTimer: LoopTimer?

    /// Starts accepting. Call on the loop thread.
    /// - Parameters:
    ///   - fileDescriptor: a listening (or, for a datagram server, bound) socket.
    ///   - loop: the loop that watches it; the acceptor belongs to it.
    ///   - acceptsPerWakeup: most calls of `accept` per readiness.
    ///   - backoff: how long a pause lasts unless a descriptor frees first.
    ///   - accept: accepts and hands on one connection (or request); false when none is waiting.
    ///   - onPause: told of the failure that paused accepting, once per pause.
    /// - Throws: ``ReactorError/libevent(_:)`` if libevent cannot watch the descriptor.
    public init(
        fileDescriptor: Int32, on loop: EventLoop, acceptsPerWakeup: Int = 64, backoff: Duration = .milliseconds(100),
        accept: @escaping () throws(IOError) -> Bool, onPause: @escaping (IOError) -> Void
    ) throws(ReactorError) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.fileDescriptor = fileDescriptor
        self.acceptsPerWakeup = max(1, acceptsPerWakeup)
        self.backoff = backoff
        self.accept = accept
        self.onPause = onPause
        event = try LoopEvent(loop: loop, fileDescriptor: fileDescriptor, watching: .readable, persistent: true) {
            [self] _ in acceptReady()
        }
        resume()
    }

    private func acceptReady() {
        for _ in 0..<acceptsPerWakeup {
            guard isAccepting, let accept else { return }
            do {
                guard try accept() else { return }
            } catch {
                switch error.errnoCode {
                case ECONNABORTED, EPROTO, EPERM, EINTR, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH:
                    continue  // that one peer failed; others may be waiting
                default:
                    return pause(error)
                }
            }
        }
    }

    private func pause(_ error: IOError) {
        isAccepting = false
        event?.remove()
        loop.pausedAcceptors.append(self)
        // Without a timer (out of memory), the next descriptor that frees resumes accepting.
        retryTimer = try? loop.schedule(after: backoff) { [weak self] in
            self?.retryTimer = nil
            self?.resume()
        }
        onPause?(error)
    }

    /// Starts accepting again after a pause (the loop calls it when a descriptor frees).
    func resume() {
        guard let event, !isAccepting else { return }
        retryTimer?.cancel()
        retryTimer = nil
        loop.pausedAcceptors.removeAll { $0 === self }
        isAccepting = event.add()
    }

    /// Stops accepting for good; the descriptor stays open. Safe to call more than once.
    public func close() {
        loop.preconditionInEventLoop()
        guard let event else { return }
        isAccepting = false
        retryTimer?.cancel()
        retryTimer = nil
        loop.pausedAcceptors.removeAll { $0 === self }
        accept = nil
        onPause = nil
        self.event = nil
        event.free()  // last: it keeps the acceptor alive
    }
}
