import Foundation
import Glibc
import Synchronization

/// What `/proc` says about a server process and its children.
struct ProcessSample {
    /// Memory of the process and its children, in bytes: the proportional set size (PSS), so pages
    /// that forked children share with the parent are counted once, not once per child.
    var memory = 0
    /// Threads of the process and its children.
    var threads = 0
    /// The process and its live children.
    var processes = 0
    /// CPU time (user + system) of the process and its live children, in seconds.
    var cpuSeconds = 0.0

    /// Reads `/proc` for `pid` and every process whose parent is `pid`.
    static func read(_ pid: pid_t) -> ProcessSample {
        var sample = ProcessSample()
        for member in [pid] + children(of: pid) {
            guard let status = try? String(contentsOfFile: "/proc/\(member)/status", encoding: .utf8) else { continue }
            sample.processes += 1
            for line in status.split(separator: "\n") where line.hasPrefix("Threads:") {
                sample.threads += Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last ?? "") ?? 0
            }
            sample.memory += proportionalSetSize(member)
            sample.cpuSeconds += cpuTime(member, includingReapedChildren: member == pid)
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
            if let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8) {
                result += text.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        }
        return result
    }

    /// User + system CPU seconds of one process, and of its children already reaped if asked.
    static func cpuTime(_ pid: pid_t, includingReapedChildren: Bool) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ").compactMap { Double($0) }
        guard fields.count > 14 else { return 0 }
        let ticks = fields[11] + fields[12] + (includingReapedChildren ? fields[13] + fields[14] : 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The proportional set size of one process in bytes (`Pss:` of `/proc/PID/smaps_rollup`).
    static func proportionalSetSize(_ pid: pid_t) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return 0 }
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
