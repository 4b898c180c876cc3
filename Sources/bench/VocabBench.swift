// VocabBench: `bench vocab`, one decoding step's lm head as gemv against sgemm with M = 1, and the
// vocabulary kernels (log-softmax, top-k, argmax) of a step, on t5-small's shape.
import Foundation
import Tensor

/// The lm head of one token: logits(V) from h(D) through the output layer, stored either as the
/// (V, D) embedding (tied T5) or as a (D, V) copy. gemv and sgemm(M = 1) run on the same buffers,
/// interleaved, so `sgemm/gemv` (> 1: gemv faster) is a paired ratio as in `bench gemm`.
enum VocabBench {
    static let d = 512, v = 32128
    /// Rows of the per-step vocabulary kernels: 4 questions × 4 beams.
    static let rows = 16

    static func run(_ settings: TimingSettings) throws {
        print("## vocab: lm head of one token, Gemm.gemv vs Gemm.gemm with M = 1 (both OpenBLAS), D \(d), V \(v)")
        print("µs per call (median); sgemm/gemv = paired speed ratio (> 1: gemv faster); ref/perf.md §1.2")
        print("expects about 3× on the lm head. Then the per-step vocabulary kernels over \(rows) rows × V.")
        var rng = RNG(seed: 5)
        let w = UnsafeMutableBufferPointer<Float>.allocate(capacity: v * d)  // (V, D), the embedding
        let wt = UnsafeMutableBufferPointer<Float>.allocate(capacity: d * v)  // (D, V), its copy
        let h = UnsafeMutableBufferPointer<Float>.allocate(capacity: d)
        let y = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * v)
        let logp = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * v)
        let topV = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows * 8)
        let topI = UnsafeMutableBufferPointer<Int32>.allocate(capacity: rows * 8)
        defer {
            [w, wt, h, y, logp, topV].forEach { $0.deallocate() }
            topI.deallocate()
        }
        for i in w.indices { w[i] = rng.uniform(-1, 1) }
        for r in 0..<v { for c in 0..<d { wt[c * v + r] = w[r * d + c] } }
        for i in h.indices { h[i] = rng.uniform(-1, 1) }
        for i in y.indices { y[i] = rng.uniform(-10, 10) }
        let (pw, pwt, ph, py) = (w.baseAddress!, wt.baseAddress!, h.baseAddress!, y.baseAddress!)
        let layouts: [(label: String, gemv: () -> Void, gemm: () -> Void)] = [
            ("W (V, D), y = W·h", {
                Gemm.gemv(m: v, n: d, a: pw, lda: d, x: ph, y: py)
            }, {
                Gemm.gemm(transB: true, m: 1, n: v, k: d, a: ph, lda: d, b: pw, ldb: d, c: py, ldc: v)
            }),
            ("Wᵀ copy (D, V), y = Wᵀᵀ·h", {
                Gemm.gemv(transA: true, m: d, n: v, a: pwt, lda: v, x: ph, y: py)
            }, {
                Gemm.gemm(m: 1, n: v, k: d, a: ph, lda: d, b: pwt, ldb: v, c: py, ldc: v)
            }),
        ]
        for threads in settings.threads {
            Threads.set(threads)
            print()
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            let table = Table(["layout", "gemv µs", "sgemm M=1 µs", "sgemm/gemv", "best", "spread"], widths: [28])
            for layout in layouts {
                try Machine.waitForQuiet(settings)
                let stats = try Timing.interleaved(
                    [
                        Contender(name: "gemv") { Timing.sample(minTime: settings.minTime, layout.gemv) },
                        Contender(name: "gemm") { Timing.sample(minTime: settings.minTime, layout.gemm) },
                    ], settings)
                table.add([
                    layout.label, fixed(stats[0].median * 1e6), fixed(stats[1].median * 1e6),
                    ratio(stats[0].speedup(over: stats[1])), ratio(stats[1].fastest / stats[0].fastest),
                    percent(max(stats[0].spread, stats[1].spread)),
                ])
            }
        }
        print()
        print("### vocabulary kernels, \(rows) × \(v) (one thread: they are row loops)")
        let table = Table(["kernel", "µs per step", "GB/s read"], widths: [28])
        let bytes = Double(rows * v * MemoryLayout<Float>.stride)
        let kernels: [(String, () -> Void)] = [
            ("logSoftmax (out of place)", {
                VocabKernels.logSoftmax(py, rows: rows, cols: v, ldx: v, into: logp.baseAddress!, ldy: v)
            }),
            ("topK k=8 per row", {
                VocabKernels.topK(
                    py, rows: rows, cols: v, ld: v, k: 8, values: topV.baseAddress!, indices: topI.baseAddress!)
            }),
            ("topK k=8 over 4 beams × V", {
                VocabKernels.topK(
                    py, rows: rows / 4, cols: 4 * v, ld: 4 * v, k: 8, values: topV.baseAddress!,
                    indices: topI.baseAddress!)
            }),
            ("argmax", { VocabKernels.argmax(py, rows: rows, cols: v, ld: v, into: topI.baseAddress!) }),
        ]
        for (name, body) in kernels {
            let stats = try Timing.interleaved(
                [Contender(name: name) { Timing.sample(minTime: settings.minTime, body) }], settings)
            table.add([name, fixed(stats[0].median * 1e6), fixed(bytes / stats[0].median / 1e9)])
        }
        print()
    }
}
