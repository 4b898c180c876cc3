// RelativePositionTests: T5 buckets against fid-spec's boundary tables, the gather against a
// naive twin, and the scatter-add backward by finite differences and across thread counts.
import Foundation
import Testing
import TestSupport
@testable import Tensor

struct RelativePositionTests {
    /// fid-spec §3.1: encoder (32 buckets, 16 per side, max distance 128), key before query.
    @Test func bidirectionalBoundaries() {
        func b(_ rel: Int) -> Int { RelativePosition.bucket(relative: rel, bidirectional: true, numBuckets: 32, maxDistance: 128) }
        let table: [(ClosedRange<Int>, Int)] = [(8...11, 8), (12...15, 9), (16...22, 10), (23...31, 11), (32...45, 12),
                                                (46...63, 13), (64...90, 14), (91...500, 15)]
        for n in 0..<8 { #expect(b(-n) == n) }
        for (range, bucket) in table {
            for n in range {
                #expect(b(-n) == bucket, "n=\(n)")
                #expect(b(n) == bucket + 16, "n=+\(n)")  // key after the query: the upper half
            }
        }
        #expect(b(1) == 17 && b(0) == 0)
    }

    /// fid-spec §3.1: decoder (32 buckets, causal): later keys fold into bucket 0.
    @Test func causalBoundaries() {
        func b(_ rel: Int) -> Int { RelativePosition.bucket(relative: rel, bidirectional: false, numBuckets: 32, maxDistance: 128) }
        let table: [(ClosedRange<Int>, Int)] = [(16...18, 16), (19...20, 17), (21...23, 18), (24...26, 19), (27...30, 20),
                                                (31...34, 21), (35...39, 22), (40...45, 23), (46...51, 24), (52...58, 25),
                                                (59...66, 26), (67...76, 27), (77...86, 28), (87...98, 29), (99...112, 30),
                                                (113...900, 31)]
        for n in 0..<16 { #expect(b(-n) == n) }
        for (range, bucket) in table { for n in range { #expect(b(-n) == bucket, "n=\(n)") } }
        for n in 1..<50 { #expect(b(n) == 0) }
    }

    @Test func bucketsStartAtTheQueryOffset() {
        let all = RelativePosition.buckets(queryLength: 5, keyLength: 5, bidirectional: false, numBuckets: 8, maxDistance: 20)
        let last = RelativePosition.buckets(queryLength: 1, keyLength: 5, queryStart: 4, bidirectional: false, numBuckets: 8, maxDistance: 20)
        #expect(Array(all[20..<25]) == last)
    }

    @Test func gatherMatchesNaive() {
        let H = 3, NB = 8, Tq = 4, Tk = 6
        var rng = RNG(seed: 1)
        let table = rng.normalArray(NB * H)
        let buckets = RelativePosition.buckets(queryLength: Tq, keyLength: Tk, bidirectional: true, numBuckets: NB, maxDistance: 20)
        var bias = [Float](repeating: .nan, count: H * Tq * Tk)
        RelativePosition.forward(bias: &bias, table: table, buckets: buckets, count: Tq * Tk, heads: H)
        for h in 0..<H {
            for i in 0..<Tq {
                for j in 0..<Tk {
                    let expected = table[RelativePosition.bucket(relative: j - i, bidirectional: true, numBuckets: NB, maxDistance: 20) * H + h]
                    #expect(bias[(h * Tq + i) * Tk + j] == expected)
                }
            }
        }
    }

    @Test func backwardMatchesFiniteDifferences() {
        let H = 2, NB = 8, Tq = 5, Tk = 7
        var rng = RNG(seed: 2)
        let table = rng.normalArray(NB * H)
        let w = rng.normalArray(H * Tq * Tk)  // loss = Σ w · bias
        let buckets = RelativePosition.buckets(queryLength: Tq, keyLength: Tk, bidirectional: false, numBuckets: NB, maxDistance: 20)
        var dTable = [Float](repeating: 0, count: NB * H)
        RelativePosition.backward(dTable: &dTable, dBias: w, buckets: buckets, count: Tq * Tk, heads: H, numBuckets: NB)
        let report = gradCheck("relative bias", input: table, analytic: dTable) { t in
            var bias = [Float](repeating: 0, count: H * Tq * Tk)
            RelativePosition.forward(bias: &bias, table: t, buckets: buckets, count: Tq * Tk, heads: H)
            return zip(bias, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        #expect(report.ok, "\(report)")
    }

    /// The backward against its Double twin: each table entry (bucket b, head h) gets the sum of
    /// dBias over the positions in bucket b, added to what it held; within the float32 bound of
    /// that sum (its terms per bucket, each entry's own magnitude).
    @Test func backwardMatchesNaive() {
        let H = 3, NB = 16, T = 23
        var rng = RNG(seed: 4)
        let dBias = rng.normalArray(H * T * T), start = rng.normalArray(NB * H)
        let buckets = RelativePosition.buckets(queryLength: T, keyLength: T, bidirectional: true, numBuckets: NB, maxDistance: 64)
        var dTable = start
        RelativePosition.backward(dTable: &dTable, dBias: dBias, buckets: buckets, count: T * T, heads: H, numBuckets: NB)
        var want = start.map(Double.init), magnitude = start.map { abs(Double($0)) }, terms = [Int](repeating: 1, count: NB * H)
        for h in 0..<H {
            for n in 0..<(T * T) {
                let b = Int(buckets[n])
                want[b * H + h] += Double(dBias[h * T * T + n])
                magnitude[b * H + h] += abs(Double(dBias[h * T * T + n]))
                terms[b * H + h] += 1
            }
        }
        let r = compareReduction("relative bias backward", dTable, want.map { Float($0) }, magnitude: magnitude, terms: terms)
        #expect(r.ok, "\(r)")
    }

    @Test func backwardIsThreadCountIndependent() {
        let H = 8, NB = 32, T = 40
        var rng = RNG(seed: 3)
        let dBias = rng.normalArray(H * T * T)
        let buckets = RelativePosition.buckets(queryLength: T, keyLength: T, bidirectional: true, numBuckets: NB, maxDistance: 128)
        var results: [[Float]] = []
        for threads in [1, 2, 3, 8] {
            // Held, so a concurrent suite's count change cannot make every pass run alike.
            Threads.exclusively(threads) {
                var d = [Float](repeating: 0, count: NB * H)
                RelativePosition.backward(dTable: &d, dBias: dBias, buckets: buckets, count: T * T, heads: H, numBuckets: NB)
                #expect(Threads.count == threads)
                results.append(d)
            }
        }
        for r in results.dropFirst() { #expect(r == results[0]) }
    }
}
