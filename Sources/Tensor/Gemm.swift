// Gemm: the one wrapper over cblas_sgemm and cblas_sgemv, and their naive twins for tests.
import CBLAS

/// Row-major general matrix multiply: `C = alpha · op(A) · op(B) + beta · C`.
///
/// The only place in fidq that calls `cblas_sgemm`. `op(A)` is (M, K): A is stored (M, K) with
/// leading dimension `lda` when `transA` is false, or (K, M) when it is true; likewise `op(B)` is
/// (K, N). `beta = 1` accumulates into C, which is how every backward adds its gradients.
public enum Gemm {
    /// One product; see the type's doc comment for the layout.
    @inlinable
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        checkLayout(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
    public static func gemmNaive(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        checkLayout(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * lda + i] : a[i * lda + p]
                    let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                }
                // BLAS semantics: with beta == 0, C is not read (it may hold NaN).
                let old = beta == 0 ? 0 : beta * c[i * ldc + j]
                c[i * ldc + j] = alpha * Float(s) + old
            }
        }
    }

    /// Row-major matrix-vector product: `y = alpha · op(A) · x + beta · y`, through `cblas_sgemv`.
    ///
    /// A is stored (m, n) with leading dimension `lda`; op(A) is A (x has n entries, y has m) or,
    /// with `transA`, Aᵀ (x has m, y has n). One-row products (a decoding step's lm head) run
    /// about 3× faster here than as sgemm with M = 1 (ref/perf.md §1.2). With `beta = 0`, y is
    /// not read: it is zeroed first, so a NaN left in it cannot leak whatever the BLAS does.
    @inlinable
    public static func gemv(
        transA: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
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
        cblas_sgemv(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a,
            Int32(lda), x, 1, beta, y, 1)
    }

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
