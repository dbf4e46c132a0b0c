import Glibc
import Reactor
import SocketServer
import SocketServerHTTP
import TestSupport
import Testing

/// What a server holds is let go with it: once served, shut down, closed and dropped, the server and its loop are
/// freed and every descriptor it opened is closed.
@Suite struct ReleaseTests {
    @Test(arguments: Mode.testable)
    func aServedAndClosedServerIsFreed(mode: Mode) throws {
        weak var weakServer: HTTPServer?
        weak var weakLoop: EventLoop?
        let before = descriptorCount(of: getpid())
        do {
            let server = try makeServer(mode) { FixedPageHandler() }
            weakServer = server
            weakLoop = server.loop
            try serving(server) { address in
                let response = try request(address, "GET", "/")
                #expect(response.status == 200)
            }
        }
        // The thread that ran serveForever lets go of its closure, and the server with it, after signalling.
        #expect(eventually { weakServer == nil }, "the server")
        #expect(eventually { weakLoop == nil }, "its loop")
        #expect(eventually { descriptorCount(of: getpid()) <= before }, "\(descriptorCount(of: getpid())) > \(before)")
    }
}
