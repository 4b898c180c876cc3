// FlatIndexTests: FlatIndex top-k equals brute force (ties by row) across block and shard boundaries, k beyond a shard and the corpus.
import Foundation
import Tensor
import Testing

@testable import Retrieval

/// Writes shards of random rows into a temporary folder.
struct ShardFolder {
    let dir: String
    init() {
        dir = NSTemporaryDirectory() + "fidq-shards-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes shard `index` of `rows` (n, E) with ids `firstID…`; returns the rows as written
    /// (rounded to float16 when `storage` is float16).
    @discardableResult
    func write(index: Int, rows: [Float], dim: Int, storage: EmbeddingShard.Storage, firstID: Int, prefix: String = "passages") throws -> [Float] {
        let n = rows.count / dim
        let w = try ShardWriter(stem: EmbeddingShard.stem(prefix: dir + "/" + prefix, shard: index), rows: n, dim: dim, storage: storage)
        // Two appends, so the writer's offsets are exercised.
        let half = n / 2
        try rows.withUnsafeBufferPointer { p in
            try w.append(ids: (0..<half).map { String(firstID + $0) }, embeddings: p.baseAddress!)
            try w.append(ids: (half..<n).map { String(firstID + $0) }, embeddings: p.baseAddress! + half * dim)
        }
        try w.finish()
        if storage == .float32 { return rows }
        return rows.map { Half.float(fromF16: Half.f16(from: $0)) }
    }
}

@Suite struct FlatIndexTests {
    /// Brute force in Double: every score, sorted by score then row.
    static func bruteForce(corpus: [Float], queries: [Float], dim: Int, k: Int) -> [[Hit]] {
        let n = corpus.count / dim, b = queries.count / dim
        return (0..<b).map { q in
            var hits: [(Double, Int)] = []
            for r in 0..<n {
                var s = 0.0
                for j in 0..<dim { s += Double(corpus[r * dim + j]) * Double(queries[q * dim + j]) }
                hits.append((s, r))
            }
            hits.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            return hits.prefix(k).map { Hit(row: $0.1, score: Float($0.0)) }
        }
    }

    /// Ours equals brute force: same rows in the same order wherever the scores are apart by more
    /// than the float32 sum's error bound (2·E·u·Σ|a·b|), each hit's score within that bound of its
    /// own row's exact score (a wrong row id with a right score failed nothing), and no row twice.
    static func expectSame(_ ours: [[Hit]], _ truth: [[Hit]], corpus: [Float], queries: [Float], dim: Int) {
        #expect(ours.count == truth.count)
        let u = Double(Float.ulpOfOne) / 2
        for (q, (a, t)) in zip(ours, truth).enumerated() {
            #expect(a.count == t.count, "query \(q)")
            #expect(Set(a.map(\.row)).count == a.count, "query \(q): a row twice")
            for (h, e) in zip(a, t) {
                var mag = 0.0, exact = 0.0
                for j in 0..<dim {
                    let p = Double(corpus[h.row * dim + j]) * Double(queries[q * dim + j])
                    (mag, exact) = (mag + abs(p), exact + p)
                }
                let bound = 2 * Double(dim) * u * mag
                #expect(abs(Double(h.score) - exact) <= bound, "query \(q): row \(h.row) scored \(h.score), its exact score \(exact)")
                if h.row != e.row {
                    #expect(abs(Double(h.score) - Double(e.score)) <= 2 * bound, "query \(q): row \(h.row) vs \(e.row)")
                } else {
                    #expect(abs(Double(h.score) - Double(e.score)) <= bound, "query \(q) row \(h.row)")
                }
            }
        }
    }

    @Test(arguments: [EmbeddingShard.Storage.float32, .float16])
    func equalsBruteForceAcrossShardsAndBlocks(storage: EmbeddingShard.Storage) throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        var rng = RNG(seed: 7)
        let dim = 24
        let sizes = [37, 5, 64, 1, 50]
        var corpus: [Float] = []
        var first = 1
        for (i, n) in sizes.enumerated() {
            corpus += try folder.write(index: i, rows: rng.normalArray(n * dim), dim: dim, storage: storage, firstID: first)
            first += n
        }
        // 37 queries: two full runs of 16 in the scan's threshold check, and 5 left over.
        let qn = 37
        let queries = rng.normalArray(qn * dim)
        let index = try FlatIndex(shards: EmbeddingShard.open(glob: folder.dir + "/passages_*"))
        #expect(index.count == sizes.reduce(0, +))
        for k in [1, 10, 60, 157, 400] {
            let truth = FlatIndexTests.bruteForce(corpus: corpus, queries: queries, dim: dim, k: k)
            for (blockRows, threads, queryBlock) in [(8, 1, 1024), (16, 2, 5), (1000, 3, 1024)] {
                let ours = queries.withUnsafeBufferPointer {
                    index.search(queries: $0.baseAddress!, queryCount: qn, k: k, threads: threads, blockRows: blockRows, queryBlock: queryBlock)
                }
                Self.expectSame(ours, truth, corpus: corpus, queries: queries, dim: dim)
            }
        }
        // Ids follow the glob's order and each shard's file order.
        #expect(index.id(ofRow: 0) == "1" && index.id(ofRow: 37) == "38" && index.id(ofRow: 156) == "157")
    }

    /// Rows holding ±inf or NaN (a float16 shard that overflowed) are never returned: one with
    /// +inf ranked first for every query, with the score inf.
    @Test func rowsThatAreNotFiniteNeverRank() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        let dim = 4
        var rows: [Float] = []
        for r in 0..<12 { rows += [Float(r) / 10, 1, 0, 0] }
        rows[3 * dim] = .infinity
        rows[5 * dim] = -.infinity
        rows[7 * dim + 1] = .nan
        try folder.write(index: 0, rows: rows, dim: dim, storage: .float32, firstID: 0)
        let index = try FlatIndex(shards: EmbeddingShard.open(glob: folder.dir + "/passages_*"))
        for q: [Float] in [[1, 1, 0, 0], [-1, 1, 0, 0]] {
            let hits = index.search(queries: q, queryCount: 1, k: 12, threads: 1, blockRows: 4)[0]
            #expect(hits.allSatisfy { $0.score.isFinite } && !hits.contains { [3, 7].contains($0.row) }, "\(q): \(hits)")
            #expect(hits.first?.row == (q[0] > 0 ? 11 : 0), "\(q): \(hits)")
        }
    }

    @Test func tiesGoToTheEarlierRow() throws {
        let folder = ShardFolder()
        defer { folder.remove() }
        let dim = 4
        // Rows 0..<30 in three shards, all equal in pairs: row r and r+15 score the same.
        var rows: [Float] = []
        for r in 0..<30 { rows += [Float(r % 15), 1, 0, 0] }
        for s in 0..<3 { try folder.write(index: s, rows: Array(rows[(s * 10 * dim)..<((s + 1) * 10 * dim)]), dim: dim, storage: .float32, firstID: s * 10) }
        let index = try FlatIndex(shards: EmbeddingShard.open(glob: folder.dir + "/passages_*"))
        let q: [Float] = [1, 0, 0, 0]
        for threads in [1, 2, 3] {
            let hits = index.search(queries: q, queryCount: 1, k: 5, threads: threads, blockRows: 4)[0]
            #expect(hits.map(\.row) == [14, 29, 13, 28, 12], "threads \(threads)")
        }
    }
}
