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
}
