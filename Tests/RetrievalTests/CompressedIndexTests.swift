// CompressedIndexTests: sq8 and pq recall@10 against exact search, save/load round trips, refused files.
import Foundation
import Tensor
import Testing

@testable import Retrieval

@Suite struct CompressedIndexTests {
    /// Clustered data, like embeddings: a few centres plus noise.
    static func corpus(rows: Int, dim: Int, rng: inout RNG) -> [Float] {
        let centres = rng.normalArray(16 * dim)
        var out: [Float] = []
        for _ in 0..<rows {
            let c = Int(rng.next() % 16)
            for j in 0..<dim { out.append(centres[c * dim + j] + 0.5 * rng.normal()) }
        }
        return out
    }

    /// A job searches `QuestionBlocks.size` questions per call (progress and stop checks between
    /// calls); every index gives, bit for bit, the hits of one call over all the questions.
    @Test func questionBlocksGiveTheHitsOfOneCall() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 5)
        let dim = 16, n = QuestionBlocks.size + 300
        try folder.write(index: 0, rows: Self.corpus(rows: 1500, dim: dim, rng: &rng), dim: dim, storage: .float16, firstID: 0)
        let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
        let flat = try FlatIndex(shards: shards), sq = try ScalarQuantizedIndex.build(shards: shards)
        let pq = try ProductQuantizedIndex.build(shards: shards, subquantizers: 4, bits: 4)
        let queries = rng.normalArray(n * dim)
        let searches: [(String, (UnsafePointer<Float>, Int) -> [[Hit]])] = [
            ("flat", { flat.search(queries: $0, queryCount: $1, k: 7) }),
            ("sq8", { sq.search(queries: $0, queryCount: $1, k: 7, exact: flat) }),
            ("pq", { pq.search(queries: $0, queryCount: $1, k: 7) }),
        ]
        for (name, search) in searches {
            queries.withUnsafeBufferPointer { q in
                let whole = search(q.baseAddress!, n)
                let blocks = stride(from: 0, to: n, by: QuestionBlocks.size).flatMap { start in
                    search(q.baseAddress! + start * dim, min(n, start + QuestionBlocks.size) - start)
                }
                #expect(blocks == whole, "\(name)")
            }
        }
    }

    @Test func sq8RecallAndRoundTrip() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 11)
        let dim = 32
        try folder.write(index: 0, rows: Self.corpus(rows: 700, dim: dim, rng: &rng), dim: dim, storage: .float32, firstID: 0)
        try folder.write(index: 1, rows: Self.corpus(rows: 500, dim: dim, rng: &rng), dim: dim, storage: .float16, firstID: 700)
        let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
        let flat = try FlatIndex(shards: shards)
        let queries = rng.normalArray(40 * dim)
        let exact = flat.search(queries: queries, queryCount: 40, k: 10)
        let sq = try ScalarQuantizedIndex.build(shards: shards)
        let plain = sq.search(queries: queries, queryCount: 40, k: 10, blockRows: 256)
        #expect(sq.quantize(queries: queries, count: 40).fineScale.allSatisfy { $0 == 0 }, "clustered data took the second product")
        let reranked = sq.search(queries: queries, queryCount: 40, k: 10, exact: flat, threads: 2, blockRows: 256)
        #expect(Hit.overlap(plain, exact) >= 0.9, "sq8 recall@10 \(Hit.overlap(plain, exact))")
        #expect(Hit.overlap(reranked, exact) >= 0.99, "sq8+rerank recall@10 \(Hit.overlap(reranked, exact))")
        // Re-ranked scores are the exact ones.
        for (r, e) in zip(reranked, exact) where r.map(\.row) == e.map(\.row) {
            for (a, b) in zip(r, e) { #expect(abs(a.score - b.score) <= 1e-4 * max(1, abs(b.score))) }
        }
        // A rerank beyond the corpus (k·rerank past Int.max even) re-ranks every row: exact search's
        // rows, where it asked for k·rerank candidate slots and the allocation stopped the process.
        let everything = sq.search(queries: queries, queryCount: 40, k: 10, rerank: Int.max / 2, exact: flat, threads: 2, blockRows: 256)
        #expect(everything.map { $0.map(\.row) } == exact.map { $0.map(\.row) })
        let path = folder.dir + "/index.sq8"
        try sq.save(to: path)
        let loaded = try ScalarQuantizedIndex(path: path)
        #expect(loaded.ids == sq.ids && loaded.minimum == sq.minimum && loaded.step == sq.step)
        #expect(loaded.search(queries: queries, queryCount: 40, k: 10, blockRows: 256) == plain)
        // A truncated or foreign file is refused.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
        #expect(throws: RetrievalError.self) { try ScalarQuantizedIndex(path: path) }
        #expect(throws: RetrievalError.self) { try ProductQuantizedIndex(path: path) }
    }

    /// Uniform data, as the benchmark's: recall@10 against exact search with the re-rank and
    /// without, the same hits and scores from every 8-bit kernel this CPU runs, and every
    /// approximate score within the bound its roundings allow.
    @Test func sq8UniformRecallKernelsAndBound() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 21)
        let dim = 96, n = 5000, qn = 30, k = 10
        let rows = rng.uniformArray(n * dim)
        try folder.write(index: 0, rows: rows, dim: dim, storage: .float32, firstID: 0)
        let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
        let flat = try FlatIndex(shards: shards)
        let queries = rng.uniformArray(qn * dim)
        let exact = flat.search(queries: queries, queryCount: qn, k: k)
        let sq = try ScalarQuantizedIndex.build(shards: shards)
        // Blocks of 700 rows: not a multiple of any kernel's tile.
        let reranked = sq.search(queries: queries, queryCount: qn, k: k, rerank: 4, exact: flat, threads: 2, blockRows: 700)
        #expect(Hit.overlap(reranked, exact) >= 0.95, "sq8+rerank recall@10 \(Hit.overlap(reranked, exact))")
        let kernels = Gemm.Int8Kernel.allCases.filter(\.isSupported)
        let plain = kernels.map { sq.search(queries: queries, queryCount: qn, k: 3 * k, threads: 2, blockRows: 700, kernel: $0) }
        for (kernel, hits) in zip(kernels, plain) { #expect(hits == plain[0], "kernel \(kernel) differs from \(kernels[0])") }
        let top = plain[0].map { Array($0.prefix(k)) }
        #expect(Hit.overlap(top, exact) >= 0.9, "sq8 recall@10 without re-rank \(Hit.overlap(top, exact))")

        // approx − q·x = Σ_j d_j·c_j − Σ_j q_j·e_j + float roundings, where d_j = s·iq_j − q_j·step_j
        // (|d_j| ≤ s/2 and the rounding of q_j·step_j) and e_j = x_j − (min_j + step_j·c_j)
        // (|e_j| ≤ step_j/2 and the build's three roundings, < 1e-4 step_j).
        let (values, scale, bias, _, fineScale) = sq.quantize(queries: queries, count: qn)
        // Weights of similar size take one rounding: the second product is for outliers only.
        #expect(fineScale.allSatisfy { $0 == 0 }, "\(fineScale)")
        let codes = sq.codes(), u = Double(Float.ulpOfOne) / 2
        var worst = 0.0
        for q in 0..<qn {
            let s = Double(scale[q])
            for h in plain[0][q] {
                var dot = 0.0, bound = 0.0, intDot = 0.0, biasTerms = 0.0
                for j in 0..<dim {
                    let qj = Double(queries[q * dim + j]), c = Double(codes[h.row * dim + j]), st = Double(sq.step[j])
                    dot += qj * Double(rows[h.row * dim + j])
                    bound += c * (s / 2 + 2 * u * abs(qj * st)) + abs(qj) * st * (0.5 + 1e-4)
                    intDot += c * abs(Double(values[q * dim + j]))
                    biasTerms += abs(qj * Double(sq.minimum[j]))
                }
                bound += 2 * Double(dim) * u * biasTerms + 4 * u * (s * intDot + abs(Double(bias[q])))
                let err = abs(Double(h.score) - dot)
                worst = max(worst, err / bound)
                #expect(err <= bound, "query \(q) row \(h.row): approx \(h.score), exact \(dot), bound \(bound)")
            }
        }
        // The bound is not vacuous: the largest error is a sizeable share of it (0.15 measured).
        #expect(worst > 0.02, "largest error / bound \(worst)")
    }

    /// Rows sq8 used to rank wrongly: a −inf value (the step became infinite, every code one
    /// value, the scan corpus order), a NaN row (ranked among real hits with score NaN), one
    /// outlier value (its dimension's weight made every other round to 0), and values so small
    /// that 1/step overflowed. Each now gives exact search's hits; the outlier's queries take
    /// the second Int8 product.
    @Test func sq8OddValuesGiveExactSearchsHits() throws {
        /// (rows, dim, queries, k)
        func dataset(_ name: String) -> ([Float], Int, [Float], Int) {
            var rng = RNG(seed: 31)
            switch name {
            case "-inf", "nan", "+inf":
                // d 2, q (1, 1): row 0 broken, rows 1…9 small, rows 10 and 11 the best. +inf
                // scores +inf: the re-rank returned it first, where exact search never does.
                var rows: [Float] = [name == "-inf" ? -.infinity : name == "+inf" ? .infinity : .nan, 0]
                for i in 1...9 { rows += [0, 0.1 * Float(i)] }
                rows += [0, 5, 0, 4]
                return (rows, 2, [1, 1], 2)
            case "outlier":
                // d 2, q (1, 1): row 0 (1e4, 0), row i (0, 0.05·i).
                var rows: [Float] = [1e4, 0]
                for i in 1..<20 { rows += [0, 0.05 * Float(i)] }
                return (rows, 2, [1, 1], 3)
            case "nans":
                // 12 NaN rows, more than the 4 · 2 candidates: their places are searched again.
                // All NaN: code 255 everywhere, so they top every query of positive weights.
                var rows = Self.corpus(rows: 40, dim: 4, rng: &rng)
                for r in 0..<(12 * 4) { rows[r] = .nan }
                return (rows, 4, rng.normalArray(6 * 4).map { abs($0) }, 2)
            case "outliers":
                var rows = rng.normalArray(4000 * 16)
                rows[0] = 1e4
                return (rows, 16, rng.normalArray(50 * 16), 10)
            default:  // tiny
                return (Self.corpus(rows: 400, dim: 8, rng: &rng).map { $0 * 1e-39 }, 8, rng.normalArray(10 * 8), 5)
            }
        }
        for name in ["-inf", "nan", "+inf", "nans", "outlier", "tiny", "outliers"] {
            let folder = ShardFolder()
            defer { folder.remove() }
            let (rows, dim, queries, k) = dataset(name)
            try folder.write(index: 0, rows: rows, dim: dim, storage: .float32, firstID: 0)
            let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
            let flat = try FlatIndex(shards: shards), sq = try ScalarQuantizedIndex.build(shards: shards)
            let qn = queries.count / dim
            let exact = flat.search(queries: queries, queryCount: qn, k: k)
            let hits = sq.search(queries: queries, queryCount: qn, k: k, exact: flat, threads: 2)
            if name == "outliers" {
                // Dimension 0's codes keep little of its normal values (its step is ~39), in faiss
                // too; the other 15 still rank (recall@10 0.27 with their weights rounded to 0).
                #expect(Hit.overlap(hits, exact) >= 0.9, "\(name): recall@10 \(Hit.overlap(hits, exact))")
            } else {
                #expect(hits.map { $0.map(\.row) } == exact.map { $0.map(\.row) }, "\(name): sq8 \(hits.prefix(2)), exact \(exact.prefix(2))")
            }
            #expect(hits.joined().allSatisfy { $0.score.isFinite }, "\(name)")
            #expect(sq.step.allSatisfy { $0.isFinite && $0 > 0 }, "\(name): \(sq.step)")
            if name.hasPrefix("outlier") { #expect(sq.quantize(queries: queries, count: qn).fineScale.contains { $0 > 0 }) }
        }
    }

    /// pq against its naive twin in Double: each row's code is the nearest centroid (L2) of its
    /// sub-vector, each hit scores Σ_sub q_sub·centroid[code] within the float32 sum's bound, and
    /// the hits are the top k of those scores wherever they are apart by more than the bound.
    @Test func pqMatchesItsNaiveTwin() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 17)
        let dim = 12, n = 300, m = 4, k = 7
        let rows = Self.corpus(rows: n, dim: dim, rng: &rng)
        try folder.write(index: 0, rows: rows, dim: dim, storage: .float32, firstID: 0)
        let pq = try ProductQuantizedIndex.build(shards: try EmbeddingShard.open(glob: folder.dir + "/passages_*"), subquantizers: m, bits: 4, seed: 2)
        let ks = 1 << 4, sd = dim / m, u = Double(Float.ulpOfOne) / 2
        func centroid(_ sub: Int, _ c: Int, _ j: Int) -> Double { Double(pq.centroids[(sub * ks + c) * sd + j]) }
        var far = 0
        for r in 0..<n {
            for sub in 0..<m {
                let dist = (0..<ks).map { c in (0..<sd).reduce(0.0) { s, j in let d = Double(rows[r * dim + sub * sd + j]) - centroid(sub, c, j); return s + d * d } }
                let chosen = dist[Int(pq.codes[r * m + sub])], best = dist.min()!
                // Float32 distances: a near-tie may go either way, within their rounding.
                if chosen > best + 8 * Double(sd) * u * (chosen + best) + 1e-12 { far += 1 }
            }
        }
        #expect(far == 0, "\(far) codes are not their sub-vector's nearest centroid")
        let queries = rng.normalArray(5 * dim)
        let hits = pq.search(queries: queries, queryCount: 5, k: k, threads: 2)
        for q in 0..<5 {
            func score(_ r: Int) -> (value: Double, magnitude: Double) {
                var s = 0.0, mag = 0.0
                for sub in 0..<m {
                    for j in 0..<sd {
                        let p = Double(queries[q * dim + sub * sd + j]) * centroid(sub, Int(pq.codes[r * m + sub]), j)
                        (s, mag) = (s + p, mag + abs(p))
                    }
                }
                return (s, mag)
            }
            let all = (0..<n).map { score($0) }
            for h in hits[q] {
                let (exact, mag) = all[h.row]
                #expect(abs(Double(h.score) - exact) <= 2 * Double(dim) * u * mag, "query \(q) row \(h.row): \(h.score) vs \(exact)")
            }
            let truth = (0..<n).sorted { all[$0].value > all[$1].value || (all[$0].value == all[$1].value && $0 < $1) }.prefix(k)
            for (h, t) in zip(hits[q], truth) where h.row != t {
                let slack = 4 * Double(dim) * u * max(all[h.row].magnitude, all[t].magnitude)
                #expect(abs(all[h.row].value - all[t].value) <= slack, "query \(q): row \(h.row) where the twin ranks \(t)")
            }
        }
    }

    @Test func pqRecallAndRoundTrip() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 12)
        let dim = 16
        try folder.write(index: 0, rows: Self.corpus(rows: 900, dim: dim, rng: &rng), dim: dim, storage: .float32, firstID: 0)
        let shards = try EmbeddingShard.open(glob: folder.dir + "/passages_*")
        let flat = try FlatIndex(shards: shards)
        let queries = rng.normalArray(30 * dim)
        let exact = flat.search(queries: queries, queryCount: 30, k: 10)
        let pq = try ProductQuantizedIndex.build(shards: shards, subquantizers: 8, bits: 6, seed: 1)
        let approx = pq.search(queries: queries, queryCount: 30, k: 10, threads: 2)
        let r = Hit.overlap(approx, exact)
        #expect(r >= 0.5, "pq recall@10 \(r)")
        // Same seed, same index.
        let again = try ProductQuantizedIndex.build(shards: shards, subquantizers: 8, bits: 6, seed: 1)
        #expect(again.codes == pq.codes && again.centroids == pq.centroids)
        let path = folder.dir + "/index.pq"
        try pq.save(to: path)
        let loaded = try ProductQuantizedIndex(path: path)
        #expect(loaded.search(queries: queries, queryCount: 30, k: 10) == approx)
        #expect(throws: RetrievalError.self) { try ProductQuantizedIndex.build(shards: shards, subquantizers: 5, bits: 8) }
        // A saved code past the 2^6 centroids (a damaged file) is refused at load; the scan read
        // past the sub-quantizer's table with it.
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let at = data.range(of: Data(pq.codes)) else { Issue.record("codes not found in the file"); return }
        data[at.lowerBound + 8 * 7 + 3] = 255
        try data.write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: RetrievalError.self) { try ProductQuantizedIndex(path: path) }
        #expect(e?.field == "codes" && e?.found == "255 at row 7, sub-quantizer 3", "\(String(describing: e))")
        // A row with NaN is refused, naming it (it had a code, and scored as a real row).
        var rows = Self.corpus(rows: 50, dim: dim, rng: &rng)
        rows[12 * dim + 5] = .nan
        try folder.write(index: 0, rows: rows, dim: dim, storage: .float32, firstID: 0, prefix: "nan")
        let bad = #expect(throws: RetrievalError.self) {
            try ProductQuantizedIndex.build(shards: try EmbeddingShard.open(glob: folder.dir + "/nan_*"), subquantizers: 4, bits: 4)
        }
        #expect(bad?.field == "row 12 (id 12)" && bad?.found == "NaN or ±inf", "\(String(describing: bad))")
    }
}
