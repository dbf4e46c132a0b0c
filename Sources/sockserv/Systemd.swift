import Foundation
import Glibc
import Reactor

/// systemd's protocols, as `sd_listen_fds(3)` and `sd_notify(3)` define them, without libsystemd.
enum Systemd {
    /// A socket systemd passed (socket activation).
    struct PassedSocket {
        let fileDescriptor: Int32
        /// Its `FileDescriptorName=` (from `LISTEN_FDNAMES`), `unknown` without one.
        let name: String
    }

    /// The first descriptor passed (`SD_LISTEN_FDS_START`).
    static let firstDescriptor: Int32 = 3

    /// The sockets passed to this process: `LISTEN_FDS` descriptors from 3, when `LISTEN_PID` is this
    /// process. Empty otherwise.
    static func passedSockets(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        -> [PassedSocket]
    {
        guard let pid = environment["LISTEN_PID"].flatMap({ pid_t($0) }), pid == getpid(),
            let count = environment["LISTEN_FDS"].flatMap({ Int32($0) }), count > 0
        else { return [] }
        let names = environment["LISTEN_FDNAMES"]?.split(separator: ":", omittingEmptySubsequences: false) ?? []
        return (0..<count).map { index in
            PassedSocket(
                fileDescriptor: firstDescriptor + index,
                name: Int(index) < names.count && !names[Int(index)].isEmpty ? String(names[Int(index)]) : "unknown")
        }
    }

    /// Removes the activation variables, so that processes this one starts do not take the sockets for theirs
    /// (`sd_listen_fds(1)`).
    static func forgetPassedSockets() {
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) }
    }

    /// Whether this process was started with passed sockets (for `--host`/`--port` checks before serving).
    static var wasPassedSockets: Bool { !passedSockets().isEmpty }

    /// `NOTIFY_SOCKET`'s messages (`READY=1`, `STOPPING=1`, `STATUS=...`, `WATCHDOG=1`): one datagram each.
    final class Notifier: @unchecked Sendable {
        private let socket: Socket
        private let address: SocketAddress
        /// How often the watchdog wants a ping: half of `WATCHDOG_USEC`, when it is set for this process.
        let watchdogInterval: Duration?

        /// A notifier when `NOTIFY_SOCKET` names a socket path; `nil` without one. An abstract name (`@...`)
        /// is not supported: a warning says so and nothing is sent (systemd's own is a path).
        /// - Throws: ``IOError`` or ``ReactorError`` when the socket cannot be made or the path is too long.
        init?(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws {
            guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
            guard !path.hasPrefix("@") else {
                serveLogger.warning("NOTIFY_SOCKET \(path): abstract socket names are not supported; not notifying")
                return nil
            }
            address = try SocketAddress(unixPath: path)
            socket = try Socket(family: .unix, kind: .datagram)
            let pidMatches = environment["WATCHDOG_PID"].map { pid_t($0) == getpid() } ?? true
            if pidMatches, let usec = environment["WATCHDOG_USEC"].flatMap({ Int($0) }), usec > 0 {
                watchdogInterval = .microseconds(usec / 2)
            } else {
                watchdogInterval = nil
            }
        }

        /// Sends `state` (newline-separated assignments); a failure is logged, never fatal.
        func notify(_ state: String) {
            let bytes = Array(state.utf8)
            do {
                try send(bytes)
            } catch {
                serveLogger.warning("NOTIFY_SOCKET: cannot send \(state.split(separator: "\n").first ?? ""): \(error)")
            }
        }

        private func send(_ bytes: [UInt8]) throws(IOError) {
            let socket = self.socket
            let address = self.address
            var failure: IOError?
            bytes.withUnsafeBytes { buffer in
                do throws(IOError) { try socket.send(buffer, to: address) } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }
}
