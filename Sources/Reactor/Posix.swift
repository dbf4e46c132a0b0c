import CLibevent
import Glibc

/// The module's whole boundary with libc's socket calls: each a small static function that
/// retries `EINTR`, reports `EAGAIN`/`EWOULDBLOCK` as `nil` where a call may block, and throws
/// ``IOError`` otherwise.
enum Posix {
    /// Runs `body` until it does not fail with `EINTR`; throws ``IOError`` on any other failure.
    @inline(__always)
    static func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(IOError) -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            throw IOError(errnoCode: code, operation: operation())
        }
    }

    /// As ``syscall(_:_:)``, but `EAGAIN`/`EWOULDBLOCK` return `nil` ("would block").
    @inline(__always)
    static func nonBlocking<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(IOError) -> T? {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw IOError(errnoCode: code, operation: operation())
        }
    }

    static func socket(domain: Int32, type: Int32, nonBlocking: Bool = true) throws(IOError) -> Int32 {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return try syscall("socket", { Glibc.socket(domain, type | flags, 0) })
    }

    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, _ operation: String) throws(IOError) {
        var value = value
        _ = try syscall(operation, { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) })
    }

    static func getSocketError(_ fd: Int32) throws(IOError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try syscall("getsockopt SO_ERROR", { getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) })
        return value
    }

    static func listen(_ fd: Int32, backlog: Int32) throws(IOError) {
        _ = try syscall("listen", { Glibc.listen(fd, backlog) })
    }

    /// Accepts one connection as a non-blocking, close-on-exec descriptor; `nil` when none is waiting.
    static func accept(_ fd: Int32) throws(IOError) -> Int32? {
        try nonBlocking("accept", { clibevent_accept4(fd, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)) })
    }

    /// Reads into `buffer`; `nil` when nothing is available, 0 at end of input.
    @inline(__always)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> Int? {
        try nonBlocking("read", { Glibc.read(fd, buffer, count) })
    }

    /// Sends without raising SIGPIPE; `nil` when the socket buffer is full.
    @inline(__always)
    static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> Int? {
        try nonBlocking("send", { Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL)) })
    }

    static func shutdown(_ fd: Int32, how: Int32) throws(IOError) {
        _ = try syscall("shutdown", { Glibc.shutdown(fd, how) })
    }

    /// Closes `fd`. `EINTR` is not retried: on Linux the descriptor is released whatever `close` returns.
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    static func setNonBlocking(_ fd: Int32) throws(IOError) {
        let flags = try syscall("fcntl F_GETFL", { fcntl(fd, F_GETFL) })
        if flags & O_NONBLOCK == 0 {
            _ = try syscall("fcntl F_SETFL", { fcntl(fd, F_SETFL, flags | O_NONBLOCK) })
        }
    }
}

/// Writes one line to standard error (descriptor 2) with a single `write`, for the few reports a
/// library without a logger must not swallow (see ``Listener/onError``).
func reportToStandardError(_ line: String) {
    var line = line
    line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}
