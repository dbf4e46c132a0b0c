import Foundation
import Reactor
import ServiceLifecycle
import Synchronization

/// A server is a `ServiceLifecycle` service: ``run()`` serves on a thread of its own until the task is
/// cancelled or the `ServiceGroup` starts a graceful shutdown, then lets requests in progress finish
/// (as ``serverClose()`` does for the mode; with ``shutdownGracePeriod`` set, for at most that long, as
/// ``shutdown(gracePeriod:)`` does: an idle keep-alive client then cannot hold the service) and returns.
///
/// ```swift
/// let server = try ReactorTCPServer(address, handler: Echo.self)
/// let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// For several servers, timers and watchers on one loop, use ``EventLoopService``.
extension BaseServer: Service {
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runOnThread(named: "SocketServer \(serverAddress)") { [self] in
                    defer {
                        if let shutdownGracePeriod { shutdown(gracePeriod: shutdownGracePeriod) }
                        serverClose()
                    }
                    try serveForever()
                }
            } onCancel: {
                self.requestShutdown()
            }
        } onGracefulShutdown: {
            self.requestShutdown()
        }
    }
}

/// One `EventLoop` run as a `ServiceLifecycle` service, on a thread of its own, with the
/// servers, timers and watchers a daemon puts on it.
///
/// ``run()`` starts the thread, calls `setUp` there (make timers and watchers; they live until
/// `tearDown`), starts every server (``BaseServer/startServing(pollInterval:)``) and runs the loop. On
/// a graceful shutdown or cancellation it stops accepting, calls `tearDown`, lets each server's
/// requests in progress finish (``BaseServer/serverClose()``; with a `gracePeriod`, for at most that long, every
/// server drained at once with ``BaseServer/shutdown(_:gracePeriod:)``), and returns.
public final class EventLoopService: Service, @unchecked Sendable {
    /// The loop; everything on it runs on the service's thread.
    public let loop: EventLoop
    /// The servers served on ``loop``; each must have been made with it.
    public let servers: [BaseServer]
    /// How long the requests in progress may take to finish at shutdown, over every server; `nil` waits for them
    /// (``BaseServer/serverClose()``).
    public let gracePeriod: Duration?
    private let setUp: (EventLoop) throws -> Void
    private let tearDown: (EventLoop) -> Void

    /// - Parameters:
    ///   - loop: the loop to run.
    ///   - servers: servers made with `loop` (their `loop:` argument).
    ///   - setUp: called on the loop thread before serving, to add timers and watchers.
    ///   - tearDown: called on the loop thread when stopping, to cancel them.
    ///   - gracePeriod: how long requests in progress may take to finish at shutdown; `nil` waits for them.
    public init(
        loop: EventLoop, servers: [BaseServer], setUp: @escaping (EventLoop) throws -> Void = { _ in },
        tearDown: @escaping (EventLoop) -> Void = { _ in }, gracePeriod: Duration? = nil
    ) {
        precondition(servers.allSatisfy { $0.loop === loop }, "every server must be made with the service's loop")
        self.loop = loop
        self.servers = servers
        self.gracePeriod = gracePeriod
        self.setUp = setUp
        self.tearDown = tearDown
    }

    public func run() async throws {
        let stopping = StopFlag()
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runOnThread(named: "EventLoopService") { [self] in
                    loop.takeOwnership()
                    try setUp(loop)
                    defer {
                        tearDown(loop)
                        if let gracePeriod { BaseServer.shutdown(servers, gracePeriod: gracePeriod) }
                        for server in servers { server.serverClose() }
                    }
                    for server in servers { try server.startServing() }
                    defer { for server in servers { server.stopServing() } }
                    while !stopping.isSet { try loop.run() }
                }
            } onCancel: {
                stopping.set()
                self.loop.stop()
            }
        } onGracefulShutdown: {
            stopping.set()
            self.loop.stop()
        }
    }
}

/// A flag set once from any thread.
private final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}

/// Runs `body` on a new thread and waits for it without blocking the caller's executor.
private func runOnThread(named name: String, _ body: @escaping @Sendable () throws -> Void) async throws {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let thread = Thread {
            do {
                try body()
                continuation.resume()
            } catch {
                continuation.resume(throwing: error)
            }
        }
        thread.name = name
        thread.start()
    }
}
