import Foundation
import Glibc
import Synchronization

/// CPU time in seconds, split as the kernel keeps it.
struct CPUTime: Equatable {
    var user = 0.0
    var system = 0.0

    var total: Double { user + system }

    static func + (a: CPUTime, b: CPUTime) -> CPUTime { CPUTime(user: a.user + b.user, system: a.system + b.system) }
    static func - (a: CPUTime, b: CPUTime) -> CPUTime { CPUTime(user: a.user - b.user, system: a.system - b.system) }

    /// This process's own time and its reaped children's, from `getrusage`.
    static func ofThisProcess() -> CPUTime {
        of(RUSAGE_SELF) + of(RUSAGE_CHILDREN)
    }

    /// `getrusage` for `who`: this process (`RUSAGE_SELF`) or its reaped children (`RUSAGE_CHILDREN`).
    static func of(_ who: __rusage_who) -> CPUTime {
        var usage = rusage()
        getrusage(who.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return CPUTime(user: seconds(usage.ru_utime), system: seconds(usage.ru_stime))
    }
}

/// What `/proc` says about a server process and its children. The one place sockserv (and its tests) read
/// another process's CPU, memory and threads.
struct ProcessSample {
    /// Memory of the process and its children, in bytes: the proportional set size (PSS), so pages
    /// that forked children share with the parent are counted once, not once per child.
    var memory = 0
    /// Threads of the process and its children.
    var threads = 0
    /// The process and its live children.
    var processes = 0
    /// CPU time of the process, of its live children and of the children it has reaped (`utime + stime`
    /// of each, and the process's `cutime + cstime`), as the kernel reports them: in clock ticks, each
    /// process's rounded down on its own.
    var cpu = CPUTime()
    /// User + system CPU seconds of the same processes, each live one to the nanosecond where the kernel
    /// allows (see ``cpuSeconds(_:)``): the figure the bench divides by requests.
    var cpuSeconds = 0.0

    /// Reads `/proc` for `pid` and every process whose parent is `pid`.
    static func read(_ pid: pid_t) -> ProcessSample {
        var sample = ProcessSample()
        for member in [pid] + children(of: pid) {
            guard let status = readProcFile("/proc/\(member)/status") else { continue }
            sample.processes += 1
            for line in status.split(separator: "\n") where line.hasPrefix("Threads:") {
                sample.threads += Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? "") ?? 0
            }
            sample.memory += proportionalSetSize(member)
            let times = cpuTimes(member)
            let reaped = member == pid ? times.reapedChildren : CPUTime()
            sample.cpu = sample.cpu + times.own + reaped
            sample.cpuSeconds += max(runTime(member), times.own.total) + reaped.total
        }
        return sample
    }

    /// Live processes whose parent is `pid`.
    static func children(of pid: pid_t) -> [pid_t] {
        // Linux lists a process's children per thread; the main thread's list covers fork() from it,
        // and the server forks only from its serving thread.
        var result: [pid_t] = []
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for task in tasks {
            if let text = readProcFile("/proc/\(pid)/task/\(task)/children") {
                result += text.split(separator: " ").compactMap {
                    pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }
        }
        return result
    }

    /// The CPU time of one process (`utime + stime`) and that of its children already reaped
    /// (`cutime + cstime`); zero if the process is gone.
    static func cpuTimes(_ pid: pid_t) -> (own: CPUTime, reapedChildren: CPUTime) {
        guard let text = readProcFile("/proc/\(pid)/stat"),
            let fields = statFields(text)
        else { return (CPUTime(), CPUTime()) }
        // proc(5) numbers the fields from 1: utime 14, stime 15, cutime 16, cstime 17, in clock ticks.
        func seconds(_ number: Int) -> Double {
            (Double(fields[number - 3]) ?? 0) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
        return (CPUTime(user: seconds(14), system: seconds(15)), CPUTime(user: seconds(16), system: seconds(17)))
    }

    /// User + system CPU seconds of one live process: the run time of its threads to the nanosecond
    /// (``runTime(_:)``), or its `utime + stime` if that is more, as it is when threads that have exited ran
    /// longer than a clock tick. `utime + stime` alone would not do: the kernel rounds each process's time
    /// down to a tick (10 ms here), which loses most of the time of a thousand forked children that each
    /// ran a few milliseconds.
    static func cpuSeconds(_ pid: pid_t) -> Double {
        max(runTime(pid), cpuTimes(pid).own.total)
    }

    /// The time the live threads of `pid` have run, in seconds, to the nanosecond: the first field of
    /// each `/proc/PID/task/TID/schedstat`.
    static func runTime(_ pid: pid_t) -> Double {
        var nanoseconds: UInt64 = 0
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        for task in tasks {
            if let text = readProcFile("/proc/\(pid)/task/\(task)/schedstat"),
                let value = text.split(separator: " ").first.flatMap({ UInt64($0) })
            {
                nanoseconds += value
            }
        }
        return Double(nanoseconds) / 1e9
    }

    /// The fields of a `/proc/PID/stat` line from field 3 (the state) on: the command name, field 2, is in
    /// parentheses and may itself hold spaces and parentheses, so the split starts after the last `)`.
    static func statFields(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        return fields.count >= 17 - 2 ? fields : nil
    }

    /// The whole text of a `/proc` file, read until the end: such a file reports size 0 and is produced a page
    /// per `read`, and Foundation's `String(contentsOfFile:)` returned only the first 4,096 bytes of a
    /// children list (683 of a thousand forked children).
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[..<count]
        }
    }

    /// The proportional set size of one process in bytes (`Pss:` of `/proc/PID/smaps_rollup`).
    static func proportionalSetSize(_ pid: pid_t) -> Int {
        guard let text = readProcFile("/proc/\(pid)/smaps_rollup") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return 0
    }
}

/// Samples a server every 100 ms on a thread of its own, keeping the peaks.
final class PeakSampler: Sendable {
    private let peaks = Mutex(ProcessSample())
    private let running = Atomic<Bool>(true)
    private let finished = DispatchSemaphore(value: 0)

    init(pid: pid_t) {
        Thread.detachNewThread { [self] in
            while running.load(ordering: .relaxed) {
                let sample = ProcessSample.read(pid)
                peaks.withLock { peak in
                    peak.memory = max(peak.memory, sample.memory)
                    peak.threads = max(peak.threads, sample.threads)
                    peak.processes = max(peak.processes, sample.processes)
                }
                usleep(100_000)
            }
            finished.signal()
        }
    }

    /// Stops sampling and returns the peaks.
    func stop() -> ProcessSample {
        running.store(false, ordering: .relaxed)
        finished.wait()
        return peaks.withLock { $0 }
    }
}
