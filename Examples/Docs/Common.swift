// Every prelude's part (see README.md here): what each documentation program may use without importing it.
@_exported import Foundation
@_exported import Glibc
@_exported import Protocols
@_exported import Reactor
@_exported import SocketServer
@_exported import SocketServerHTTP

/// Stand-ins are never run.
func standIn<T>() -> T { fatalError("a documentation stand-in") }
