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
        #expect(Threads.count == expected, "FIDQ_THREADS=\(env ?? "(unset)")")
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
}
