import Foundation
import Glibc
import Reactor
import SocketServer
import TestSupport
import Testing

/// A server on a socket that was bound (and listened on) before it existed, as systemd's socket activation
/// passes them: in every mode, over TCP, Unix streams and UDP.
@Suite struct AdoptionTests {
    func mixIn(_ mode: Mode) -> (ProcessingMixIn, stream: RequestHandlerType, datagram: RequestHandlerType) {
        switch mode {
        case .sequential:
            return (ProcessingMixIn(), .blocking(EchoStreamHandler.self), .blocking(EchoDatagramHandler.self))
        case .threading:
            return (ThreadingMixIn(), .blocking(EchoStreamHandler.self), .blocking(EchoDatagramHandler.self))
        case .forking: return (ForkingMixIn(), .blocking(EchoStreamHandler.self), .blocking(EchoDatagramHandler.self))
        case .reactor:
            return (ReactorMixIn(), .async(AsyncEchoStreamHandler.self), .async(AsyncEchoDatagramHandler.self))
        }
    }

    /// A listening socket made elsewhere, its descriptor handed over as systemd does (blocking, no CLOEXEC).
    func passedListener(_ address: SocketAddress) throws -> Int32 {
        let socket = try Socket(binding: address, kind: .stream, nonBlocking: false)
        try socket.listen(backlog: 16)
        let fd = socket.detach()
        _ = fcntl(fd, F_SETFD, 0)
        return fd
    }

    @Test(arguments: Mode.allCases)
    func aPassedTCPListenerIsServed(mode: Mode) throws {
        guard mode != .forking || forkingIsTestable else { return }
        let fd = try passedListener(try SocketAddress(ipv4: "127.0.0.1", port: 0))
        let (mixIn, handler, _) = self.mixIn(mode)
        let server = try TCPServer(
            adopting: try Socket(adoptingBound: fd, kind: .stream), requestHandler: handler, mixIn: mixIn)
        #expect(server.serverAddress.port != 0)
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0, "made non-blocking")
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0, "made close-on-exec")
        try withServing(server) { () throws in
            #expect(try streamExchange(server.serverAddress) == testLine)
            #expect(try streamExchange(server.serverAddress) == testLine)
        }
        #expect(fcntl(fd, F_GETFD) == -1, "the server closed the descriptor it owned")
    }

    @Test(arguments: [Mode.threading, .reactor])
    func aPassedUnixListenerIsServedAndItsFileKept(mode: Mode) throws {
        let path = temporaryPath()
        defer { unlink(path) }
        let fd = try passedListener(try SocketAddress(unixPath: path))
        let (mixIn, handler, _) = self.mixIn(mode)
        let server = try UnixStreamServer(
            adopting: try Socket(adoptingBound: fd, kind: .stream), requestHandler: handler, mixIn: mixIn)
        #expect(server.serverAddress.path == path)
        try withServing(server) { () throws in
            #expect(try streamExchange(server.serverAddress) == testLine)
        }
        #expect(access(path, F_OK) == 0, "a socket file the server did not bind stays for its owner")
    }

    @Test(arguments: [Mode.sequential, .reactor])
    func aPassedUDPSocketIsServed(mode: Mode) throws {
        let socket = try Socket(
            binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .datagram, nonBlocking: false)
        let (mixIn, _, handler) = self.mixIn(mode)
        let server = try UDPServer(
            adopting: try Socket(adoptingBound: socket.detach(), kind: .datagram), requestHandler: handler, mixIn: mixIn
        )
        try withServing(server) { () throws in
            #expect(try datagramExchange(server.serverAddress) == testLine)
        }
    }

    /// What is not a socket of the kind, or does not listen, is refused with the reason; the descriptor
    /// stays the caller's.
    @Test func theWrongDescriptorsAreRefused() throws {
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { for fd in pipeEnds { close(fd) } }
        #expect(throws: IOError.self) { _ = try Socket(adoptingBound: pipeEnds[0], kind: .stream) }
        #expect(fcntl(pipeEnds[0], F_GETFD) != -1, "left open")

        let bound = try Socket(binding: try SocketAddress(ipv4: "127.0.0.1", port: 0), kind: .stream)
        do {
            _ = try Socket(adoptingBound: bound.fileDescriptor, kind: .stream)
            Issue.record("a bound socket that does not listen was adopted")
        } catch {
            #expect(error.errnoCode == EINVAL && "\(error)".contains("is not listening"), "\(error)")
        }
        do {
            _ = try Socket(adoptingBound: bound.fileDescriptor, kind: .datagram)
            Issue.record("a stream socket was adopted as a datagram socket")
        } catch {
            #expect(error.errnoCode == EPROTOTYPE, "\(error)")
        }
    }
}
