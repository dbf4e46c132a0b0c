import Glibc

/// Forking and reaping child processes through the module's syscall boundary, for servers that fork a
/// process per request (SocketServer's forking mode). Not loop-bound.
///
/// A child of a process whose loop it inherited must call ``EventLoop/reinitAfterFork()`` before it
/// touches the loop, and leaves with `_exit`.
public enum ChildProcess {
    /// What waiting for a child found.
    public enum Outcome: Equatable, Sendable {
        /// The child ended and is reaped; `status` is the raw `waitpid` status.
        case ended(status: Int32)
        /// The child is still running (only when not blocking).
        case running
        /// Not a child of this process, or reaped already (`ECHILD`).
        case notAChild
    }

    /// Forks the calling process (`fork(2)`), flushing every stdio stream first (`fflush(NULL)`).
    ///
    /// Without the flush, output the program had buffered (stdout to a pipe or a file is fully buffered)
    /// would be copied into every child and written once more by each child that flushes on its way out:
    /// a line printed before serving would appear once per request. (Python's forking child leaves with
    /// `os._exit`, which drops its copy, and with it whatever the handler printed unflushed; SocketServer's
    /// child flushes what its handler printed, so the copy must be empty.)
    /// - Returns: the child's pid in the parent, 0 in the child.
    /// - Throws: ``IOError`` (`EAGAIN`, `ENOMEM`) if no child could be made.
    public static func fork() throws(IOError) -> pid_t {
        fflush(nil)
        return try Posix.fork()
    }

    /// Waits for `pid` to end, or only checks with `blocking: false` (`waitpid`, `WNOHANG`), retrying `EINTR`.
    /// Waits for that one child only: children the program started elsewhere are left alone.
    public static func wait(for pid: pid_t, blocking: Bool) -> Outcome {
        do {
            let (result, status) = try Posix.waitpid(pid, blocking: blocking)
            return result == pid ? .ended(status: status) : .running
        } catch {
            return .notAChild
        }
    }

    /// Starts the program at `path` (`fork`, then `execve`; no search of `PATH`) with `arguments` after its
    /// `argv[0]` (`path`) and exactly `environment`. It keeps descriptors 0 to 2, gets `descriptors` as 3, 4, ...
    /// in order, and nothing else open, whatever their close-on-exec flags; its signals are unblocked. With
    /// `listenDescriptors` above 0, the first that many are passed as systemd's socket activation passes sockets
    /// (`sd_listen_fds(3)`): `LISTEN_FDS` is set to their count and `LISTEN_PID` to the new process's pid, which
    /// only the new process can know (so it is written between fork and exec). The child makes only
    /// async-signal-safe calls before it execs, as a threaded process's child must; one that cannot exec exits 127.
    /// - Returns: the new process's pid; reap it with ``wait(for:blocking:)``.
    /// - Throws: ``IOError`` if no process could be made.
    public static func spawn(
        _ path: String, arguments: [String], environment: [String: String], descriptors: [Int32] = [],
        listenDescriptors: Int = 0
    ) throws(IOError) -> pid_t {
        precondition(listenDescriptors <= descriptors.count, "more listen descriptors than descriptors")
        var environment = environment
        if listenDescriptors > 0 {
            environment["LISTEN_FDS"] = "\(listenDescriptors)"
            environment["LISTEN_PID"] = nil
        }
        var strings = ([path] + arguments).map { strdup($0) }
        let argumentCount = strings.count
        strings += environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        // Room for "LISTEN_PID=" and any pid's digits, filled in by the child.
        let listenPID = listenDescriptors > 0 ? strdup("LISTEN_PID=" + String(repeating: "0", count: 20)) : nil
        if let listenPID { strings.append(listenPID) }
        defer { for string in strings { free(string) } }
        let argv = Array(strings[..<argumentCount]) + [nil]
        let envp = Array(strings[argumentCount...]) + [nil]
        fflush(nil)  // as fork() does: what the parent buffered must not be written again (here, lost by execve)
        return try Posix.spawn(path, argv, envp, listenPID: listenPID, fds: descriptors)
    }
}
