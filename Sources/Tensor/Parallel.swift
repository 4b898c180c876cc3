// Threads: the one thread-count setting, and the parallel-for that elementwise kernels use.
import Dispatch
import Threading

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The number of threads fidq computes with: `parallelFor`'s, which runs the elementwise kernels
/// and the tiles of every BLAS product (`Gemm`; OpenBLAS's own pool stays at one thread, since its
/// results depend on its pool size), so nothing oversubscribes the cores (ref/perf.md §4). Defaults to the cores the process may use (its affinity and CPU quota), or to `FIDQ_THREADS` when that is set to a
/// positive integer: how a test run (ops/test-coretypes) or a job script fixes the thread count
/// without a flag; `fidq --threads` still overrides it.
public enum Threads {
    /// The default: `FIDQ_THREADS` or all cores, read once.
    private static let configured: Int = initial()

    nonisolated(unsafe) private static var current: Int = configured

    /// `FIDQ_THREADS`, else the available cores. A value that is not a positive integer is reported on
    /// stderr and ignored.
    private static func initial() -> Int {
        guard let raw = getenv("FIDQ_THREADS") else { return defaultCount }
        let text = String(cString: raw)
        guard let n = Int(text), n >= 1 else {
            fputs("fidq: FIDQ_THREADS=\(text) is not a positive integer (a thread count); using all \(defaultCount) cores\n", stderr)
            return defaultCount
        }
        return n
    }

    /// The cores this process may use (`AvailableCPUs`: its affinity and CPU quota).
    public static var defaultCount: Int { AvailableCPUs.count }

    /// The thread count in force.
    public static var count: Int { current }

    /// Sets the thread count of `parallelFor` (hence of BLAS products too); `nil` means the
    /// default (`FIDQ_THREADS`, else all cores).
    public static func set(_ n: Int?) {
        current = max(1, n ?? configured)
    }

    private static let exclusive = DispatchSemaphore(value: 1)

    /// The thread count outside any `exclusively` body (it waits for one running to end): what a
    /// check of the default reads, since a parallel test's `exclusively(1)` is visible to all.
    public static var settledCount: Int {
        exclusive.wait()
        defer { exclusive.signal() }
        return current
    }

    /// Runs `body` with the thread count `n`, then restores the count before, holding a lock so
    /// no other `exclusively` changes it meanwhile: tests proving a result does not depend on the
    /// count run in parallel suites, where one's `set(nil)` made another's passes all run at one
    /// count (and pass without checking anything). Others read the count as usual meanwhile.
    public static func exclusively<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        exclusive.wait()
        defer { exclusive.signal() }
        let before = current
        current = max(1, n)
        defer { current = before }
        return try body()
    }

    /// Multiply-adds per thread below which a parallel call stays on the calling thread: 512 KB
    /// of float32 operands, ~20 µs streamed at one core's ~25 GB/s. Two cores stream about 1.5×
    /// one (38 against 25 GB/s here), and a helper that finds the next call while it still spins
    /// (`ComputePool.spinSeconds`) joins in a few µs; a sleeping one costs tens of µs to wake. So
    /// a greedy step splits every weight gemv (1–4 MB each), which also keeps the helper spinning
    /// for the step's attention: at 4 MB per thread the gemvs ran whole and the helper slept
    /// between them (T5-small, 2 threads, median of 20 steps × 20 runs alternated: 8.18 → 6.59 ms
    /// a step at P = 10, 10.28 → 8.82 ms at P = 25; one thread unchanged, 9.19 / 9.02 ms).
    public static let minSplitWork = 1 << 17

    /// The `parallelFor` grain that gives each thread at least `minSplitWork` when one item
    /// costs `work` multiply-adds.
    @inlinable
    public static func grain(work: Int) -> Int { max(1, minSplitWork / max(1, work)) }
}

/// Runs `body` over `0..<count` split into contiguous chunks, one per thread.
///
/// Chunks are at least `grain` items so small loops stay on the calling thread; `body` gets a
/// half-open range and must only write state owned by that range. `threads` overrides the
/// global `Threads.count` for this call alone (tests that prove a result does not depend on the
/// thread count use it instead of changing the global setting other suites read concurrently).
@inlinable
public func parallelFor(_ count: Int, grain: Int = 1, threads: Int? = nil, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let threads = min(max(1, threads ?? Threads.count), max(1, count / max(1, grain)))
    if threads <= 1 {
        body(0..<count)
        return
    }
    let chunk = (count + threads - 1) / threads
    ComputePool.shared.run(threads, threads: threads) { t in
        let lo = t * chunk
        let hi = min(count, lo + chunk)
        if lo < hi { body(lo..<hi) }
    }
}

/// Runs `body(0)`, …, `body(count − 1)` side by side, at most `threads` (default
/// `Threads.count`) at once: for a few independent pieces of work too small to split, such as a
/// layer's input-gradient and weight-gradient products, which would otherwise leave every core but
/// one idle. Each piece must only write state of its own; which thread runs a piece cannot change
/// what it computes, so results are the same on any thread count.
@inlinable
public func concurrently(_ count: Int, threads: Int? = nil, _ body: (Int) -> Void) {
    guard count > 0 else { return }
    let threads = min(max(1, threads ?? Threads.count), count)
    if threads <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    let chunk = (count + threads - 1) / threads
    ComputePool.shared.run(threads, threads: threads) { t in
        var i = t * chunk
        while i < min(count, (t + 1) * chunk) {
            body(i)
            i += 1
        }
    }
}
