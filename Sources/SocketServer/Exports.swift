// `import SocketServer` is enough, as `import socketserver` is in Python: the module re-exports what its API
// names, the Reactor's types (`SocketAddress`, `EventLoop`, `Socket`, `Connection`, `TLSContext`) and
// swift-log's `Logger` (``BaseServer/logger``).
@_exported import Logging
@_exported import Reactor
