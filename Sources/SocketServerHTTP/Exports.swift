// `import SocketServerHTTP` is enough, as `from http.server import ...` is in Python: the module re-exports what
// its API names, SocketServer (`BaseServer`, the servers, and through it the Reactor's `SocketAddress`) and
// Protocols (`HTTP.Headers`, `HTTP.Method`).
@_exported import Protocols
@_exported import SocketServer
