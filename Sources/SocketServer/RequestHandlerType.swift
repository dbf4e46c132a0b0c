/// The handler class a server instantiates per request: Python's `RequestHandlerClass`.
public enum RequestHandlerType: Sendable {
    /// A handler whose `handle()` blocks: sequential, threading and forking modes.
    case blocking(BaseRequestHandler.Type)
    /// A handler whose `handle()` is `async`: reactor mode.
    case async(AsyncBaseRequestHandler.Type)

    var isAsync: Bool {
        if case .async = self { return true }
        return false
    }
}
