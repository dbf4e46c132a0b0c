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
}
