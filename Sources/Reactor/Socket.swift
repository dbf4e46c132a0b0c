import Glibc
import Synchronization

/// A plain socket that owns its descriptor: the blocking I/O that Python's `socket` object offers,
/// for code that runs outside the loop (a handler on its own thread or in a forked child), and the
/// setup shared by listeners, datagram sockets and outbound connections.
///
/// Not loop-bound: a `Socket` may be used from any one thread at a time (``interrupt()`` from any other). Ownership:
/// the socket owns its descriptor and closes it in ``close()`` or `deinit`, unless ``detach()`` handed it over.
public final class Socket: @unchecked Sendable {
    static let stream = Int32(SOCK_STREAM.rawValue)
    static let datagram = Int32(SOCK_DGRAM.rawValue)

    /// The kind of socket; the corresponding C constants are `SOCK_STREAM` and `SOCK_DGRAM`.
    public enum Kind: Sendable {
        case stream
        case datagram
        var rawValue: Int32 { self == .stream ? Socket.stream : Socket.datagram }
    }

    /// The descriptor, or -1 once closed or detached.
    public private(set) var fileDescriptor: Int32
    /// For a bound Unix socket: the file to remove on close.
    private var unixFile: UnixSocketFile?
    /// TLS, once ``startTLS(_:serverName:)`` was called.
    var tlsSession: TLSSession?
    /// What the TLS handshake agreed on: `nil` until it completes, and always without TLS.
    public internal(set) var tlsInfo: TLSInfo?
    /// A TLS send timed out part-way through a record: nothing more may be sent.
    var tlsWriteStuck = false
    /// Orders ``interrupt()`` (from another thread) with ``close()`` and ``detach()``: 0 while open, 1 while an
    /// interrupt shuts the descriptor down, 2 once it is closed or handed over.
    private let descriptorGuard = Atomic<Int>(0)

    /// Adopts a descriptor; the socket now owns it.
    public init(adopting fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    /// Adopts a socket another process made, bound and perhaps listening: one passed by systemd's socket
    /// activation (`LISTEN_FDS`, descriptors from 3) or by a parent. Checks that the descriptor is a socket of
    /// `kind` (and, for a stream, that it listens), then makes it non-blocking and close-on-exec. The socket
    /// owns the descriptor from now on, but never removes a Unix socket file it did not bind.
    /// - Throws: ``IOError`` `ENOTSOCK` when it is not a socket, `EPROTOTYPE` when it is of another kind,
    ///   `EINVAL` when a stream socket does not listen; the descriptor is left open then.
    public convenience init(adoptingBound fileDescriptor: Int32, kind: Kind) throws(IOError) {
        let type = try Posix.socketType(fileDescriptor)
        guard type == kind.rawValue else {
            throw IOError(errnoCode: EPROTOTYPE, operation: "descriptor \(fileDescriptor) is not a \(kind) socket")
        }
        if kind == .stream, try !Posix.isListening(fileDescriptor) {
            throw IOError(errnoCode: EINVAL, operation: "descriptor \(fileDescriptor) is not listening")
        }
        try Posix.setNonBlocking(fileDescriptor)
        try Posix.setCloseOnExec(fileDescriptor)
        self.init(adopting: fileDescriptor)
    }

    /// A new blocking (or non-blocking) close-on-exec socket.
    /// - Throws: ``IOError`` if `socket(2)` fails.
    public convenience init(family: SocketAddress.Family, kind: Kind, nonBlocking: Bool = false) throws(IOError) {
        let fd = try Posix.socket(domain: family.rawValue, type: kind.rawValue, nonBlocking: nonBlocking)
        self.init(adopting: fd)
    }

    /// A socket bound to `address`, closed again if binding fails. A Unix socket file left by a dead
    /// process is replaced; a live one, or a path that is not a socket, is `EADDRINUSE`. A new Unix
    /// socket file gets `unixPermissions` (default `0o600`: only the owner may connect). The socket
    /// removes its own Unix socket file on ``close()``. An IPv6 socket is dual stack (bound to `::`, it takes
    /// IPv4 peers too, as Python's `AF_INET6` sockets do on Linux) unless `ipv6Only`.
    /// - Throws: ``IOError`` naming the failed step.
    public convenience init(
        binding address: SocketAddress, kind: Kind, nonBlocking: Bool = true, reuseAddress: Bool = false,
        reusePort: Bool = false, ipv6Only: Bool = false,
        unixPermissions: mode_t = 0o600
    ) throws(IOError) {
        let (fd, unixFile) = try Socket.bound(
            to: address, type: kind.rawValue, reuseAddress: reuseAddress, reusePort: reusePort,
            nonBlocking: nonBlocking, ipv6Only: ipv6Only,
            unixPermissions: unixPermissions)
        self.init(adopting: fd)
        self.unixFile = unixFile
    }

    deinit {
        close()
    }

    /// Closes the descriptor (and removes a Unix socket file this socket bound). Safe to call more than once.
    public func close() {
        guard fileDescriptor >= 0 else { return }
        releaseDescriptor()
        tlsSession = nil  // no close_notify here: shutdown(.write) sends it (a forked parent closes its copy unseen)
        Posix.close(fileDescriptor)
        fileDescriptor = -1
        unixFile?.remove()
        unixFile = nil
    }

    /// Leaves the Unix socket file this socket bound in place when it closes: another process serves on the same
    /// socket now (one started with it passed, as `ChildProcess.spawn(_:arguments:environment:descriptors:listenDescriptors:)` passes it).
    public func keepUnixSocketFile() {
        unixFile = nil
    }

    /// Shuts the socket down both ways (`shutdown(SHUT_RDWR)`) from any thread, while another uses it: a receive
    /// blocked on it returns the end of input, a send fails, and whoever serves it finishes. Safe against a
    /// concurrent ``close()``: the descriptor number is never reached once closed (the kernel may have given it
    /// to another file). Does nothing on a closed or detached socket.
    public func interrupt() {
        guard descriptorGuard.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged else { return }
        Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR))
        descriptorGuard.store(0, ordering: .releasing)
    }

    /// Whether ``close()`` or ``detach()`` has let the descriptor go; readable from any thread.
    public var isReleased: Bool { descriptorGuard.load(ordering: .relaxed) == 2 }

    /// Marks the descriptor as going, once no ``interrupt()`` is using it (an interrupt lasts one system call).
    private func releaseDescriptor() {
        while true {
            let (exchanged, original) = descriptorGuard.compareExchange(
                expected: 0, desired: 2, ordering: .acquiringAndReleasing)
            if exchanged || original == 2 { return }
            sched_yield()
        }
    }

    /// Gives up ownership: returns the descriptor, which this socket will no longer close.
    public func detach() -> Int32 {
        releaseDescriptor()
        let fd = fileDescriptor
        fileDescriptor = -1
        unixFile = nil
        tlsSession = nil
        return fd
    }

    /// Binds to `address`. For a Unix address, a socket file left by a dead process is replaced, a live
    /// one or a path that is not a socket is `EADDRINUSE`, the new file gets `unixPermissions` (default
    /// `0o600`), and it is removed again on ``close()``.
    public func bind(to address: SocketAddress, unixPermissions: mode_t = 0o600) throws(IOError) {
        let fd = fileDescriptor
        if address.family == .unix {
            try Socket.removeStaleSocketFile(address, type: Posix.socketType(fd))
        }
        try Posix.bind(fd, to: address)
        unixFile = address.path.map { UnixSocketFile(path: $0) }
        if let unixFile {
            do throws(IOError) {
                try Socket.setPermissions(of: unixFile, unixPermissions)
            } catch {
                unixFile.remove()
                self.unixFile = nil
                throw error
            }
        }
    }

    /// Puts a bound stream socket in listening state.
    public func listen(backlog: Int32) throws(IOError) {
        try Posix.listen(fileDescriptor, backlog: backlog)
    }

    /// Accepts one connection as a blocking (or non-blocking) close-on-exec socket.
    /// - Returns: the connection and the peer's address, or `nil` when none is waiting on a non-blocking socket.
    public func accept(nonBlocking: Bool = false) throws(IOError) -> (socket: Socket, address: SocketAddress?)? {
        try Posix.acceptWithPeer(fileDescriptor, nonBlocking: nonBlocking).map { (Socket(adopting: $0.fd), $0.peer) }
    }

    /// Accepts one connection straight into a ``Connection`` on `loop`, already reading: one `accept4` that
    /// makes it non-blocking, and no blocking ``Socket`` in between. Call on the loop thread.
    /// - Returns: the connection and the peer's address, or `nil` when none is waiting.
    /// - Throws: the ``IOError`` of a failed accept; ``ReactorError/libevent(_:)`` if libevent is out of
    ///   memory for the connection's event (the accepted descriptor is then closed).
    /// With `tls`, the connection starts its TLS handshake as a server (``Connection/whenHandshakeCompletes(_:)``).
    public func acceptConnection(on loop: EventLoop, tls: TLSContext? = nil) throws -> (
        connection: Connection, address: SocketAddress?
    )? {
        guard let (fd, peer) = try Posix.acceptWithPeer(fileDescriptor, nonBlocking: true) else { return nil }
        guard let tls else { return (try Connection(adopting: fd, on: loop, nonBlocking: true), peer) }
        return (try Connection(adopting: fd, on: loop, nonBlocking: true, tls: tls), peer)
    }

    /// Connects, blocking until connected.
    public func connect(to address: SocketAddress) throws(IOError) {
        try Posix.connectBlocking(fileDescriptor, to: address)
    }

    /// Receives up to `maxCount` bytes; empty at end of input.
    /// - Throws: ``ReactorError/timedOut`` when ``timeout`` expires first, or an ``IOError``.
    public func receive(maxCount: Int) throws -> [UInt8] {
        if let tlsSession { return try tlsReceive(tlsSession, maxCount: maxCount) }
        let fd = fileDescriptor
        return try [UInt8](unsafeUninitializedCapacity: maxCount) { buffer, count in
            guard let received = try Posix.receive(fd, buffer.baseAddress, maxCount) else {
                throw ReactorError.timedOut
            }
            count = received
        }
    }

    /// Receives up to `maxCount` bytes onto the end of `buffer`, with no array in between.
    /// - Returns: how many; 0 at end of input.
    /// - Throws: ``ReactorError/timedOut`` when ``timeout`` (or ``receiveTimeout``) expires first, or an ``IOError``.
    public func receive(into buffer: inout ByteBuffer, maxCount: Int) throws -> Int {
        buffer.reserveWritable(maxCount)
        let count: Int
        if let tlsSession {
            count = try tlsReceive(tlsSession, into: buffer.writableSpace, maxCount: maxCount)
        } else {
            guard let received = try Posix.receive(fileDescriptor, buffer.writableSpace, maxCount) else {
                throw ReactorError.timedOut
            }
            count = received
        }
        buffer.didWrite(count)
        return count
    }

    /// Receives up to `maxCount` bytes if some are waiting, without blocking even a blocking socket
    /// (`MSG_DONTWAIT`).
    /// - Returns: `nil` when nothing is waiting; empty at end of input.
    public func receiveIfReady(maxCount: Int) throws -> [UInt8]? {
        if let tlsSession { return try tlsReceiveIfReady(tlsSession, maxCount: maxCount) }
        let fd = fileDescriptor
        var received: Int?
        let bytes = try [UInt8](unsafeUninitializedCapacity: maxCount) { (buffer, count) throws(IOError) in
            received = try Posix.receive(fd, buffer.baseAddress, maxCount, dontWait: true)
            count = received ?? 0
        }
        return received.map { _ in bytes }
    }

    /// Receives up to `maxCount` bytes from the socket itself, below any TLS, if some are waiting, without blocking
    /// (`MSG_DONTWAIT`); with `peek` they stay to be read again (`MSG_PEEK`). For what a peer sends before a TLS
    /// handshake, such as a PROXY protocol header: read exactly the header's bytes, and the handshake reads the rest.
    /// - Returns: `nil` when nothing is waiting; empty at end of input.
    public func receiveBelowTLS(maxCount: Int, peek: Bool = false) throws(IOError) -> [UInt8]? {
        let fd = fileDescriptor
        var received: Int?
        let bytes = try [UInt8](unsafeUninitializedCapacity: maxCount) { (buffer, count) throws(IOError) in
            received = try Posix.receiveNow(fd, buffer.baseAddress, maxCount, peek: peek)
            count = received ?? 0
        }
        return received.map { _ in bytes }
    }

    /// Receives up to `maxCount` bytes of one datagram, with its sender.
    /// - Returns: `nil` when nothing is waiting on a non-blocking socket.
    public func receiveFrom(maxCount: Int) throws(IOError) -> (bytes: [UInt8], sender: SocketAddress?)? {
        let fd = fileDescriptor
        var received: (count: Int, sender: SocketAddress?)?
        let bytes = try [UInt8](unsafeUninitializedCapacity: maxCount) { (buffer, count) throws(IOError) in
            received = try Posix.receiveFrom(fd, buffer.baseAddress, maxCount)
            count = received?.count ?? 0
        }
        return received.map { (bytes, $0.sender) }
    }

    /// Sends all of `bytes`, looping over partial sends and signals (Python's `sendall`).
    ///
    /// ``timeout`` bounds the whole call, as it has Python's `sendall` since 3.5: a peer that reads a
    /// little at a time cannot stretch it send by send.
    /// - Throws: ``ReactorError/timedOut`` when ``timeout`` expires first (some bytes may have been sent), or
    ///   an ``IOError`` (`EPIPE`, ...).
    public func sendAll(_ bytes: UnsafeRawBufferPointer) throws {
        if let tlsSession { return try tlsSendAll(tlsSession, bytes) }
        let fd = fileDescriptor
        // With a timeout, non-blocking sends between waits for room, so that no one send outlasts the deadline.
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var offset = 0
        while offset < bytes.count {
            let rest = bytes.count - offset
            if let sent = try Posix.send(fd, bytes.baseAddress! + offset, rest, dontWait: deadline != nil) {
                offset += sent
                continue
            }
            guard try Posix.wait(fd, writable: true, until: deadline) else { throw ReactorError.timedOut }
        }
    }

    /// Sends what fits of `bytes` in the socket buffer now, without blocking even a blocking socket
    /// (`MSG_DONTWAIT`): a short refusal or goodbye before a close. Plaintext only.
    /// - Returns: how many bytes were sent; `nil` when the buffer is full.
    /// - Throws: an ``IOError`` (`EPIPE`, ...).
    public func sendIfReady(_ bytes: UnsafeRawBufferPointer) throws(IOError) -> Int? {
        precondition(tlsSession == nil, "sendIfReady(_:) is for plaintext sockets")
        guard let base = bytes.baseAddress else { return 0 }
        return try Posix.send(fileDescriptor, base, bytes.count, dontWait: true)
    }

    /// Sends `count` bytes of the open file `file` from `offset`, blocking until they are sent: with
    /// `sendfile(2)` (no copy through user space), or where that does not apply to `file`, in 64 KiB
    /// pieces read with `pread`. Memory stays bounded whatever the size.
    /// - Returns: the bytes sent: fewer than `count` only if the file ended first (it shrank meanwhile).
    /// - Throws: ``ReactorError/timedOut`` when ``timeout`` expires during a send, or an ``IOError``.
    public func sendFile(_ file: Int32, offset: Int, count: Int) throws -> Int {
        precondition(offset >= 0 && count >= 0, "sendFile(_:offset:count:) needs a non-negative offset and count")
        if tlsSession != nil { return try copyFile(file, offset: offset, count: count) }  // encrypted, so copied
        var position = offset
        var sent = 0
        while sent < count {
            let result: Int?
            do {
                result = try Posix.sendFile(
                    fileDescriptor, from: file, offset: &position, count: min(count - sent, 1 << 20))
            } catch {
                // Not a file sendfile can read (a pipe, some /proc files): copy it instead.
                guard sent == 0 && (error.errnoCode == EINVAL || error.errnoCode == ENOSYS) else { throw error }
                return try copyFile(file, offset: offset, count: count)
            }
            guard let result else { throw ReactorError.timedOut }
            if result == 0 { break }
            sent += result
        }
        return sent
    }

    /// ``sendFile(_:offset:count:)`` for files `sendfile` cannot read: `pread` and ``sendAll(_:)-(UnsafeRawBufferPointer)``.
    private func copyFile(_ file: Int32, offset: Int, count: Int) throws -> Int {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var sent = 0
        while sent < count {
            let read = try Posix.readFile(file, buffer.baseAddress!, min(count - sent, buffer.count), at: offset + sent)
            if read == 0 { break }
            try sendAll(UnsafeRawBufferPointer(rebasing: buffer[..<read]))
            sent += read
        }
        return sent
    }

    /// Sends all of `bytes` (see ``sendAll(_:)-(UnsafeRawBufferPointer)``).
    public func sendAll(_ bytes: some Sequence<UInt8>) throws {
        // Contiguous bytes (an array, a slice) are sent in place, not copied byte by byte.
        if try bytes.withContiguousStorageIfAvailable({ try sendAll(UnsafeRawBufferPointer($0)) }) != nil { return }
        try Array(bytes).withUnsafeBytes { try sendAll($0) }
    }

    /// Sends one datagram to `address`.
    public func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws(IOError) {
        try Posix.send(fileDescriptor, bytes, to: address)
    }

    /// Sends one datagram of `bytes` to `address`: Python's `sock.sendto(data, address)`.
    /// - Throws: an ``IOError``.
    public func send(_ bytes: some Sequence<UInt8>, to address: SocketAddress) throws {
        // Contiguous bytes (an array, a slice) are sent in place, not copied.
        if try bytes.withContiguousStorageIfAvailable({ try send(UnsafeRawBufferPointer($0), to: address) }) != nil {
            return
        }
        try Array(bytes).withUnsafeBytes { try send($0, to: address) }
    }

    /// Which direction ``shutdown(_:)`` closes.
    public enum Direction: Sendable {
        /// The corresponding C constant is `SHUT_RD`.
        case read
        /// The corresponding C constant is `SHUT_WR`.
        case write
        /// The corresponding C constant is `SHUT_RDWR`.
        case both
    }

    /// Shuts down one or both directions (`shutdown(2)`).
    /// With TLS, shutting down the sending side sends `close_notify` first.
    public func shutdown(_ direction: Direction) throws(IOError) {
        if direction != .read, let tlsSession { sendCloseNotify(tlsSession) }
        let how: Int32
        switch direction {
        case .read: how = Int32(SHUT_RD)
        case .write: how = Int32(SHUT_WR)
        case .both: how = Int32(SHUT_RDWR)
        }
        try Posix.shutdown(fileDescriptor, how: how)
    }

    /// The lingering close of a blocking socket whose sending side is shut down: if input the peer sent is
    /// still unread (closing now would make the kernel answer with a reset that can destroy replies the
    /// peer has not read yet), reads and drops input until every reply is delivered (the send queue is
    /// empty), the peer closes, or `timeout` passes. Returns at once when no input is waiting; otherwise
    /// blocks the calling thread for at most `timeout`. A ``Connection`` lingers the same way on its loop
    /// (``Connection/lingerTimeout``).
    public func lingerBeforeClose(timeout: Duration) {
        let fd = fileDescriptor
        guard fd >= 0, LingeringClose.isNeeded(fd, timeout: timeout) else { return }
        let deadline = ContinuousClock.now + timeout
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 1)
        defer { scratch.deallocate() }
        do {
            while ContinuousClock.now < deadline {
                while let count = try Posix.receive(fd, scratch.baseAddress, scratch.count, dontWait: true) {
                    if count == 0 { return }  // the peer closed
                }
                if try Posix.unsentByteCount(fd) == 0 { return }  // every reply delivered
                _ = try Posix.wait(fd, writable: false, timeout: .milliseconds(20))
            }
        } catch {
            return  // a reset or any other error: nothing left to protect
        }
    }

    /// ``lingerBeforeClose(timeout:)`` then ``close()`` without blocking: the linger runs on `loop`. When the
    /// peer's input is unread, the descriptor becomes a ``Connection`` on `loop` that closes the way a
    /// connection does (``Connection/lingerTimeout`` is `timeout`), discarding input until the peer closes or
    /// `timeout` passes; it is returned, closing, for the caller to watch (its delegate hears the close) or
    /// cut short. Otherwise the socket closes now and the result is `nil`. Call on the loop's thread, after
    /// ``shutdown(_:)`` of the sending side: whatever ``detach()`` leaves behind (TLS state) is dropped.
    public func closeLingering(on loop: EventLoop, timeout: Duration) -> Connection? {
        loop.preconditionInEventLoop()
        guard fileDescriptor >= 0, LingeringClose.isNeeded(fileDescriptor, timeout: timeout) else {
            close()
            return nil
        }
        // The connection closes the descriptor if it cannot be made.
        guard let connection = try? Connection(adopting: detach(), on: loop, nonBlocking: false) else { return nil }
        connection.lingerTimeout = timeout
        connection.close()
        return connection.isClosed ? nil : connection
    }

    /// How long a blocking receive or send may wait (`SO_RCVTIMEO` and `SO_SNDTIMEO`); `nil` waits forever.
    /// On a closed socket, setting it does nothing.
    public var timeout: Duration? = nil {
        didSet {
            receiveTimeoutValue = timeout
            setTimeoutOption(SO_RCVTIMEO, timeout)
            setTimeoutOption(SO_SNDTIMEO, timeout)
        }
    }

    /// How long a blocking receive may wait (`SO_RCVTIMEO` alone), for a caller that wakes up now and then to
    /// look at something else (a draining flag) while sends keep ``timeout``. Setting ``timeout`` sets this
    /// too. `nil` waits forever. On a closed socket, setting it does nothing; TLS reads ignore it.
    public var receiveTimeout: Duration? {
        get { receiveTimeoutValue }
        set {
            receiveTimeoutValue = newValue
            setTimeoutOption(SO_RCVTIMEO, newValue)
        }
    }
    private var receiveTimeoutValue: Duration?

    /// Sets `SO_RCVTIMEO` or `SO_SNDTIMEO` (`nil`: none) on an open socket. Cannot fail with a valid `timeval`:
    /// an error would be a bug here.
    private func setTimeoutOption(_ option: Int32, _ duration: Duration?) {
        guard fileDescriptor >= 0 else { return }
        let tv = duration.map { timeval($0 == .zero ? .microseconds(1) : $0) } ?? timeval(tv_sec: 0, tv_usec: 0)
        do {
            let name = option == SO_RCVTIMEO ? "SO_RCVTIMEO" : "SO_SNDTIMEO"
            try Posix.setOption(fileDescriptor, level: SOL_SOCKET, name: option, value: tv, "setsockopt \(name)")
        } catch {
            assertionFailure("\(error)")
        }
    }

    /// Sets `TCP_NODELAY` (a no-op on Unix sockets).
    public func disableNagleAlgorithm() {
        Socket.disableNagle(fileDescriptor)
    }

    /// Sets `TCP_NODELAY` on any TCP descriptor, a ``Connection``'s say (a no-op on Unix sockets).
    public static func disableNagleAlgorithm(_ fileDescriptor: Int32) {
        disableNagle(fileDescriptor)
    }

    /// Sets an integer socket option.
    public func setOption(level: Int32, name: Int32, value: Int32) throws(IOError) {
        try Posix.setOption(fileDescriptor, level: level, name: name, value: value, "setsockopt \(name)")
    }

    /// The local address (`getsockname`).
    public var localAddress: SocketAddress? { try? SocketAddress.local(of: fileDescriptor) }
    /// The peer's address (`getpeername`).
    public var peerAddress: SocketAddress? { try? SocketAddress.peer(of: fileDescriptor) }

    /// A non-blocking, close-on-exec socket bound to `address`; closed again if any step fails.
    ///
    /// For a Unix address, a socket file left by a dead process is replaced; a live one, or a file
    /// that is not a socket, is `EADDRINUSE`.
    ///
    /// An IPv6 socket is dual stack unless `ipv6Only`: bound to `::`, it takes IPv4 clients too (as
    /// IPv4-mapped addresses), whatever the machine's `net.ipv6.bindv6only`.
    static func bound(
        to address: SocketAddress, type: Int32, reuseAddress: Bool = false, reusePort: Bool = false,
        nonBlocking: Bool = true, ipv6Only: Bool = false,
        unixPermissions: mode_t = 0o600
    ) throws(IOError) -> (fd: Int32, unixFile: UnixSocketFile?) {
        let fd = try Posix.socket(domain: address.family.rawValue, type: type, nonBlocking: nonBlocking)
        do throws(IOError) {
            switch address.family {
            case .ipv4, .ipv6:
                if reuseAddress {
                    try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "setsockopt SO_REUSEADDR")
                }
                if reusePort {
                    try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1, "setsockopt SO_REUSEPORT")
                }
                if address.family == .ipv6 {
                    try Posix.setOption(
                        fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: ipv6Only ? 1 : 0,
                        "setsockopt IPV6_V6ONLY")
                }
            case .unix:
                try removeStaleSocketFile(address, type: type)
            }
            try Posix.bind(fd, to: address)
            let unixFile = address.path.map { UnixSocketFile(path: $0) }
            if let unixFile {
                do throws(IOError) {
                    try setPermissions(of: unixFile, unixPermissions)
                } catch {
                    unixFile.remove()
                    throw error
                }
            }
            return (fd, unixFile)
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    /// Removes a Unix socket file nobody listens on; throws `EADDRINUSE` if someone does or it is not a socket.
    static func removeStaleSocketFile(_ address: SocketAddress, type: Int32) throws(IOError) {
        let path = address.path!
        guard let file = try Posix.fileIdentity(path) else { return }
        guard file.isSocket else {
            throw IOError(errnoCode: EADDRINUSE, operation: "bind \(address) (the path exists and is not a socket)")
        }
        let probe = try Posix.socket(domain: AF_UNIX, type: type)
        defer { Posix.close(probe) }
        do {
            _ = try Posix.connect(probe, to: address)
        } catch  where error.errnoCode == ECONNREFUSED {
            try Posix.unlink(path)  // nobody listens: a file left by a dead process
            return
        } catch {}
        throw IOError(errnoCode: EADDRINUSE, operation: "bind \(address) (another socket is listening there)")
    }

    /// Sets the permission bits of a socket file just bound, before anyone can connect (connecting to a
    /// socket not yet listening is refused). Never follows a symlink: if the path was swapped for one, fails.
    static func setPermissions(of file: UnixSocketFile, _ mode: mode_t) throws(IOError) {
        guard file.isStillOurs else {
            throw IOError(errnoCode: EEXIST, operation: "chmod \(file.path) (the socket file was replaced)")
        }
        try Posix.setPermissions(file.path, mode)
    }

    /// Sets `TCP_NODELAY` on a TCP socket; a no-op for other families (which refuse the option).
    static func disableNagle(_ fd: Int32) {
        _ = try? Posix.setOption(fd, level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: 1, "setsockopt TCP_NODELAY")
    }
}

/// The one decision behind both lingering closes (``Socket/lingerBeforeClose(timeout:)`` and a
/// ``Connection``'s): linger only when the peer's input is still unread, as closing then sends a reset.
enum LingeringClose {
    static func isNeeded(_ fd: Int32, timeout: Duration) -> Bool {
        guard timeout > .zero, let unread = try? Posix.unreadByteCount(fd) else { return false }
        return unread > 0
    }
}

/// The socket file a Unix listener created, removed on close only if it is still the same file.
struct UnixSocketFile {
    let path: String
    private let device: UInt
    private let inode: UInt

    /// Remembers the file just bound at `path` (if it cannot be read, ``isStillOurs`` is never true and the
    /// file is left in place: better than removing another server's).
    init(path: String) {
        let file = try? Posix.fileIdentity(path)
        self.path = path
        device = file?.device ?? 0
        inode = file?.inode ?? 0
    }

    /// Whether the path still names the file this socket created (not one a later server bound).
    var isStillOurs: Bool {
        guard let file = try? Posix.fileIdentity(path) else { return false }
        return file.device == device && file.inode == inode && file.isSocket && inode != 0
    }

    /// Unlinks the path if it is still the file this socket created. Best effort: a file that cannot be
    /// removed stays, and the next bind replaces it if nobody listens there.
    func remove() {
        if isStillOurs { _ = try? Posix.unlink(path) }
    }
}
