// GemmTests: the BLAS wrapper against its naive twin on odd shapes, transposes and accumulation.
import Testing
import TestSupport
@testable import Tensor

@Suite struct GemmTests {
    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (3, 5, 7), (7, 5, 3), (1, 17, 33), (33, 1, 17), (65, 31, 129), (2, 0, 3),
    ]

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesNaive(trans: (Bool, Bool)) {
        var rng = RNG(seed: 7)
        for (m, k, n) in Self.shapes {
            // Padded leading dimensions, so the wrapper must honour lda/ldb/ldc, not assume packing.
            let (ra, ca) = trans.0 ? (k, m) : (m, k)
            let (rb, cb) = trans.1 ? (n, k) : (k, n)
            let lda = ca + 2, ldb = cb + 1, ldc = n + 3
            let a = (0..<(ra * lda)).map { _ in rng.uniform(-1, 1) }
            let b = (0..<(rb * ldb)).map { _ in rng.uniform(-1, 1) }
            let c0 = (0..<(max(m, 1) * ldc)).map { _ in rng.uniform(-1, 1) }
            for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (-2, 0.25)] {
                var fast = c0
                var slow = c0
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        fast.withUnsafeMutableBufferPointer { pc in
                            Gemm.gemm(
                                transA: trans.0, transB: trans.1, m: m, n: n, k: k, alpha: alpha,
                                a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                beta: beta, c: pc.baseAddress!, ldc: ldc)
                        }
                        slow.withUnsafeMutableBufferPointer { pc in
                            Gemm.gemmNaive(
                                transA: trans.0, transB: trans.1, m: m, n: n, k: k, alpha: alpha,
                                a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                beta: beta, c: pc.baseAddress!, ldc: ldc)
                        }
                    }
                }
                let r = compare("gemm \(m)x\(k)x\(n) t=\(trans) a=\(alpha) b=\(beta)", fast, slow, rtol: 1e-5, atol: 1e-5)
                #expect(r.ok, "\(r)")
            }
        }
    }

    @Test func batchedMatchesLoop() {
        var rng = RNG(seed: 11)
        let (batch, m, k, n) = (4, 3, 5, 7)
        let a = (0..<(batch * m * k)).map { _ in rng.uniform(-1, 1) }
        let w = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }  // shared: stride 0
        var c = [Float](repeating: 0, count: batch * m * n)
        var expected = c
        a.withUnsafeBufferPointer { pa in
            w.withUnsafeBufferPointer { pw in
                c.withUnsafeMutableBufferPointer { pc in
                    Gemm.gemmBatched(
                        batch: batch, m: m, n: n, k: k, a: pa.baseAddress!, lda: k, strideA: m * k,
                        b: pw.baseAddress!, ldb: n, strideB: 0, c: pc.baseAddress!, ldc: n, strideC: m * n)
                }
                expected.withUnsafeMutableBufferPointer { pc in
                    for i in 0..<batch {
                        Gemm.gemmNaive(
                            m: m, n: n, k: k, a: pa.baseAddress! + i * m * k, lda: k,
                            b: pw.baseAddress!, ldb: n, c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
        let r = compare("gemmBatched", c, expected)
        #expect(r.ok, "\(r)")
    }

    @Test func matmulShapes() {
        let a = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], data: [7, 8, 9, 10, 11, 12])
        #expect(Tensor.matmul(a, b) == Tensor(shape: [2, 2], data: [58, 64, 139, 154]))
        #expect(Tensor.matmul(a, a, transB: true) == Tensor(shape: [2, 2], data: [14, 32, 32, 77]))
        #expect(Tensor.matmul(a, a, transA: true).shape == [3, 3])
    }

    /// gemv against its Double twin: padded lda, both transposes, odd shapes, α/β; the bound is
    /// (K + 2)·eps32 times Σ|α·a·x| + |β·y0| for each element, so no BLAS summation order can fail it.
    @Test(arguments: [false, true])
    func gemvMatchesNaive(transA: Bool) {
        var rng = RNG(seed: 13)
        let eps = Double(Float.ulpOfOne)
        for (m, n) in [(1, 1), (3, 5), (5, 3), (1, 33), (33, 1), (65, 129), (0, 4), (4, 0), (17, 512)] {
            let lda = n + 3
            let a = (0..<(max(m, 1) * lda)).map { _ in rng.uniform(-1, 1) }
            let (nx, ny) = transA ? (m, n) : (n, m)
            let x = (0..<max(nx, 1)).map { _ in rng.uniform(-1, 1) }
            let y0 = (0..<max(ny, 1)).map { _ in rng.uniform(-1, 1) }
            for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (-2, 0.25)] {
                var fast = y0, slow = y0
                if beta == 0 { fast[0] = .nan }  // beta 0: y is not read
                Gemm.gemv(transA: transA, m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: &fast)
                Gemm.gemvNaive(transA: transA, m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: &slow)
                for i in 0..<ny {
                    var mag = 0.0
                    for p in 0..<nx { mag += abs(Double(transA ? a[p * lda + i] : a[i * lda + p]) * Double(x[p])) }
                    let bound = Double(nx + 2) * eps * (abs(Double(alpha)) * mag + abs(Double(beta * y0[i]))) + 1e-30
                    #expect(abs(Double(fast[i]) - Double(slow[i])) <= bound,
                        "gemv \(m)x\(n) t=\(transA) a=\(alpha) b=\(beta) [\(i)]: \(fast[i]) vs \(slow[i])")
                }
                if ny == 0 { #expect(fast[0].bitPattern == y0[0].bitPattern || beta == 0) }
            }
        }
    }
}
