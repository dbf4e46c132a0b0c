import Glibc

/// How a ``Listener`` sets up its socket.
public struct ListenOptions: Sendable {
    /// The accept queue length passed to `listen(2)` (the kernel caps it at `net.core.somaxconn`).
    public var backlog: Int32
    /// Allow binding a port with connections in `TIME_WAIT`; the corresponding C constant is `SO_REUSEADDR`. IP only.
    public var reuseAddress: Bool
    /// Let several sockets bind the same port, the kernel spreading connections; the corresponding C
    /// constant is `SO_REUSEPORT`. IP only.
    public var reusePort: Bool
    /// Set `TCP_NODELAY` on accepted TCP connections, so small replies are not delayed.
    public var noDelay: Bool
    /// The permission bits of a Unix socket file, set before listening; connecting needs write
    /// permission. Default `0o600`: only the owner's processes may connect.
    public var unixPermissions: mode_t
    /// Accept only IPv6 clients on an IPv6 address; the corresponding C constant is `IPV6_V6ONLY`. Default
    /// false: a listener on `[::]:port` is dual stack and takes IPv4 clients too, as Python's `AF_INET6`
    /// listeners and SocketServer's `TCPServer` do on Linux.
    public var ipv6Only: Bool

    public init(
        backlog: Int32 = 511, reuseAddress: Bool = true, reusePort: Bool = false, noDelay: Bool = true,
        ipv6Only: Bool = false, unixPermissions: mode_t = 0o600
    ) {
        self.backlog = backlog
        self.ipv6Only = ipv6Only
        self.unixPermissions = unixPermissions
        self.reuseAddress = reuseAddress
        self.reusePort = reusePort
        self.noDelay = noDelay
    }
}
