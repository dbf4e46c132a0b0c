import Foundation
import Glibc
import TestSupport
import Testing

@testable import sockserv

/// The CPU figure `sockserv bench` divides by requests, against the kernel's own account of the same
/// processes: `getrusage(RUSAGE_CHILDREN)` once they have exited and been reaped.
@Suite(.serialized)
struct ProcessSampleTests {
    /// A Python program that burns about 0.3 s in user space and 0.2 s in system calls, either itself
    /// (`self`), in a child it reaps before going on (`reaped`), or in a child that stays alive (`live`); then
    /// prints `ready` and waits for its standard input to close.
    static let burner = """
        import os, sys, time
        def burn():
            start = os.times()
            while os.times().user - start.user < 0.3:
                for _ in range(20000): pass
            zero = os.open("/dev/zero", os.O_RDONLY)
            while os.times().system - start.system < 0.2:
                os.read(zero, 1 << 16)
        mode = sys.argv[1]
        if mode == "self":
            burn()
        elif mode == "reaped":
            pid = os.fork()
            if pid == 0:
                burn(); os._exit(0)
            os.waitpid(pid, 0)
        elif mode == "live":
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                burn(); os.write(ready_w, b"x"); sys.stdin.read(); os._exit(0)
            os.read(ready_r, 1)
        elif mode == "many":
            # Eighty live children that ran a few milliseconds each, less than a clock tick.
            ready_r, ready_w = os.pipe()
            pids = []
            for _ in range(80):
                pid = os.fork()
                if pid == 0:
                    start = time.process_time()
                    while time.process_time() - start < 0.005:
                        for _ in range(1000): pass
                    os.write(ready_w, b"x"); sys.stdin.read(); os._exit(0)
                pids.append(pid)
            for _ in pids: os.read(ready_r, 1)
        elif mode == "wide":
            # More children than fit in one page of /proc/PID/task/TID/children.
            pids = []
            for _ in range(800):
                pid = os.fork()
                if pid == 0:
                    sys.stdin.read(); os._exit(0)
                pids.append(pid)
        print("ready", flush=True)
        sys.stdin.read()
        if mode == "live":
            os.waitpid(pid, 0)
        if mode in ("many", "wide"):
            for pid in pids: os.waitpid(pid, 0)
        """

    /// Reaped children's CPU time of this process, from `getrusage`.
    static func reapedChildrenCPU() -> CPUTime {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return CPUTime(user: seconds(usage.ru_utime), system: seconds(usage.ru_stime))
    }

    /// Starts the burner in `mode`, samples it once it is ready, lets it exit and reaps it; returns the
    /// sample and the time `getrusage` charged for it.
    static func sampleBurner(_ mode: String) throws -> (sampled: ProcessSample, kernel: CPUTime) {
        let before = reapedChildrenCPU()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", burner, mode]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        #expect(String(decoding: line, as: UTF8.self) == "ready\n")
        let sampled = ProcessSample.read(process.processIdentifier)
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return (sampled, reapedChildrenCPU() - before)
    }

    static func expectClose(_ sample: ProcessSample, _ kernel: CPUTime, _ mode: String) {
        let sampled = sample.cpu
        print(
            "\(mode): sampled \(sample.cpuSeconds) s, user \(sampled.user) s, system \(sampled.system) s; getrusage user \(kernel.user) s, system \(kernel.system) s"
        )
        #expect(kernel.user >= 0.25 && kernel.system >= 0.15, "the burner burned what it should (\(mode))")
        #expect(abs(sampled.user - kernel.user) <= 0.2 * kernel.user, "user time within 20% (\(mode))")
        #expect(abs(sampled.system - kernel.system) <= 0.2 * kernel.system, "system time within 20% (\(mode))")
        #expect(abs(sample.cpuSeconds - kernel.total) <= 0.2 * kernel.total, "the bench's figure within 20% (\(mode))")
    }

    @Test func aProcessesOwnTimeMatchesGetrusage() throws {
        let (sampled, kernel) = try Self.sampleBurner("self")
        Self.expectClose(sampled, kernel, "self")
    }

    @Test func aReapedChildsTimeCountsForItsParent() throws {
        let (sampled, kernel) = try Self.sampleBurner("reaped")
        Self.expectClose(sampled, kernel, "reaped")
    }

    @Test func aLiveChildsTimeCounts() throws {
        let (sampled, kernel) = try Self.sampleBurner("live")
        Self.expectClose(sampled, kernel, "live")
    }

    /// Eighty live children that ran less than a clock tick each: `utime + stime` rounds each one down,
    /// the run time does not.
    @Test func manyShortChildrenAreNotRoundedAway() throws {
        let (sample, kernel) = try Self.sampleBurner("many")
        print(
            "many: sampled \(sample.cpuSeconds) s (utime + stime \(sample.cpu.total) s) of \(sample.processes) processes; getrusage \(kernel.total) s"
        )
        #expect(sample.processes == 81)
        #expect(abs(sample.cpuSeconds - kernel.total) <= 0.2 * kernel.total)
    }

    /// Eight hundred children: their list is longer than a page, and every one is sampled.
    @Test func everyChildIsFoundPastTheFirstPage() throws {
        let (sample, _) = try Self.sampleBurner("wide")
        #expect(sample.processes == 801)
    }

    /// A command name with spaces and parentheses does not shift the fields.
    @Test func statFieldsStartAfterTheLastParenthesis() throws {
        let line = "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 31 17 5 3 20 0 1 0 100 1000 10\n"
        let fields = try #require(ProcessSample.statFields(line))
        #expect(fields[0] == "S")
        #expect(fields[14 - 3] == "31" && fields[15 - 3] == "17" && fields[16 - 3] == "5" && fields[17 - 3] == "3")
    }
}
