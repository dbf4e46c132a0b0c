import Glibc

/// A stream connection (TCP or Unix) on an ``EventLoop``, with two faces over the same object:
/// callbacks through a ``ConnectionDelegate``, and `async` reads and writes
/// (``readLine(maxLength:strippingNewline:)``, `write(_:)`...).
///
/// Built on libevent's plain events with buffers of its own: a readable socket is read once into
/// the loop's scratch space and handed to the delegate or a waiting reader from there; only bytes
/// left unconsumed are copied into the connection's own buffer, so an idle connection holds none.
/// Writes go to the socket at once and are buffered only when the socket is full.
///
/// With TLS (``init(adopting:on:tls:serverName:)``, ``connect(to:on:timeout:tls:serverName:_:)``, a
/// ``Listener`` with a ``TLSContext``) both faces stay the same and see plaintext: the handshake, every
/// read and write, and `close_notify` run on the loop, driven by readiness in either direction (a read
/// may wait for the socket to be writable, a write for it to be readable). Watermarks, timeouts and
/// half-close keep their meaning; byte counts are plaintext. Writes made before the handshake completes
/// are sent after it; the handshake is bounded by its own timeout (``TLSConfiguration/handshakeTimeout``).
///
/// Loop-bound. Ownership: the connection owns its descriptor, its events and its TLS state and frees them
/// when it closes; an open connection keeps itself alive (through its events) until it closes.
///
/// Its stored properties are `@exclusivity(unchecked)`: only the loop's thread touches them, and the
/// run-time check of every access to a class property cost 4-5% of a keep-alive GET's CPU (perf, `sockserv
/// serve http`); the compiler's static checks still hold. HTTP's handler and connection classes do the same.
public final class Connection {
    /// The loop the connection belongs to.
    public let loop: EventLoop
    /// The socket; owned, closed when the connection closes.
    public let fileDescriptor: Int32

    /// The callback face; set it before the accept or connect callback returns.
    @exclusivity(unchecked) public var delegate: (any ConnectionDelegate)? {
        didSet { updateReading() }
    }

    /// Output above this many bytes suspends async writers and pauses a delegate's reading (backpressure).
    @exclusivity(unchecked) public var highWatermark = 64 * 1024
    /// Output at or below this many bytes resumes writers and reading.
    @exclusivity(unchecked) public var lowWatermark = 16 * 1024
    /// With no delegate and no waiting reader, reading pauses once this many bytes are buffered.
    @exclusivity(unchecked) public var inputLimit = 64 * 1024

    /// Closes the connection with ``ReactorError/timedOut`` after this long with no byte read or written.
    @exclusivity(unchecked) public var idleTimeout: Duration? {
        didSet {
            loop.preconditionInEventLoop()
            lastActivity = Connection.now()
            updateDeadlineTimer()
        }
    }
    /// An async read waiting longer than this throws ``ReactorError/timedOut``; the connection stays open.
    @exclusivity(unchecked) public var readTimeout: Duration?
    /// Output that cannot drain for this long (a suspended writer, ``flush()``, a graceful ``close()``)
    /// closes the connection with ``ReactorError/timedOut``.
    @exclusivity(unchecked) public var writeTimeout: Duration?
    /// How long a graceful ``close()`` of a connection with unread input waits, once everything
    /// written is sent and a FIN follows it, for the peer to close too, reading and discarding what it
    /// still sends ("lingering close", as Apache does): closing a socket with unread input makes the
    /// kernel answer with a reset that can destroy replies the peer has not read yet. Without unread
    /// input the close is immediate. Default 2 s; zero never lingers.
    @exclusivity(unchecked) public var lingerTimeout: Duration = .seconds(2)

    enum State { case open, closing, closed }
    @exclusivity(unchecked) private(set) var state = State.open
    /// The peer closed its sending side.
    @exclusivity(unchecked) public internal(set) var inputClosed = false
    @exclusivity(unchecked) var outputShutdown = OutputShutdown.open
    enum OutputShutdown { case open, requested, done }

    @exclusivity(unchecked) var input = ByteBuffer()
    /// Output waiting for the socket, in order: `output`, then each queued file region followed by the
    /// bytes written after it. Without files (the common case) `output` is the whole queue.
    @exclusivity(unchecked) var output = ByteBuffer()
    @exclusivity(unchecked) var queuedFiles: [QueuedFile] = []
    @exclusivity(unchecked) private(set) var readEvent: LoopEvent?
    @exclusivity(unchecked) private var writeEvent: LoopEvent?
    @exclusivity(unchecked) private var timerEvent: LoopEvent?
    @exclusivity(unchecked) private(set) var reading = false
    @exclusivity(unchecked) private var writing = false
    @exclusivity(unchecked) private var pausedForOutput = false
    @exclusivity(unchecked) private var pausedByOwner = false
    /// Closing: everything was sent, the FIN too; reading only to discard until the peer closes.
    @exclusivity(unchecked) private var lingering = false
    @exclusivity(unchecked) private var lingerDeadline: UInt64?

    @exclusivity(unchecked) var reader: PendingRead?
    @exclusivity(unchecked) var writer: UnsafeContinuation<Void, any Error>?
    @exclusivity(unchecked) var flushWaiters: [UnsafeContinuation<Void, any Error>] = []
    @exclusivity(unchecked) var lastActivity: UInt64 = 0
    @exclusivity(unchecked) var readDeadline: UInt64?
    @exclusivity(unchecked) var writeDeadline: UInt64?

    /// The error the connection closed with, if it closed abnormally.
    @exclusivity(unchecked) public private(set) var closeError: (any Error)?

    /// What moves the bytes: system calls on the socket, or OpenSSL over it (``TLSTransport``, which keeps
    /// the handshake's and each direction's state). Plain once closed: OpenSSL's state is freed then.
    @exclusivity(unchecked) var transport = Transport.plain
    /// Whether the connection was made with TLS.
    public let usesTLS: Bool
    /// What the TLS handshake agreed on: `nil` until it completes, and always without TLS.
    @exclusivity(unchecked) public internal(set) var tlsInfo: TLSInfo?
    /// Whether the peer ended its input with TLS's `close_notify`. A TCP close without one also ends the
    /// input (see ``TLSContext``); a protocol that does not frame its messages can tell a truncation by this.
    @exclusivity(unchecked) public internal(set) var receivedCloseNotify = false

    /// Adopts a connected stream socket: makes it non-blocking and starts reading. Call on the loop thread.
    /// - Throws: ``IOError`` if the descriptor cannot be made non-blocking (it is then closed),
    ///   ``ReactorError/libevent(_:)`` if libevent rejects it.
    public convenience init(adopting fileDescriptor: Int32, on loop: EventLoop) throws {
        try self.init(adopting: fileDescriptor, on: loop, nonBlocking: false)
    }

    /// Adopts a connected stream socket and starts TLS on it, as `context`'s role says: a server waits for
    /// the client's hello, a client sends its own on the loop's next pass. Call on the loop thread.
    /// - Parameters:
    ///   - fileDescriptor: a connected TCP or Unix stream socket; the connection owns it.
    ///   - loop: the loop the connection belongs to.
    ///   - context: the TLS context; its role says which side of the handshake this is.
    ///   - serverName: a client's: sent as SNI and checked against the server's certificate.
    /// - Throws: as `init(adopting:on:)`, or ``TLSError/configuration(_:)`` if OpenSSL cannot set the
    ///   connection up (the descriptor is then closed).
    public convenience init(
        adopting fileDescriptor: Int32, on loop: EventLoop, tls context: TLSContext, serverName: String? = nil
    )
        throws
    {
        try self.init(adopting: fileDescriptor, on: loop, nonBlocking: false, tls: context, serverName: serverName)
    }

    /// Every TLS connection's start: OpenSSL's state for the descriptor, then the connection; on any failure
    /// the descriptor is closed (once).
    convenience init(
        adopting fileDescriptor: Int32, on loop: EventLoop, nonBlocking: Bool, tls context: TLSContext,
        serverName: String? = nil
    ) throws {
        let session: TLSSession
        do {
            session = try TLSSession(context: context, fileDescriptor: fileDescriptor, serverName: serverName)
        } catch {
            Posix.close(fileDescriptor)
            throw error
        }
        try self.init(adopting: fileDescriptor, on: loop, nonBlocking: nonBlocking, tls: session)
    }

    /// Adopts a connected ``Socket``, blocking or not, with its TLS state if it has one (a handshake begun
    /// or completed on it goes on here). The socket gives up its descriptor. Call on the loop thread.
    /// - Throws: as `init(adopting:on:)` with a descriptor.
    public convenience init(adopting socket: Socket, on loop: EventLoop) throws {
        let session = socket.tlsSession
        try self.init(adopting: socket.detach(), on: loop, nonBlocking: false, tls: session)
    }

    init(adopting fileDescriptor: Int32, on loop: EventLoop, nonBlocking: Bool, tls session: TLSSession? = nil) throws {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.fileDescriptor = fileDescriptor
        if let session { transport = .tls(TLSTransport(session: session)) }
        self.usesTLS = session != nil
        do {
            if !nonBlocking { try Posix.setNonBlocking(fileDescriptor) }
        } catch {
            Posix.close(fileDescriptor)
            state = .closed
            throw error
        }
        do {
            readEvent = try LoopEvent(
                loop: loop, fileDescriptor: fileDescriptor, watching: .readable, persistent: true
            ) { [self] _ in handleReadable() }
        } catch {
            Posix.close(fileDescriptor)
            state = .closed
            throw error
        }
        if case .tls(let tls) = transport { startTLS(tls) }
        updateReading()
    }

    deinit {
        // Only reached once closed (an open connection's events retain it), so the events are freed already.
        assert(state == .closed)
    }

    /// Whether the connection is open (not closing or closed).
    public var isOpen: Bool { state == .open }
    /// Whether the connection has closed completely: descriptor released, delegate told.
    public var isClosed: Bool { state == .closed }

    /// The peer's address (`getpeername`).
    public var remoteAddress: SocketAddress? { try? SocketAddress.peer(of: fileDescriptor) }
    /// The local address (`getsockname`).
    public var localAddress: SocketAddress? { try? SocketAddress.local(of: fileDescriptor) }

    /// Bytes read from the socket so far.
    @exclusivity(unchecked) public internal(set) var bytesReceived = 0
    /// Bytes the kernel has accepted for sending so far.
    @exclusivity(unchecked) public internal(set) var bytesSent = 0

    /// Bytes written and not yet accepted by the kernel, the unsent parts of file regions included.
    public var bufferedOutputBytes: Int {
        var count = output.readableBytes
        for file in queuedFiles { count += file.end - file.position + file.after.readableBytes }
        return count
    }

    /// Whether nothing waits to be sent.
    var outputIsEmpty: Bool { output.isEmpty && queuedFiles.isEmpty }

    // MARK: Reading

    private func handleReadable() {
        guard state != .closed else { return }
        if lingering { return discardInput() }
        if idleTimeout != nil { lastActivity = Connection.now() }
        if case .tls(let tls) = transport { return tlsReadable(tls) }
        receive()
    }

    /// Why a read stopped.
    enum InputStop {
        /// Nothing more without the socket becoming readable again.
        case drained
        /// The space filled up: more may be waiting (with TLS, inside OpenSSL, where the socket cannot say so).
        case spaceFull
        /// The peer closed its sending side.
        case end
        /// TLS: reading must wait for the socket to be writable (OpenSSL has to send first).
        case wantsWrite
        case failed(any Error)
    }

    /// Reads what is there and delivers it: into the loop's scratch space when nothing waits unconsumed (the
    /// common case: nothing is copied unless left unconsumed), else straight after the bytes waiting, into
    /// the connection's own buffer. Then handles the end of input or an error.
    func receive() {
        let usesScratch = input.isEmpty
        var buffer: ByteBuffer
        let count: Int
        let stop: InputStop
        if usesScratch {
            (count, stop) = readInput(into: loop.scratch.baseAddress!, capacity: loop.scratch.count)
            buffer = ByteBuffer(viewing: loop.scratch.baseAddress!, count: count)
        } else {
            buffer = input.take()
            buffer.reserveWritable(16 * 1024)
            (count, stop) = readInput(into: buffer.writableSpace, capacity: buffer.writableBytes)
            buffer.didWrite(count)
        }
        if count > 0 {
            bytesReceived &+= count
            deliver(&buffer)
            // The scratch space is the loop's: a view moved out of the callback would see other connections' bytes.
            if usesScratch {
                precondition(
                    buffer.isOwnedOrViews(loop.scratch.baseAddress!),
                    "a ConnectionDelegate moved the buffer out of connection(_:didReceive:); copy the bytes (readAll()) instead"
                )
            }
            guard state != .closed else { return }
            input = buffer.takeOwned()
        } else if !usesScratch {
            input = buffer
        }
        switch stop {
        case .drained:
            if count == 0 { return }  // nothing arrived: nothing changed
        case .spaceFull:
            break
        case .end:
            if case .tls(let tls) = transport { receivedCloseNotify = tls.session.receivedCloseNotify }
            guard state == .open else {  // closed by the delegate meanwhile: no end to report
                inputClosed = true
                return updateReading()
            }
            return handleEndOfInput()
        case .wantsWrite:  // TLS: the transport marked its read as waiting
            setWriting(true)  // reading pauses meanwhile (updateReading), so a readable socket cannot spin the loop
        case .failed(let error):
            return finishClose(error)
        }
        updateReading()
        // More inside OpenSSL: another pass, as the socket may not say so. Only when the space filled up, never
        // after OpenSSL asked the socket for more: part of a record waits there, and only the socket can complete
        // it (activating again would spin the loop).
        if case .spaceFull = stop, reading && wantsInput && transport.hasPendingInput {
            readEvent?.activate(.readable)
        }
    }

    /// One read from the socket, or with TLS what OpenSSL can decrypt without waiting.
    @inline(__always)
    private func readInput(into space: UnsafeMutableRawPointer, capacity: Int) -> (Int, InputStop) {
        if case .tls(let tls) = transport { return tls.read(into: space, capacity: capacity) }
        do {
            guard let count = try Posix.read(fileDescriptor, space, capacity) else { return (0, .drained) }
            return (count, count == 0 ? .end : .drained)  // level-triggered: a full read is simply read again
        } catch {
            return (0, .failed(error))
        }
    }

    func deliver(_ buffer: inout ByteBuffer) {
        if let delegate {
            delegate.connection(self, didReceive: &buffer)
        } else {
            completeReader(&buffer)
        }
    }

    func handleEndOfInput() {
        inputClosed = true
        updateReading()
        if let delegate {
            delegate.connectionDidReachEnd(self)
        } else if reader != nil {
            var buffer = input.take()
            completeReader(&buffer)
            if state != .closed { input = buffer }
        }
    }

    /// Lingering: reads and drops what the peer still sends; its end (or an error) completes the close.
    private func discardInput() {
        do {
            guard let count = try Posix.read(fileDescriptor, loop.scratch.baseAddress!, loop.scratch.count) else {
                return
            }
            if count == 0 { finishClose(nil) }
        } catch {
            finishClose(nil)  // a reset while lingering ends an orderly close all the same
        }
    }

    /// Whether input is wanted: someone will consume what arrives and nothing says to pause. Output
    /// above the high watermark pauses a delegate's input, not a waiting async read: a task that asked
    /// for bytes gets them while another task's write waits, or a full-duplex peer (an echo server, say)
    /// and this connection would each wait for the other to read.
    var wantsInput: Bool {
        state == .open && !inputClosed && !pausedByOwner
            && (!pausedForOutput || reader != nil || !pausesReadingForOutput)
            && (delegate != nil || reader != nil || input.readableBytes < inputLimit)
    }

    /// Whether a delegate's reading pauses while this connection's own output is above ``highWatermark`` (default
    /// true: a peer that sends without reading cannot grow the output without bound). A proxy turns it off on both
    /// of its connections and pauses each by the other's output instead (``pauseReading()``): paused by its own
    /// output too, a side would stop reading the very peer that waits for it to read, and neither would move.
    /// ``ConnectionDelegate/connectionDidBecomeWritable(_:)`` is called either way.
    @exclusivity(unchecked) public var pausesReadingForOutput = true {
        didSet { updateReading() }
    }

    /// Stops reading from the socket until ``resumeReading()``: what the peer sends waits in the kernel, whose
    /// buffers fill until TCP tells the peer to wait. This is backpressure from elsewhere, e.g. a proxy whose other
    /// side reads slowly. Bytes already received stay for later; the end of input is seen after the resume. A read
    /// the async face is waiting in waits too. The TLS handshake still reads.
    public func pauseReading() {
        loop.preconditionInEventLoop()
        pausedByOwner = true
        updateReading()
    }

    /// Reads again after ``pauseReading()``; bytes that arrived meanwhile are delivered on the loop's next pass.
    public func resumeReading() {
        loop.preconditionInEventLoop()
        guard pausedByOwner else { return }
        pausedByOwner = false
        updateReading()
    }

    /// Whether ``pauseReading()`` is in force.
    public var isReadingPaused: Bool { pausedByOwner }

    /// Reads while input is wanted, to discard while lingering, and with TLS while the handshake runs
    /// or a write waits for the socket to be readable.
    func updateReading() {
        var wanted = lingering || wantsInput
        if case .tls(let tls) = transport, state != .closed, !lingering { wanted = tls.watchesReadable(wanted) }
        guard wanted != reading, let readEvent else { return }
        reading = wanted
        if wanted {
            readEvent.add()
            // Bytes OpenSSL already holds make the socket no more readable: look at them on the next pass.
            if transport.hasPendingInput { readEvent.activate(.readable) }
        } else {
            readEvent.remove()
        }
    }

    // MARK: Writing

    /// Sends `bytes`, buffering what the socket does not take at once. Writes after ``close()`` or
    /// ``shutdownOutput()`` are discarded; a failed send closes the connection with the error.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.preconditionInEventLoop()
        enqueue(bytes)
    }

    /// Sends `bytes` (see `write(_:)`).
    public func write(_ bytes: some Sequence<UInt8>) {
        loop.preconditionInEventLoop()
        enqueue(bytes)
    }

    /// Sends the UTF-8 bytes of `string`.
    public func write(_ string: String) {
        loop.preconditionInEventLoop()
        enqueue(string.utf8)
    }

    func enqueue(_ bytes: some Sequence<UInt8>) {
        if bytes.withContiguousStorageIfAvailable({ enqueue(UnsafeRawBufferPointer($0)) }) == nil {
            Array(bytes).withUnsafeBytes { enqueue($0) }
        }
    }

    func enqueue(_ bytes: UnsafeRawBufferPointer) {
        guard state == .open, outputShutdown == .open, bytes.count > 0 else { return }
        if idleTimeout != nil { lastActivity = Connection.now() }
        if !queuedFiles.isEmpty {  // after a file still being sent
            queuedFiles[queuedFiles.count - 1].after.append(bytes)
            return outputQueued()
        }
        var sent = 0
        if output.isEmpty {
            do {
                sent = try transmit(bytes)
            } catch {
                return finishClose(error)
            }
            bytesSent &+= sent
            if sent == bytes.count { return }
        }
        output.append(UnsafeRawBufferPointer(rebasing: bytes[sent...]))
        outputQueued()
    }

    /// Output was queued: pause reading above the high watermark, and send once the socket is writable.
    private func outputQueued() {
        if !pausedForOutput && bufferedOutputBytes > highWatermark {
            pausedForOutput = true
            updateReading()
        }
        if outputMayProceed { setWriting(true) }
    }

    /// Sends `region` of its file after everything written before, as the socket drains: with
    /// `sendfile(2)` on a plain socket (the bytes go from the page cache to the socket, never through
    /// memory of ours), at most 1 MiB per pass through the loop so one large download never delays
    /// another connection; with TLS, or for a file `sendfile` cannot read, in pieces through the loop's
    /// scratch space. The region's unsent part counts in ``bufferedOutputBytes`` (so a delegate's reading
    /// pauses above the high watermark) and keeps the file open until sent. If the file ends before the
    /// region does (it shrank), the connection closes with ``ReactorError/fileShrank``. Writes after
    /// ``close()`` or ``shutdownOutput()`` are discarded.
    public func write(file region: FileRegion) {
        loop.preconditionInEventLoop()
        enqueue(file: region)
    }

    func enqueue(file region: FileRegion, completion: ((Result<Int, any Error>) -> Void)? = nil) {
        guard state == .open, outputShutdown == .open, region.count > 0 else { return }
        if idleTimeout != nil { lastActivity = Connection.now() }
        queuedFiles.append(QueuedFile(region: region, completion: completion))
        // Nothing before it and no TLS: straight to the socket, the common case for a small file.
        if queuedFiles.count == 1 && output.isEmpty && transport.sendsFiles {
            guard sendQueuedFile() else { return }
            if queuedFiles.isEmpty { return }
        }
        outputQueued()
    }

    /// A file region in the output, how far it has been sent, and the bytes written after it.
    final class QueuedFile {
        let region: FileRegion
        var position: Int
        let end: Int
        /// `sendfile(2)` does not apply (the file is not one it can read, or TLS must encrypt it):
        /// read it into the loop's scratch space and send that.
        var copying = false
        var after = ByteBuffer()
        /// Told how many bytes were sent when the region is done, or why not. With it, a file that ends
        /// early (or cannot be read) ends only the region, and the connection goes on; without it, the
        /// connection closes.
        let completion: ((Result<Int, any Error>) -> Void)?

        init(region: FileRegion, completion: ((Result<Int, any Error>) -> Void)? = nil) {
            self.region = region
            position = region.offset
            end = region.offset + region.count
            self.completion = completion
        }
    }

    /// The most one pass through the loop sends of a file: one large download must not delay the
    /// loop's other connections.
    static let fileSliceBytes = 1 << 20

    /// Sends the first queued file for one pass (while the socket takes it, at most ``fileSliceBytes``),
    /// with `sendfile(2)` or, where that does not apply, through the scratch space (and OpenSSL with
    /// TLS). A file done makes the bytes written after it the output. Must be called with `output` empty.
    /// - Returns: false if the connection closed (a failed send, a file that shrank).
    func sendQueuedFile() -> Bool {
        var budget = Self.fileSliceBytes
        while budget > 0, let file = queuedFiles.first {
            if file.copying || !transport.sendsFiles {
                let read: Int
                do {
                    read = try Posix.readFile(
                        file.region.fileDescriptor, loop.scratch.baseAddress!,
                        min(file.end - file.position, loop.scratch.count), at: file.position)
                } catch {
                    if file.completion != nil {
                        endQueuedFile(file, .failure(error))
                        continue
                    }
                    finishClose(error)
                    return false
                }
                if read == 0 {
                    guard fileEndedEarly(file) else { return false }
                    if !output.isEmpty { return true }
                    continue
                }
                file.position += read
                budget -= read
                let bytes = UnsafeRawBufferPointer(start: loop.scratch.baseAddress!, count: read)
                let sent: Int
                do {
                    sent = try transmit(bytes)
                } catch {
                    finishClose(error)
                    return false
                }
                bytesSent &+= sent
                if sent < read { output.append(UnsafeRawBufferPointer(rebasing: bytes[sent...])) }
            } else {
                let result: Int?
                do {
                    result = try Posix.sendFile(
                        fileDescriptor, from: file.region.fileDescriptor, offset: &file.position,
                        count: min(file.end - file.position, budget))
                } catch {
                    if file.position == file.region.offset && (error.errnoCode == EINVAL || error.errnoCode == ENOSYS) {
                        file.copying = true  // a pipe, some /proc files: sendfile cannot read them
                        continue
                    }
                    finishClose(error)
                    return false
                }
                guard let result else { return true }  // the socket is full
                if result == 0 {
                    guard fileEndedEarly(file) else { return false }
                    if !output.isEmpty { return true }
                    continue
                }
                bytesSent &+= result
                budget -= result
            }
            wroteProgress()
            if file.position < file.end {
                if !output.isEmpty { return true }  // the socket took only part of a copied piece
                continue
            }
            endQueuedFile(file, .success(file.region.count))
            if !output.isEmpty { return true }
        }
        return true
    }

    /// The first queued file ended before its region did (it shrank): whoever waits for it is told how much
    /// was sent, or without a waiter the connection closes with ``ReactorError/fileShrank``.
    /// - Returns: false if the connection closed.
    private func fileEndedEarly(_ file: QueuedFile) -> Bool {
        guard file.completion != nil else {
            finishClose(ReactorError.fileShrank)
            return false
        }
        endQueuedFile(file, .success(file.position - file.region.offset))
        return true
    }

    /// The first queued file is done (or ended early): the bytes written after it come next, and whoever
    /// waits for it is told.
    private func endQueuedFile(_ file: QueuedFile, _ result: Result<Int, any Error>) {
        queuedFiles.removeFirst()
        if output.isEmpty {
            output = file.after.take()
        } else {
            file.after.withUnsafeReadableBytes { output.append($0) }
        }
        file.completion?(result)
    }

    /// Sends `bytes` now, through OpenSSL with TLS: what the socket takes without waiting.
    @inline(__always)
    func transmit(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard case .tls(let tls) = transport else {
            return try Posix.send(fileDescriptor, bytes.baseAddress!, bytes.count) ?? 0
        }
        let sent = try tls.write(bytes)
        if tls.writeWaitsForRead { updateReading() }  // OpenSSL must receive before it can send on
        return sent
    }

    /// Whether buffered output can be sent once the socket is writable: always without TLS; with it,
    /// once the handshake has completed, unless a write waits for the socket to be readable.
    var outputMayProceed: Bool {
        guard case .tls(let tls) = transport else { return true }
        return tls.mayWrite
    }

    func setWriting(_ wanted: Bool) {
        guard wanted != writing else { return }
        if writeEvent == nil {
            do {
                writeEvent = try LoopEvent(
                    loop: loop, fileDescriptor: fileDescriptor, watching: .writable, persistent: true
                ) { [self] _ in handleWritable() }
            } catch {
                return finishClose(error)
            }
        }
        writing = wanted
        if wanted { writeEvent?.add() } else { writeEvent?.remove() }
    }

    private func handleWritable() {
        guard state != .closed else { return }
        if idleTimeout != nil { lastActivity = Connection.now() }
        if case .tls(let tls) = transport { return tlsWritable(tls) }
        if !output.isEmpty {
            do {
                let sent = try output.withUnsafeReadableBytes { (bytes) throws(IOError) -> Int? in
                    try Posix.send(fileDescriptor, bytes.baseAddress!, bytes.count)
                }
                if let sent {
                    output.moveReaderIndex(forwardBy: sent)
                    bytesSent &+= sent
                    wroteProgress()
                }
            } catch {
                return finishClose(error)
            }
        } else if !queuedFiles.isEmpty {
            guard sendQueuedFile() else { return }
        }
        outputProgressed()  // also when nothing was queued: someone waits for the socket to drain (sendFile)
    }

    /// After bytes left the output buffer: wake writers, resume reading, finish a pending shutdown or close.
    func outputProgressed() {
        if output.isEmpty && !queuedFiles.isEmpty {
            output.clear()
            if outputMayProceed { setWriting(true) }  // a file's turn
        } else if output.isEmpty {
            output.clear()
            setWriting(transport.readWaitsForWrite)  // a TLS read may still need the socket to drain
            let waiters = flushWaiters
            flushWaiters = []
            for waiter in waiters { waiter.resume() }
            if outputShutdown == .requested {
                guard closeNotify() else { return }  // retried once the socket drains
                outputShutdown = .done
                try? Posix.shutdown(fileDescriptor, how: Int32(SHUT_WR))
            }
            if state == .closing && !lingering { return linger() }
            if state == .open && writer == nil && flushWaiters.isEmpty && writeDeadline != nil {
                writeDeadline = nil
                updateDeadlineTimer()
            }
        }
        guard bufferedOutputBytes <= lowWatermark else { return }
        if let writer {
            self.writer = nil
            // A graceful close() still needs its bound.
            if flushWaiters.isEmpty && state == .open { writeDeadline = nil }
            writer.resume()
        }
        if pausedForOutput {
            pausedForOutput = false
            updateReading()
            delegate?.connectionDidBecomeWritable(self)
        }
    }

    // MARK: Closing

    /// Closes gracefully: stops delivering input, sends what was written (bounded by ``writeTimeout``),
    /// then closes; if the peer's input is still unread then, half-closes first and lingers for up to
    /// ``lingerTimeout`` for the peer to close, so no reset destroys the replies. A waiting async read
    /// fails with ``ReactorError/alreadyClosed`` at once. Safe to call more than once.
    public func close() {
        loop.preconditionInEventLoop()
        guard state == .open else { return }
        state = .closing
        updateReading()
        if let reader {
            self.reader = nil
            reader.continuation.resume(throwing: ReactorError.alreadyClosed)
        }
        if outputIsEmpty { return linger() }
        armWriteDeadline()
    }

    /// The one place the write deadline is armed: output must make progress within ``writeTimeout`` (or
    /// `bound`), for a waiting writer, a flush, a file, or a graceful close. Each send that makes progress
    /// moves it on (``wroteProgress()``); it is cleared once nothing waits.
    func armWriteDeadline(_ bound: Duration? = nil) {
        guard writeDeadline == nil, let bound = bound ?? writeTimeout else { return }
        writeDeadline = Connection.now() &+ bound.nanoseconds
        updateDeadlineTimer()
    }

    /// Output made progress: an armed write deadline starts again (the timer finds the later one when it fires).
    @inline(__always)
    func wroteProgress() {
        if writeDeadline != nil, let writeTimeout, !lingering {
            writeDeadline = Connection.now() &+ writeTimeout.nanoseconds
        }
    }

    /// Everything written is sent: close now, unless input the peer sent is still unread in the kernel
    /// (closing then would send a reset): then send a FIN and linger, discarding input until the peer closes.
    private func linger() {
        guard closeNotify() else { return }  // retried once the socket drains
        guard !inputClosed, state == .closing, LingeringClose.isNeeded(fileDescriptor, timeout: lingerTimeout) else {
            return finishClose(nil)
        }
        if outputShutdown != .done {
            outputShutdown = .done
            try? Posix.shutdown(fileDescriptor, how: Int32(SHUT_WR))
        }
        lingering = true
        writeDeadline = nil
        lingerDeadline = Connection.now() &+ lingerTimeout.nanoseconds
        updateReading()
        updateDeadlineTimer()
    }

    /// Closes at once with a TCP reset (`SO_LINGER` of zero), discarding unsent output.
    public func reset() {
        loop.preconditionInEventLoop()
        guard state != .closed else { return }
        // Cannot fail on an open socket; if it did, the close would be orderly instead.
        _ = try? Posix.setResetOnClose(fileDescriptor)
        finishClose(nil)
    }

    /// Half-closes: after what was written is sent, shuts down the sending side (`shutdown(SHUT_WR)`).
    /// Reading continues.
    public func shutdownOutput() {
        loop.preconditionInEventLoop()
        guard state == .open, outputShutdown == .open else { return }
        outputShutdown = .requested
        // Else finished once the socket drains (or, with TLS, once the handshake has completed).
        if outputIsEmpty && outputMayProceed && closeNotify() {
            outputShutdown = .done
            try? Posix.shutdown(fileDescriptor, how: Int32(SHUT_WR))
        }
    }

    /// Whether writes are accepted (open, and the sending side not shut down).
    var acceptsWrites: Bool { state == .open && outputShutdown == .open }

    /// Closes now: frees the events and the descriptor, fails waiting tasks, tells the delegate.
    func finishClose(_ error: (any Error)?) {
        guard state != .closed else { return }
        state = .closed
        closeError = error
        reading = false
        writing = false
        lingering = false
        // Off the loop before the descriptor closes (its number may be reused at once); freed last, as the
        // events are what keeps the connection alive.
        let events = [readEvent, writeEvent, timerEvent]
        for event in events { event?.remove() }
        readEvent = nil
        writeEvent = nil
        timerEvent = nil
        Posix.close(fileDescriptor)
        var observers: [((any Error)?) -> Void] = []
        if case .tls(let tls) = transport {
            observers = tls.handshakeObservers
            transport = .plain  // frees OpenSSL's state
        }
        input.clear()
        output.clear()
        let files = queuedFiles
        queuedFiles = []
        let failure = error ?? ReactorError.alreadyClosed
        for file in files { file.completion?(.failure(failure)) }
        for observer in observers { observer(failure) }
        if let reader {
            self.reader = nil
            reader.continuation.resume(throwing: failure)
        }
        if let writer {
            self.writer = nil
            writer.resume(throwing: failure)
        }
        let waiters = flushWaiters
        flushWaiters = []
        for waiter in waiters { waiter.resume(throwing: failure) }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.connection(self, didCloseWith: error)
        loop.descriptorReleased()
        for event in events { event?.free() }
    }

    // MARK: Timeouts

    /// Monotonic nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Arms the one timer for the earliest of the idle, read and write deadlines.
    func updateDeadlineTimer() {
        guard state != .closed else { return }
        let deadlines = [readDeadline, writeDeadline, lingerDeadline, transport.handshakeDeadline]
        var earliest = deadlines.compactMap { $0 }.min()
        if let idleTimeout {
            let idleDeadline = lastActivity &+ idleTimeout.nanoseconds
            earliest = min(earliest ?? idleDeadline, idleDeadline)
        }
        guard let earliest else {
            timerEvent?.remove()
            return
        }
        if timerEvent == nil {
            do {
                timerEvent = try LoopEvent(loop: loop, persistent: false) { [self] _ in handleDeadline() }
            } catch {
                return finishClose(error)
            }
        }
        let now = Connection.now()
        timerEvent?.add(timeout: .nanoseconds(earliest > now ? earliest - now : 0))
    }

    private func handleDeadline() {
        guard state != .closed else { return }
        let now = Connection.now()
        if let handshakeDeadline = transport.handshakeDeadline, handshakeDeadline <= now {
            return finishClose(TLSError.handshakeTimedOut)
        }
        if !lingering, let idleTimeout, lastActivity &+ idleTimeout.nanoseconds <= now {
            return finishClose(ReactorError.timedOut)
        }
        if let writeDeadline, writeDeadline <= now {
            return finishClose(ReactorError.timedOut)
        }
        if let lingerDeadline, lingerDeadline <= now {
            return finishClose(nil)  // the peer did not close in time: an orderly close on our side all the same
        }
        if let readDeadline, readDeadline <= now {
            self.readDeadline = nil
            if let reader {
                self.reader = nil
                reader.continuation.resume(throwing: ReactorError.timedOut)
                updateReading()
            }
        }
        updateDeadlineTimer()
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to zero below and to about 292 years above (so `.seconds(.max)` means "never").
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
        guard seconds < 9_000_000_000 else { return UInt64(Int64.max) }
        return UInt64(Int64(seconds) * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
