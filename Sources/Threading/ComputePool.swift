// ComputePool: the threads fidq computes on, started by fidq itself, counted, and kept for the process's life.
//
// libdispatch retries a thread it cannot create for ever (`concurrentPerform` and `async` both), so
// a process at its thread limit (`ulimit -u`, a cgroup's `pids.max`) hung silently in its first
// parallel loop. These threads are started once and kept, so a job never needs a new one midway; one
// that cannot be started is reported once, and the work runs on the threads there are (the caller's
// alone at worst). Which thread runs an item never changes what the item computes.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CSpin

/// A thread the system refused to start: what it was for, and the error (the process limit named
/// when it is the cause).
public struct ThreadStartError: Error, CustomStringConvertible, Sendable {
    public var what: String
    public var code: Int32

    public init(what: String, code: Int32) {
        self.what = what
        self.code = code
    }

    public var description: String {
        let hint = code == EAGAIN
            ? " (hint: the limit on processes and threads is reached: `ulimit -u`, or the cgroup's pids.max; raise it, "
                + "run fewer processes, or need fewer threads: OPENBLAS_NUM_THREADS=1 in the environment (OpenBLAS "
                + "starts a thread per core as it loads), and fewer compute threads (--threads, FIDQ_THREADS, a job's threads))"
            : ""
        return "cannot start \(what): pthread_create: \(String(cString: strerror(code)))" + hint
    }
}

/// Starts `body` on a new detached thread, or throws why the system refused one.
public func startThread(_ what: String, _ body: @escaping @Sendable () -> Void) throws {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var attr = pthread_attr_t()
    pthread_attr_init(&attr)
    defer { pthread_attr_destroy(&attr) }
    pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
    #if canImport(Glibc)
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
    #else
        var thread: pthread_t?
        let rc = pthread_create(&thread, &attr, { raw in
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, box)
    #endif
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(box).release()
        throw ThreadStartError(what: what, code: rc)
    }
}

/// Whether `count` more threads can start now: starts them, each waiting until all have
/// started, then lets them end. Throws `ThreadStartError` (for `what`) when one is refused.
/// Before work on libraries that start threads of their own and wait for ever on a refusal
/// (URLSession's libdispatch queues): a full limit then fails fast with the reason.
public func probeThreads(_ count: Int, for what: String) throws {
    final class Gate: @unchecked Sendable {
        var mutex = pthread_mutex_t()
        var cond = pthread_cond_t()
        var open = false
        var running = 0
        init() {
            pthread_mutex_init(&mutex, nil)
            pthread_cond_init(&cond, nil)
        }
    }
    let gate = Gate()
    var failure: Error?
    for _ in 0..<count {
        do {
            try startThread(what) {
                pthread_mutex_lock(&gate.mutex)
                gate.running += 1
                pthread_cond_broadcast(&gate.cond)
                while !gate.open { pthread_cond_wait(&gate.cond, &gate.mutex) }
                gate.running -= 1
                pthread_cond_broadcast(&gate.cond)
                pthread_mutex_unlock(&gate.mutex)
            }
        } catch {
            failure = error
            break
        }
    }
    // Let every started thread end, and wait until they have (their slots are free again).
    pthread_mutex_lock(&gate.mutex)
    gate.open = true
    pthread_cond_broadcast(&gate.cond)
    while gate.running > 0 { pthread_cond_wait(&gate.cond, &gate.mutex) }
    pthread_mutex_unlock(&gate.mutex)
    if let failure { throw failure }
}

/// A pool of compute threads that runs items `0..<n` of a call, the caller taking part. Calls
/// from several threads at once (a read-ahead thread tokenising while the model computes, a
/// nested call from an item) each get the helpers that are free, within their `threads`, and
/// each caller runs its own items too, so every call finishes whatever the others do.
public final class ComputePool: @unchecked Sendable {
    /// The process's pool (`parallelFor`, `concurrently`, batch tokenisation).
    public static let shared = ComputePool()

    /// Starts one helper thread running the given loop, or throws.
    public typealias Spawn = (@escaping @Sendable () -> Void) throws -> Void

    /// One call: its body (a `(Int) -> Void` on the caller's stack), and its items' progress.
    private final class Call {
        let work: UnsafeRawPointer
        let total: Int
        var next = 0
        var unfinished: Int
        /// Helpers that may still join (so at most `threads` threads run it).
        var slots: Int
        init(work: UnsafeRawPointer, total: Int, slots: Int) {
            self.work = work
            self.total = total
            unfinished = total
            self.slots = slots
        }
    }

    private let spawn: Spawn
    private let report: @Sendable (String) -> Void
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Bumped (under `mutex`) when a call is opened and when one finishes, so a thread can spin on
    /// them without the lock before it sleeps on `wake` or `done`.
    private let posted = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let finished = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    /// How long an idle helper, and a caller waiting for its helpers, spin before sleeping on a
    /// condition variable: `FIDQ_SPIN_US` microseconds (default 50; 0 sleeps at once). Waking a
    /// sleeping thread costs tens of µs on a virtual machine (an interrupt between cores), more
    /// than many parallel regions of a small model's step; a spin catches the next region instead
    /// (the demo's reader, 2 cores: 1,500 steps in 16.5–18.1 s against 20.1–21.2 s sleeping at
    /// once). A spinning thread yields its core to any other runnable one (two such jobs at once
    /// still ran 23.1–23.8 s against 25.4–26.0 s).
    public let spinSeconds: Double

    /// `spinSeconds` of a pool made without one: `FIDQ_SPIN_US`, or 50 µs.
    public static let defaultSpinSeconds: Double = {
        guard let text = getenv("FIDQ_SPIN_US").map({ String(cString: $0) }), !text.isEmpty else { return 50e-6 }
        guard let us = Double(text), us >= 0, us <= 1e6 else {
            fputs("fidq: FIDQ_SPIN_US=\(text) is not a time in µs from 0 to 1000000; using 50\n", stderr)
            return 50e-6
        }
        return us * 1e-6
    }()

    // All below under `mutex`.
    private var helpers = 0
    /// Calls with items not yet taken, oldest first.
    private var open: [Call] = []
    /// After a refused start, when to try again (monotonic seconds), so a full limit costs one
    /// failed start per interval, not one per call.
    private var retryAt = 0.0
    private var reported = false

    /// `spawn` starts a helper (default: a detached pthread); `report` gets the one message about
    /// a thread that could not be started (default: stderr); `spinSeconds` as that property says.
    public init(spawn: Spawn? = nil, report: (@Sendable (String) -> Void)? = nil, spinSeconds: Double = ComputePool.defaultSpinSeconds) {
        self.spinSeconds = spinSeconds
        self.spawn = spawn ?? { body in try startThread("a compute thread", body) }
        self.report = report ?? { line in fputs("fidq: \(line)\n", stderr) }
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
        posted.initialize(to: 0)
        finished.initialize(to: 0)
    }

    /// Whether the system ever refused this pool a thread.
    public var refusedAny: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return reported
    }

    /// Helper threads started so far.
    public var started: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return helpers
    }

    /// Runs `body(0)`, …, `body(n − 1)`, each once, on at most `threads` threads (the caller's
    /// included), and returns when all have finished.
    public func run(_ n: Int, threads: Int, _ body: (Int) -> Void) {
        guard n > 1, threads > 1 else {
            for i in 0..<max(0, n) { body(i) }
            return
        }
        pthread_mutex_lock(mutex)
        let wanted = min(threads, n) - 1
        if helpers < wanted { grow(to: wanted, of: min(threads, n)) }
        if helpers == 0 {
            pthread_mutex_unlock(mutex)
            for i in 0..<n { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                let call = Call(work: UnsafeRawPointer(pointer), total: n, slots: min(wanted, helpers))
                open.append(call)
                fidq_spin_bump(posted)
                pthread_cond_broadcast(wake)
                take(call)  // with the lock held; returns with it held
                while call.unfinished > 0 {
                    let seen = fidq_spin_load(finished)
                    pthread_mutex_unlock(mutex)
                    let moved = spin(on: finished, from: seen)
                    pthread_mutex_lock(mutex)
                    if call.unfinished > 0 && !moved && fidq_spin_load(finished) == seen { pthread_cond_wait(done, mutex) }
                }
            }
        }
        pthread_mutex_unlock(mutex)
    }

    /// Runs items of `call` until none is left to take. Called and returns with the lock held.
    private func take(_ call: Call) {
        while call.next < call.total {
            let i = call.next
            call.next += 1
            if call.next == call.total { open.removeAll { $0 === call } }
            pthread_mutex_unlock(mutex)
            call.work.assumingMemoryBound(to: ((Int) -> Void).self).pointee(i)
            pthread_mutex_lock(mutex)
            call.unfinished -= 1
            if call.unfinished == 0 {
                fidq_spin_bump(finished)
                pthread_cond_broadcast(done)
            }
        }
    }

    private func helperLoop() {
        pthread_mutex_lock(mutex)
        while true {
            if let call = open.first(where: { $0.slots > 0 }) {
                call.slots -= 1
                take(call)
                continue
            }
            // Nothing to take: spin a while for the next call, then sleep. A call opened after the
            // check below moves `posted` under the lock, so it cannot slip past the wait.
            let seen = fidq_spin_load(posted)
            pthread_mutex_unlock(mutex)
            let moved = spin(on: posted, from: seen)
            pthread_mutex_lock(mutex)
            if !moved && fidq_spin_load(posted) == seen { pthread_cond_wait(wake, mutex) }
        }
    }

    /// Spins without the lock until `counter` moves from `seen` (true) or `spinSeconds` pass.
    private func spin(on counter: UnsafeMutablePointer<UInt64>, from seen: UInt64) -> Bool {
        guard spinSeconds > 0 else { return false }
        let deadline = Self.monotonicSeconds() + spinSeconds
        while true {
            for _ in 0..<64 {
                if fidq_spin_load(counter) != seen { return true }
                fidq_spin_pause()
            }
            if Self.monotonicSeconds() >= deadline { return false }
            sched_yield()  // a thread of another process waiting for this core runs first
        }
    }

    /// Starts helpers up to `wanted`; the first refusal is reported, and starts are not tried
    /// again for a while. Called with the lock held (a new helper waits for it to run).
    private func grow(to wanted: Int, of threads: Int) {
        let now = Self.monotonicSeconds()
        guard now >= retryAt else { return }
        while helpers < wanted {
            do {
                try spawn { [self] in helperLoop() }
                helpers += 1
            } catch {
                retryAt = now + 10
                if !reported {
                    reported = true
                    report("\(error); computing on \(helpers + 1) of \(threads) threads (said once; trying again every 10 s)")
                }
                return
            }
        }
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
