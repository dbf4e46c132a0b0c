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

    /// Forks the calling process (`fork(2)`).
    /// - Returns: the child's pid in the parent, 0 in the child.
    /// - Throws: ``IOError`` (`EAGAIN`, `ENOMEM`) if no child could be made.
    public static func fork() throws(IOError) -> pid_t {
        try Posix.fork()
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
}
