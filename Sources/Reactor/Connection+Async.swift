import Glibc

/// The async face of ``Connection``: call from a task running on the connection's loop
/// (`loop.spawn { ... }` or `Task(executorPreference: loop)`). One reader and one writer may wait
/// at a time. Task cancellation is not observed; use ``Connection/readTimeout`` and
/// ``Connection/writeTimeout`` to bound waits.
extension Connection {
    /// What a suspended reader waits for.
    struct PendingRead {
        enum Kind {
            case line(maxLength: Int, strippingNewline: Bool)
            case upTo(Int)
            case exactly(Int)
        }
        let kind: Kind
        let continuation: UnsafeContinuation<[UInt8]?, any Error>
    }

    private enum Outcome {
        case notReady
        case done([UInt8]?)
    }

    /// Tries to satisfy a read from `buffer`; `inputClosed` decides what "not enough" means.
    private func attempt(_ kind: PendingRead.Kind, _ buffer: inout ByteBuffer) throws(ReactorError) -> Outcome {
        switch kind {
        case .line(let maxLength, let strippingNewline):
            if let line = try buffer.readLine(maxLength: maxLength, strippingNewline: strippingNewline) {
                return .done(line)
            }
            guard inputClosed else { return .notReady }
            // Like Python's readline(): the last, unterminated line, then nil.
            return .done(buffer.isEmpty ? nil : buffer.readAll())
        case .upTo(let count):
            if !buffer.isEmpty { return .done(buffer.readBytes(min(count, buffer.readableBytes))) }
            return inputClosed ? .done(nil) : .notReady
        case .exactly(let count):
            if let bytes = buffer.readBytes(count) { return .done(bytes) }
            if inputClosed { throw .unexpectedEOF }
            return .notReady
        }
    }

    /// Completes the waiting reader from `buffer` if it can be; a line too long closes the connection.
    func completeReader(_ buffer: inout ByteBuffer) {
        guard let reader else { return }
        do {
            guard case .done(let result) = try attempt(reader.kind, &buffer) else { return }
            self.reader = nil
            if readDeadline != nil {
                readDeadline = nil
                updateDeadlineTimer()
            }
            reader.continuation.resume(returning: result)
        } catch {
            self.reader = nil
            reader.continuation.resume(throwing: error)
            if case .lineTooLong = error { finishClose(error) }
        }
    }

    private func read(_ kind: PendingRead.Kind) async throws -> [UInt8]? {
        loop.preconditionInEventLoop()
        guard reader == nil else { throw ReactorError.concurrentOperation }
        if !input.isEmpty || inputClosed {
            do {
                if case .done(let result) = try attempt(kind, &input) { return result }
            } catch {
                if case .lineTooLong = error { finishClose(error) }
                throw error
            }
        }
        if state == .closed { throw closeError ?? ReactorError.alreadyClosed }
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[UInt8]?, any Error>) in
            reader = PendingRead(kind: kind, continuation: continuation)
            if let readTimeout {
                readDeadline = Connection.now() &+ readTimeout.nanoseconds
                updateDeadlineTimer()
            }
            updateReading()
        }
    }

    /// Reads one line ending in `\n`.
    ///
    /// - Parameters:
    ///   - maxLength: the longest line accepted, not counting its `\n` or `\r\n` (default 64 KiB).
    ///   - strippingNewline: whether to drop the trailing `\n` or `\r\n`; default false, the line kept whole as
    ///     Python's `readline()` keeps it.
    /// - Returns: the line; at end of input, the last unterminated bytes if any, then `nil`.
    /// - Throws: ``ReactorError/lineTooLong(limit:)`` (and the connection is closed), ``ReactorError/timedOut``,
    ///   ``ReactorError/alreadyClosed``, or the ``IOError`` the connection closed with.
    public func readLine(maxLength: Int = 64 * 1024, strippingNewline: Bool = false) async throws -> [UInt8]? {
        try await read(.line(maxLength: maxLength, strippingNewline: strippingNewline))
    }

    /// Reads between 1 and `maxCount` bytes, waiting until at least one is available.
    /// - Returns: the bytes; empty at end of input.
    public func read(upTo maxCount: Int) async throws -> [UInt8] {
        precondition(maxCount > 0, "read(upTo:) needs a positive count")
        return try await read(.upTo(maxCount)) ?? []
    }

    /// Reads exactly `count` bytes.
    /// - Throws: ``ReactorError/unexpectedEOF`` if input ends first.
    public func readExactly(_ count: Int) async throws -> [UInt8] {
        precondition(count >= 0, "readExactly(_:) needs a count of zero or more")
        if count == 0 { return [] }
        return try await read(.exactly(count)) ?? []
    }

    /// Writes `bytes`, suspending while more than ``highWatermark`` bytes wait to be sent (backpressure).
    /// - Throws: ``ReactorError/alreadyClosed`` after close or ``shutdownOutput()``, ``ReactorError/timedOut``
    ///   if the output cannot drain within ``writeTimeout``, or the ``IOError`` the connection closed with.
    public func write(_ bytes: UnsafeRawBufferPointer) async throws {
        try checkWritable()
        enqueue(bytes)
        try await waitForOutputBelowHighWatermark()
    }

    /// Writes `bytes` (see `write(_:)`).
    public func write(_ bytes: some Sequence<UInt8>) async throws {
        try checkWritable()
        enqueue(bytes)
        try await waitForOutputBelowHighWatermark()
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) async throws {
        try checkWritable()
        enqueue(string.utf8)
        try await waitForOutputBelowHighWatermark()
    }

    /// Writes `region` of its file after everything written before (see `write(file:)`), suspending while
    /// more than ``highWatermark`` bytes wait to be sent, the region's unsent part included.
    /// - Throws: as `write(_:)`; ``ReactorError/fileShrank`` if the connection closed because the file
    ///   ended early.
    public func write(file region: FileRegion) async throws {
        try checkWritable()
        enqueue(file: region)
        try await waitForOutputBelowHighWatermark()
    }

    private func checkWritable() throws {
        loop.preconditionInEventLoop()
        guard acceptsWrites else { throw closeError ?? ReactorError.alreadyClosed }
    }

    private func waitForOutputBelowHighWatermark() async throws {
        if state == .closed { throw closeError ?? ReactorError.alreadyClosed }
        guard bufferedOutputBytes > highWatermark else { return }
        guard writer == nil else { throw ReactorError.concurrentOperation }
        try await withUnsafeThrowingContinuation { continuation in
            writer = continuation
            armWriteDeadline()
        }
    }

    /// Waits until everything written has been handed to the kernel.
    public func flush() async throws {
        loop.preconditionInEventLoop()
        if state == .closed { throw closeError ?? ReactorError.alreadyClosed }
        if outputIsEmpty { return }
        try await withUnsafeThrowingContinuation { continuation in
            flushWaiters.append(continuation)
            armWriteDeadline()
        }
    }

    /// Sends `count` bytes of the open file `file`, from `offset`, after everything written before: the
    /// way to send a file of any size with bounded memory. `file` stays the caller's (it is not closed).
    ///
    /// The region joins the connection's output queue (see `write(file:)`): `sendfile(2)` from the page
    /// cache to the socket, at most 1 MiB per pass through the loop and only as the socket drains, so one
    /// large download never delays another connection and a peer that stops reading holds only the socket's
    /// buffer; with TLS, or where `sendfile` does not apply to `file`, it is read in pieces through the loop's
    /// scratch space. ``writeTimeout`` bounds each wait for progress.
    /// - Returns: the bytes sent, once all are handed to the kernel: fewer than `count` only if the file ended
    ///   first (it shrank meanwhile); the caller decides what that means for the connection.
    /// - Throws: like `write(_:)`, and the ``IOError`` of a failed read of `file` (the connection then stays
    ///   open: close it or reset it).
    public func sendFile(_ file: Int32, offset: Int, count: Int) async throws -> Int {
        precondition(offset >= 0 && count >= 0, "sendFile(_:offset:count:) needs a non-negative offset and count")
        try checkWritable()
        if count == 0 { return 0 }
        let region = FileRegion(file: OpenFile(borrowing: file), offset: offset, count: count)
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Int, any Error>) in
            enqueue(file: region) { continuation.resume(with: $0) }
            armWriteDeadline()
        }
    }

}

extension Connection {
    /// The connection's lines as an async sequence: `for try await line in connection.lines() { ... }`.
    public func lines(maxLength: Int = 64 * 1024, strippingNewline: Bool = false) -> Lines {
        Lines(connection: self, maxLength: maxLength, strippingNewline: strippingNewline)
    }

    /// Lines read with ``readLine(maxLength:strippingNewline:)`` until end of input.
    public struct Lines: AsyncSequence {
        public typealias Element = [UInt8]
        let connection: Connection
        let maxLength: Int
        let strippingNewline: Bool

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(lines: self)
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            let lines: Lines
            public mutating func next() async throws -> [UInt8]? {
                try await lines.connection.readLine(
                    maxLength: lines.maxLength, strippingNewline: lines.strippingNewline)
            }
        }
    }
}
