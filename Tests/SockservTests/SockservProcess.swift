import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

@testable import sockserv

/// The sanitizer the tests run under (`address`, `thread`; `make check-sanitizers` sets `SOCKETSERVER_SANITIZER`), if any.
let sanitizer = ProcessInfo.processInfo.environment["SOCKETSERVER_SANITIZER"]

/// Whether memory figures mean anything: not under a sanitizer, whose shadow memory and quarantine grow the
/// server's RSS by hundreds of MiB.
let measuresMemory = sanitizer == nil

/// The built `sockserv` binary, next to the test bundle.
let sockservPath: String = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        Bundle.main.bundleURL.deletingLastPathComponent(),
        Bundle.main.bundleURL,
    ]
    for directory in candidates {
        let path = directory.appendingPathComponent("sockserv").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return candidates[0].appendingPathComponent("sockserv").path
}()

/// A real `sockserv` child process, with its standard output and error captured.
final class SockservProcess {
    let process = Process()
    private let stdout = Pipe()
    private let stderr = Pipe()
    /// The first line of standard output.
    private(set) var firstLine = ""

    /// Starts `sockserv arguments`; with `fileLimit`, under that `RLIMIT_NOFILE` (through the shell's `ulimit -n`);
    /// with `launcher`, through that command (`systemd-socket-activate -l PORT`), which execs sockserv; with
    /// `environment`, with these variables added.
    /// `executable` is another program built with sockserv (an example) instead.
    init(
        _ arguments: [String], fileLimit: Int? = nil, launcher: [String] = [], environment: [String: String] = [:],
        executable: String = sockservPath
    ) throws {
        if let fileLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", executable] + arguments
        } else if let command = launcher.first {
            process.executableURL = URL(fileURLWithPath: command)
            process.arguments = launcher.dropFirst() + [executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
    }

    /// A test that failed before stopping its server does not leave it running. Reaped here with
    /// `waitUntilExit()`, after which Foundation lets go of the `Process` (polling `isRunning` alone leaves it in a
    /// reference cycle, which LeakSanitizer reports).
    deinit {
        guard process.processIdentifier != 0 else { return }  // never started: run() threw
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Reads the first line of standard output (waiting up to 10 s) and returns it.
    func readFirstLine() -> String {
        firstLine = readLine() ?? ""
        return firstLine
    }

    /// Reads the next line of standard output, waiting up to `timeout`; `nil` at the end of output or time.
    func readLine(timeout: Duration = .seconds(10)) -> String? {
        let fd = stdout.fileHandleForReading.fileDescriptor
        var bytes: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }

    /// Standard error read so far by ``waitForStandardError(containing:timeout:)``.
    private var errorSoFar: [UInt8] = []

    /// Reads standard error until it contains `text`, up to `timeout`; whether it did. What was read is
    /// still part of ``standardError``.
    func waitForStandardError(containing text: String, timeout: Duration = .seconds(10)) -> Bool {
        let fd = stderr.fileHandleForReading.fileDescriptor
        let deadline = ContinuousClock.now + timeout
        while !String(decoding: errorSoFar, as: UTF8.self).contains(text) {
            guard ContinuousClock.now < deadline else { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &chunk, chunk.count)
            guard count > 0 else { return false }
            errorSoFar += chunk[..<count]
        }
        return true
    }

    /// Standard error read so far (by ``waitForStandardError(containing:timeout:)``), without waiting for its end:
    /// for a process whose standard error another process shares (the one a restart started).
    var standardErrorSoFar: String { String(decoding: errorSoFar, as: UTF8.self) }

    /// The port from a `listening on HOST:PORT` line (followed by ` (tls)` with TLS).
    var port: Int? { Bench.port(inListeningLine: firstLine) }

    /// Sends `signal` and waits up to 10 s for the exit; returns the status, or `nil` if it did not exit.
    func stop(with signal: Int32 = SIGTERM) -> Int32? {
        kill(process.processIdentifier, signal)
        return waitForExit()
    }

    func waitForExit() -> Int32? {
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)  // not SIGTERM, which may be what did not work
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Resident memory in KiB, from `/proc/PID/status`.
    var residentKiB: Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// User plus system CPU time in seconds (the bench's own reading of `/proc/PID/stat`).
    var cpuSeconds: Double { ProcessSample.cpuSeconds(process.processIdentifier) }

    /// Standard output not read yet, to its end (after exit).
    var standardOutputRest: String {
        String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Everything written to standard error (after exit).
    var standardError: String {
        String(decoding: errorSoFar + stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}
