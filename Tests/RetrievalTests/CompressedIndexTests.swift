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
        let (values, scale, bias) = sq.quantize(queries: queries, count: qn)
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
    }
}
