// ScalarQuantizedIndex: `sq8`, 8-bit per-dimension scalar quantisation, gemm scan over decoded blocks, float32 re-rank.
import Tensor

/// 8-bit scalar quantisation (faiss `QT_8bit`: per dimension, `x ≈ min + code · step`, step =
/// (max − min)/255 over the indexed rows), a quarter of the float32 corpus in memory.
///
/// Search multiplies the codes directly: q·x ≈ q·min + Σ_j (q_j·step_j)·code_j, so a block is
/// widened from bytes to floats (no dequantisation arithmetic) and goes through the gemm wrapper
/// with the scaled queries, the per-query constant added before the fused top-k scan. The best
/// `rerank · k` candidates are then re-scored exactly from the float32/float16 shards when those
/// are given (they are read only at those rows).
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

    private func codes() -> UnsafePointer<UInt8> {
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
                            lo[j] = min(lo[j], row[j])
                            hi[j] = max(hi[j], row[j])
                        }
                    }
                }
            }
        }
        let step = (0..<dim).map { j in hi[j] > lo[j] ? (hi[j] - lo[j]) / 255 : 1 }
        let inverse = step.map { 1 / $0 }
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
                            }
                        }
                    }
                }
            }
        }
        let ids = shards.flatMap(\.ids)
        return ScalarQuantizedIndex(count: n, dim: dim, ids: ids, minimum: lo.map { $0.isFinite ? $0 : 0 }, step: step, owned: codes)
    }

    private init(count: Int, dim: Int, ids: [String], minimum: [Float], step: [Float], owned: [UInt8]) {
        (self.count, self.dim, self.ids, self.minimum, self.step, self.owned) = (count, dim, ids, minimum, step, owned)
        (reader, codeOffset) = (nil, 0)
    }

    /// Loads a saved index, its codes memory-mapped.
    public init(path: String) throws {
        let r = try IndexFileReader(path: path, magic: Self.magic, version: Self.version)
        let n = Int(try r.read("count") as UInt64), d = Int(try r.read("dim") as UInt64)
        minimum = Array(try r.array(d, of: Float.self, "minimum"))
        step = Array(try r.array(d, of: Float.self, "step"))
        let before = r.offset
        _ = try r.array(n * d, of: UInt8.self, "codes")
        codeOffset = before
        ids = try r.strings("ids")
        guard ids.count == n else { throw RetrievalError(file: path, field: "ids", expected: "\(n)", found: "\(ids.count)") }
        (count, dim, reader, owned) = (n, d, r, [])
    }

    public func save(to path: String) throws {
        var w = IndexFileWriter(magic: Self.magic, version: Self.version)
        w.append(UInt64(count))
        w.append(UInt64(dim))
        w.append(array: minimum)
        w.append(array: step)
        w.append(array: UnsafeBufferPointer(start: codes(), count: count * dim))
        w.append(strings: ids)
        try w.write(to: path)
    }

    /// Top `k` per query ((B, E) row-major): `rerank · k` candidates by the codes, re-scored from
    /// `exact` (the shards the index was built from) when given, else the approximate scores.
    public func search(
        queries: UnsafePointer<Float>, queryCount qn: Int, k: Int, rerank: Int = 4, exact: FlatIndex? = nil,
        threads: Int? = nil, blockRows: Int = 8192
    ) -> [[Hit]] {
        let candidates = exact == nil ? k : k * max(1, rerank)
        // Scaled queries (B, E) and their constants (B).
        var scaled = [Float](repeating: 0, count: qn * dim)
        var bias = [Float](repeating: 0, count: qn)
        for q in 0..<qn {
            var s: Float = 0
            for j in 0..<dim {
                scaled[q * dim + j] = queries[q * dim + j] * step[j]
                s += queries[q * dim + j] * minimum[j]
            }
            bias[q] = s
        }
        let blocks = stride(from: 0, to: count, by: blockRows).map { ($0, min(count, $0 + blockRows)) }
        let threadCount = max(1, min(threads ?? Threads.count, blocks.count))
        let parts = (0..<threadCount).map { _ in TopK(queries: qn, k: candidates) }
        let codes = self.codes(), dim = self.dim
        scaled.withUnsafeBufferPointer { sq in
            bias.withUnsafeBufferPointer { bias in
                parallelFor(threadCount, threads: threadCount) { range in
                    for t in range {
                        let widened = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * dim)  // (rows, E)
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * max(qn, 1))  // (rows, Q)
                        defer {
                            widened.deallocate()
                            scores.deallocate()
                        }
                        let lo = t * blocks.count / threadCount, hi = (t + 1) * blocks.count / threadCount
                        for (b0, b1) in blocks[lo..<hi] {
                            let n = b1 - b0
                            let src = codes + b0 * dim
                            for i in 0..<(n * dim) { widened[i] = Float(src[i]) }
                            // Every row starts from the queries' constants: beta = 1 adds the product.
                            for r in 0..<n { (scores + r * qn).update(from: bias.baseAddress!, count: qn) }
                            Gemm.gemm(
                                transB: true, m: n, n: qn, k: dim, a: widened, lda: dim, b: sq.baseAddress!, ldb: dim,
                                beta: 1, c: scores, ldc: qn, threads: 1)
                            parts[t].scan(block: scores, rows: n, ld: qn, firstRow: b0)
                        }
                    }
                }
            }
        }
        var out: [[Hit]] = []
        let row = UnsafeMutablePointer<Float>.allocate(capacity: dim)
        defer { row.deallocate() }
        for q in 0..<qn {
            let cand = TopK.merge(parts, query: q, k: candidates)
            guard let exact else {
                out.append(cand)
                continue
            }
            var rescored: [Hit] = []
            rescored.reserveCapacity(cand.count)
            for h in cand {
                let (s, l) = exact.locate(h.row)
                let p = exact.shards[s].rows(l, l + 1, scratch: row)
                var dot: Float = 0
                for j in 0..<dim { dot += p[j] * queries[q * dim + j] }
                rescored.append(Hit(row: h.row, score: dot))
            }
            rescored.sort(by: Hit.better)
            out.append(Array(rescored.prefix(k)))
        }
        return out
    }
}
