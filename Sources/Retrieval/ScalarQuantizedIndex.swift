// ScalarQuantizedIndex: `sq8`, 8-bit per-dimension scalar quantisation, scanned by the 8-bit product with Int8 queries, float32 re-rank.
import Tensor

/// 8-bit scalar quantisation (faiss `QT_8bit`: per dimension, `x ≈ min + code · step`, step =
/// (max − min)/255 over the indexed rows), a quarter of the float32 corpus in memory.
///
/// Search multiplies the codes directly: q·x ≈ q·min + Σ_j (q_j·step_j)·code_j, with q_j·step_j
/// rounded to Int8 per query, so a block goes through the wrapper's 8-bit product as bytes (no
/// dequantisation, no widening to floats), the per-query scale and constant applied in the fused
/// top-k scan. The best `rerank · k` candidates are then re-scored exactly from the
/// float32/float16 shards when those are given (they are read only at those rows).
public final class ScalarQuantizedIndex {
    static let magic = "FIDQSQ8\u{0}", version: UInt32 = 1

    public let count: Int
    public let dim: Int
    public let ids: [String]
    /// Per dimension: (E) minimum and step.
    public let minimum: [Float]
    public let step: [Float]
    /// (N, E) codes: owned after `build`, mapped after `load`.
    private let owned: [UInt8]
    private let reader: IndexFileReader?
    private let codeOffset: Int

    /// (N, E) codes.
    func codes() -> UnsafePointer<UInt8> {
        if let reader { return (reader.file.base + codeOffset).assumingMemoryBound(to: UInt8.self) }
        return owned.withUnsafeBufferPointer { $0.baseAddress! }
    }

    /// Quantises every row of the shards (two passes: range, then codes).
    public static func build(shards: [EmbeddingShard], threads: Int? = nil, blockRows: Int = 8192) throws -> ScalarQuantizedIndex {
        let flat = try FlatIndex(shards: shards)
        let dim = flat.dim, n = flat.count
        var lo = [Float](repeating: .infinity, count: dim), hi = [Float](repeating: -.infinity, count: dim)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, blockRows * dim))
        defer { scratch.deallocate() }
        // Pass 1: the per-dimension range (unsafe buffers: this loop sees every value).
        lo.withUnsafeMutableBufferPointer { lo in
            hi.withUnsafeMutableBufferPointer { hi in
                for b in flat.blocks(blockRows) {
                    let p = shards[b.shard].rows(b.lo, b.hi, scratch: scratch)
                    for r in 0..<(b.hi - b.lo) {
                        let row = p + r * dim
                        for j in 0..<dim {
                            // Finite values only: one ±inf made the step infinite, every code one
                            // value, and the scan corpus order (NaN never compares, so is skipped).
                            let v = row[j].isFinite ? row[j] : lo[j]
                            let w = row[j].isFinite ? row[j] : hi[j]
                            lo[j] = min(lo[j], v)
                            hi[j] = max(hi[j], w)
                        }
                    }
                }
            }
        }
        let step = (0..<dim).map { j in hi[j] > lo[j] ? (hi[j] - lo[j]) / 255 : 1 }
        // A range so small (below ~7e-37) that 1/step overflows: those dimensions are coded in
        // Double below (rare), the others by the float multiply.
        let tiny = (0..<dim).filter { j in !(1 / step[j]).isFinite || !(hi[j] - lo[j]).isFinite }
        var inverse = step.map { 1 / $0 }
        for j in tiny { inverse[j] = 0 }
        let tinyLo = tiny.map { Double(lo[$0]) }, tinyRange = tiny.map { Double(hi[$0]) - Double(lo[$0]) }
        // Pass 2: the codes, rows split over threads.
        var codes = [UInt8](repeating: 0, count: n * dim)
        codes.withUnsafeMutableBufferPointer { out in
            lo.withUnsafeBufferPointer { lo in
                inverse.withUnsafeBufferPointer { inv in
                    for b in flat.blocks(blockRows) {
                        let p = shards[b.shard].rows(b.lo, b.hi, scratch: scratch)
                        let base = out.baseAddress! + (flat.offsets[b.shard] + b.lo) * dim
                        parallelFor(b.hi - b.lo, grain: 256, threads: threads) { rows in
                            for r in rows {
                                let row = p + r * dim, code = base + r * dim
                                for j in 0..<dim {
                                    let v = ((row[j] - lo[j]) * inv[j]).rounded()
                                    code[j] = UInt8(max(0, min(255, v)))
                                }
                                for (t, j) in tiny.enumerated() {
                                    let v = ((Double(row[j]) - tinyLo[t]) / tinyRange[t] * 255).rounded()
                                    code[j] = UInt8(max(0, min(255, v.isNaN ? 0 : v)))
                                }
                            }
                        }
                    }
                }
            }
        }
        let ids = shards.flatMap(\.ids)
        let finiteStep = (0..<dim).map { j in step[j].isFinite ? step[j] : Float((Double(hi[j]) - Double(lo[j])) / 255) }
        return ScalarQuantizedIndex(count: n, dim: dim, ids: ids, minimum: lo.map { $0.isFinite ? $0 : 0 }, step: finiteStep, owned: codes)
    }

    private init(count: Int, dim: Int, ids: [String], minimum: [Float], step: [Float], owned: [UInt8]) {
        (self.count, self.dim, self.ids, self.minimum, self.step, self.owned) = (count, dim, ids, minimum, step, owned)
        (reader, codeOffset) = (nil, 0)
    }

    /// Loads a saved index, its codes memory-mapped.
    public init(path: String) throws {
        let r = try IndexFileReader(path: path, magic: Self.magic, version: Self.version)
        let n = try r.count("count"), d = try r.count("dim")
        minimum = Array(try r.array(d, of: Float.self, "minimum"))
        step = Array(try r.array(d, of: Float.self, "step"))
        let before = r.offset
        _ = try r.array(try r.product(n, d, "codes"), of: UInt8.self, "codes")
        codeOffset = before
        ids = try r.strings("ids")
        guard ids.count == n else { throw RetrievalError(file: path, field: "ids", expected: "\(n)", found: "\(ids.count)") }
        (count, dim, reader, owned) = (n, d, r, [])
    }

    public func save(to path: String) throws {
        let w = try IndexFileWriter(path: path, magic: Self.magic, version: Self.version)
        try w.append(UInt64(count))
        try w.append(UInt64(dim))
        try w.append(array: minimum)
        try w.append(array: step)
        try w.append(array: UnsafeBufferPointer(start: codes(), count: count * dim))
        try w.append(strings: ids)
        try w.finish()
    }

    /// Top `k` per query ((B, E) row-major): `rerank · k` candidates by the codes, re-scored from
    /// `exact` (the shards the index was built from) when given, else the approximate scores.
    ///
    /// The scan is an 8-bit product (`Gemm.dotsU8S8`): each query's q_j·step_j is rounded to
    /// Int8 on its own scale s (max |q_j·step_j| / 127), so the approximate score is
    /// s · Σ_j iq_j·code_j + q·min, the sum exact in Int32. On Zen 4 (AVX-512 VNNI) that product
    /// runs ~4.5× the multiply-adds of float32 sgemm, on AVX2-only CPUs ~1.7×; the query's
    /// rounding adds about as much noise as the codes' own, which the float32 re-rank absorbs.
    ///
    /// - Parameters:
    ///   - blockRows: corpus rows packed at a time per thread (the packed block and one query
    ///     chunk's scores stay in L2).
    ///   - kernel: the 8-bit product's kernel (every kernel gives the same result).
    public func search(
        queries: UnsafePointer<Float>, queryCount qn: Int, k: Int, rerank: Int = 4, exact: FlatIndex? = nil,
        threads: Int? = nil, blockRows: Int = 512, kernel: Gemm.Int8Kernel = .best
    ) -> [[Hit]] {
        precondition(k >= 1 && blockRows >= 1)
        // Never more candidates than rows: a large `rerank` (1,000,000) asked for k·rerank slots.
        let product = k.multipliedReportingOverflow(by: max(1, rerank))
        let candidates = exact == nil ? k : max(k, min(product.overflow ? Int.max : product.partialValue, count))
        let dim = self.dim
        let (quantized, scale, bias, fine, fineScale) = quantize(queries: queries, count: qn)  // (B, E) Int8, (B), (B), (B, E) Int8, (B)
        let packedQueries = Gemm.PackedQueries8(quantized, count: qn, ldq: dim, dim: dim, kernel: kernel)
        // Queries whose small weights the first rounding zeroed get a second product (rare).
        let packedFine = fineScale.contains { $0 > 0 } ? Gemm.PackedQueries8(fine, count: qn, ldq: dim, dim: dim, kernel: kernel) : nil
        let blocks = stride(from: 0, to: count, by: blockRows).map { ($0, min(count, $0 + blockRows)) }
        let threadCount = max(1, min(threads ?? Threads.count, blocks.count))
        let parts = (0..<threadCount).map { _ in TopK(queries: qn, k: candidates) }
        let codes = self.codes()  // (N, E)
        let chunk = 128  // queries per product: a (128, blockRows) Int32 score block
        scale.withUnsafeBufferPointer { scale in
          fineScale.withUnsafeBufferPointer { fineScale in
            bias.withUnsafeBufferPointer { bias in
                parallelFor(threadCount, threads: threadCount) { range in
                    for t in range {
                        let packed = Gemm.PackedCodes8(kernel: kernel, dim: dim)  // (rows, E) block, packed
                        let ldo = Gemm.PackedCodes8.paddedRows(blockRows, kernel: kernel)
                        let dots = UnsafeMutablePointer<Int32>.allocate(capacity: chunk * ldo)  // (Q chunk, rows)
                        let fineDots = UnsafeMutablePointer<Int32>.allocate(capacity: packedFine == nil ? 1 : chunk * ldo)  // (Q chunk, rows)
                        defer {
                            dots.deallocate()
                            fineDots.deallocate()
                        }
                        let lo = t * blocks.count / threadCount, hi = (t + 1) * blocks.count / threadCount
                        for (b0, b1) in blocks[lo..<hi] {
                            packed.pack(codes + b0 * dim, rows: b1 - b0, ldc: dim)
                            var q0 = 0
                            while q0 < qn {
                                let q1 = min(qn, q0 + chunk)
                                Gemm.dotsU8S8(codes: packed, queries: packedQueries, q0..<q1, out: dots, ldo: ldo)
                                let twoLevel = packedFine != nil && fineScale[q0..<q1].contains { $0 > 0 }
                                if twoLevel { Gemm.dotsU8S8(codes: packed, queries: packedFine!, q0..<q1, out: fineDots, ldo: ldo) }
                                for q in q0..<q1 {
                                    if twoLevel && fineScale[q] > 0 {
                                        Self.offer(parts[t], query: q, dots: dots + (q - q0) * ldo, fine: fineDots + (q - q0) * ldo, count: b1 - b0,
                                                   scale: scale[q], fineScale: fineScale[q], bias: bias[q], firstRow: b0)
                                    } else {
                                        Self.offer(parts[t], query: q, dots: dots + (q - q0) * ldo, count: b1 - b0, scale: scale[q], bias: bias[q], firstRow: b0)
                                    }
                                }
                                q0 = q1
                            }
                        }
                    }
                }
            }
          }
        }
        guard let exact else { return (0..<qn).map { TopK.merge(parts, query: $0, k: candidates) } }
        // Re-rank: each query's candidate rows gathered (C, E) and scored exactly by one gemv.
        var out = [[Hit]](repeating: [], count: qn)
        out.withUnsafeMutableBufferPointer { out in
            parallelFor(qn, grain: 8, threads: threads) { range in
                let rows = UnsafeMutablePointer<Float>.allocate(capacity: max(1, candidates * dim))  // (C, E)
                let row = UnsafeMutablePointer<Float>.allocate(capacity: max(1, dim))
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, candidates))  // (C)
                defer {
                    rows.deallocate()
                    row.deallocate()
                    scores.deallocate()
                }
                for q in range {
                    let cand = TopK.merge(parts, query: q, k: candidates)  // (C) hits
                    for (i, h) in cand.enumerated() {
                        let (s, l) = exact.locate(h.row)
                        (rows + i * dim).update(from: exact.shards[s].rows(l, l + 1, scratch: row), count: dim)
                    }
                    Gemm.gemv(m: cand.count, n: dim, a: rows, lda: dim, x: queries + q * dim, y: scores, threads: 1)
                    // A row holding NaN or ±inf scores NaN or ±inf: dropped, as the exact search drops it.
                    var rescored = cand.indices.filter { scores[$0].isFinite }.map { Hit(row: cand[$0].row, score: scores[$0]) }
                    rescored.sort(by: Hit.better)
                    out[q] = Array(rescored.prefix(k))
                }
            }
        }
        // Rows holding NaN (their codes are no ranking) may have taken candidate places the
        // re-rank then dropped: those queries are searched again with twice the candidates, until
        // they have k hits or every row was a candidate, so they get what exact search gives.
        let short = (0..<qn).filter { out[$0].count < min(k, count) }
        if !short.isEmpty, candidates < count {
            var again = [Float](repeating: 0, count: short.count * dim)
            for (i, q) in short.enumerated() { for j in 0..<dim { again[i * dim + j] = queries[q * dim + j] } }
            let more = again.withUnsafeBufferPointer {
                search(queries: $0.baseAddress!, queryCount: short.count, k: k, rerank: max(1, rerank) * 2, exact: exact,
                       threads: threads, blockRows: blockRows, kernel: kernel)
            }
            for (i, q) in short.enumerated() { out[q] = more[i] }
        }
        return out
    }

    /// Each query's q_j·step_j rounded to Int8 on its own scale: (B, E) values in −127…127, (B)
    /// scales s = max_j |q_j·step_j| / 127 (1 for a zero row) and (B) constants q·min, so that
    /// q·x ≈ s · Σ_j iq_j·code_j + q·min.
    ///
    /// One large weight (a dimension whose range an outlier row widened) makes s so coarse that
    /// the others round to 0, and the scan ranks by that dimension alone. When the weights lost
    /// so outweigh the rounding error of those kept (Σ|w_j| over the zeroed > Σ|w_j − s·iq_j| over
    /// the rest; never for weights of similar size), the zeroed ones get a second Int8 vector on
    /// their own scale (fine, fine scale; zeros and 0 otherwise): q·x ≈ s·(iq·code) + s'·(iq'·code) + q·min.
    func quantize(queries: UnsafePointer<Float>, count qn: Int)
        -> (values: [Int8], scale: [Float], bias: [Float], fine: [Int8], fineScale: [Float]) {
        var values = [Int8](repeating: 0, count: max(1, qn * dim))
        var fine = [Int8](repeating: 0, count: max(1, qn * dim))
        var scale = [Float](repeating: 1, count: max(1, qn))
        var fineScale = [Float](repeating: 0, count: max(1, qn))
        var bias = [Float](repeating: 0, count: max(1, qn))
        var scaled = [Float](repeating: 0, count: max(1, dim))
        for q in 0..<qn {
            var s: Float = 0, top: Float = 0
            for j in 0..<dim {
                scaled[j] = queries[q * dim + j] * step[j]
                top = max(top, abs(scaled[j]))
                s += queries[q * dim + j] * minimum[j]
            }
            bias[q] = s
            let unit = top > 0 ? top / 127 : 1
            scale[q] = unit
            var lost: Float = 0, noise: Float = 0, fineTop: Float = 0
            for j in 0..<dim {
                let v = Int8(max(-127, min(127, (scaled[j] / unit).rounded())))
                values[q * dim + j] = v
                if v == 0 {
                    lost += abs(scaled[j])
                    fineTop = max(fineTop, abs(scaled[j]))
                } else {
                    noise += abs(scaled[j] - unit * Float(v))
                }
            }
            guard lost > noise, fineTop > 0 else { continue }
            let fineUnit = fineTop / 127
            fineScale[q] = fineUnit
            for j in 0..<dim where values[q * dim + j] == 0 {
                fine[q * dim + j] = Int8(max(-127, min(127, (scaled[j] / fineUnit).rounded())))
            }
        }
        return (values, scale, bias, fine, fineScale)
    }

    /// `offer` for a query with a second Int8 vector: `Float(dot) · scale + Float(fine) · fineScale + bias`.
    static func offer(
        _ heap: TopK, query q: Int, dots: UnsafePointer<Int32>, fine: UnsafePointer<Int32>, count n: Int,
        scale: Float, fineScale: Float, bias: Float, firstRow: Int
    ) {
        for i in 0..<n {
            let v = Float(dots[i]) * scale + Float(fine[i]) * fineScale + bias
            if v >= heap.threshold[q] { heap.push(q, score: v, row: firstRow + i) }
        }
    }

    /// Offers one query's approximate scores over a block, `Float(dot) · scale + bias`, to its
    /// heap. The score is monotone in the dot (scale > 0, each rounding monotone), so a run of 32
    /// whose largest dot scores below the running k-th score is skipped whole: an integer max
    /// per run (it vectorises; Swift's SIMD masks here did not).
    @inline(__always)
    static func offer(
        _ heap: TopK, query q: Int, dots: UnsafePointer<Int32>, count n: Int, scale: Float, bias: Float, firstRow: Int
    ) {
        var r = 0
        while r < n {
            let end = min(n, r + 32)
            var top = Int32.min
            for i in r..<end { top = max(top, dots[i]) }
            if Float(top) * scale + bias >= heap.threshold[q] {
                for i in r..<end {
                    let v = Float(dots[i]) * scale + bias
                    if v >= heap.threshold[q] { heap.push(q, score: v, row: firstRow + i) }
                }
            }
            r = end
        }
    }
}
