// Machine: the run's header (CPU, BLAS, load, settings) and the meter of CPU time used by other programs.
import Foundation
import Tensor

enum Machine {
    /// Prints what a reader needs to judge the figures: when, where, how loaded, how sampled.
    static func printHeader(_ settings: TimingSettings) {
        let date = ISO8601DateFormatter().string(from: Date())
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        print("date: \(date)   cpu: \(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("blas: \(Gemm.library)" + (Gemm.replacedCore.map { " (fidq chose \(Gemm.coreName): OpenBLAS fell back to \($0) on this CPU)" } ?? ""))
        print("load average (1, 5, 15 min): \(loadAverage())")
        print("timing: \(settings.description)")
    }

    /// With `BENCH_QUIET` set, waits until other programs use less than that many cores (over
    /// 1 s windows), for at most `BENCH_QUIET_WAIT` seconds; then measures anyway, saying so on
    /// stderr. The row's `other+steal` column still shows what happened during the measurement.
    static func waitForQuiet(_ settings: TimingSettings) throws {
        guard let limit = settings.quietLoad else { return }
        let start = monotonicSeconds()
        var last = 0.0
        while monotonicSeconds() - start < settings.quietWait {
            let meter = LoadMeter(peers: [])
            usleep(1_000_000)
            guard let f = meter.foreignCores() else { return }
            last = f.other + f.steal
            if last < limit { return }
        }
        FileHandle.standardError.write(
            Data(String(format: "bench: still %.2f cores busy elsewhere after %.0f s; measuring anyway\n",
                        last, settings.quietWait).utf8))
    }

    /// `/proc/loadavg`'s three averages, or "n/a".
    static func loadAverage() -> String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "n/a" }
        return text.split(separator: " ").prefix(3).joined(separator: ", ")
    }
}

/// CPU time spent by programs other than this benchmark and its peers while it measured, from
/// `/proc/stat` and `/proc/PID/stat` (Linux only; `nil` elsewhere). High values mean the
/// figures of that row are not trustworthy; steal is time the hypervisor gave to other guests.
struct LoadMeter {
    private struct Snapshot {
        var busy = 0.0, steal = 0.0, total = 0.0, ours = 0.0
    }
    private let pids: [Int32]
    private let start: Snapshot?

    /// Starts measuring; `pids` are the peers (this process is always counted as ours).
    init(peers pids: [Int32]) {
        self.pids = pids
        self.start = LoadMeter.snapshot(pids)
    }

    /// Other programs' CPU use and steal since `init`, each in cores (1.0 = one core busy).
    func foreignCores() -> (other: Double, steal: Double)? {
        guard let a = start, let b = LoadMeter.snapshot(pids), b.total > a.total else { return nil }
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        let span = (b.total - a.total) / cores
        let other = max(0, (b.busy - a.busy) - (b.ours - a.ours)) / span
        return (other, (b.steal - a.steal) / span)
    }

    /// What the `other+steal` column means.
    static let legend =
        "other+steal: cores used by other programs + stolen by the hypervisor while the row ran "
        + "(0.00+0.00 is a quiet machine)"

    /// "0.02+0.00" (other programs + steal, in cores), or "n/a".
    func summary() -> String {
        guard let f = foreignCores() else { return "n/a" }
        return String(format: "%.2f+%.2f", f.other, f.steal)
    }

    private static func snapshot(_ pids: [Int32]) -> Snapshot? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        // user nice system idle iowait irq softirq steal (guest time is already inside user).
        let f = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard f.count == 8 else { return nil }
        var s = Snapshot()
        s.busy = f[0] + f[1] + f[2] + f[5] + f[6]
        s.steal = f[7]
        s.total = f.reduce(0, +)
        s.ours = ([getpid()] + pids).compactMap(processTicks).reduce(0, +)
        return s
    }

    /// utime + stime of one process, in clock ticks like `/proc/stat`.
    private static func processTicks(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name start at field 3 (state); utime and stime are 14 and 15.
        let f = text[text.index(after: close)...].split(separator: " ")
        guard f.count > 12, let user = Double(f[11]), let system = Double(f[12]) else { return nil }
        return user + system
    }
}
