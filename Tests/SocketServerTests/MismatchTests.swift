import Foundation
import Glibc
import Reactor
import SocketServer
import TestSupport
import Testing

/// Every server class refuses a handler that does not suit it: at compile time where the types can say
/// so (a blocking handler for a `Reactor*` class, an async one for a threading class, another mode for a
/// combined class), otherwise with `ServerError.handlerDoesNotMatchMode` from `init`.
@Suite struct MismatchTests {
    /// The package's root, for the C module maps a client of the modules needs.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `Modules` directory of the build this test binary belongs to (`.build/debug`, `.build-asan/debug`...).
    static var modulesDirectory: URL? {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("Modules/SocketServer.swiftmodule")
            if FileManager.default.fileExists(atPath: candidate.path) {
                return directory.appendingPathComponent("Modules")
            }
            directory.deleteLastPathComponent()
        }
        return nil
    }

    /// Type-checks `code` as a client of SocketServer would: the compiler's status and its errors.
    static func typecheck(_ code: String) throws -> (status: Int32, errors: String) {
        let modules = try #require(modulesDirectory, "the build's Modules directory, next to the test binary")
        let source = temporaryPath("swift")
        defer { unlink(source) }
        let prelude = """
            import Reactor
            import SocketServer
            final class Stream: StreamRequestHandler {}
            final class Datagram: DatagramRequestHandler {}
            final class AsyncStream: AsyncStreamRequestHandler {}
            final class AsyncDatagram: AsyncDatagramRequestHandler {}
            final class Callback: CallbackRequestHandler {}
            let ip = try SocketAddress(ipv4: "127.0.0.1", port: 0)
            let path = try SocketAddress(unixPath: "/tmp/x.sock")

            """
        try (prelude + code + "\n").write(toFile: source, atomically: true, encoding: .utf8)
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compiler.arguments = [
            "swiftc", "-typecheck", "-I", modules.path,
            "-Xcc", "-fmodule-map-file=" + packageRoot.appendingPathComponent("CLibevent/module.modulemap").path,
            "-Xcc", "-fmodule-map-file=" + packageRoot.appendingPathComponent("CPosix/module.modulemap").path,
            "-Xcc", "-fmodule-map-file=" + packageRoot.appendingPathComponent("COpenSSL/module.modulemap").path, source,
        ]
        let output = Pipe()
        compiler.standardOutput = output
        compiler.standardError = output
        try compiler.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try output.fileHandleForReading.close()  // now, not whenever the handle is freed: other tests count descriptors
        compiler.waitUntilExit()
        let errors = text.split(separator: "\n").filter { $0.contains("error:") }
        return (compiler.terminationStatus, errors.joined(separator: "\n"))
    }

    /// The harness itself: the right handler for each class compiles.
    @Test func suitableHandlersCompile() throws {
        let result = try Self.typecheck(
            """
            _ = try ReactorTCPServer(ip, handler: AsyncStream.self)
            _ = try ReactorTCPServer(ip, handler: Callback.self)
            _ = try ReactorUDPServer(ip, handler: AsyncDatagram.self)
            _ = try ReactorUnixStreamServer(path, handler: Callback.self)
            _ = try ReactorUnixDatagramServer(path, handler: AsyncDatagram.self)
            _ = try ThreadingTCPServer(ip, handler: Stream.self)
            _ = try ForkingUDPServer(ip, handler: Datagram.self)
            """)
        #expect(result.status == 0, "\(result.errors)")
    }

    /// One misuse per class; each must fail to compile.
    @Test(arguments: [
        "_ = try ReactorTCPServer(ip, handler: Stream.self)",
        "_ = try ReactorUDPServer(ip, handler: Datagram.self)",
        "_ = try ReactorUDPServer(ip, handler: AsyncStream.self)",
        "_ = try ReactorUnixStreamServer(path, handler: Stream.self)",
        "_ = try ReactorUnixDatagramServer(path, handler: Datagram.self)",
        "_ = try ThreadingTCPServer(ip, handler: AsyncStream.self)",
        "_ = try ThreadingUDPServer(ip, requestHandler: .blocking(Datagram.self), mixIn: ForkingMixIn())",
        "_ = try ThreadingUnixStreamServer(path, handler: Callback.self)",
        "_ = try ThreadingUnixDatagramServer(path, handler: AsyncDatagram.self)",
        "_ = try ForkingTCPServer(ip, requestHandler: .blocking(Stream.self), mixIn: ThreadingMixIn())",
        "_ = try ForkingUDPServer(ip, handler: AsyncDatagram.self)",
        "_ = try ForkingUnixStreamServer(path, handler: AsyncStream.self)",
        "_ = try ForkingUnixDatagramServer(path, handler: Callback.self)",
    ])
    func unsuitableHandlersDoNotCompile(code: String) throws {
        let result = try Self.typecheck(code)
        #expect(result.status != 0, "compiled: \(code)")
        #expect(result.errors.contains("error:"), "\(code): \(result.errors)")
    }

    /// What the types allow but cannot serve: refused by `init` with a reason.
    @Test func unsuitableHandlersTheTypesAllowAreRefusedByInit() throws {
        let ip = try SocketAddress(ipv4: "127.0.0.1", port: 0)
        let path = try SocketAddress(unixPath: temporaryPath())
        let cases: [(String, () throws -> BaseServer)] = [
            (
                "a datagram handler on a stream server",
                { try ThreadingTCPServer(ip, handler: EchoDatagramHandler.self) }
            ),
            ("a stream handler on a datagram server", { try ForkingUDPServer(ip, handler: EchoStreamHandler.self) }),
            (
                "a stream handler on a Unix datagram server",
                { try UnixDatagramServer(path, handler: EchoStreamHandler.self) }
            ),
            (
                "an async datagram handler on a stream server",
                { try TCPServer(ip, requestHandler: .async(AsyncEchoDatagramHandler.self), mixIn: ReactorMixIn()) }
            ),
            (
                "a callback handler on a datagram server",
                { try UDPServer(ip, requestHandler: .callback(CallbackPoisonableHandler.self), mixIn: ReactorMixIn()) }
            ),
            (
                "an async handler in threading mode",
                { try TCPServer(ip, requestHandler: .async(AsyncEchoStreamHandler.self), mixIn: ThreadingMixIn()) }
            ),
            (
                "a blocking handler in reactor mode",
                { try UnixStreamServer(path, requestHandler: .blocking(EchoStreamHandler.self), mixIn: ReactorMixIn()) }
            ),
        ]
        for (what, make) in cases {
            do {
                let server = try make()
                server.serverClose()
                Issue.record("\(what) was accepted")
            } catch let error as ServerError {
                guard case .handlerDoesNotMatchMode(let reason) = error else {
                    Issue.record("\(what): \(error)")
                    continue
                }
                #expect(!reason.isEmpty, "\(what)")
            }
        }
    }
}
