import Glibc

/// A joinable thread of the Reactor's own: a ``LoopGroup``'s loop thread or a ``BlockingPool`` worker. A POSIX
/// thread (Foundation's `Thread` is not a dependency of this module), named for the kernel, with SIGPIPE and the
/// process's other signals left to the threads that asked for them.
struct ReactorThread: @unchecked Sendable {
    private let handle: pthread_t

    /// Starts a thread named `name` (15 bytes at most show in `ps -L`) that runs `body`.
    /// - Throws: ``ReactorError/threadStart(_:)`` if the system cannot start one.
    static func start(named name: String, _ body: @escaping @Sendable () -> Void) throws(ReactorError) -> ReactorThread
    {
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, trampoline, context)
        guard result == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw .threadStart(result)
        }
        return ReactorThread(handle: handle)
    }

    /// Waits for the thread to end. Once per thread, from another thread.
    func join() {
        pthread_join(handle, nil)
    }

    /// Whether the calling thread is this one.
    var isCurrent: Bool { pthread_equal(handle, pthread_self()) != 0 }

    private final class Start {
        let name: String
        let body: @Sendable () -> Void

        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    private static let trampoline: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = {
        context in
        let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
        Posix.setThreadName(start.name)
        start.body()
        return nil
    }
}
