import Foundation
import Glibc
import Reactor
import Synchronization
import TestSupport
import Testing

@Suite struct EventLoopTests {
    @Test(arguments: ["epoll", "poll", "select"])
    func backendIsSelectableAndReported(name: String) throws {
        let loop = try EventLoop(backend: EventLoop.Backend(rawValue: name)!)
        #expect(loop.backendName == name)
    }

    @Test func automaticBackendIsEpollOnLinux() throws {
        #expect(try EventLoop().backendName == "epoll")
        #expect(EventLoop.supportedBackends.contains("epoll"))
    }

    @Test func stopBeforeRunMakesRunReturnAtOnce() throws {
        let loop = try EventLoop()
        loop.stop()
        let start = ContinuousClock.now
        try loop.run()
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    /// Starts `loop.run()` on a new thread; returns once the loop has run a first callback, and a
    /// semaphore signalled when `run()` returns.
    private func startOnThread(_ loop: EventLoop) -> DispatchSemaphore {
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        loop.execute { started.signal() }
        Thread.detachNewThread {
            try? loop.run()
            finished.signal()
        }
        started.wait()
        return finished
    }

    @Test func stopFromAnotherThreadWakesAnIdleLoop() throws {
        let loop = try EventLoop()
        let finished = startOnThread(loop)
        // The loop now waits in epoll_wait with no event and no timeout: only a wake-up can end it.
        let start = ContinuousClock.now
        loop.stop()
        #expect(finished.wait(timeout: .now() + 5) == .success, "stop() did not wake the loop")
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func executeFromAnotherThreadRunsOnTheLoopThreadInOrder() throws {
        let loop = try EventLoop()
        let finished = startOnThread(loop)
        let seen = Mutex<[Int]>([])
        let onLoop = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        for i in 0..<100 {
            loop.execute {
                seen.withLock { $0.append(i) }
                if loop.inEventLoop { onLoop.add(1, ordering: .relaxed) }
                if i == 99 { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 5) == .success, "execute() did not wake the loop")
        #expect(seen.withLock { $0 } == Array(0..<100))
        #expect(onLoop.load(ordering: .relaxed) == 100)
        #expect(!loop.inEventLoop)
        loop.stop()
        #expect(finished.wait(timeout: .now() + 5) == .success)
    }

    @Test func runOnceWithTimeoutReturnsWhenNothingHappens() throws {
        let loop = try EventLoop()
        let start = ContinuousClock.now
        try loop.runOnce(timeout: .milliseconds(50))
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(45) && elapsed < .seconds(2))
        try loop.runOnce(timeout: .zero)
    }

    @Test func runOnceRunsReadyCallbacks() throws {
        let loop = try EventLoop()
        var fired = 0
        try loop.schedule(after: .milliseconds(1)) { fired += 1 }
        while fired == 0 { try loop.runOnce(timeout: .seconds(2)) }
        #expect(fired == 1)
    }

    @Test func tasksWithTheLoopAsExecutorRunOnTheLoopThread() throws {
        try runLoop { loop in
            loop.test {
                #expect(loop.inEventLoop)
                await Task.yield()
                #expect(loop.inEventLoop)
                let value = await Counter(loop: loop).increment()
                #expect(value == 1)
                #expect(loop.inEventLoop)
            }
        }
    }

    @Test(arguments: [SIGINT, SIGTERM, SIGHUP, SIGUSR1])
    func signalsAreHandledOnTheLoop(signalNumber: Int32) throws {
        var received: [Int32] = []
        try runLoop { loop in
            var watcher: SignalWatcher?
            watcher = try loop.onSignal(signalNumber) { signal in
                #expect(loop.inEventLoop)
                received.append(signal)
                watcher?.cancel()
                loop.stop()
            }
            // Without the watcher, each of these signals would end the test process.
            try loop.schedule(after: .milliseconds(1)) { kill(getpid(), signalNumber) }
        }
        #expect(received == [signalNumber])
    }

    /// A signal blocked in the thread (as a test runner's children inherit it) is unblocked by watching it.
    @Test func watchingASignalUnblocksIt() throws {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGUSR2)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        var received = false
        try runLoop { loop in
            var now = sigset_t()
            pthread_sigmask(SIG_BLOCK, nil, &now)
            #expect(sigismember(&now, SIGUSR2) == 1, "blocked before")
            var watcher: SignalWatcher?
            watcher = try loop.onSignal(SIGUSR2) { _ in
                received = true
                watcher?.cancel()
                loop.stop()
            }
            pthread_sigmask(SIG_BLOCK, nil, &now)
            #expect(sigismember(&now, SIGUSR2) == 0, "unblocked by watching it")
            try loop.schedule(after: .milliseconds(1)) { kill(getpid(), SIGUSR2) }
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        #expect(received)
    }

    @Test func ioWatcherSeesAPipeBecomeReadable() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        var got: [UInt8] = []
        try runLoop { loop in
            var watcher: IOWatcher?
            watcher = try IOWatcher(fileDescriptor: fds[0], events: .readable, on: loop) { events in
                #expect(events.contains(.readable))
                var byte: UInt8 = 0
                if read(fds[0], &byte, 1) == 1 { got.append(byte) }
                if got.count == 3 {
                    watcher?.cancel()
                    loop.stop()
                }
            }
            try loop.schedule(after: .milliseconds(1)) { _ = write(fds[1], "abc", 3) }
        }
        #expect(got == Array("abc"))
    }

    @Test func ioWatcherSeesAPipeBecomeWritableAgain() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        defer {
            close(fds[0])
            close(fds[1])
        }
        // Fill the pipe so it is not writable.
        let block = [UInt8](repeating: 1, count: 4096)
        while write(fds[1], block, block.count) > 0 {}
        var writableSeen = false
        try runLoop { loop in
            var watcher: IOWatcher?
            watcher = try IOWatcher(fileDescriptor: fds[1], events: .writable, on: loop) { events in
                #expect(events == .writable)
                writableSeen = true
                watcher?.cancel()
                loop.stop()
            }
            // Drain it: only then may the watcher fire.
            try loop.schedule(after: .milliseconds(20)) {
                #expect(!writableSeen)
                var sink = [UInt8](repeating: 0, count: 65536)
                while read(fds[0], &sink, sink.count) > 0 {}
            }
        }
        #expect(writableSeen)
    }
}

/// An actor whose executor is the loop.
actor Counter {
    let loop: EventLoop
    var value = 0
    init(loop: EventLoop) { self.loop = loop }
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    func increment() -> Int {
        loop.preconditionInEventLoop()
        value += 1
        return value
    }
}

@Suite struct RunOnceTests {
    @Test func runOnceWithZeroTimeoutReturnsWhileADescriptorStaysReady() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        _ = write(fds[1], "x", 1)  // readable, and never drained
        let loop = try EventLoop()
        var calls = 0
        let watcher = try IOWatcher(fileDescriptor: fds[0], events: .readable, on: loop) { _ in calls += 1 }
        try loop.runOnce(timeout: .zero)
        try loop.runOnce(timeout: .zero)
        watcher.cancel()
        #expect(calls == 2, "one pass per runOnce, not a spin")
    }
}

/// `spawn` with a body that throws: the error is the task's result. (A main-actor body on a loop on the main
/// thread, as top-level code spawns it, is tested in a real program: ExampleTests' embedded loop.)
@Suite struct ThrowingSpawnTests {
    struct Failure: Error {}

    @Test func aSpawnedBodyMayThrow() throws {
        let loop = try EventLoop()
        let caught = Mutex<(any Error)?>(nil)
        let failing = loop.spawn { throw Failure() }
        loop.spawn {
            do { try await failing.value } catch { caught.withLock { $0 = error } }
            loop.stop()
        }
        try loop.run()
        #expect(caught.withLock { $0 } is Failure)
    }
}
