import Foundation
import Reactor
import ServiceLifecycle
import Testing

@testable import SocketServer

/// Every Swift name in the porting guide's tables (`PortingFromPython.md`), each with a reference to it
/// that compiles only if the name exists with that shape. The test below holds the guide to this list.
private var surface: [String: Any] {
    [
        // Module names
        "BaseServer": BaseServer.self,
        "TCPServer": TCPServer.self,
        "UDPServer": UDPServer.self,
        "UnixStreamServer": UnixStreamServer.self,
        "UnixDatagramServer": UnixDatagramServer.self,
        "ThreadingMixIn": ThreadingMixIn.self,
        "ForkingMixIn": ForkingMixIn.self,
        "ThreadingTCPServer": ThreadingTCPServer.self,
        "ThreadingUDPServer": ThreadingUDPServer.self,
        "ThreadingUnixStreamServer": ThreadingUnixStreamServer.self,
        "ThreadingUnixDatagramServer": ThreadingUnixDatagramServer.self,
        "ForkingTCPServer": ForkingTCPServer.self,
        "ForkingUDPServer": ForkingUDPServer.self,
        "ForkingUnixStreamServer": ForkingUnixStreamServer.self,
        "ForkingUnixDatagramServer": ForkingUnixDatagramServer.self,
        "BaseRequestHandler": BaseRequestHandler.self,
        "StreamRequestHandler": StreamRequestHandler.self,
        "DatagramRequestHandler": DatagramRequestHandler.self,
        "SocketWriter": SocketWriter.self,
        "EventLoop": EventLoop.self,
        // BaseServer
        "BaseServer/init(serverAddress:requestHandler:mixIn:loop:group:)": BaseServer.init(
            serverAddress:requestHandler:mixIn:loop:group:),
        "BaseServer/serverAddress": \BaseServer.serverAddress,
        "BaseServer/requestHandler": \BaseServer.requestHandler,
        "BaseServer/timeout": \BaseServer.timeout,
        "BaseServer/socketTimeout": \BaseServer.socketTimeout,
        "BaseServer/fileno": \BaseServer.fileno,
        "BaseServer/serveForever(pollInterval:)": BaseServer.serveForever(pollInterval:),
        "BaseServer/shutdown()": BaseServer.shutdown as (BaseServer) -> () -> Void,
        "BaseServer/shutdown(gracePeriod:)": BaseServer.shutdown(gracePeriod:),
        "BaseServer/requestShutdown()": BaseServer.requestShutdown,
        "BaseServer/serviceActions()": BaseServer.serviceActions,
        "BaseServer/handleRequest()": BaseServer.handleRequest,
        "BaseServer/handleTimeout()": BaseServer.handleTimeout,
        "BaseServer/verifyRequest(_:clientAddress:)": BaseServer.verifyRequest(_:clientAddress:),
        "BaseServer/processRequest(_:clientAddress:)": BaseServer.processRequest(_:clientAddress:),
        "finishRequest(_:clientAddress:)": (
            { (server: BaseServer, request: Request, address: SocketAddress) throws in
                try server.finishRequest(request, clientAddress: address)
            },
            { (server: BaseServer, request: Request, address: SocketAddress) async throws in
                try await server.finishRequest(request, clientAddress: address)  // the reactor mode's overload
            }
        ),
        "BaseServer/shutdownRequest(_:)": BaseServer.shutdownRequest(_:),
        "BaseServer/closeRequest(_:)": BaseServer.closeRequest(_:),
        "BaseServer/handleError(_:clientAddress:error:)": BaseServer.handleError(_:clientAddress:error:),
        "BaseServer/serverBind()": BaseServer.serverBind,
        "BaseServer/serverActivate()": BaseServer.serverActivate,
        "BaseServer/serverClose()": BaseServer.serverClose,
        "BaseServer/getRequest()": BaseServer.getRequest,
        "BaseServer/closing(_:)": { (server: BaseServer) in server.closing { _ in } },
        "handleRequestNoBlock(honoringShutdown:)": BaseServer.handleRequestNoBlock(honoringShutdown:),
        "BaseServer/mixIn": \BaseServer.mixIn,
        "BaseServer/loop": \BaseServer.loop,
        "BaseServer/startServing(pollInterval:)": BaseServer.startServing(pollInterval:),
        "BaseServer/stopServing()": BaseServer.stopServing,
        "BaseServer/logger": \BaseServer.logger,
        "BaseServer/allowedClients": \BaseServer.allowedClients,
        "BaseServer/proxyProtocol": \BaseServer.proxyProtocol,
        "BaseServer/proxyHeaderTimeout": \BaseServer.proxyHeaderTimeout,
        // Handlers that connect elsewhere
        "SocketAddress.resolve(host:port:)": SocketAddress.resolve(host:port:),
        "Socket(family:kind:)": { try Socket(family: .ipv4, kind: .stream) },
        "Socket.timeout": \Socket.timeout,
        "Socket.connect(to:)": Socket.connect(to:),
        "Connection.connect(host:port:on:timeout:tls:serverName:resolver:)":
            Connection.connect(host:port:on:timeout:tls:serverName:resolver:),
        "BaseServer/metrics": \BaseServer.metrics,
        // TCPServer, UDPServer and the Unix servers
        "TCPServer/init(_:handler:bindAndActivate:loop:)": TCPServer.init(_:handler:bindAndActivate:loop:),
        "TCPServer/init(_:requestHandler:mixIn:bindAndActivate:loop:group:)": TCPServer.init(
            _:requestHandler:mixIn:bindAndActivate:loop:group:),
        "TCPServer/addressFamily": \TCPServer.addressFamily,
        "TCPServer/addressFamilies": TCPServer.addressFamilies,
        "TCPServer/ipv6Only": \TCPServer.ipv6Only,
        "TCPServer/socketKind": TCPServer.socketKind,
        "requestQueueSize": (TCPServer.requestQueueSize, \TCPServer.requestQueueSize),
        "allowReuseAddress": (TCPServer.allowReuseAddress, \TCPServer.allowReuseAddress),
        "allowReusePort": (TCPServer.allowReusePort, \TCPServer.allowReusePort),
        "TCPServer/unixSocketPermissions-property": \TCPServer.unixSocketPermissions,
        "TCPServer/socket": \TCPServer.socket,
        "maxPacketSize": (UDPServer.maxPacketSize, \UDPServer.maxPacketSize),
        "TCPServer/tls": \TCPServer.tls,
        "TCPServer/lingerTimeout": \TCPServer.lingerTimeout,
        // ThreadingMixIn and ForkingMixIn
        "ThreadingMixIn/daemonThreads": \ThreadingMixIn.daemonThreads,
        "ProcessingMixIn/blockOnClose": \ProcessingMixIn.blockOnClose,
        "ThreadingMixIn/processRequest(_:clientAddress:server:)": ThreadingMixIn.processRequest(
            _:clientAddress:server:),
        "ThreadingMixIn/processRequestThread(_:clientAddress:server:)": ThreadingMixIn.processRequestThread(
            _:clientAddress:server:),
        "ThreadingMixIn/serverClose(_:)": ThreadingMixIn.serverClose(_:),
        "ThreadingMixIn/activeThreads": \ThreadingMixIn.activeThreads,
        "ProcessingMixIn/timeout": \ProcessingMixIn.timeout,
        "ForkingMixIn/activeChildren": \ForkingMixIn.activeChildren,
        "ForkingMixIn/maxChildren": \ForkingMixIn.maxChildren,
        "ForkingMixIn/collectChildren(blocking:)": ForkingMixIn.collectChildren(blocking:),
        "ForkingMixIn/processRequest(_:clientAddress:server:)": ForkingMixIn.processRequest(_:clientAddress:server:),
        "ForkingMixIn/handleTimeout(_:)": ForkingMixIn.handleTimeout(_:),
        "ForkingMixIn/serviceActions(_:)": ForkingMixIn.serviceActions(_:),
        "ForkingMixIn/serverClose(_:)": ForkingMixIn.serverClose(_:),
        "ForkingMixIn/childExited(_:status:)": ForkingMixIn.childExited(_:status:),
        // Request handlers
        "BaseRequestHandler/init(request:clientAddress:server:)": BaseRequestHandler.init(
            request:clientAddress:server:),
        "BaseRequestHandler/request": \BaseRequestHandler.request,
        "BaseRequestHandler/clientAddress": \BaseRequestHandler.clientAddress,
        "BaseRequestHandler/server": \BaseRequestHandler.server,
        "BaseRequestHandler/setup()": BaseRequestHandler.setup,
        "BaseRequestHandler/handle()": BaseRequestHandler.handle,
        "BaseRequestHandler/finish()": BaseRequestHandler.finish,
        "StreamRequestHandler/connection": \StreamRequestHandler.connection,
        "StreamRequestHandler/writeBufferSize": \StreamRequestHandler.writeBufferSize,
        "StreamRequestHandler/timeout": \StreamRequestHandler.timeout,
        "StreamRequestHandler/disableNagleAlgorithm": \StreamRequestHandler.disableNagleAlgorithm,
        "StreamRequestHandler/rfile": \StreamRequestHandler.rfile,
        "StreamRequestHandler/wfile": \StreamRequestHandler.wfile,
        "StreamRequestHandler/setup()": StreamRequestHandler.setup,
        "StreamRequestHandler/finish()": StreamRequestHandler.finish,
        "DatagramRequestHandler/packet": \DatagramRequestHandler.packet,
        "DatagramRequestHandler/socket": \DatagramRequestHandler.socket,
        "DatagramRequestHandler/rfile": \DatagramRequestHandler.rfile,
        "DatagramRequestHandler/wfile": \DatagramRequestHandler.wfile,
        "DatagramRequestHandler/finish()": DatagramRequestHandler.finish,
        // Only in Swift
        "ProcessingMixIn": ProcessingMixIn.self,
        "ProcessingMixIn/logger": \ProcessingMixIn.logger,
        "ReactorMixIn": ReactorMixIn.self,
        "ReactorTCPServer": ReactorTCPServer.self,
        "ReactorUDPServer": ReactorUDPServer.self,
        "ReactorUnixStreamServer": ReactorUnixStreamServer.self,
        "ReactorUnixDatagramServer": ReactorUnixDatagramServer.self,
        "AsyncBaseRequestHandler": AsyncBaseRequestHandler.self,
        "AsyncStreamRequestHandler": AsyncStreamRequestHandler.self,
        "AsyncDatagramRequestHandler": AsyncDatagramRequestHandler.self,
        "CallbackRequestHandler": CallbackRequestHandler.self,
        "CallbackRequestHandler/handleDrain()": CallbackRequestHandler.handleDrain,
        "AsyncBaseRequestHandler/handleDrain()": AsyncBaseRequestHandler.handleDrain,
        "DrainReport": DrainReport.self,
        "BaseServer/isDraining": \BaseServer.isDraining,
        "BaseServer/drainProcess()": BaseServer.drainProcess,
        "ThreadingServer": (any ThreadingServer).self,
        "ForkingServer": (any ForkingServer).self,
        "Request": Request.self,
        "RequestHandlerType": RequestHandlerType.self,
        "ServerError": ServerError.self,
        "AddressRange": AddressRange.self,
        "ServerMetrics": ServerMetrics.self,
        "Service": { (server: BaseServer) -> any Service in server },  // a BaseServer is one
        "EventLoopService": EventLoopService.self,
    ]
}

@Suite struct PortingGuideTests {
    /// The Swift names of the guide's tables: the second column of the `| Python | Swift |` tables and the first
    /// of `| Swift | what it is |`, each code span that is a name (not prose, not a call like `resolve(host: "")`).
    static func guideNames() throws -> [String] {
        let guide = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/SocketServer/SocketServer.docc/PortingFromPython.md")
        let text = try String(contentsOf: guide, encoding: .utf8)
        let span = try Regex(#"``([^`]+)``|`([^`]+)`"#)
        let name = try Regex(#"[A-Za-z_][\w./]*(\([\w:]*\))?(-[\w.]+)?"#)
        var column: Int?
        var names: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("| Python | Swift") {
                column = 1
            } else if line.hasPrefix("| Swift | what") {
                column = 0
            } else if !line.hasPrefix("|") {
                column = nil
            } else if let column, !line.hasPrefix("|---") {
                let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst()
                let cell = String(cells[cells.startIndex + column])
                for match in cell.matches(of: span) {
                    let code = String(match.output[1].substring ?? match.output[2].substring ?? "")
                    if code.wholeMatch(of: name) != nil { names.append(code) }
                }
            }
        }
        return names
    }

    /// Every name the guide gives exists (this file's reference to it compiles), and every reference here
    /// is one the guide gives, so the list cannot drift from the guide.
    @Test func everyNameInThePortingGuideExists() throws {
        let names = try Self.guideNames()
        #expect(names.count > 100, "the guide's tables were read")
        let missing = Set(names).subtracting(surface.keys)
        #expect(missing.isEmpty, "in the guide but not referenced here (does the name exist?): \(missing.sorted())")
        let unused = Set(surface.keys).subtracting(names)
        #expect(unused.isEmpty, "referenced here but not in the guide: \(unused.sorted())")
    }
}
