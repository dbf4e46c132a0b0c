import Glibc

/// Bytes received and not yet consumed, or bytes written and not yet sent.
///
/// A connection hands its handler the buffer `inout`: the handler consumes what it can use and
/// leaves the rest, which is kept for the next delivery. The buffer is non-copyable, so bytes are
/// never silently duplicated; it either owns its memory (freed when the buffer ends) or views the
/// loop's scratch space for the length of one callback.
public struct ByteBuffer: ~Copyable {
    private var base: UnsafeMutableRawPointer?
    private var capacity: Int
    private var readerIndex: Int
    private var writerIndex: Int
    private var ownsMemory: Bool

    /// An empty buffer that holds no memory.
    public init() {
        base = nil
        capacity = 0
        readerIndex = 0
        writerIndex = 0
        ownsMemory = false
    }

    /// A view of `count` bytes of memory the caller keeps alive and owns.
    init(viewing pointer: UnsafeMutableRawPointer, count: Int) {
        base = pointer
        capacity = count
        readerIndex = 0
        writerIndex = count
        ownsMemory = false
    }

    deinit {
        if ownsMemory { base?.deallocate() }
    }

    /// How many bytes can be read.
    public var readableBytes: Int { writerIndex - readerIndex }

    /// Whether no bytes can be read.
    public var isEmpty: Bool { writerIndex == readerIndex }

    /// Calls `body` with the readable bytes, valid only during the call.
    public func withUnsafeReadableBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base.map { $0 + readerIndex }, count: readableBytes))
    }

    /// Marks `count` readable bytes as consumed.
    public mutating func moveReaderIndex(forwardBy count: Int) {
        precondition(
            count >= 0 && count <= readableBytes, "moveReaderIndex(forwardBy: \(count)) with \(readableBytes) readable")
        readerIndex += count
        if readerIndex == writerIndex {
            readerIndex = 0
            writerIndex = 0
        }
    }

    /// Consumes and returns every readable byte.
    public mutating func readAll() -> [UInt8] {
        readBytes(readableBytes)!
    }

    /// Consumes and returns exactly `count` bytes, or returns `nil` (consuming nothing) if fewer are readable.
    public mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count <= readableBytes else { return nil }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: base.map { $0 + readerIndex }, count: count))
        moveReaderIndex(forwardBy: count)
        return bytes
    }

    /// The offset from the first readable byte of the first `byte`, if any.
    public func firstIndex(of byte: UInt8) -> Int? {
        guard let base, readableBytes > 0 else { return nil }
        guard let found = memchr(base + readerIndex, Int32(byte), readableBytes) else { return nil }
        return UnsafeRawPointer(found) - UnsafeRawPointer(base + readerIndex)
    }

    /// Consumes and returns one line ending in `\n`, or returns `nil` if no whole line is buffered.
    ///
    /// - Parameters:
    ///   - maxLength: the longest line accepted, not counting its `\n` (or `\r\n`).
    ///   - strippingNewline: whether to drop the trailing `\n` or `\r\n`; default false, the line kept whole as
    ///     Python's `readline()` keeps it.
    /// - Throws: ``ReactorError/lineTooLong(limit:)`` when the line is, or can only become, longer than `maxLength`.
    public mutating func readLine(maxLength: Int, strippingNewline: Bool = false) throws(ReactorError) -> [UInt8]? {
        guard let newline = firstIndex(of: UInt8(ascii: "\n")) else {
            // Allow a `\r` beyond the limit, for a `\r\n` not yet complete.
            if readableBytes > maxLength && readableBytes - 1 > maxLength { throw .lineTooLong(limit: maxLength) }
            return nil
        }
        let hasCR =
            newline > 0 && base!.load(fromByteOffset: readerIndex + newline - 1, as: UInt8.self) == UInt8(ascii: "\r")
        let contentLength = hasCR ? newline - 1 : newline
        if contentLength > maxLength { throw .lineTooLong(limit: maxLength) }
        let line = readBytes(strippingNewline ? contentLength : newline + 1)!
        if strippingNewline { moveReaderIndex(forwardBy: newline + 1 - contentLength) }
        return line
    }

    /// Appends bytes, growing owned memory as needed.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserveWritable(bytes.count)
        (base! + writerIndex).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        writerIndex += bytes.count
    }

    /// Appends bytes.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if let done: Void = bytes.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) {
            return done
        }
        append(Array(bytes))
    }

    /// Drops every readable byte and frees owned memory.
    public mutating func clear() {
        if ownsMemory {
            self = ByteBuffer()  // the old value's deinit frees its memory
        } else {
            readerIndex = writerIndex  // a view stays a view: its connection checks that after the callback
        }
    }

    /// Whether this is (still) a view of `memory`, or owns its own.
    func isOwnedOrViews(_ memory: UnsafeMutableRawPointer) -> Bool {
        ownsMemory || base == memory
    }

    /// Moves the contents out, leaving this buffer empty.
    mutating func take() -> ByteBuffer {
        var taken = ByteBuffer()
        swap(&taken.base, &base)
        swap(&taken.capacity, &capacity)
        swap(&taken.readerIndex, &readerIndex)
        swap(&taken.writerIndex, &writerIndex)
        swap(&taken.ownsMemory, &ownsMemory)
        return taken
    }

    /// A buffer owning a copy of the readable bytes, or nothing at all if there are none.
    mutating func takeOwned() -> ByteBuffer {
        if ownsMemory || isEmpty {
            var taken = take()
            if taken.isEmpty { taken.clear() }
            return taken
        }
        var copy = ByteBuffer()
        withUnsafeReadableBytes { copy.append($0) }
        self = ByteBuffer()
        return copy
    }

    /// Makes room for at least `count` bytes after the readable ones, in owned memory.
    mutating func reserveWritable(_ count: Int) {
        if ownsMemory && capacity - writerIndex >= count { return }
        let readable = readableBytes
        if ownsMemory && readerIndex > 0 && capacity - readable >= count {
            (base! as UnsafeMutableRawPointer).copyMemory(from: base! + readerIndex, byteCount: readable)
        } else {
            var newCapacity = max(capacity, 1024)
            while newCapacity - readable < count { newCapacity *= 2 }
            let memory = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            if readable > 0 { memory.copyMemory(from: base! + readerIndex, byteCount: readable) }
            if ownsMemory { base?.deallocate() }
            base = memory
            capacity = newCapacity
            ownsMemory = true
        }
        readerIndex = 0
        writerIndex = readable
    }

    /// The writable space after the readable bytes (after ``reserveWritable(_:)``).
    var writableSpace: UnsafeMutableRawPointer { base! + writerIndex }

    /// How many bytes fit after the readable ones without growing.
    var writableBytes: Int { ownsMemory ? capacity - writerIndex : 0 }

    /// Marks `count` bytes written into ``writableSpace`` as readable.
    mutating func didWrite(_ count: Int) {
        writerIndex += count
    }
}
