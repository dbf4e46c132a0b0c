internal import CPosix
import Glibc

/// The module's whole boundary with libc's socket calls: each a small static function that reads
/// `errno` at once, retries `EINTR`, reports `EAGAIN`/`EWOULDBLOCK` as `nil` where a call may block,
/// and throws ``IOError`` otherwise. Raw `sockaddr` memory is ``SocketAddress``'s business: calls
/// that take or fill in an address go through it.
enum Posix {
    /// Runs `body` until it does not fail with `EINTR`; throws ``IOError`` on any other failure.
    @inline(__always)
    static func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(IOError)
        -> T
    {
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
    static func nonBlocking<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T)
        throws(IOError) -> T?
    {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return nil }
            throw IOError(errnoCode: code, operation: operation())
        }
    }

    /// `errno` as the last failed call left it, for a C library that reports failures through it
    /// (OpenSSL's `SSL_ERROR_SYSCALL`); read it at once after the call.
    static var lastError: Int32 { errno }

    /// Sets `errno` to 0 before a C library call whose failure may or may not set it.
    static func clearError() { errno = 0 }

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

    /// Starts connecting `fd` to `address` without blocking: true when connected at once, false while in
    /// progress (`EINPROGRESS`, or `EINTR`, after which the connect goes on in the background).
    static func connect(_ fd: Int32, to address: SocketAddress) throws(IOError) -> Bool {
        let (result, code) = address.withSockAddr { pointer, length in (Glibc.connect(fd, pointer, length), errno) }
        if result == 0 { return true }
        if code == EINPROGRESS || code == EINTR { return false }
        throw IOError(errnoCode: code, operation: "connect \(address)")
    }

    static func listen(_ fd: Int32, backlog: Int32) throws(IOError) {
        _ = try syscall("listen", { Glibc.listen(fd, backlog) })
    }

    /// Accepts one connection as a non-blocking, close-on-exec descriptor; `nil` when none is waiting.
    static func accept(_ fd: Int32) throws(IOError) -> Int32? {
        try nonBlocking(
            "accept", { cposix_accept4(fd, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)) })
    }

    /// Accepts one connection as a close-on-exec descriptor, blocking or not, with the peer's address;
    /// `nil` when none is waiting (or a receive timeout passed).
    static func acceptWithPeer(_ fd: Int32, nonBlocking: Bool) throws(IOError) -> (fd: Int32, peer: SocketAddress?)? {
        let flags = Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let (accepted, peer) = try SocketAddress.filledIn { (pointer, length) throws(IOError) in
            try Posix.nonBlocking("accept", { cposix_accept4(fd, pointer, length, flags) })
        }
        return accepted.map { ($0, peer) }
    }

    static func bind(_ fd: Int32, to address: SocketAddress) throws(IOError) {
        try address.withSockAddr { (pointer, length) throws(IOError) in
            _ = try syscall("bind \(address)", { Glibc.bind(fd, pointer, length) })
        }
    }

    /// Connects a blocking socket, waiting until connected (or its send timeout passes).
    static func connectBlocking(_ fd: Int32, to address: SocketAddress) throws(IOError) {
        try address.withSockAddr { (pointer, length) throws(IOError) in
            _ = try syscall("connect \(address)", { Glibc.connect(fd, pointer, length) })
        }
    }

    /// Receives into `buffer`; `nil` when nothing is available (or a receive timeout passed), 0 at end of input.
    /// With `dontWait`, a blocking socket does not block this once (`MSG_DONTWAIT`).
    static func receive(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int, dontWait: Bool = false)
        throws(IOError) -> Int?
    {
        try nonBlocking("recv", { recv(fd, buffer, count, dontWait ? Int32(MSG_DONTWAIT) : 0) })
    }

    /// Receives without waiting (`MSG_DONTWAIT`), with `MSG_PEEK` leaving the bytes to be read again; `nil` when
    /// nothing is waiting, 0 at end of input.
    static func receiveNow(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int, peek: Bool) throws(IOError)
        -> Int?
    {
        try nonBlocking(
            peek ? "recv MSG_PEEK" : "recv",
            { recv(fd, buffer, count, Int32(MSG_DONTWAIT) | (peek ? Int32(MSG_PEEK) : 0)) })
    }

    /// Waits until `deadline` (`nil`: forever) for `fd` to be readable, input or the peer's end (or writable)
    /// (`poll`); true if it is. Past the deadline it still looks once. A signal does not stretch the wait: the
    /// retry after `EINTR` waits for what is left.
    static func wait(_ fd: Int32, writable: Bool, until deadline: ContinuousClock.Instant?) throws(IOError) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        return try syscall("poll", { Glibc.poll(&entry, 1, milliseconds(until: deadline)) }) > 0
    }

    /// ``wait(_:writable:until:)`` for up to `timeout` from now.
    static func wait(_ fd: Int32, writable: Bool, timeout: Duration?) throws(IOError) -> Bool {
        try wait(fd, writable: writable, until: timeout.map { ContinuousClock.now + $0 })
    }

    /// `poll`'s timeout for `deadline`: the milliseconds left, rounded up; -1 for none.
    private static func milliseconds(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return -1 }
        return Int32(clamping: (max(.zero, deadline - ContinuousClock.now).nanoseconds + 999_999) / 1_000_000)
    }

    /// Receives one datagram into `buffer` with its sender (`nil` for an unbound Unix sender); `nil` when
    /// nothing is waiting.
    static func receiveFrom(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) throws(IOError) -> (
        count: Int, sender: SocketAddress?
    )? {
        let (received, sender) = try SocketAddress.filledIn { (pointer, length) throws(IOError) in
            try Posix.nonBlocking("recvfrom", { recvfrom(fd, buffer, count, 0, pointer, length) })
        }
        return received.map { ($0, sender) }
    }

    /// Sends one datagram to `address` without raising SIGPIPE.
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, to address: SocketAddress) throws(IOError) {
        try address.withSockAddr { (pointer, length) throws(IOError) in
            _ = try syscall(
                "sendto \(address)",
                { sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), pointer, length) })
        }
    }

    /// Sets a `timeval` socket option (`SO_RCVTIMEO`, `SO_SNDTIMEO`).
    static func setOption(_ fd: Int32, level: Int32, name: Int32, value: timeval, _ operation: String) throws(IOError) {
        var value = value
        _ = try syscall(operation, { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<timeval>.size)) })
    }

    /// Makes `close` send a reset and discard unsent data (`SO_LINGER` with a zero timeout).
    static func setResetOnClose(_ fd: Int32) throws(IOError) {
        var value = linger(l_onoff: 1, l_linger: 0)
        _ = try syscall(
            "setsockopt SO_LINGER",
            { setsockopt(fd, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size)) })
    }

    static func fork() throws(IOError) -> pid_t {
        try syscall("fork", { Glibc.fork() })
    }

    /// `cposix_spawn_passing`: fork, then in the child `fds` as 3, 4, ..., nothing else open, `execve`.
    static func spawn(
        _ path: String, _ argv: [UnsafeMutablePointer<CChar>?], _ envp: [UnsafeMutablePointer<CChar>?],
        listenPID: UnsafeMutablePointer<CChar>?, fds: [Int32]
    ) throws(IOError) -> pid_t {
        let result = fds.withUnsafeBufferPointer { fdBuffer in
            cposix_spawn_passing(path, argv, envp, listenPID, fdBuffer.baseAddress, Int32(fds.count))
        }
        guard result >= 0 else { throw IOError(errnoCode: errno, operation: "fork to start \(path)") }
        return result
    }

    /// `waitpid` for one child, retrying `EINTR`: its pid and status once it has ended, 0 while it runs
    /// (with `WNOHANG`).
    static func waitpid(_ pid: pid_t, blocking: Bool) throws(IOError) -> (pid: pid_t, status: Int32) {
        var status: Int32 = 0
        let result = try syscall("waitpid \(pid)", { Glibc.waitpid(pid, &status, blocking ? 0 : WNOHANG) })
        return (result, status)
    }

    /// What `path` itself is (`lstat`: a symlink is not followed): its device, inode and whether it is a socket;
    /// `nil` when there is nothing there (`ENOENT`).
    static func fileIdentity(_ path: String) throws(IOError) -> (device: UInt, inode: UInt, isSocket: Bool)? {
        var info = stat()
        let result = lstat(path, &info)
        if result != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw IOError(errnoCode: code, operation: "lstat \(path)")
        }
        return (UInt(info.st_dev), UInt(info.st_ino), info.st_mode & S_IFMT == S_IFSOCK)
    }

    /// Whether `path` can be opened for reading, as a file OpenSSL would load: throws the `open` error
    /// (`ENOENT`, `EACCES`) or `EISDIR` for a directory, so a bad path is reported in the system's words.
    static func checkReadableFile(_ path: String) throws(IOError) {
        let fd = try syscall("open \(path)", { Glibc.open(path, O_RDONLY | O_CLOEXEC) })
        defer { Glibc.close(fd) }
        var info = stat()
        _ = try syscall("fstat \(path)", { fstat(fd, &info) })
        if info.st_mode & S_IFMT == S_IFDIR { throw IOError(errnoCode: EISDIR, operation: "open \(path)") }
    }

    /// Opens `path` as a directory to resolve paths from (`O_PATH | O_DIRECTORY`: no read access needed).
    static func openDirectory(_ path: String) throws(IOError) -> Int32 {
        try syscall("open \(path)", { Glibc.open(path, cposix_open_path | O_DIRECTORY | O_CLOEXEC) })
    }

    /// What `path` names, relative to the directory `directory`, links followed (`fstatat`); `nil` when
    /// nothing is there (`ENOENT`, `ENOTDIR`, `ENAMETOOLONG`, `ELOOP`).
    static func status(_ path: String, in directory: Int32) throws(IOError) -> stat? {
        var info = stat()
        // withCString: a native string is already NUL-terminated, so no copy (the implicit conversion copies).
        if path.withCString({ fstatat(directory, $0, &info, 0) }) == 0 { return info }
        let code = errno
        if code == ENOENT || code == ENOTDIR || code == ENAMETOOLONG || code == ELOOP { return nil }
        throw IOError(errnoCode: code, operation: "stat \(path)")
    }

    /// What the open descriptor `fd` is (`fstat`).
    static func status(_ fd: Int32) throws(IOError) -> stat {
        var info = stat()
        _ = try syscall("fstat", { fstat(fd, &info) })
        return info
    }

    /// Opens `path` for reading, resolved beneath the directory `directory` (`openat2` with `RESOLVE_BENEATH`
    /// and `RESOLVE_NO_MAGICLINKS`): no `..`, absolute path or link may leave it (`EXDEV`). Non-blocking and
    /// without becoming a controlling terminal, so opening never waits. `ENOSYS` or `EPERM` (a kernel before
    /// 5.6, or a seccomp filter that does not know the call) mean `openat2` is unavailable.
    static func openBeneath(_ path: String, in directory: Int32) throws(IOError) -> Int32 {
        try syscall("open \(path)") {
            path.withCString {
                cposix_openat2(directory, $0, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, cposix_resolve_beneath)
            }
        }
    }

    /// Opens `path` for reading, non-blocking and without becoming a controlling terminal.
    static func openForReading(_ path: String) throws(IOError) -> Int32 {
        try syscall("open \(path)", { Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) })
    }

    /// `path` with every link resolved (`realpath`); `nil` when it does not exist.
    static func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Removes the name `path` (`unlink`).
    static func unlink(_ path: String) throws(IOError) {
        _ = try syscall("unlink \(path)", { Glibc.unlink(path) })
    }

    /// Sets the permission bits of `path` itself, never through a symlink (`fchmodat`, `AT_SYMLINK_NOFOLLOW`).
    static func setPermissions(_ path: String, _ mode: mode_t) throws(IOError) {
        _ = try syscall("chmod \(path)", { fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) })
    }

    /// Bytes received and not read yet (`ioctl FIONREAD`).
    static func unreadByteCount(_ fd: Int32) throws(IOError) -> Int {
        var count: Int32 = 0
        _ = try syscall("ioctl FIONREAD", { ioctl(fd, UInt(FIONREAD), &count) })
        return Int(count)
    }

    /// Bytes sent and not yet acknowledged by the peer (`ioctl TIOCOUTQ`).
    static func unsentByteCount(_ fd: Int32) throws(IOError) -> Int {
        var count: Int32 = 0
        _ = try syscall("ioctl TIOCOUTQ", { ioctl(fd, UInt(TIOCOUTQ), &count) })
        return Int(count)
    }

    /// The socket's type, `SOCK_STREAM` or `SOCK_DGRAM` (`getsockopt SO_TYPE`).
    static func socketType(_ fd: Int32) throws(IOError) -> Int32 {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try syscall("getsockopt SO_TYPE", { getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) })
        return type
    }

    /// Whether the calling thread is the process's main thread (its thread id is the process id).
    static var isMainThread: Bool { cposix_gettid() == getpid() }

    /// Names the calling thread for the kernel (`pthread_setname_np`; `ps -L`, `/proc/PID/task/TID/comm`,
    /// debuggers), cut to the kernel's 15 bytes.
    static func setThreadName(_ name: String) {
        var bytes = Array(name.utf8.prefix(15))
        bytes.append(0)
        _ = bytes.withUnsafeBufferPointer {
            $0.withMemoryRebound(to: CChar.self) { cposix_set_thread_name($0.baseAddress) }
        }
    }

    /// The main dispatch queue's wake-up descriptor: an eventfd that becomes readable when main-queue work
    /// (a main-actor job) is enqueued. libdispatch makes it on first use.
    static func mainQueueDescriptor() -> Int32 { _dispatch_get_main_queue_handle_4CF() }

    /// Runs the main dispatch queue's work on the calling thread (the main thread), after clearing its
    /// eventfd's count, as Foundation's RunLoop does.
    static func drainMainQueue(_ descriptor: Int32) {
        var count: UInt64 = 0
        _ = Glibc.read(descriptor, &count, MemoryLayout<UInt64>.size)  // non-blocking; EAGAIN when already clear
        _dispatch_main_queue_callback_4CF(nil)
    }

    /// A counting semaphore (POSIX `sem_t`, count 0), for threads that sleep until work arrives; free it with
    /// ``destroySemaphore(_:)``.
    static func makeSemaphore() -> UnsafeMutablePointer<sem_t> {
        let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
        return semaphore
    }

    /// Waits until the count is above zero and takes one, through signals (`EINTR`).
    static func semaphoreWait(_ semaphore: UnsafeMutablePointer<sem_t>) {
        while sem_wait(semaphore) != 0 && errno == EINTR {}
    }

    static func semaphorePost(_ semaphore: UnsafeMutablePointer<sem_t>) {
        sem_post(semaphore)
    }

    static func destroySemaphore(_ semaphore: UnsafeMutablePointer<sem_t>) {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    /// The processors this process may run on (`sched_getaffinity`: a container's or `taskset`'s CPU set, not
    /// the machine's).
    static var processorCount: Int { Int(cposix_processor_count()) }

    /// Unblocks `signal` in the calling thread (`pthread_sigmask`).
    static func unblockSignal(_ signal: Int32) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Whether the socket is listening (`getsockopt SO_ACCEPTCONN`).
    static func isListening(_ fd: Int32) throws(IOError) -> Bool {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try syscall("getsockopt SO_ACCEPTCONN", { getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) })
        return value != 0
    }

    /// Sets close-on-exec (`fcntl F_SETFD`).
    static func setCloseOnExec(_ fd: Int32) throws(IOError) {
        _ = try syscall("fcntl F_SETFD", { fcntl(fd, F_SETFD, FD_CLOEXEC) })
    }

    /// Reads into `buffer`; `nil` when nothing is available, 0 at end of input.
    @inline(__always)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> Int? {
        try nonBlocking("read", { Glibc.read(fd, buffer, count) })
    }

    /// Sends without raising SIGPIPE; `nil` when the socket buffer is full. With `dontWait`, a blocking
    /// socket does not block this once (`MSG_DONTWAIT`).
    @inline(__always)
    static func send(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, dontWait: Bool = false) throws(IOError)
        -> Int?
    {
        try nonBlocking(
            "send", { Glibc.send(fd, buffer, count, Int32(MSG_NOSIGNAL) | (dontWait ? Int32(MSG_DONTWAIT) : 0)) })
    }

    /// Sends up to `count` bytes of the file `file` from `offset` (advanced by what was sent) to the socket
    /// `fd` (`sendfile(2)`: no copy through user space); `nil` when the socket buffer is full, 0 at the
    /// file's end. A closed peer is an ``IOError`` (`EPIPE`; SIGPIPE is ignored process-wide).
    static func sendFile(_ fd: Int32, from file: Int32, offset: inout Int, count: Int) throws(IOError) -> Int? {
        var position = off_t(offset)
        let sent = try nonBlocking("sendfile", { cposix_sendfile(fd, file, &position, count) })
        offset = Int(position)
        return sent
    }

    /// Reads up to `count` bytes of `file` at `offset` (`pread`); 0 at the file's end.
    static func readFile(_ file: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, at offset: Int)
        throws(IOError) -> Int
    {
        try syscall("pread", { pread(file, buffer, count, off_t(offset)) })
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
