// Gemm: the one wrapper over cblas_sgemm and matrix-vector products (cblas_sgemv transposed, a
// row-dot kernel untransposed), and their naive twins for tests.
import CBLAS
import COpenBLASCore

/// Row-major general matrix multiply: `C = alpha · op(A) · op(B) + beta · C`.
///
/// The only place in fidq that calls `cblas_sgemm`. `op(A)` is (M, K): A is stored (M, K) with
/// leading dimension `lda` when `transA` is false, or (K, M) when it is true; likewise `op(B)` is
/// (K, N). `beta = 1` accumulates into C, which is how every backward adds its gradients.
///
/// Threads: OpenBLAS's sgemm rounds differently on different pool sizes (measured with 0.3.21 on
/// every core type), so its pool is pinned to one thread and a large product runs as parts of C,
/// each one single-threaded sgemm, spread over `parallelFor`, so that every product, and every
/// gradient built from them, is the same to the bit on any thread count: a resumed run on another
/// thread count reproduces an uninterrupted one.
///
/// - Split by rows (M, unless N is more than twice M): one part per thread, cut at multiples of
///   `rowGranule` rows. A row of C then gets the same bits from a call over any granule-aligned
///   range of rows as from one call over all of them (OpenBLAS's kernels sum each element over K
///   in an order that does not depend on where the call's rows start, once the start is a
///   multiple of the kernel's row blocking: checked on every x86 kernel the library can run
///   here, and by `GemmTests` on the one in use), so the result is that of one whole call, and
///   op(B) is packed once per thread instead of once per fixed tile (a 8-tile split re-packed
///   it 8 times: a T5-small train step at P = 25 on one thread spent 10 % more in its backward
///   products than with whole ones).
/// - Split by columns (N): Haswell's and Zen's kernels give other bits for other column splits,
///   so these products run as fixed tiles that follow from the shape alone, queued over the
///   threads; each re-packs op(A) (a 32×32128 lm-head product split by rows ran at 0.4× raw
///   sgemm, hence columns there).
///
/// A product splits into tiles only past `minTileWork` multiply-adds per tile; one too small for
/// tiles still splits its rows into parts past `minPartWork` per part (a part packs op(B) once,
/// and results do not change). Single-threaded sgemm rates (GFLOP/s, CPU time, OpenBLAS 0.3.21
/// on Zen 4) of the T5-small FiD products at P = 10 (2000 encoder rows) when they all ran as
/// fixed tiles:
///
///     product                      whole  16 tiles (old)  8 tiles  2 tiles by rows
///     2000×512×512 NT (q/k/v/o)       95      91               94       97
///     2000×2048×512 NT (FFN in)       99      79 (by cols)     92       98
///     2000×512×2048 NT (FFN out)      99      81               90       98
///     512×512×2000 TN (weight grad)   98      71               82       95
///
/// so tiles carry at least `minTileWork` multiply-adds (~1.3 ms), counts are powers of two
/// (even work on 2, 4, 8 cores), and M is split unless N is more than twice M (splitting N of
/// an FFN-in product measured 10–20 % slower than splitting M even where it re-packs less).
public enum Gemm {
    /// Most tiles of one product split by columns (a split by rows takes one part per thread).
    /// The count cannot follow the thread count (that would change the bits), so it is sized for
    /// the larger hosts workers run on (the Slurm script gives 8 cores per worker) while
    /// `minTileWork` keeps the re-packing of an operand once per tile a few percent; on 2 cores
    /// the tiles simply queue.
    @usableFromInline static let maxTiles = 8
    /// The least multiply-adds per tile (~1.3 ms of work), and per part of a product that has
    /// tiles: the 2000×512×512 projections split in 2, the 2000×512×2048 feed-forward products
    /// in 8; attention's per-head products (250×64×250 is 4 M) have none.
    @usableFromInline static let minTileWork = 1 << 27
    /// Multiply-adds under which a product too small for tiles runs as one call, and the least
    /// per part when its rows split (~0.17 ms of work, each part packing op(B) once): the
    /// absorbed cross-attention's 160 × 2000 × 512 products at P = 10 split on 2 threads.
    @usableFromInline static let minPartWork = 1 << 24
    /// Least rows (or columns) per tile of C.
    @usableFromInline static let minTileRows = 32
    /// Rows of C per granule of a split by rows: a multiple of every x86 sgemm kernel's row
    /// blocking in OpenBLAS 0.3.21 (Haswell's and Zen's need multiples of 24, the SSE3 ones of 2;
    /// SkylakeX's, Cooperlake's and Sandy Bridge's any split), so parts cut at granules give
    /// each row the bits of one call over all rows. `GemmTests` checks it on the kernel in use.
    @usableFromInline static let rowGranule = 96

    /// The row blocking of the sgemm kernel OpenBLAS runs here: 24 for Haswell's and Zen's (a row
    /// of C gets its bits from its place in a block of 24 and from whether the block is whole),
    /// 2 for the SSE3 kernels of Prescott, Core 2, Penryn, Dunnington and Atom (a row alone gets
    /// other bits than in a pair), 1 for the others, whose rows get the same bits wherever they
    /// sit (all measured with OpenBLAS 0.3.21 on one thread). A caller packing rows of different
    /// items together (the T5 encoder's passages without their padding) keeps each item's bits
    /// independent of the others by starting and ending items on this multiple.
    public static let rowBlocking: Int = {
        switch coreName.lowercased() {
        case "haswell", "zen": return 24
        case "prescott", "core2", "penryn", "dunnington", "atom": return 2
        default: return 1
        }
    }()

    /// The core type whose kernels OpenBLAS runs here ("Cooperlake", "Zen", …).
    public static let coreName: String = openblas_get_corename().map { String(cString: $0) } ?? "unknown"

    /// The core type OpenBLAS fell back to at load and fidq replaced (`COpenBLASCore`: on a CPU
    /// newer than the library, Prescott's SSE3 kernels, 5–8× slower than the CPU's own), nil when
    /// OpenBLAS's own choice stands.
    public static let replacedCore: String? = fidq_openblas_fallback_core().map { String(cString: $0) }

    /// `coreName`, and when fidq chose it, what OpenBLAS had chosen: "Cooperlake (fidq's choice;
    /// OpenBLAS fell back to Prescott on this CPU)".
    public static var coreDescription: String {
        replacedCore.map { "\(coreName) (fidq's choice; OpenBLAS fell back to \($0) on this CPU)" } ?? coreName
    }

    /// OpenBLAS's build and the kernels it chose for this CPU, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH
    /// NO_AFFINITY Cooperlake MAX_THREADS=64": benchmarks print it, since the kernels set both the
    /// speed and the bits (`OPENBLAS_CORETYPE` overrides the choice).
    public static let library: String = openblas_get_config().map { String(cString: $0) } ?? "unknown BLAS"

    /// Pins OpenBLAS's own pool to one thread, once; every product touches it first.
    @usableFromInline static let pinnedBLAS: Bool = {
        openblas_set_num_threads(1)
        started.set()
        return true
    }()
    static let started = AvailableMemory.OnceFlag()

    /// Whether a product has run in this process: OpenBLAS's buffers are then mapped.
    public static var hasRun: Bool { started.isSet }

    /// How an (M, N, K) product splits, from the shape alone: along M (rows of C) or N (columns),
    /// `size` rows or columns per tile, `tiles` tiles.
    @inlinable
    static func tiling(m: Int, n: Int, k: Int) -> (byRows: Bool, size: Int, tiles: Int) {
        let byRows = 2 * m >= n
        let side = byRows ? m : n
        let work = m * n * Swift.max(k, 1)
        let most = Swift.max(1, Swift.min(maxTiles, work / minTileWork, side / minTileRows))
        let want = 1 << (Int.bitWidth - 1 - most.leadingZeroBitCount)  // the power of two ≤ most
        let size = (side + want - 1) / want
        return (byRows, size, (side + size - 1) / size)
    }

    /// Whether an (M, N, K) product runs as one call on the calling thread (no tiles, too small
    /// for parts of rows): such products, when independent, are worth running side by side
    /// (`concurrently`).
    @inlinable
    public static func isOneTile(m: Int, n: Int, k: Int) -> Bool {
        let tiles = tiling(m: m, n: n, k: k).tiles
        guard tiles == 1 else { return false }
        let (granules, grain) = rowParts(m: m, n: n, k: k, tiles: tiles)
        return granules / grain < 2  // `parallelFor` would keep them on one thread
    }

    /// How `gemm` cuts a product it splits by rows: `granules` of `rowGranule` rows, at least
    /// `grain` of them per part (each part at least `minTileWork` multiply-adds when the product
    /// has tiles, else `minPartWork`).
    @inlinable
    static func rowParts(m: Int, n: Int, k: Int, tiles: Int) -> (granules: Int, grain: Int) {
        let G = rowGranule, least = tiles == 1 ? minPartWork : minTileWork
        return ((m + G - 1) / G, Swift.max(1, least / Swift.max(1, G * n * k)))
    }

    /// One product; see the type's doc comment for the layout. `threads` overrides
    /// `Threads.count` for this call (the result does not depend on it).
    ///
    /// `whole` runs the product as one sgemm on the calling thread, without parts or tiles: for a
    /// caller that already spreads its products over threads (`FlatIndex`'s scan, one product per
    /// thread), where a split only re-packs an operand (a 8192×1000×768 search block in 8 row
    /// tiles re-packed the 1000 queries 8 times: 4–5 % slower than one sgemm). Its bits also
    /// depend on the shape alone.
    @inlinable
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int? = nil, whole: Bool = false
    ) {
        checkLayout(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        if m == 0 || n == 0 { return }
        _ = pinnedBLAS
        let tA = transA ? CblasTrans : CblasNoTrans, tB = transB ? CblasTrans : CblasNoTrans
        // Rows lo..<hi of C: rows lo… of op(A), which start at row lo of A, or at its column lo
        // when A is transposed. Columns lo..<hi: columns lo… of op(B), likewise.
        func rows(_ lo: Int, _ hi: Int) {
            cblas_sgemm(
                CblasRowMajor, tA, tB, Int32(hi - lo), Int32(n), Int32(k), alpha,
                transA ? a + lo : a + lo * lda, Int32(lda), b, Int32(ldb), beta, c + lo * ldc, Int32(ldc))
        }
        func columns(_ lo: Int, _ hi: Int) {
            cblas_sgemm(
                CblasRowMajor, tA, tB, Int32(m), Int32(hi - lo), Int32(k), alpha, a, Int32(lda),
                transB ? b + lo * ldb : b + lo, Int32(ldb), beta, c + lo, Int32(ldc))
        }
        if whole {
            rows(0, m)
            return
        }
        let (byRows, size, tiles) = tiling(m: m, n: n, k: k)
        if byRows || tiles == 1 {
            // One part per thread, each one sgemm over whole granules of rows: the same bits as
            // one call over all rows (see the type's doc), and op(B) packed once per thread. A
            // product too small for tiles still splits its rows past `minPartWork` a part.
            let G = rowGranule, (granules, grain) = rowParts(m: m, n: n, k: k, tiles: tiles)
            parallelFor(granules, grain: grain, threads: threads) { r in
                rows(r.lowerBound * G, Swift.min(m, r.upperBound * G))
            }
            return
        }
        parallelFor(tiles, threads: threads) { r in
            for t in r { columns(t * size, Swift.min(n, (t + 1) * size)) }
        }
    }

    /// `batch` independent products over a leading axis; operand i starts at `i * stride`.
    ///
    /// A stride of 0 reuses one operand for every batch item (e.g. shared weights).
    @inlinable
    public static func gemmBatched(
        batch: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, strideA: Int,
        b: UnsafePointer<Float>, ldb: Int, strideB: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int
    ) {
        for i in 0..<batch {
            gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb,
                beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }

    /// The plain triple loop with the same contract as `gemm`, accumulated in Double.
    ///
    /// `magnitude`, when given (laid out like C, leading dimension `ldc`), receives each output's
    /// `|alpha|·Σ_p |a·b| + |beta·c|`: what the Float32 error bound of that output scales with
    /// (TestSupport's `reductionBound`, with k + 2 terms for the scaling and the accumulation).
    public static func gemmNaive(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        magnitude: UnsafeMutablePointer<Double>? = nil
    ) {
        checkLayout(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, sa = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                    sa += abs(Double(x) * Double(y))
                }
                // BLAS semantics: with beta == 0, C is not read (it may hold NaN).
                let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
                c[i * ldc + j] = Float(Double(alpha) * s + old)
                magnitude?[i * ldc + j] = abs(Double(alpha)) * sa + abs(old)
            }
        }
    }

    /// Row-major matrix-vector product: `y = alpha · op(A) · x + beta · y`: `cblas_sgemv` for Aᵀ,
    /// `rowDots` for A.
    ///
    /// A is stored (m, n) with leading dimension `lda`; op(A) is A (x has n entries, y has m) or,
    /// with `transA`, Aᵀ (x has m, y has n). One-row products (a decoding step's lm head) run
    /// about 3× faster here than as sgemm with M = 1 (ref/perf.md §1.2). With `beta = 0`, y is
    /// not read: it is zeroed first, so a NaN left in it cannot leak whatever the BLAS does.
    ///
    /// Threads: like `gemm`, fixed tiles of y (from the shape alone, so the result is the same on
    /// any thread count), each a single-threaded sgemv, spread over `parallelFor`: with OpenBLAS's
    /// pool pinned to one thread, a whole-y call would leave every other core idle while a
    /// decoding step streams its weights. `threads` overrides `Threads.count` for this call.
    @inlinable
    public static func gemv(
        transA: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>, threads: Int? = nil
    ) {
        precondition(m >= 0 && n >= 0, "gemv: negative size m=\(m) n=\(n)")
        precondition(lda >= max(1, n), "gemv: lda=\(lda) < n=\(n)")
        let ny = transA ? n : m, nx = transA ? m : n
        if ny == 0 { return }
        if beta == 0 { y.update(repeating: 0, count: ny) }
        if nx == 0 {
            if beta != 0 && beta != 1 { for i in 0..<ny { y[i] *= beta } }
            return
        }
        _ = pinnedBLAS
        let want = Swift.max(1, Swift.min(maxTiles, ny * nx / minGemvTileWork, ny / minGemvTileRows))
        let size = (ny + want - 1) / want, tiles = (ny + size - 1) / size
        // Outputs lo..<hi: rows lo… of A, or its columns lo… when transposed.
        func tile(_ lo: Int, _ hi: Int) {
            if transA {
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(m), Int32(hi - lo), alpha, a + lo, Int32(lda), x, 1, beta, y + lo, 1)
            } else {
                rowDots(lo, hi, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: y)
            }
        }
        if tiles == 1 {
            tile(0, ny)
            return
        }
        parallelFor(tiles, threads: threads) { r in
            for t in r { tile(t * size, Swift.min(ny, (t + 1) * size)) }
        }
    }

    /// y[i] = alpha · (A row i · x) + beta · y[i] for rows lo..<hi: the untransposed gemv.
    ///
    /// OpenBLAS 0.3.21's row-major NoTrans sgemv streams A at about half the transposed kernel's
    /// rate (ref/perf.md §1.2), and decoding steps run this product on every weight and the lm
    /// head. The rows split in four quarters walked side by side (rows t, t + q, t + 2q, t + 3q):
    /// four far-apart sequential streams keep more memory reads in flight than one (measured on
    /// the 32128×512 lm head, one thread, CPU time: 2.6–3.0 ms = 22–25 GB/s, as OpenBLAS's
    /// transposed sgemv over a (512, 32128) copy; adjacent rows 4.5 ms, OpenBLAS NoTrans 5.2 ms).
    /// Each 16-float load of x serves four rows, one SIMD16 accumulator per row. An output's sum
    /// order depends on n alone, so tiles and thread counts never change a bit.
    @usableFromInline
    static func rowDots(
        _ lo: Int, _ hi: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>,
        beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        let full = n & ~15
        @inline(__always) func finish(_ i: Int, _ dot: Float) {
            y[i] = beta == 0 ? alpha * dot : alpha * dot + beta * y[i]
        }
        let q = (hi - lo) / 4
        for t in 0..<q {
            let i0 = lo + t, i1 = i0 + q, i2 = i1 + q, i3 = i2 + q
            let r0 = a + i0 * lda, r1 = a + i1 * lda, r2 = a + i2 * lda, r3 = a + i3 * lda
            var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
            var p = 0
            while p < full {
                let xv = Reduce.load(x + p)
                s0 = s0.addingProduct(Reduce.load(r0 + p), xv)
                s1 = s1.addingProduct(Reduce.load(r1 + p), xv)
                s2 = s2.addingProduct(Reduce.load(r2 + p), xv)
                s3 = s3.addingProduct(Reduce.load(r3 + p), xv)
                p += 16
            }
            var t0 = s0.sum(), t1 = s1.sum(), t2 = s2.sum(), t3 = s3.sum()
            while p < n {
                t0 += r0[p] * x[p]
                t1 += r1[p] * x[p]
                t2 += r2[p] * x[p]
                t3 += r3[p] * x[p]
                p += 1
            }
            finish(i0, t0)
            finish(i1, t1)
            finish(i2, t2)
            finish(i3, t3)
        }
        var i = lo + 4 * q
        while i < hi {
            let r = a + i * lda
            var s = SIMD16<Float>()
            var p = 0
            while p < full {
                s = s.addingProduct(Reduce.load(r + p), Reduce.load(x + p))
                p += 16
            }
            var t = s.sum()
            while p < n {
                t += r[p] * x[p]
                p += 1
            }
            finish(i, t)
            i += 1
        }
    }

    /// Multiply-adds per tile under which a gemv runs whole on the calling thread: a decoding
    /// step's 512×512 weights split in 2 tiles, its feed-forward and lm head in `maxTiles`.
    @usableFromInline static let minGemvTileWork = Threads.minSplitWork
    /// Least outputs per gemv tile (a 64-float run of y; with `transA`, 256-byte runs of each row of A).
    @usableFromInline static let minGemvTileRows = 64

    /// The plain loop with `gemv`'s contract, accumulated in Double.
    public static func gemvNaive(
        transA: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        precondition(m >= 0 && n >= 0 && lda >= max(1, n), "gemv: m=\(m) n=\(n) lda=\(lda)")
        let ny = transA ? n : m, nx = transA ? m : n
        for i in 0..<ny {
            var s = 0.0
            for p in 0..<nx { s += Double(transA ? a[p * lda + i] : a[i * lda + p]) * Double(x[p]) }
            y[i] = alpha * Float(s) + (beta == 0 ? 0 : beta * y[i])
        }
    }

    @usableFromInline
    static func checkLayout(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=\(m) n=\(n) k=\(k)")
        precondition(
            lda >= max(1, transA ? m : k), "gemm: lda=\(lda) < \(transA ? "m" : "k")=\(transA ? m : k)")
        precondition(
            ldb >= max(1, transB ? k : n), "gemm: ldb=\(ldb) < \(transB ? "k" : "n")=\(transB ? k : n)")
        precondition(ldc >= max(1, n), "gemm: ldc=\(ldc) < n=\(n)")
    }
}

extension Tensor {
    /// Matrix product of two rank-2 tensors: (M, K) · (K, N) → (M, N), optionally transposed.
    public static func matmul(_ a: Tensor, _ b: Tensor, transA: Bool = false, transB: Bool = false)
        -> Tensor
    {
        precondition(a.rank == 2 && b.rank == 2, "matmul: needs rank 2, got \(a.shape) and \(b.shape)")
        let m = transA ? a.shape[1] : a.shape[0]
        let k = transA ? a.shape[0] : a.shape[1]
        let kb = transB ? b.shape[1] : b.shape[0]
        let n = transB ? b.shape[0] : b.shape[1]
        precondition(k == kb, "matmul: inner sizes differ, \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")")
        var c = Tensor.zeros([m, n])
        if m == 0 || n == 0 || k == 0 { return c }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    Gemm.gemm(
                        transA: transA, transB: transB, m: m, n: n, k: k,
                        a: pa.baseAddress!, lda: a.shape[1], b: pb.baseAddress!, ldb: b.shape[1],
                        c: pc.baseAddress!, ldc: n)
                }
            }
        }
        return c
    }
}
