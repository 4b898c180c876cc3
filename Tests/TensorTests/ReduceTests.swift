// ReduceTests: the SIMD16 row reductions against Double loops on lengths around the lane width.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct ReduceTests {
    @Test(arguments: [0, 1, 15, 16, 17, 31, 33, 1000])
    func matchDouble(n: Int) {
        var rng = RNG(seed: UInt64(n + 1))
        let a = rng.normalArray(n, mean: 0.5, std: 2), b = rng.normalArray(n)
        let c: Float = 0.3
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let A = pa.baseAddress ?? UnsafePointer(bitPattern: 16)!
                let B = pb.baseAddress ?? UnsafePointer(bitPattern: 16)!
                let sum = a.reduce(0.0) { $0 + Double($1) }
                let dot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let ssd = a.reduce(0.0) { $0 + (Double($1) - Double(c)) * (Double($1) - Double(c)) }
                // Each within its derived Float32 bound: n terms over Σ|terms|; the squared
                // deviations round x − c once more, doubled by the square.
                let sumAbs = a.reduce(0.0) { $0 + abs(Double($1)) }
                let rs = compareReduction("sum n=\(n)", [Reduce.sum(A, n)], [Float(sum)], magnitude: [sumAbs], terms: n)
                let rd = compareReduction("dot n=\(n)", [Reduce.dot(A, B, n)], [Float(dot)], magnitude: [absDot(a, b)], terms: n)
                let rq = compareReduction("ssd n=\(n)", [Reduce.sumSquaredDeviations(A, n, around: c)], [Float(ssd)], magnitude: [ssd], terms: n + 3)
                for r in [rs, rd, rq] { #expect(r.ok, "\(r)") }
                #expect(Reduce.max(A, n) == (a.max() ?? -.infinity), "max n=\(n)")
            }
        }
    }

    @Test func partialLoadAndStore() {
        let src: [Float] = (0..<16).map { Float($0) + 1 }
        for count in [1, 7, 15, 16] {
            var dst = [Float](repeating: -1, count: 16)
            src.withUnsafeBufferPointer { ps in
                dst.withUnsafeMutableBufferPointer { pd in
                    let v = Reduce.load(ps.baseAddress!, count: count)
                    for l in 0..<16 { #expect(v[l] == (l < count ? src[l] : 0)) }
                    Reduce.store(v * 2, pd.baseAddress!, count: count)
                }
            }
            #expect(dst == (0..<16).map { $0 < count ? src[$0] * 2 : -1 }, "count \(count)")
        }
    }

    @Test func maxSkipsNaNAndSumExpSeesIt() {
        for (n, at) in [(5, 2), (37, 3), (37, 35), (64, 40)] {
            var a = (0..<n).map { Float($0 % 7) - 3 }
            a[at] = .nan
            let want = a.filter { !$0.isNaN }.max()!
            a.withUnsafeBufferPointer { p in
                #expect(Reduce.max(p.baseAddress!, n) == want, "n=\(n) NaN at \(at)")
                #expect(Reduce.containsNaN(p.baseAddress!, n))
                #expect(Reduce.sumExp(p.baseAddress!, n, shift: 3).isNaN)
            }
        }
        let masked = [Float](repeating: -.infinity, count: 20)
        masked.withUnsafeBufferPointer { p in
            #expect(Reduce.max(p.baseAddress!, 20) == -.infinity && !Reduce.containsNaN(p.baseAddress!, 20))
        }
        // Σ exp over a tail shorter than 16: the padding lanes add exactly nothing.
        let x: [Float] = [0, 1, -1, 0.5, 2]
        let want = x.reduce(0.0) { $0 + Foundation.exp(Double($1) - 2) }
        x.withUnsafeBufferPointer { p in
            #expect(abs(Double(Reduce.sumExp(p.baseAddress!, 5, shift: 2)) - want) <= 1e-6 * want)
        }
    }
}
