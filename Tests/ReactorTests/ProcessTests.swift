import Foundation
import Glibc
import Reactor
import TestSupport
import Testing

/// Behaviour that ends or protects a whole process, checked in a child process (exit tests).
@Suite struct ProcessTests {
    @Test func usingALoopBoundObjectFromAnotherThreadStopsTheProgram() async {
        await #expect(processExitsWith: .failure) {
            let loop = try EventLoop()
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                try! loop.schedule(after: .seconds(1)) {}  // precondition: not the loop's thread
                done.signal()
            }
            done.wait()
        }
    }

    @Test func writingToAClosedPeerIsAnErrorNotSIGPIPE() async {
        await #expect(processExitsWith: .success) {
            _ = try EventLoop()  // sets up the process: SIGPIPE ignored
            var pair: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { exit(2) }
            close(pair[1])
            let result = write(pair[0], "x", 1)  // plain write(2), no MSG_NOSIGNAL
            exit(result == -1 && errno == EPIPE ? 0 : 3)
        }
    }
}
