import Glibc
import Reactor

/// Where a handler's output goes: the socket at once (blocking modes), or a queue the loop drains as the
/// socket accepts it (reactor mode).
protocol HTTPTransport: AnyObject {
    /// Sends `bytes`, or queues them.
    func send(_ bytes: [UInt8]) throws
    /// Sends the region, or queues it.
    /// - Returns: the bytes sent now: fewer than the region's count only if the file shrank.
    func send(_ region: FileRegion) throws -> Int?
}

/// The response stream, Python's `wfile`: bytes written are collected (up to 64 KiB, so that a head and a
/// small body leave in one packet) and sent when the buffer fills, at ``flush()``, and when the
/// request ends.
///
/// In the blocking modes each send blocks the handler's thread until the socket takes the bytes. In
/// reactor mode nothing blocks: writes are queued and the loop sends them, after the handler returns,
/// as the socket drains; the queue holds what the handler wrote, so send large bodies with
/// ``sendFile(_:)`` rather than `write(_:)`.
public final class HTTPResponseWriter {
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    let transport: HTTPTransport
    /// Bytes passed to `write(_:)` and ``sendFile(_:)`` so far, on this connection.
    @exclusivity(unchecked) public private(set) var bytesWritten = 0
    /// Set when a file ended before its announced length: the response is cut short and the connection
    /// must close.
    @exclusivity(unchecked) var truncated = false

    static let bufferSize = 64 * 1024
    /// The most space kept between responses.
    static let keptCapacity = 8 * 1024

    init(transport: HTTPTransport) {
        self.transport = transport
    }

    /// Writes all of `bytes`.
    /// - Throws: `ReactorError/timedOut` past the handler's timeout, or an `IOError`
    ///   (`EPIPE`...) in the blocking modes.
    public func write(_ bytes: some Sequence<UInt8>) throws {
        let before = buffer.count
        buffer.append(contentsOf: bytes)
        bytesWritten += buffer.count - before
        if buffer.count >= Self.bufferSize { try flush() }
    }

    /// Writes the UTF-8 bytes of `string`.
    public func write(_ string: String) throws {
        try write(string.utf8)
    }

    /// Sends what is buffered.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        // Sent (or copied by the connection) before this returns: the space serves the next response, unless
        // it grew large (an idle keep-alive connection keeps what is kept here).
        defer { buffer.removeAll(keepingCapacity: buffer.capacity <= Self.keptCapacity) }
        try transport.send(buffer)
    }

    /// Sends a file region after what was written: with `sendfile(2)`, so the file is never read into memory.
    ///
    /// In the blocking modes it is sent before this returns; in reactor mode after the handler returns,
    /// only as fast as the client reads, and the region stays open until then. If the file shrank and fewer
    /// bytes than announced could be sent, the connection is closed after the response.
    public func sendFile(_ region: FileRegion) throws {
        // A small file goes with the head, in one packet: read it into the buffer.
        if region.count <= 16 * 1024 && buffer.count + region.count <= Self.bufferSize {
            // Read straight into the buffer's tail: no array per file.
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: region.count))
            var read = 0
            buffer.withUnsafeMutableBytes { bytes in
                while read < region.count {
                    let count = pread(
                        region.fileDescriptor, bytes.baseAddress! + start + read, region.count - read,
                        off_t(region.offset + read))
                    if count <= 0 { break }  // a read error ends the file early: treated as a file that shrank
                    read += count
                }
            }
            buffer.removeLast(region.count - read)
            bytesWritten += read
            if read < region.count { truncated = true }
            if buffer.count >= Self.bufferSize { try flush() }
            return
        }
        try flush()
        bytesWritten += region.count
        if let sent = try transport.send(region), sent < region.count {
            bytesWritten -= region.count - sent
            truncated = true
        }
    }
}

/// The request body, Python's `rfile`, bounded by the request's framing: reads stop at the end of the
/// body (`Content-Length` bytes, or the last chunk of a chunked body, decoded), never in the next request.
public final class HTTPRequestBody {
    @exclusivity(unchecked) private var buffer: [UInt8] = []
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var atEnd = false
    private let fill: () throws -> [UInt8]
    /// The body's length when announced by `Content-Length`; `nil` for a chunked body.
    public let contentLength: Int?

    init(contentLength: Int?, fill: @escaping () throws -> [UInt8]) {
        self.contentLength = contentLength
        self.fill = fill
    }

    /// An empty body.
    static func empty() -> HTTPRequestBody {
        HTTPRequestBody(contentLength: 0) { [] }
    }

    /// A body already in memory: one object, no closure.
    static func bytes(_ bytes: [UInt8], contentLength: Int?) -> HTTPRequestBody {
        let body = HTTPRequestBody(contentLength: contentLength) { [] }
        body.buffer = bytes
        body.atEnd = true
        return body
    }

    private var available: Int { buffer.count - start }

    private func receiveMore() throws -> Bool {
        if atEnd { return false }
        let bytes = try fill()
        if bytes.isEmpty {
            atEnd = true
            return false
        }
        if start == buffer.count {
            buffer = bytes  // nothing left unread: the bytes themselves, not a copy
            start = 0
        } else {
            buffer += bytes
        }
        return true
    }

    private func take(_ count: Int) -> [UInt8] {
        if start == 0 && count == buffer.count {  // all of it: handed over, not copied
            defer { buffer = [] }
            return buffer
        }
        let bytes = Array(buffer[start..<(start + count)])
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return bytes
    }

    /// Reads `count` bytes, fewer only at the end of the body (Python's `rfile.read(n)`).
    /// - Throws: `ReactorError/timedOut` past the handler's timeout, a malformed chunked body's
    ///   `HTTP.ParseError`, `ReactorError/unexpectedEOF` if the client closed mid-body, or an `IOError`.
    public func read(_ count: Int) throws -> [UInt8] {
        while available < count, try receiveMore() {}
        return take(min(count, available))
    }

    /// Reads the rest of the body.
    public func readAll() throws -> [UInt8] {
        while try receiveMore() {}
        return take(available)
    }

    /// Reads one line, keeping its `\n` unless `strippingNewline` (Python's `rfile.readline()` keeps it);
    /// at the end of the body the last bytes, then `nil`.
    /// - Throws: `ReactorError/lineTooLong(limit:)` for a line over `maxLength` bytes.
    public func readLine(maxLength: Int = 64 * 1024, strippingNewline: Bool = false) throws -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 10) {
                guard newline - start <= maxLength else { throw ReactorError.lineTooLong(limit: maxLength) }
                var line = take(newline + 1 - start)
                if strippingNewline {
                    line.removeLast()
                    if line.last == 13 { line.removeLast() }
                }
                return line
            }
            guard available <= maxLength else { throw ReactorError.lineTooLong(limit: maxLength) }
            if try !receiveMore() { return available == 0 ? nil : take(available) }
        }
    }

    /// Reads and drops what is left, up to `limit` bytes.
    /// - Returns: whether the body ended within the limit.
    func discard(upTo limit: Int) throws -> Bool {
        var dropped = available
        buffer.removeAll()
        start = 0
        while dropped <= limit {
            if atEnd { return true }
            let bytes = try fill()
            if bytes.isEmpty {
                atEnd = true
                return true
            }
            dropped += bytes.count
        }
        return false
    }
}
