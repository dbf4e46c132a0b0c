// The names README.md's code blocks use without defining them (see README.md here).

/// The README's loop, from its echo server.
public var loop: EventLoop { standIn() }

/// The README's socketserver handler.
open class Handler: StreamRequestHandler {}
