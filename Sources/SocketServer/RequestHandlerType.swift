import Reactor

/// The handler class a server instantiates per request: Python's `RequestHandlerClass`.
public enum RequestHandlerType: Sendable {
    /// A handler whose `handle()` blocks: sequential, threading and forking modes.
    case blocking(BaseRequestHandler.Type)
    /// A handler whose `handle()` is `async`: reactor mode.
    case async(AsyncBaseRequestHandler.Type)
    /// A handler called back as bytes arrive, with no task per connection: reactor mode, stream servers.
    case callback(CallbackRequestHandler.Type)

    /// Whether the handler runs on the server's loop (reactor mode).
    var runsOnLoop: Bool {
        if case .blocking = self { return false }
        return true
    }

    /// Why the handler cannot serve requests of `kind`, or `nil` if it can: a datagram handler on a stream
    /// server, a stream or callback handler on a datagram server.
    func mismatch(with kind: Socket.Kind) -> String? {
        let servesDatagrams: Bool
        let name: String
        switch self {
        case .blocking(let handler):
            if !(handler is DatagramRequestHandler.Type) && !(handler is StreamRequestHandler.Type) { return nil }
            (servesDatagrams, name) = (handler is DatagramRequestHandler.Type, "\(handler)")
        case .async(let handler):
            if !(handler is AsyncDatagramRequestHandler.Type) && !(handler is AsyncStreamRequestHandler.Type) {
                return nil
            }
            (servesDatagrams, name) = (handler is AsyncDatagramRequestHandler.Type, "\(handler)")
        case .callback(let handler):
            (servesDatagrams, name) = (false, "\(handler), a callback handler,")
        }
        switch (servesDatagrams, kind) {
        case (true, .stream): return "\(name) serves datagrams, not a stream server's connections"
        case (false, .datagram): return "\(name) serves connections, not a datagram server's packets"
        default: return nil
        }
    }

}
