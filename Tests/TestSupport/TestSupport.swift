import Foundation
import Glibc
import Reactor

// Helpers every test target shares: blocking clients, descriptor counts, temporary paths, polling.

/// Scales the heavy tests' counts and sizes: `SOCKETSERVER_TEST_LOAD` (the sanitizer runs use 0.1), 1 by default.
public let testLoad = ProcessInfo.processInfo.environment["SOCKETSERVER_TEST_LOAD"].flatMap(Double.init) ?? 1

/// `count` scaled by ``testLoad``, at least 1.
public func scaled(_ count: Int) -> Int { max(1, Int(Double(count) * testLoad)) }

/// A unique temporary path ending in `name` (not created).
public func temporaryPath(_ name: String = "sock") -> String {
    "/tmp/socketserver-test-\(getpid())-\(UUID().uuidString.prefix(8)).\(name)"
}

/// The number of descriptors this process has open.
public func openDescriptorCount() -> Int {
    descriptorCount(of: getpid())
}

/// The number of descriptors process `pid` has open, from `/proc/PID/fd`.
public func descriptorCount(of pid: pid_t) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

/// Polls `condition` every 5 ms for up to `limit`; for states that have no event to wait on.
public func eventually(within limit: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

/// A blocking client connected to `address`, each receive and send bounded by `timeout`.
public func connectedClient(_ address: SocketAddress, timeout: Duration = .seconds(10)) throws -> Socket {
    let client = try Socket(family: address.family, kind: .stream)
    client.timeout = timeout
    try client.connect(to: address)
    return client
}

/// Sends `text` on an open `client` and reads until as many bytes came back (or the server closed): whether they match.
public func echoes(_ client: Socket, _ text: String) throws -> Bool {
    let bytes = Array(text.utf8)
    try client.sendAll(bytes)
    var reply: [UInt8] = []
    while reply.count < bytes.count {
        let chunk = try client.receive(maxCount: 64 * 1024)
        if chunk.isEmpty { break }
        reply += chunk
    }
    return reply == bytes
}

/// Reads from `client` until the server closes (or the client's timeout), returning everything.
public func readToEnd(_ client: Socket) -> [UInt8] {
    var bytes: [UInt8] = []
    while let chunk = try? client.receive(maxCount: 64 * 1024), !chunk.isEmpty { bytes += chunk }
    return bytes
}

/// Whether the server closed `client` (end of input or a reset) within the client's timeout; a
/// timeout is not a close.
public func closedByServer(_ client: Socket) -> Bool {
    while true {
        do {
            if try client.receive(maxCount: 64 * 1024).isEmpty { return true }
        } catch let error as IOError {
            return error.errnoCode == ECONNRESET
        } catch {
            return false
        }
    }
}

/// Closes `socket` with a TCP reset instead of an orderly FIN.
public func reset(_ socket: Socket) {
    var option = linger(l_onoff: 1, l_linger: 0)
    _ = setsockopt(socket.fileDescriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
    socket.close()
}

/// Runs a command from the machine (a real client) and returns its exit status and output, or `nil`
/// when the command is not installed.
public func runClient(_ command: String, _ arguments: [String], input: String? = nil) throws -> (
    status: Int32, output: String
)? {
    guard
        let path = ["/usr/bin/", "/bin/", "/usr/local/bin/"].map({ $0 + command }).first(
            where: FileManager.default.isExecutableFile)
    else {
        return nil
    }
    let process = Process()
    let output = Pipe()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = output
    process.standardError = output
    let inputPipe = Pipe()
    process.standardInput = inputPipe
    try process.run()
    if let input { inputPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inputPipe.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The bytes of the file at `path` as text, read with `read(2)` to its end; `nil` if it cannot be opened. For a
/// file another process is still writing (a trace): Foundation's `String(contentsOfFile:)` sizes its buffer from
/// `stat` and, when the file grows while it reads, leaks a buffer (LeakSanitizer reports it).
public func fileText(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}
