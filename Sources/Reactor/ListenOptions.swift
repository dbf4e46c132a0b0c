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

    public init(backlog: Int32 = 511, reuseAddress: Bool = true, reusePort: Bool = false, noDelay: Bool = true) {
        self.backlog = backlog
        self.reuseAddress = reuseAddress
        self.reusePort = reusePort
        self.noDelay = noDelay
    }
}
