import Glibc

/// A UDP (IPv4 or IPv6) or Unix datagram socket on a loop; loop-bound.
///
/// Datagrams arrive through ``onReceive`` (callback face) or ``receive()`` (async face); while
/// neither is waiting the socket is not read and the kernel queues what arrives.
/// Ownership: the socket owns its descriptor and its event, and for a Unix address the socket file
/// (removed on ``close()`` if still its own). An open socket keeps itself alive (through its event) until ``close()``.
public final class DatagramSocket {
    /// The loop the socket belongs to.
    public let loop: EventLoop
    /// The socket (owned).
    public let fileDescriptor: Int32
    /// The bound address (for port 0, the port chosen), or `nil` for an unbound Unix socket.
    public let localAddress: SocketAddress?
    /// Called on the loop thread with each datagram, valid only during the call, and its sender.
    /// Setting it starts reading; `nil` stops.
    public var onReceive: ((UnsafeRawBufferPointer, SocketAddress?) -> Void)? {
        didSet { updateReading() }
    }

    private var event: LoopEvent?
    private var reading = false
    private var receiver: UnsafeContinuation<(bytes: [UInt8], sender: SocketAddress?), any Error>?
    private var unixFile: UnixSocketFile?

    /// Most datagrams read per readiness callback, so one busy socket cannot starve the loop.
    static let receivesPerWakeup = 32

    /// A socket bound to `address` (port 0 picks a free port; a Unix socket file gets `unixPermissions`,
    /// default `0o600`). An IPv6 socket is dual stack (on `::` it hears IPv4 senders too) unless `ipv6Only`.
    /// Call on the loop thread.
    /// - Throws: ``IOError`` if the socket cannot be created or bound (it is then closed).
    public convenience init(
        binding address: SocketAddress, reuseAddress: Bool = false, ipv6Only: Bool = false,
        unixPermissions: mode_t = 0o600, on loop: EventLoop
    ) throws {
        loop.preconditionInEventLoop()
        let (fd, unixFile) = try Socket.bound(
            to: address, type: Socket.datagram, reuseAddress: reuseAddress, ipv6Only: ipv6Only,
            unixPermissions: unixPermissions)
        let local: SocketAddress
        do {
            local = try address.family == .unix ? address : SocketAddress.local(of: fd)
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
        try self.init(fd: fd, localAddress: local, unixFile: unixFile, loop: loop)
    }

    /// An unbound socket of `family`, for sending (an IP socket gets a port on its first send).
    /// - Throws: ``IOError`` if the socket cannot be created.
    public convenience init(family: SocketAddress.Family, on loop: EventLoop) throws {
        loop.preconditionInEventLoop()
        let fd = try Posix.socket(domain: family.rawValue, type: Socket.datagram)
        try self.init(fd: fd, localAddress: nil, unixFile: nil, loop: loop)
    }

    private init(fd: Int32, localAddress: SocketAddress?, unixFile: UnixSocketFile?, loop: EventLoop) throws {
        self.loop = loop
        self.fileDescriptor = fd
        self.localAddress = localAddress
        self.unixFile = unixFile
        do {
            event = try LoopEvent(loop: loop, fileDescriptor: fd, watching: .readable, persistent: true) { [self] _ in
                readReady()
            }
        } catch {
            unixFile?.remove()
            Posix.close(fd)
            throw error
        }
    }

    /// Sends one datagram to `address`.
    /// - Throws: ``ReactorError/alreadyClosed``, or ``IOError`` (`EAGAIN` when the send buffer is full:
    ///   datagrams are never queued in user space).
    public func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws {
        loop.preconditionInEventLoop()
        guard event != nil else { throw ReactorError.alreadyClosed }
        try Posix.send(fileDescriptor, bytes, to: address)
    }

    /// Sends one datagram to `address`.
    public func send(_ bytes: some Sequence<UInt8>, to address: SocketAddress) throws {
        try Array(bytes).withUnsafeBytes { try send($0, to: address) }
    }

    /// Waits for the next datagram; call from a task on the socket's loop.
    /// - Returns: its bytes and sender (`nil` for an unbound Unix sender).
    /// - Throws: ``ReactorError/alreadyClosed``, ``ReactorError/concurrentOperation``, or an ``IOError``.
    public func receive() async throws -> (bytes: [UInt8], sender: SocketAddress?) {
        loop.preconditionInEventLoop()
        guard event != nil else { throw ReactorError.alreadyClosed }
        guard receiver == nil else { throw ReactorError.concurrentOperation }
        return try await withUnsafeThrowingContinuation { continuation in
            receiver = continuation
            updateReading()
        }
    }

    private func updateReading() {
        let wanted = event != nil && (onReceive != nil || receiver != nil)
        guard wanted != reading, let event else { return }
        reading = wanted
        if wanted { event.add() } else { event.remove() }
    }

    private func readReady() {
        for _ in 0..<Self.receivesPerWakeup {
            guard event != nil, onReceive != nil || receiver != nil else { break }
            let scratch = loop.scratch
            let result = Result { () throws(IOError) in
                try Posix.receiveFrom(fileDescriptor, scratch.baseAddress, scratch.count)
            }
            switch result {
            case .success(nil):
                break
            case .success(let (count, sender)?):
                let bytes = UnsafeRawBufferPointer(start: scratch.baseAddress, count: count)
                if let receiver {
                    self.receiver = nil
                    receiver.resume(returning: ([UInt8](bytes), sender))
                } else {
                    onReceive?(bytes, sender)
                }
                continue
            case .failure(let error):
                if let receiver {
                    self.receiver = nil
                    receiver.resume(throwing: error)
                }
                // ICMP errors (ECONNREFUSED from an earlier send) are reported once and reading goes on.
                continue
            }
            break
        }
        updateReading()
    }

    /// Closes the socket and removes its Unix socket file. A waiting ``receive()`` throws
    /// ``ReactorError/alreadyClosed``. Safe to call more than once.
    public func close() {
        loop.preconditionInEventLoop()
        guard let event else { return }
        event.remove()
        self.event = nil
        reading = false
        Posix.close(fileDescriptor)
        unixFile?.remove()
        onReceive = nil
        if let receiver {
            self.receiver = nil
            receiver.resume(throwing: ReactorError.alreadyClosed)
        }
        loop.descriptorReleased()
        event.free()  // last: it keeps the socket alive
    }
}
