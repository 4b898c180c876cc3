// ParallelTests: the default thread count (FIDQ_THREADS or all cores) and parallelFor's coverage.
import Foundation
import Testing
@testable import Tensor

@Suite struct ParallelTests {
    /// ops/test-coretypes sets FIDQ_THREADS=1 and 2: this is what proves those runs ran on that
    /// many threads. Without it the default is every online core.
    @Test func defaultFollowsFIDQ_THREADS() {
        let env = ProcessInfo.processInfo.environment["FIDQ_THREADS"]
        let expected = env.flatMap { Int($0) }.flatMap { $0 >= 1 ? $0 : nil } ?? Threads.defaultCount
        // Read outside other tests' `Threads.exclusively` bodies, which change the count for all.
        #expect(Threads.settledCount == expected, "FIDQ_THREADS=\(env ?? "(unset)")")
    }

    @Test(arguments: [1, 2, 3, 4])
    func parallelForCoversEveryIndexOnce(threads: Int) {
        for count in [0, 1, 5, 1000] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            defer { hits.deallocate() }
            parallelFor(count, grain: 7, threads: threads) { r in for i in r { hits[i] += 1 } }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count), threads \(threads)")
        }
    }

    /// Every piece runs exactly once, whatever the thread count, and with two threads or more
    /// pieces really run side by side (each waits, within a bound, for another to start).
    @Test(arguments: [1, 2, 3, 4])
    func concurrentlyRunsEveryPieceOnce(threads: Int) {
        for count in [0, 1, 2, 3, 5] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
            hits.initialize(repeating: 0, count: max(count, 1))
            defer { hits.deallocate() }
            concurrently(count, threads: threads) { i in hits[i] += 1 }
            #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count), threads \(threads)")
        }
    }

    @Test func concurrentlyOverlapsPieces() {
        // Two pieces that each wait for the other: only side by side do both see the other start.
        let started = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        started.initialize(repeating: 0, count: 2)
        defer { started.deallocate() }
        let lock = NSLock()
        var sawOther = [false, false]
        concurrently(2, threads: 2) { i in
            lock.withLock { started[i] = 1 }
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline {
                if lock.withLock({ started[1 - i] == 1 }) {
                    lock.withLock { sawOther[i] = true }
                    return
                }
                usleep(100)
            }
        }
        #expect(sawOther == [true, true], "pieces ran one after the other")
    }
}
