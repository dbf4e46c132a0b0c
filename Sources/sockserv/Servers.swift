import Reactor
import SocketServer

/// The stream server for every family and mode: refuses connections beyond `--max-connections` and
/// reports handler errors in one line.
final class SockservStreamServer: TCPServer, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var requestQueueSize: Int32 { 1024 }
    override class var allowReuseAddress: Bool { true }

    /// The most connections served at once; `nil` is unlimited.
    var maxConnections: Int?

    override func verifyRequest(_ request: Request, clientAddress: SocketAddress) -> Bool {
        guard super.verifyRequest(request, clientAddress: clientAddress) else {  // --allow
            ServeContext.stats.add(.refused)
            return false
        }
        guard let maxConnections else { return true }
        // Forking: count the children, which the parent knows at once (a child counts itself open a little later).
        var open = ServeContext.stats[.open]
        if let forking = mixIn as? ForkingMixIn {
            forking.collectChildren()
            open = forking.activeChildren.count
        }
        guard open >= maxConnections else { return true }
        ServeContext.stats.add(.refused)
        return false
    }

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        ServeContext.stats.add(.errors)
        reportError(clientAddress, error)
    }
}

/// The datagram server for every family and mode (echo only).
final class SockservDatagramServer: UDPServer, @unchecked Sendable {
    override class var addressFamilies: [SocketAddress.Family] { [.ipv4, .ipv6, .unix] }
    override class var allowReuseAddress: Bool { true }

    override func handleError(_ request: Request, clientAddress: SocketAddress, error: any Error) {
        ServeContext.stats.add(.errors)
        reportError(clientAddress, error)
    }
}

/// One line on standard error per failed request.
func reportError(_ clientAddress: SocketAddress, _ error: any Error) {
    writeToStandardError("sockserv: request from \(clientAddress): \(error)\n")
}
