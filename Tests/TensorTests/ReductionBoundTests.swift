// ReductionBoundTests: TestSupport's Float32 reduction bound holds for BLAS and is tight enough
// that a reference off by one term fails.
import Testing
import TestSupport
@testable import Tensor

@Suite struct ReductionBoundTests {
    @Test func boundFormula() {
        let u = float32UnitRoundoff
        #expect(u == Double(Float.ulpOfOne) / 2)
        let b = reductionBound(terms: 100, magnitude: 3)
        let floor = 4 * 101 * Double(Float.leastNonzeroMagnitude)
        #expect(b == 2 * 100 * u * 3 + floor)
        #expect(reductionBound(terms: 100, magnitude: 3, reference: .float32) == 2 * b)
        #expect(reductionBound(terms: 100, magnitude: 3, safety: 1) == 100 * u * 3 + floor)
    }

    /// (M, K) · (K, N) by BLAS and by the Double twin with its magnitudes.
    private func products(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> (fast: [Float], slow: [Float], magnitude: [Double]) {
        var fast = [Float](repeating: 0, count: m * n), slow = fast
        var magnitude = [Double](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                fast.withUnsafeMutableBufferPointer { pc in
                    Gemm.gemm(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n)
                }
                slow.withUnsafeMutableBufferPointer { pc in
                    magnitude.withUnsafeMutableBufferPointer { pm in
                        Gemm.gemmNaive(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n, magnitude: pm.baseAddress!)
                    }
                }
            }
        }
        return (fast, slow, magnitude)
    }

    @Test func oneTermErrorIsCaught() {
        // Positive terms in [0.25, 1]: Σ|t| ≈ 0.56·K, so with K = 1000 the bound (≈ 2·K·u·Σ|t| ≈
        // 0.07) is below the smallest term. A reference that misses one term, or counts one twice,
        // must fail at every output element.
        let (m, k, n) = (4, 1000, 6)
        var rng = RNG(seed: 77)
        let a = rng.uniformArray(m * k, 0.5, 1), b = rng.uniformArray(k * n, 0.5, 1)
        let (fast, slow, magnitude) = products(a, b, m: m, k: k, n: n)
        let good = compareReduction("exact reference", fast, slow, magnitude: magnitude, terms: k)
        #expect(good.ok, "\(good)")
        for (what, p, factor) in [("missing term", 0, 0.0), ("missing last term", k - 1, 0.0), ("term counted twice", k / 2, 2.0)] {
            var wrong = slow
            for i in 0..<m {
                for j in 0..<n {
                    let t = Double(a[i * k + p]) * Double(b[p * n + j])
                    wrong[i * n + j] = Float(Double(slow[i * n + j]) + (factor - 1) * t)
                }
            }
            let r = compareReduction(what, fast, wrong, magnitude: magnitude, terms: k)
            #expect(r.failures == m * n, "\(r)")
        }
        // A wrong index: the reference reads row p + 1 of B in place of row p, for one p.
        var shifted = slow
        let p = 10
        for i in 0..<m {
            for j in 0..<n {
                let d = Double(a[i * k + p]) * (Double(b[(p + 1) * n + j]) - Double(b[p * n + j]))
                shifted[i * n + j] = Float(Double(slow[i * n + j]) + d)
            }
        }
        let rs = compareReduction("wrong index", fast, shifted, magnitude: magnitude, terms: k)
        #expect(rs.failures > 0, "\(rs)")
    }

    @Test func longMixedSignSumsStayInsideTheBound() {
        // The case: K = 4100 mixed-sign products, where atol 1e-5 failed on one kernel.
        let (m, k, n) = (3, 4100, 48)
        var rng = RNG(seed: 78)
        let a = rng.normalArray(m * k), b = rng.normalArray(k * n)
        let (fast, slow, magnitude) = products(a, b, m: m, k: k, n: n)
        let r = compareReduction("K=4100", fast, slow, magnitude: magnitude, terms: k)
        #expect(r.ok, "\(r)")
    }

    @Test func reportsTheWorstElement() {
        let r = compareReduction("w", [1, 2, 3.5], [1, 2, 3], magnitude: [1, 1, 1], terms: 4)
        #expect(!r.ok && r.failures == 1 && r.worst?.index == 2 && r.worst?.actual == 3.5 && r.worst?.expected == 3)
        #expect(r.description.contains("[2] got 3.5, expected 3.0"))
        #expect(compareReduction("nan", [.nan], [.nan], magnitude: [0], terms: 1).ok)
        #expect(!compareReduction("nan", [.nan], [0], magnitude: [1], terms: 1).ok)
        #expect(!compareReduction("count", [1], [1, 2], magnitude: [1, 1], terms: 1).ok)
    }
}
