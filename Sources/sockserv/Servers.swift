import Reactor
import SocketServer
import SocketServerHTTP

/// The stream server for every family and mode: refuses connections beyond `--max-connections` and
/// reports handler errors in one line.
final class SockservStreamServer: TCPServer, SessionServer, HTTPServing, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var requestQueueSize: Int32 { 1024 }
    override class var allowReuseAddress: Bool { true }

    let context: ServeContext

    init(
        _ address: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop
    ) throws {
        self.context = context
        try super.init(address, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: false, loop: loop)
    }

    /// `serve http`'s configuration; `nil` for the other services.
    var httpService: HTTPService?
    var http: HTTPService {
        guard let httpService else { preconditionFailure("an HTTP connection on a server without HTTPService") }
        return httpService
    }

    /// The most connections served at once; `nil` is unlimited.
    var maxConnections: Int?

    override func verifyRequest(_ request: Request, clientAddress: SocketAddress) -> Bool {
        guard super.verifyRequest(request, clientAddress: clientAddress) else {  // --allow
            context.stats.add(.refused)
            return false
        }
        guard let maxConnections else { return true }
        // Forking: count the children, which the parent knows at once (a child counts itself open a little later).
        var open = context.stats[.open]
        if let forking = mixIn as? ForkingMixIn {
            forking.collectChildren()
            open = forking.activeChildren.count
        }
        guard open >= maxConnections else { return true }
        context.stats.add(.refused)
        return false
    }

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        context.stats.add(.errors)
        reportError(clientAddress, error)
    }
}

/// The datagram server for every family and mode (echo only).
final class SockservDatagramServer: UDPServer, SessionServer, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var allowReuseAddress: Bool { true }

    let context: ServeContext

    init(
        _ address: SocketAddress, requestHandler: RequestHandlerType, mixIn: ProcessingMixIn, context: ServeContext,
        loop: EventLoop
    ) throws {
        self.context = context
        try super.init(address, requestHandler: requestHandler, mixIn: mixIn, bindAndActivate: false, loop: loop)
    }

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        context.stats.add(.errors)
        reportError(clientAddress, error)
    }
}

/// One line on standard error per failed request.
func reportError(_ clientAddress: SocketAddress, _ error: any Error) {
    writeToStandardError("sockserv: request from \(clientAddress): \(error)\n")
}
