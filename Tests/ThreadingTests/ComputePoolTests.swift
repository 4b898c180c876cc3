// ComputePoolTests: every item runs once on at most the threads asked for, nested and concurrent
// calls finish, and a thread the system refuses leaves the work on the threads there are, said once.
import Testing
#if canImport(Glibc)
    import Glibc
#endif
@testable import Threading

/// Counts per item, written by items on any thread (each item its own slot).
final class Hits: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<Int>
    init(_ n: Int) { slots = .allocate(capacity: n); slots.initialize(repeating: 0) }
    deinit { slots.deallocate() }
    var all: [Int] { Array(slots) }
}

/// Collects messages and distinct thread ids under a lock.
final class Record: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private(set) var messages: [String] = []
    private var threads: Set<UInt> = []
    init() { pthread_mutex_init(&mutex, nil) }
    func add(_ line: String) { pthread_mutex_lock(&mutex); messages.append(line); pthread_mutex_unlock(&mutex) }
    func read<T>(_ body: () -> T) -> T { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return body() }
    func seeThread() { pthread_mutex_lock(&mutex); threads.insert(UInt(bitPattern: Int(pthread_self()))); pthread_mutex_unlock(&mutex) }
    var threadCount: Int { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return threads.count }
}

/// Busy work long enough that several threads get to take items.
func spin(_ i: Int) -> Int {
    var x = i
    for k in 0..<20_000 { x = x &* 1_103_515_245 &+ k }
    return x
}

func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

@Suite struct ComputePoolTests {
    @Test func everyItemRunsOnce() {
        let pool = ComputePool()
        for n in [0, 1, 2, 3, 7, 64] {
            for threads in [1, 2, 3, 8] {
                let hits = Hits(max(1, n))
                pool.run(n, threads: threads) { i in
                    _ = spin(i)
                    hits.slots[i] += 1
                }
                #expect(Array(hits.all.prefix(n)) == [Int](repeating: 1, count: n), "n \(n), threads \(threads)")
            }
        }
        #expect(pool.started == 7, "helpers for the largest call (8 threads): the caller plus 7")
    }

    @Test func neverMoreThreadsThanAsked() {
        let pool = ComputePool()
        pool.run(16, threads: 6) { i in _ = spin(i) }  // grows the pool to 5 helpers
        let record = Record()
        pool.run(64, threads: 2) { i in
            record.seeThread()
            _ = spin(i)
        }
        #expect(record.threadCount <= 2)
    }

    /// Calls arriving while helpers spin, as they give up spinning, and after they sleep, from
    /// two callers at once: every item runs once and every call returns (a wake-up lost between
    /// the spin and the sleep would leave a caller waiting on a helper's item for ever, and the
    /// time limit fails the test). Pools that never spin, spin 20 µs (the pauses and the items'
    /// lengths straddle it) and spin far longer than any pause.
    @Test(.timeLimit(.minutes(1)), arguments: [0, 20e-6, 0.5])
    func callsAroundTheSpinAllFinish(spinSeconds: Double) {
        let pool = ComputePool(spinSeconds: spinSeconds)
        let outer = ComputePool(spinSeconds: 0)
        let rounds = 600
        let hits = Hits(2 * rounds * 4)
        outer.run(2, threads: 2) { c in
            for r in 0..<rounds {
                pool.run(4, threads: 3) { i in
                    // Items of 0–40 µs, so a helper's last item ends around the caller's spin.
                    let until = monotonic() + Double((r * 11 + i * 17 + c * 5) % 41) * 1e-6
                    while monotonic() < until {}
                    hits.slots[(c * rounds + r) * 4 + i] += 1
                }
                if r % 3 != 0 { usleep(UInt32((r * 7 + c * 13) % 45)) }  // 0–44 µs apart
            }
        }
        #expect(hits.all == [Int](repeating: 1, count: 2 * rounds * 4))
    }

    @Test func nestedAndConcurrentCallsFinish() {
        let pool = ComputePool()
        let hits = Hits(8 * 8)
        pool.run(8, threads: 4) { i in
            pool.run(8, threads: 4) { j in hits.slots[i * 8 + j] += 1 }  // nested: shares the helpers
        }
        #expect(hits.all == [Int](repeating: 1, count: 64))

        let callers = Hits(4 * 32)
        let outer = ComputePool()
        outer.run(4, threads: 4) { c in
            pool.run(32, threads: 3) { i in
                _ = spin(i)
                callers.slots[c * 32 + i] += 1
            }
        }
        #expect(callers.all == [Int](repeating: 1, count: 128))
    }

    /// A second caller gets the helpers the first leaves free: its two items run side by side
    /// (each waits for the other to start) while the first call still holds a helper. A pool
    /// that ran a second caller's items one after the other (as when the first had it "busy")
    /// slowed `embed`, whose read-ahead tokenises while the model computes.
    @Test func concurrentCallersShareTheHelpers() {
        let pool = ComputePool()
        pool.run(3, threads: 3) { _ in }  // two helpers
        let gate = Record()
        nonisolated(unsafe) var release = false
        nonisolated(unsafe) var sawOther = [false, false]
        nonisolated(unsafe) var started = [false, false]
        let first = Hits(1)
        try? startThread("a test caller") {
            pool.run(2, threads: 2) { _ in
                while !gate.read({ release }) { usleep(1000) }
            }
            first.slots[0] = 1
        }
        usleep(100_000)  // the first call holds its caller and one helper
        pool.run(2, threads: 2) { i in
            gate.read { started[i] = true }
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                if gate.read({ started[1 - i] }) {
                    gate.read { sawOther[i] = true }
                    return
                }
                usleep(100)
            }
        }
        gate.read { release = true }
        while gate.read({ first.slots[0] == 0 }) { usleep(1000) }
        #expect(gate.read { sawOther } == [true, true], "the second caller's items ran one after the other")
    }

    @Test func refusedThreadsLeaveTheWorkToTheRest() {
        let record = Record()
        let lock = Record()
        nonisolated(unsafe) var allowed = 1
        let pool = ComputePool(spawn: { body in
            lock.add("spawn")
            if allowed == 0 { throw ThreadStartError(what: "a compute thread", code: EAGAIN) }
            allowed -= 1
            try startThread("a compute thread", body)
        }, report: { record.add($0) })
        let hits = Hits(40)
        pool.run(40, threads: 4) { i in
            _ = spin(i)
            hits.slots[i] += 1
        }
        #expect(hits.all == [Int](repeating: 1, count: 40))
        #expect(pool.started == 1)
        #expect(record.messages.count == 1)
        let message = record.messages.first ?? ""
        #expect(message.contains("cannot start a compute thread"))
        #expect(message.contains("ulimit -u"))
        #expect(message.contains("computing on 2 of 4 threads"))
        // Within the retry interval no new start is tried, and nothing more is said.
        let tries = lock.messages.count
        pool.run(40, threads: 4) { i in hits.slots[i] += 1 }
        #expect(hits.all == [Int](repeating: 2, count: 40))
        #expect(lock.messages.count == tries)
        #expect(record.messages.count == 1)
    }

    @Test func noThreadAtAllRunsOnTheCaller() {
        let record = Record()
        let pool = ComputePool(spawn: { _ in throw ThreadStartError(what: "a compute thread", code: EAGAIN) },
                               report: { record.add($0) })
        let hits = Hits(10)
        pool.run(10, threads: 8) { i in
            record.seeThread()
            hits.slots[i] += 1
        }
        #expect(hits.all == [Int](repeating: 1, count: 10))
        #expect(record.threadCount == 1)
        #expect(pool.started == 0)
        #expect(record.messages.first?.contains("computing on 1 of 8 threads") == true)
    }

    @Test func startErrorNamesTheLimit() {
        #expect(ThreadStartError(what: "x", code: EAGAIN).description.contains("ulimit -u"))
        #expect(!ThreadStartError(what: "x", code: EINVAL).description.contains("ulimit -u"))
    }
}
