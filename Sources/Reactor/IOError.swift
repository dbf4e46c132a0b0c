import Glibc

/// A system call failed: the `errno` it left and the operation that failed.
///
/// Every fallible libc call in this module goes through `Posix`, which throws this error with
/// errno read at once after the call.
public struct IOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The `errno` value of the failed call, e.g. `ECONNREFUSED`.
    public let errnoCode: Int32
    /// What was attempted, e.g. `"connect"` or `"bind 127.0.0.1:80"`.
    public let operation: String

    public init(errnoCode: Int32, operation: String) {
        self.errnoCode = errnoCode
        self.operation = operation
    }

    /// The system's words for ``errnoCode`` (`strerror`), e.g. "Connection refused".
    public var reason: String { String(cString: strerror(errnoCode)) }

    public var description: String {
        "\(operation) failed: \(reason) (errno \(errnoCode))"
    }
}
