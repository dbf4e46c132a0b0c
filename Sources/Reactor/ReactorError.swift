import Glibc

/// Errors about the state of a Reactor object rather than a failed system call.
///
/// Failed system calls throw ``IOError``. Using a loop-bound object from another thread is a
/// programmer error and stops the program with a precondition naming ``notOnLoopThread``.
public enum ReactorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The object was already closed.
    case alreadyClosed
    /// A loop-bound object was used from a thread other than its loop's (reported by preconditions).
    case notOnLoopThread
    /// A line exceeded the given limit before its newline arrived; the connection is closed.
    case lineTooLong(limit: Int)
    /// A read, write, connect or idle timeout expired.
    case timedOut
    /// The peer closed its side before the requested number of bytes arrived.
    case unexpectedEOF
    /// A file region written to a connection ended early: the file shrank while it was being sent. The
    /// connection is closed, as the peer got less than it was told to expect.
    case fileShrank
    /// Another task is already waiting to read (or to write) on this connection.
    case concurrentOperation
    /// An address string could not be parsed or resolved.
    case invalidAddress(String)
    /// The requested event backend is not available in this libevent build.
    case unsupportedBackend(String)
    /// libevent refused an operation (it reports no errno).
    case libevent(String)
    /// The system could not start a thread (`pthread_create`'s error number: `EAGAIN` at a thread limit).
    case threadStart(Int32)
    /// Work was given to a ``BlockingPool`` that is shut down, or was still queued when it shut down cancelling.
    case poolShutDown

    public var description: String {
        switch self {
        case .alreadyClosed: return "already closed"
        case .notOnLoopThread: return "used from a thread other than its event loop's"
        case .lineTooLong(let limit): return "line longer than \(limit) bytes"
        case .timedOut: return "timed out"
        case .unexpectedEOF: return "unexpected end of input"
        case .fileShrank: return "the file ended before the region written (it shrank while being sent)"
        case .concurrentOperation: return "another operation of the same kind is already waiting"
        case .invalidAddress(let text): return "invalid address: \(text)"
        case .unsupportedBackend(let name): return "event backend not available: \(name)"
        case .libevent(let what): return "libevent: \(what) failed"
        case .threadStart(let code): return "could not start a thread: \(String(cString: strerror(code)))"
        case .poolShutDown: return "the blocking pool is shut down"
        }
    }
}
