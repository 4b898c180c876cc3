// JobContext: what a running handler gets: folders, paths, progress, log, cancellation, attempt.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Threading

/// Asked to stop by the worker (cancel, timeout, shutdown, lease lost); checked by the handler
/// at safe points. The first reason wins.
public final class CancellationToken: @unchecked Sendable {
    private let lock = NSLockLite()
    private var _reason: CancelReason?
    private var _at: Double = 0

    public init() {}

    public var reason: CancelReason? { lock.withLock { _reason } }
    public var isCancelled: Bool { reason != nil }
    /// Monotonic time of the first cancel (0 when not cancelled).
    var cancelledAt: Double { lock.withLock { _at } }

    public func cancel(_ reason: CancelReason) {
        lock.withLock {
            if _reason == nil {
                _reason = reason
                _at = monotonicNow()
            }
        }
    }

    /// Throws `CancellationError` when cancelled: call it at every safe point.
    public func check() throws {
        if let r = reason { throw CancellationError(reason: r) }
    }

    /// Sleeps `seconds`, waking every 10 ms to check; throws when cancelled.
    public func sleep(_ seconds: Double) throws {
        let end = monotonicNow() + seconds
        while true {
            try check()
            let left = end - monotonicNow()
            if left <= 0 { return }
            usleep(UInt32(min(left, 0.01) * 1e6))
        }
    }
}

/// Appends timestamped lines to a job's `log.txt` (and optionally echoes them).
public final class JobLog: @unchecked Sendable {
    let path: String?
    let fs: FileSystem
    let echo: (@Sendable (String) -> Void)?

    init(path: String?, fs: FileSystem, echo: (@Sendable (String) -> Void)?) {
        self.path = path
        self.fs = fs
        self.echo = echo
    }

    /// Appends one line. Log failures never fail a job (the log is advisory).
    public func callAsFunction(_ line: String) {
        echo?(line)
        guard let path else { return }
        try? fs.retrying { try fs.append(path, Data((isoTimestamp() + " " + line + "\n").utf8)) }
    }
}

/// Step, total, loss, rate and ETA of a running job: `progress.json` (at most once a second), a
/// bar on a terminal, or a log line every 10 % off one.
public final class ProgressReporter: @unchecked Sendable {
    /// What `progress.json` holds.
    public struct Snapshot: Codable, Sendable {
        public var step: Int
        public var total: Int?
        public var loss: Double?
        /// Steps per second over this attempt.
        public var rate: Double?
        public var etaS: Double?
        public var updated: String
        /// A long phase between steps (an evaluation, reading or writing files), set by `phase`
        /// and cleared by the next `update`: without it status showed a step and ETA standing still.
        public var phase: String?
        /// What step counts when it is not a step ("MiB"): `53/601 26.7/s` read as steps.
        public var unit: String?

        enum CodingKeys: String, CodingKey {
            case step, total, loss, rate, updated, phase, unit
            case etaS = "eta_s"
        }
    }

    let path: String?
    let fs: FileSystem
    let bar: Bool
    let line: (@Sendable (String) -> Void)?
    let label: String
    private let lock = NSLockLite()
    private var start: Double?
    private var firstStep = 0
    private var lastWrite = -1e9
    private var lastBar = -1e9
    private var lastDecile = -1
    /// A bar is on the terminal's current line (drawn, not yet ended by a newline).
    private var barShown = false
    public private(set) var last: Snapshot?

    init(path: String?, fs: FileSystem, bar: Bool, label: String, line: (@Sendable (String) -> Void)?) {
        self.path = path
        self.fs = fs
        self.bar = bar
        self.label = label
        self.line = line
    }

    /// Reports progress. Cheap to call every step: files and the bar are throttled.
    public func update(step: Int, total: Int? = nil, loss: Double? = nil, unit: String? = nil) {
        lock.withLock {
            let now = monotonicNow()
            if start == nil {
                start = now
                firstStep = step
            }
            let elapsed = now - start!
            let rate = elapsed > 0 ? Double(step - firstStep) / elapsed : nil
            var eta: Double?
            if let total, let rate, rate > 0 { eta = Double(max(total - step, 0)) / rate }
            let snap = Snapshot(step: step, total: total, loss: loss, rate: rate, etaS: eta, updated: isoTimestamp(), unit: unit)
            last = snap
            let finished = total.map { step >= $0 } ?? false
            if let path, now - lastWrite >= 1 || finished {
                lastWrite = now
                if let data = try? jsonEncoder().encode(snap) {
                    try? fs.writeAtomically(path, data, tag: "progress", sync: false)
                }
            }
            if bar, now - lastBar >= 0.1 || finished {
                lastBar = now
                // Cleared to the end: a shorter redraw left the old tail ("eta 9ss").
                var s = "\r\u{1B}[K\(label) " + ProgressReporter.render(snap)
                if finished { s += "\n" }
                fputs(s, stderr)
                barShown = !finished
            } else if !bar, let line, let total, total > 1 {
                let decile = min(step * 10 / total, 10)
                if decile > lastDecile {
                    lastDecile = decile
                    line("\(label) " + ProgressReporter.render(snap))
                }
            }
        }
    }

    /// Marks a long phase outside the steps ("evaluating 96 / 900", "reading passages.tsv"):
    /// progress.json is written at once (not throttled; call it a few times a phase) and shows it
    /// beside the last step until the next `update`.
    public func phase(_ text: String) {
        lock.withLock {
            var snap = last ?? Snapshot(step: 0, total: nil, loss: nil, rate: nil, etaS: nil, updated: "")
            snap.phase = text
            snap.updated = isoTimestamp()
            last = snap
            if let path, let data = try? jsonEncoder().encode(snap) {
                lastWrite = monotonicNow()
                try? fs.writeAtomically(path, data, tag: "progress", sync: false)
            }
        }
    }

    /// Prints `text` as its own line: above the bar on a terminal (the bar is cleared, the line
    /// written, the bar drawn again below it), else as is.
    public func printLine(_ text: String) {
        lock.withLock {
            guard bar, barShown, let last else {
                fputs(text + "\n", stderr)
                return
            }
            fputs("\r\u{1B}[K" + text + "\n\(label) " + ProgressReporter.render(last), stderr)
        }
    }

    /// Ends a bar left on the current line, so what is printed next starts a line of its own.
    public func endBar() {
        lock.withLock {
            if barShown { fputs("\n", stderr) }
            barShown = false
        }
    }

    /// `[#####.....]  50% 500/1000 loss 0.1234 12.5/s eta 40s`.
    public static func render(_ s: Snapshot) -> String {
        var out = ""
        if let total = s.total, total > 0 {
            let frac = min(Double(s.step) / Double(total), 1)
            let filled = Int(frac * 24)
            out += "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 24 - filled) + "] "
            out += String(format3(frac * 100, 0)) + "% \(s.step)/\(total)" + (s.unit.map { " " + $0 } ?? "")
        } else {
            out += s.unit.map { "\(s.step) " + $0 } ?? "step \(s.step)"
        }
        if let loss = s.loss { out += " loss " + format3(loss, 4) }
        if let rate = s.rate { out += " " + format3(rate, 1) + (s.unit.map { " " + $0 } ?? "") + "/s" }
        if let eta = s.etaS { out += " eta " + duration(eta) }
        if let phase = s.phase { out += " | " + phase }
        return out
    }
}

/// Everything a handler may use while it runs.
public final class JobContext: @unchecked Sendable {
    public let id: String
    public let kind: String
    /// 1 for the first run; a reclaimed or retried job sees 2, 3, …
    public let attempt: Int
    public let maxAttempts: Int
    /// The job's own folder (`running/<id>@<token>/`, or `fidq run --out DIR`).
    public let folder: String
    public let paths: PathPolicy
    public let fs: FileSystem
    public let cancellation: CancellationToken
    public let progress: ProgressReporter
    public let log: JobLog
    /// Unique to this attempt: the claim token of `running/<id>@<token>`, or a fresh one in
    /// `fidq run`. Temporary names carry it, so no two attempts ever share a file.
    public let token: String
    /// Threads the handler should compute with: the job's `threads` param capped by the
    /// worker's `--threads`, or the worker's value when the param is absent (always >= 1).
    public internal(set) var threads: Int
    /// The worker's `--threads`: the default and the cap of `threads`.
    public internal(set) var threadCap: Int
    /// What starts this job over, discarding what it kept (a hint's words): `fidq retry --fresh`
    /// of it in a queue; in `fidq run`, emptying its out/ first.
    public internal(set) var startOver: String
    /// Where this job's folder is once the attempt has failed (`failed/<id>` in a queue; the
    /// run's folder in `fidq run`), and what runs it again keeping its files: a hint that asks
    /// to remove one file of it names both.
    public internal(set) var stoppedFolder: String
    public internal(set) var runAgain: String

    /// Says in the job's log when the system refused compute threads (the process limit): the
    /// log's "threads N" was then more than the job had, and the process said so only once, on
    /// stderr, for its first job.
    func noteThreadShortfall() {
        let pool = ComputePool.shared
        guard pool.refusedAny, pool.started + 1 < threads else { return }
        log("threads: computed on at most \(pool.started + 1) of the \(threads) asked: the system refused more threads"
            + " (the process limit: `ulimit -u`, or the cgroup's pids.max)")
    }

    init(id: String, kind: String, attempt: Int, maxAttempts: Int, folder: String, paths: PathPolicy,
         fs: FileSystem, cancellation: CancellationToken, progress: ProgressReporter, log: JobLog,
         threads: Int = 1) {
        self.id = id
        self.kind = kind
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.folder = folder
        self.paths = paths
        self.fs = fs
        self.cancellation = cancellation
        self.progress = progress
        self.log = log
        self.threadCap = max(1, threads)
        self.threads = max(1, threads)
        startOver = "rm -r \(shellQuoted(folder + "/out")), then the same fidq run, starts over"
        stoppedFolder = folder
        runAgain = "the same fidq run"
        let last = NSStringPath(folder).last
        if let at = last.lastIndex(of: "@"), last.index(after: at) < last.endIndex {
            token = String(last[last.index(after: at)...])
        } else {
            token = WorkerIdentity().newToken()
        }
    }

    /// The job's output folder (`<folder>/out`, created before `run`), which survives reclaims
    /// and becomes `done/<id>/out`. Resuming jobs keep their checkpoints here (`checkpoints()`);
    /// large outputs stream in with `openOutput`. Create subfolders with `publish`, `openOutput`
    /// or plain `mkdir` of one level, never `mkdir -p` of the whole path: after a
    /// take-over the old folder must stay gone.
    public var out: String { folder + "/out" }

    /// A path from the params: workspace-relative, absolute, or `job:ID/…` (an earlier job's
    /// `out/`); a checkpoint's `latest` file stands for the step folder it names.
    public func resolve(_ path: String) -> String { Checkpoints.followingLatest(paths.resolve(path), fs: fs) }

    /// Resolves an output path and checks it is inside the allowed roots.
    public func output(_ path: String, field: String) throws -> String {
        try paths.checkOutput(path, field: field, fs: fs)
    }

    /// Throws `CancellationError` if the worker asked the job to stop: call at safe points.
    public func checkCancelled() throws { try cancellation.check() }

    /// Writes `data` to `out/<name>` by temporary name, fsync and rename. Throws
    /// `CancellationError(.leaseLost)` once the job's folder is gone (taken over).
    public func publish(_ name: String, _ data: Data) throws {
        // A worker whose claim was taken over must not re-create its old folder by `mkdir -p`:
        // subfolders of out/ are made one level at a time, and out/ itself never.
        try makeOutputFolders(name)
        do { try fs.writeAtomically(out + "/" + name, data, tag: token) } catch {
            if !fs.exists(folder) { throw CancellationError(reason: .leaseLost) }
            throw error
        }
    }
}

// MARK: - time and formatting

/// Seconds on a clock that never goes backwards.
public func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Wall-clock seconds since 1970.
public func wallNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// `2026-11-28T18:40:01Z` for `t` (default now).
public func isoTimestamp(_ t: Double? = nil) -> String {
    var secs = time_t(t ?? wallNow())
    var tm = tm()
    gmtime_r(&secs, &tm)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
}

/// `x` with `digits` decimals (no Foundation formatting in FoundationEssentials).
func format3(_ x: Double, _ digits: Int) -> String {
    if !x.isFinite { return "\(x)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(x) * scale).rounded()
    let whole = Int(r / scale)
    var s = (x < 0 && r != 0 ? "-" : "") + "\(whole)"
    if digits > 0 {
        let frac = Int(r - Double(whole) * scale)
        let f = "\(frac)"
        s += "." + String(repeating: "0", count: digits - f.count) + f
    }
    return s
}

/// `1h02m`, `3m05s`, `42s`.
func duration(_ s: Double) -> String {
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h" + (t % 3600 / 60 < 10 ? "0" : "") + "\(t % 3600 / 60)m" }
    if t >= 60 { return "\(t / 60)m" + (t % 60 < 10 ? "0" : "") + "\(t % 60)s" }
    return "\(t)s"
}
