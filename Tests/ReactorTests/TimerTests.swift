import Reactor
import TestSupport
import Testing

@Suite struct TimerTests {
    @Test func oneShotTimersFireInDeadlineOrder() throws {
        var order: [Int] = []
        try runLoop { loop in
            for delay in [30, 10, 20, 5] {
                try loop.schedule(after: .milliseconds(delay)) {
                    order.append(delay)
                    if order.count == 4 { loop.stop() }
                }
            }
        }
        #expect(order == [5, 10, 20, 30])
    }

    @Test func cancelledTimerDoesNotFire() throws {
        var fired: [String] = []
        try runLoop { loop in
            let cancelled = try loop.schedule(after: .milliseconds(10)) { fired.append("cancelled") }
            #expect(cancelled.isPending)
            cancelled.cancel()
            #expect(!cancelled.isPending)
            try loop.schedule(after: .milliseconds(50)) {
                fired.append("kept")
                loop.stop()
            }
        }
        #expect(fired == ["kept"])
    }

    @Test func repeatingTimerRepeatsUntilCancelled() throws {
        var ticks = 0
        let clock = ContinuousClock()
        let start = clock.now
        try runLoop { loop in
            try loop.scheduleRepeating(every: .milliseconds(5)) { timer in
                ticks += 1
                if ticks == 5 {
                    timer.cancel()
                    try! loop.schedule(after: .milliseconds(30)) { loop.stop() }
                }
            }
        }
        #expect(ticks == 5)
        #expect(clock.now - start >= .milliseconds(25))
    }
}
