import Foundation
import Glibc
import Logging
import Reactor
import SocketServer

/// SIGUSR2: a restart that loses nothing, as nginx replaces its binary. The process starts a new copy of itself
/// (the same arguments, the program found again by its path, so an upgraded binary runs) and hands it the
/// listening sockets as systemd's socket activation does (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`: `serve`
/// for each server's, `metrics` for `--metrics-address`'s), plus a pipe (`SOCKSERV_READY_FD`) it writes to once
/// it serves. Both accept from the same sockets meanwhile, so no client is refused. Then this process drains as
/// on SIGTERM (the grace period, the summary) and exits. If the new process exits, or is not serving within
/// ``readyTimeout``, this one keeps serving and says why.
final class Restart {
    /// How long the new process may take to say it serves.
    static let readyTimeout: Duration = .seconds(30)
    /// The environment variable naming the descriptor a replacement writes to once it serves.
    static let readyVariable = "SOCKSERV_READY_FD"

    private let loop: EventLoop
    private let logger = Logger(label: "sockserv")
    private var child: pid_t = 0
    private var readEnd: Int32 = -1
    private var watcher: IOWatcher?
    private var timer: LoopTimer?
    /// Called on the loop once the new process serves.
    private let succeeded: (pid_t) -> Void

    /// Whether a new process is being started.
    var inProgress: Bool { child != 0 }

    init(loop: EventLoop, succeeded: @escaping (pid_t) -> Void) {
        self.loop = loop
        self.succeeded = succeeded
    }

    /// Starts the new process with `sockets` (name, descriptor); its readiness or failure is reported on the loop.
    func start(_ sockets: [(name: String, descriptor: Int32)]) {
        guard !inProgress else { return logger.notice("SIGUSR2: a restart is already in progress (pid \(child))") }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            return logger.error("SIGUSR2: cannot restart: pipe: \(String(cString: strerror(errno))); still serving")
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        var environment = ProcessInfo.processInfo.environment
        for name in ["LISTEN_PID", "LISTEN_FDS"] { environment[name] = nil }
        environment["LISTEN_FDNAMES"] = sockets.map(\.name).joined(separator: ":")
        environment[Self.readyVariable] = "\(3 + sockets.count)"
        let program = Self.programPath()
        do {
            child = try ChildProcess.spawn(
                program, arguments: Array(CommandLine.arguments.dropFirst()), environment: environment,
                descriptors: sockets.map(\.descriptor) + [fds[1]], listenDescriptors: sockets.count)
        } catch {
            close(fds[0])
            close(fds[1])
            return logger.error("SIGUSR2: cannot start \(program): \(error); still serving")
        }
        close(fds[1])  // the new process holds the write end now: its exit is the end of this pipe
        readEnd = fds[0]
        logger.notice("SIGUSR2: started \(program) as pid \(child) with \(sockets.count) listening sockets")
        do {
            watcher = try IOWatcher(fileDescriptor: readEnd, events: .readable, on: loop) { [unowned self] _ in
                readReady()
            }
            timer = try loop.schedule(after: Self.readyTimeout) { [unowned self] in
                fail("not serving after \(Self.readyTimeout); stopped it (SIGKILL)", kill: true)
            }
        } catch {
            fail("cannot watch it: \(error)", kill: true)
        }
    }

    /// The new process wrote (it serves) or closed its end (it exited first).
    private func readReady() {
        var byte: UInt8 = 0
        let count = read(readEnd, &byte, 1)
        if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard count == 1 else { return fail("it exited before serving", kill: false) }
        let pid = child
        finish()
        logger.notice("SIGUSR2: pid \(pid) serves; finishing the requests in progress here, then exiting")
        succeeded(pid)
    }

    private func fail(_ reason: String, kill killing: Bool) {
        let pid = child
        if killing { kill(pid, SIGKILL) }
        var status = ""
        if case .ended(let raw) = ChildProcess.wait(for: pid, blocking: true) {
            status = raw & 0x7F != 0 ? " (killed by signal \(raw & 0x7F))" : " (exit status \((raw >> 8) & 0xFF))"
        }
        finish()
        logger.error("SIGUSR2: the new process (pid \(pid)) failed: \(reason)\(status); still serving")
    }

    private func finish() {
        watcher?.cancel()
        watcher = nil
        timer?.cancel()
        timer = nil
        if readEnd >= 0 { close(readEnd) }
        readEnd = -1
        child = 0
    }

    /// The program to start: `argv[0]` as this process was started with it (a path, or a name looked up in
    /// `PATH`), so that a binary replaced on disk runs its new version; `/proc/self/exe` if that fails.
    static func programPath() -> String {
        let name = CommandLine.arguments[0]
        if name.contains("/") { return name }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? name
    }

    /// In a process a restart started: says it serves (one byte on `SOCKSERV_READY_FD`, then closed), once.
    static func signalReady() {
        guard let text = ProcessInfo.processInfo.environment[readyVariable], let fd = Int32(text), fd > 2 else {
            return
        }
        unsetenv(readyVariable)
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
        close(fd)
    }

    /// Whether this process was started by a restart (its sockets come from the process it replaces).
    static var isReplacement: Bool { ProcessInfo.processInfo.environment[readyVariable] != nil }
}
