// GemmTests: the BLAS wrapper against its naive twin on odd shapes, transposes and accumulation,
// within the Float32 bound derived from the operands (TestSupport's reductionBound).
import Testing
import TestSupport
@testable import Tensor

@Suite struct GemmTests {
    /// `Gemm.rowBlocking`: rows of x·wᵀ placed anywhere on that multiple, with whole blocks
    /// around them, get the same bits as alone (the T5 encoder packs passages so), on the kernel
    /// in use; `ops/test-coretypes` runs it on each.
    @Test func rowsOnTheKernelsBlockingKeepTheirBits() {
        let A = Gemm.rowBlocking, k = 96, n = 72
        var rng = RNG(seed: 3)
        let w = rng.normalArray(n * k)
        for rows in [A, 3 * A, 5 * A + (A == 1 ? 0 : A)] {
            let x = rng.normalArray(rows * k)
            var alone = [Float](repeating: 0, count: rows * n)
            Gemm.gemm(transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w, ldb: k, beta: 0, c: &alone, ldc: n, threads: 1)
            for before in [A, 7 * A] {
                for after in [0, A, 4 * A] {
                    let big = rng.normalArray(before * k) + x + rng.normalArray(after * k), m = before + rows + after
                    for threads in [1, 2] {
                        var c = [Float](repeating: 0, count: m * n)
                        Gemm.gemm(transB: true, m: m, n: n, k: k, a: big, lda: k, b: w, ldb: k, beta: 0, c: &c, ldc: n, threads: threads)
                        #expect(Array(c[(before * n)..<((before + rows) * n)]) == alone,
                                "\(rows) rows after \(before), before \(after), \(threads) threads (blocking \(A))")
                    }
                }
            }
        }
        #expect([1, 2, 24].contains(A))
    }

    static let shapes: [(Int, Int, Int)] = [
        (1, 1, 1), (3, 5, 7), (7, 5, 3), (1, 17, 33), (33, 1, 17), (65, 31, 129), (2, 0, 3),
        // A long inner sum, as LinearTests' dW over 4100 tokens: where a fixed atol fails.
        (5, 4100, 3),
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
                var magnitude = [Double](repeating: 0, count: c0.count)
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        fast.withUnsafeMutableBufferPointer { pc in
                            Gemm.gemm(
                                transA: trans.0, transB: trans.1, m: m, n: n, k: k, alpha: alpha,
                                a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                beta: beta, c: pc.baseAddress!, ldc: ldc)
                        }
                        slow.withUnsafeMutableBufferPointer { pc in
                            magnitude.withUnsafeMutableBufferPointer { pm in
                                Gemm.gemmNaive(
                                    transA: trans.0, transB: trans.1, m: m, n: n, k: k, alpha: alpha,
                                    a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                    beta: beta, c: pc.baseAddress!, ldc: ldc, magnitude: pm.baseAddress!)
                            }
                        }
                    }
                }
                // Padding elements of C (never written) compare with magnitude 0: they must be equal.
                let r = compareReduction("gemm \(m)x\(k)x\(n) t=\(trans) a=\(alpha) b=\(beta)", fast, slow, magnitude: magnitude, terms: k + 2)
                #expect(r.ok, "\(r)")
            }
        }
    }

    /// `whole: true` (one sgemm, no tiles: the search scan's products) against the naive twin on a
    /// shape the wrapper would otherwise tile, both layouts of B (the scan's is Bᵀ), padded leading
    /// dimensions, accumulation.
    @Test(arguments: [false, true])
    func wholeProductMatchesNaive(transB: Bool) {
        let (m, k, n) = (1030, 300, 1001)
        #expect(Gemm.tiling(m: m, n: n, k: k).tiles > 1, "the shape should span several tiles")
        var rng = RNG(seed: 17)
        let lda = k + 1, ldb = (transB ? k : n) + 2, ldc = n + 3
        let a = (0..<(m * lda)).map { _ in rng.uniform(-1, 1) }
        let b = (0..<((transB ? n : k) * ldb)).map { _ in rng.uniform(-1, 1) }
        let c0 = (0..<(m * ldc)).map { _ in rng.uniform(-1, 1) }
        for (alpha, beta) in [(Float(1), Float(0)), (-0.5, 1)] {
            var fast = c0, slow = c0
            var magnitude = [Double](repeating: 0, count: c0.count)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    fast.withUnsafeMutableBufferPointer { pc in
                        Gemm.gemm(
                            transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                            beta: beta, c: pc.baseAddress!, ldc: ldc, threads: 2, whole: true)
                    }
                    slow.withUnsafeMutableBufferPointer { pc in
                        magnitude.withUnsafeMutableBufferPointer { pm in
                            Gemm.gemmNaive(
                                transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                beta: beta, c: pc.baseAddress!, ldc: ldc, magnitude: pm.baseAddress!)
                        }
                    }
                }
            }
            let r = compareReduction("whole gemm t=\(transB) a=\(alpha) b=\(beta)", fast, slow, magnitude: magnitude, terms: k + 2)
            #expect(r.ok, "\(r)")
        }
    }

    /// OpenBLAS's sgemm rounds differently on different pool sizes; `Gemm` runs fixed row tiles
    /// single-threaded instead, so a product is the same to the bit on any thread count. Shapes
    /// of several tiles (both layouts of A, the long inner sum of a weight gradient, and a wide
    /// product split by columns).
    /// Row splits (one part per thread), column splits (fixed tiles), and parts of a product too
    /// small for tiles (160 × 2000 × 512, the absorbed cross-attention's at P = 10) alike.
    @Test(arguments: [(false, 2000, 256, 600), (true, 128, 4100, 600), (true, 600, 2000, 257), (false, 32, 512, 20000), (false, 2000, 512, 2048),
                      (true, 2048, 5000, 512), (false, 160, 512, 2000), (true, 250, 300, 700)])
    func resultDoesNotDependOnThreadCount(shape: (transA: Bool, m: Int, k: Int, n: Int)) {
        let (m, k, n) = (shape.m, shape.k, shape.n)
        #expect(!Gemm.isOneTile(m: m, n: n, k: k), "the shape should split")
        var rng = RNG(seed: UInt64(m + k + n))
        let a = rng.normalArray(m * k), b = rng.normalArray(k * n), c0 = rng.normalArray(m * n)
        var results: [[Float]] = []
        for threads in [1, 2, 3, 4, 7, nil] {
            var c = c0
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        Gemm.gemm(
                            transA: shape.transA, m: m, n: n, k: k, a: pa.baseAddress!, lda: shape.transA ? m : k,
                            b: pb.baseAddress!, ldb: n, beta: 1, c: pc.baseAddress!, ldc: n, threads: threads)
                    }
                }
            }
            results.append(c)
        }
        for (i, r) in results.enumerated().dropFirst() {
            let differing = zip(r, results[0]).filter { $0 != $1 }.count
            #expect(differing == 0, "\(shape): \(differing) values differ between 1 and \([2, 3, 4, 7, -1][i - 1]) threads (-1: the global setting)")
        }
    }

    /// What the split by rows rests on: calls over granule-aligned row ranges give each row of C
    /// the bits of one call over all rows, on the OpenBLAS kernel in use, for every transpose and
    /// for parts of one, two, three and an uneven number of granules. A kernel where this fails
    /// would make products, and every gradient, depend on the thread count.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func rowPartsGiveTheBitsOfOneCall(trans: (Bool, Bool)) {
        let (tA, tB) = trans
        let G = Gemm.rowGranule, m = 7 * G + 37, n = 300, k = 700
        var rng = RNG(seed: 17)
        let a = rng.normalArray(m * k), b = rng.normalArray(k * n), c0 = rng.normalArray(m * n)
        let lda = tA ? m : k, ldb = tB ? k : n
        func run(_ cuts: [Int]) -> [Float] {
            var c = c0
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        for (lo, hi) in zip(cuts, cuts.dropFirst()) {
                            Gemm.gemm(transA: tA, transB: tB, m: hi - lo, n: n, k: k, a: tA ? a.baseAddress! + lo : a.baseAddress! + lo * lda,
                                      lda: lda, b: b.baseAddress!, ldb: ldb, beta: 1, c: c.baseAddress! + lo * n, ldc: n, whole: true)
                        }
                    }
                }
            }
            return c
        }
        let one = run([0, m])
        for cuts in [[0, G, 2 * G, 3 * G, 4 * G, 5 * G, 6 * G, 7 * G, m], [0, 2 * G, 4 * G, 6 * G, m], [0, 3 * G, 6 * G, m], [0, 5 * G, m]] {
            let got = run(cuts)
            let rows = Set((0..<(m * n)).filter { got[$0] != one[$0] }.map { $0 / n }).sorted()
            #expect(rows.isEmpty, "\(tA ? "T" : "N")\(tB ? "T" : "N"): parts cut at \(cuts) give other bits than one call in rows \(rows.prefix(8))…")
        }
    }

    @Test func batchedMatchesLoop() {
        var rng = RNG(seed: 11)
        let (batch, m, k, n) = (4, 3, 5, 7)
        let a = (0..<(batch * m * k)).map { _ in rng.uniform(-1, 1) }
        let w = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }  // shared: stride 0
        var c = [Float](repeating: 0, count: batch * m * n)
        var expected = c
        var magnitude = [Double](repeating: 0, count: c.count)
        a.withUnsafeBufferPointer { pa in
            w.withUnsafeBufferPointer { pw in
                c.withUnsafeMutableBufferPointer { pc in
                    Gemm.gemmBatched(
                        batch: batch, m: m, n: n, k: k, a: pa.baseAddress!, lda: k, strideA: m * k,
                        b: pw.baseAddress!, ldb: n, strideB: 0, c: pc.baseAddress!, ldc: n, strideC: m * n)
                }
                expected.withUnsafeMutableBufferPointer { pc in
                    magnitude.withUnsafeMutableBufferPointer { pm in
                        for i in 0..<batch {
                            Gemm.gemmNaive(
                                m: m, n: n, k: k, a: pa.baseAddress! + i * m * k, lda: k,
                                b: pw.baseAddress!, ldb: n, c: pc.baseAddress! + i * m * n, ldc: n,
                                magnitude: pm.baseAddress! + i * m * n)
                        }
                    }
                }
            }
        }
        let r = compareReduction("gemmBatched", c, expected, magnitude: magnitude, terms: k + 2)
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
        for (m, n) in [(1, 1), (3, 5), (5, 3), (1, 33), (33, 1), (65, 129), (0, 4), (4, 0), (17, 512), (700, 333), (333, 700)] {
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

    /// A gemv large enough to split into tiles of y gives the same bits on 1 and 2 threads, and
    /// the tiled transposed product (a decoding step's lm head over a (D, V) copy) too.
    @Test(arguments: [false, true])
    func gemvTilesAreThreadCountIndependent(transA: Bool) {
        var rng = RNG(seed: 14)
        let (m, n) = transA ? (512, 4099) : (4099, 512)
        let a = (0..<(m * n)).map { _ in rng.uniform(-1, 1) }
        let x = (0..<(transA ? m : n)).map { _ in rng.uniform(-1, 1) }
        let ny = transA ? n : m
        var one = [Float](repeating: 0, count: ny), two = one
        a.withUnsafeBufferPointer { a in
            x.withUnsafeBufferPointer { x in
                Gemm.gemv(transA: transA, m: m, n: n, a: a.baseAddress!, lda: n, x: x.baseAddress!, y: &one, threads: 1)
                Gemm.gemv(transA: transA, m: m, n: n, a: a.baseAddress!, lda: n, x: x.baseAddress!, y: &two, threads: 2)
            }
        }
        #expect(one.map(\.bitPattern) == two.map(\.bitPattern))
        var slow = one
        Gemm.gemvNaive(transA: transA, m: m, n: n, a: a, lda: n, x: x, y: &slow)
        // Each output within its float32 sum's bound (K·u·Σ|a·x|, doubled for the reference's rounding).
        let k = transA ? m : n, u = Double(Float.ulpOfOne) / 2
        var bad = 0
        for i in 0..<ny {
            var mag = 0.0
            for j in 0..<k { mag += abs(Double(transA ? a[j * n + i] : a[i * n + j]) * Double(x[j])) }
            if abs(Double(one[i]) - Double(slow[i])) > 2 * Double(k) * u * mag { bad += 1 }
        }
        #expect(bad == 0, "gemv \(m)x\(n) t=\(transA): \(bad) outputs past their bound from the Double loop")
    }
}
