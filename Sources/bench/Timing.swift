// Timing: the benchmark clock, one sample of a contender, interleaved rounds, median statistics.
import Foundation

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// This process's minor page faults so far: a pass that faults allocated (or first touched)
/// memory the arena should have kept.
func minorFaults() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Int(usage.ru_minflt)
}

/// What a sample's seconds are: the monotonic clock, or with `BENCH_CLOCK=cpu` this process's
/// CPU time (every thread's; the Python peers switch the same way, to `time.process_time`). On a
/// machine shared with other work, CPU time leaves out the time slices other programs take, so
/// one-thread rows stay comparable; with more threads it adds the threads' times (spinning
/// included), which is not wall-clock speed.
let cpuClock = ProcessInfo.processInfo.environment["BENCH_CLOCK"] == "cpu"

/// Seconds on the sampling clock (see `cpuClock`).
func sampleSeconds() -> Double {
    guard cpuClock else { return monotonicSeconds() }
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// One thing being timed. `sample()` runs it for at least the minimum sample time and returns
/// seconds per operation; it may run in this process (`Timing.sample`) or ask a `Peer`.
struct Contender {
    var name: String
    var sample: () throws -> Double
}

/// The samples of one contender, in seconds per operation.
struct Stats {
    /// In the order taken: sample i of every contender comes from the same round.
    let rounds: [Double]
    /// Sorted ascending.
    let samples: [Double]

    init(_ rounds: [Double]) {
        precondition(!rounds.isEmpty, "Stats: no samples")
        self.rounds = rounds
        self.samples = rounds.sorted()
    }

    var median: Double { Stats.median(samples) }
    static func median(_ sorted: [Double]) -> Double {
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }

    /// How much faster `self` is than `peer` (> 1: faster): the median over rounds of the ratio
    /// of the two samples taken in the same round, which cancels drifts slower than a round.
    func speedup(over peer: Stats) -> Double {
        precondition(rounds.count == peer.rounds.count, "speedup: \(rounds.count) vs \(peer.rounds.count) rounds")
        return Stats.median(zip(rounds, peer.rounds).map { $1 / $0 }.sorted())
    }
    var fastest: Double { samples[0] }
    var slowest: Double { samples[samples.count - 1] }
    /// Slowest over fastest minus one: 0.05 means the samples span 5 %.
    var spread: Double { slowest / fastest - 1 }
}

/// How benchmarks sample; read from the environment so `ops/bench` runs can be tuned without a
/// rebuild.
struct TimingSettings {
    /// Rounds run and thrown away first (page faults, thread pools, caches, clock ramp-up).
    var warmup = 1
    /// Rounds kept; the median is reported.
    var samples = 7
    /// Each sample repeats the operation until at least this many seconds have passed.
    var minTime = 0.1
    /// Pause before each sample, so the previous contender's idle BLAS/OpenMP threads (which
    /// spin for up to ~0.1 s after a call) have gone to sleep and do not steal a core.
    var settle = 0.2
    /// The thread counts each benchmark runs at.
    var threads = [1, 2]
    /// When set, each row first waits until other programs use fewer cores than this.
    var quietLoad: Double? = nil
    /// The longest wait for a quiet machine, in seconds.
    var quietWait = 60.0

    /// Defaults overridden by `BENCH_WARMUP`, `BENCH_SAMPLES`, `BENCH_MIN_TIME`, `BENCH_SETTLE`,
    /// `BENCH_THREADS` (comma-separated), `BENCH_QUIET` (cores) and `BENCH_QUIET_WAIT` (seconds).
    static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws
        -> TimingSettings
    {
        var s = TimingSettings()
        func number<T: LosslessStringConvertible>(_ key: String, _ value: inout T) throws {
            guard let text = env[key] else { return }
            guard let v = T(text) else {
                throw BenchError("\(key)=\(text) is not a valid \(T.self)")
            }
            value = v
        }
        try number("BENCH_WARMUP", &s.warmup)
        try number("BENCH_SAMPLES", &s.samples)
        try number("BENCH_MIN_TIME", &s.minTime)
        try number("BENCH_SETTLE", &s.settle)
        try number("BENCH_QUIET_WAIT", &s.quietWait)
        if env["BENCH_QUIET"] != nil {
            var q = 0.0
            try number("BENCH_QUIET", &q)
            s.quietLoad = q
        }
        if let text = env["BENCH_THREADS"] {
            let counts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 1 }) else {
                throw BenchError("BENCH_THREADS=\(text): expected comma-separated counts like 1,2")
            }
            s.threads = counts.map { $0! }
        }
        guard s.samples >= 1, s.warmup >= 0, s.minTime > 0, s.settle >= 0 else {
            throw BenchError(
                "timing settings out of range: samples=\(s.samples) warmup=\(s.warmup) minTime=\(s.minTime) settle=\(s.settle)")
        }
        return s
    }

    var description: String {
        "median of \(samples) samples (each ≥ \(minTime) s\(cpuClock ? " of process CPU time, BENCH_CLOCK=cpu" : "")) after \(warmup) warm-up round(s); "
            + "contenders interleaved round-robin, \(settle) s pause before each sample"
            + (quietLoad.map { "; each row waits ≤ \(quietWait) s for other load < \($0) cores" } ?? "")
    }
}

enum Timing {
    /// Seconds per call of `body`, calling it until at least `minTime` seconds have passed.
    static func sample(minTime: Double, _ body: () -> Void) -> Double {
        var calls = 0
        let start = sampleSeconds()
        var elapsed = 0.0
        repeat {
            body()
            calls += 1
            elapsed = sampleSeconds() - start
        } while elapsed < minTime
        return elapsed / Double(calls)
    }

    /// Samples every contender once per round, rounds one after another, so slow drifts of the
    /// shared machine hit all contenders alike. The starting contender rotates each round so none
    /// always runs right after another's idle threads. Returns one `Stats` per contender, in order.
    static func interleaved(_ contenders: [Contender], _ settings: TimingSettings) throws -> [Stats] {
        var kept = Array(repeating: [Double](), count: contenders.count)
        for round in 0..<(settings.warmup + settings.samples) {
            for j in 0..<contenders.count {
                let i = (round + j) % contenders.count
                if settings.settle > 0 { usleep(UInt32(settings.settle * 1e6)) }
                let seconds = try contenders[i].sample()
                if round >= settings.warmup { kept[i].append(seconds) }
            }
        }
        return kept.map(Stats.init)
    }
}

/// A failure of the benchmark harness (a peer that died, a bad setting), printed and exit 1.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
