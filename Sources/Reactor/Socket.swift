import CLibevent
import Glibc

/// Creating and binding sockets, shared by listeners, datagram sockets and outbound connections.
enum Socket {
    static let stream = Int32(SOCK_STREAM.rawValue)
    static let datagram = Int32(SOCK_DGRAM.rawValue)

    /// A non-blocking, close-on-exec socket bound to `address`; closed again if any step fails.
    ///
    /// For a Unix address, a socket file left by a dead process is replaced; a live one, or a file
    /// that is not a socket, is `EADDRINUSE`.
    static func bound(
        to address: SocketAddress, type: Int32, reuseAddress: Bool = false, reusePort: Bool = false
    ) throws(IOError) -> (fd: Int32, unixFile: UnixSocketFile?) {
        let fd = try Posix.socket(domain: address.family.rawValue, type: type)
        do {
            switch address.family {
            case .ipv4, .ipv6:
                if reuseAddress { try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "setsockopt SO_REUSEADDR") }
                if reusePort { try Posix.setOption(fd, level: SOL_SOCKET, name: SO_REUSEPORT, value: 1, "setsockopt SO_REUSEPORT") }
                if address.family == .ipv6 {
                    try Posix.setOption(fd, level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 1, "setsockopt IPV6_V6ONLY")
                }
            case .unix:
                try removeStaleSocketFile(address, type: type)
            }
            try address.withSockAddr { (pointer, length) throws(IOError) in
                _ = try Posix.syscall("bind \(address)", { bind(fd, pointer, length) })
            }
            let unixFile = address.path.map { UnixSocketFile(path: $0) }
            return (fd, unixFile)
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    /// Removes a Unix socket file nobody listens on; throws `EADDRINUSE` if someone does or it is not a socket.
    private static func removeStaleSocketFile(_ address: SocketAddress, type: Int32) throws(IOError) {
        let path = address.path!
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw IOError(errnoCode: EADDRINUSE, operation: "bind \(address) (the path exists and is not a socket)")
        }
        let probe = try Posix.socket(domain: AF_UNIX, type: type)
        defer { Posix.close(probe) }
        let result = address.withSockAddr { connect(probe, $0, $1) }
        let code = errno
        guard result != 0 && code == ECONNREFUSED else {
            throw IOError(errnoCode: EADDRINUSE, operation: "bind \(address) (another socket is listening there)")
        }
        unlink(path)
    }

    /// Sets `TCP_NODELAY` on a TCP socket; a no-op for other families.
    static func disableNagle(_ fd: Int32) {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// The socket file a Unix listener created, removed on close only if it is still the same file.
struct UnixSocketFile {
    let path: String
    private let device: UInt
    private let inode: UInt

    init(path: String) {
        var info = stat()
        _ = lstat(path, &info)
        self.path = path
        device = UInt(info.st_dev)
        inode = UInt(info.st_ino)
    }

    /// Unlinks the path if it is still the file this socket created (not one a later server bound).
    func remove() {
        var info = stat()
        if lstat(path, &info) == 0 && UInt(info.st_dev) == device && UInt(info.st_ino) == inode {
            unlink(path)
        }
    }
}
