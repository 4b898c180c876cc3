// TopKTests: the bounded heaps against a full sort (ties by row), filtered as scans filter them, and merged over parts.
import Tensor
import Testing

@testable import Retrieval

@Suite struct TopKTests {
    /// The best k of `hits` by the exact order: the naive twin.
    static func best(_ hits: [Hit], _ k: Int) -> [Hit] { Array(hits.sorted(by: Hit.better).prefix(k)) }

    /// Scores from a few values (many ties), rows shuffled: every query's top k equals the sort's,
    /// whether every hit is pushed or only those passing the threshold (as `scan` offers them), and
    /// the threshold never exceeds the true k-th best score seen so far (else a scan would drop a
    /// hit), checked every 37 pushes.
    @Test(arguments: [1, 3, 10, 100])
    func equalsSortWithTiesAndFilter(k: Int) {
        var rng = RNG(seed: UInt64(k))
        for n in [0, 1, 5, 2 * k, 2 * k + 1, 250, 3000] {
            let queries = 3
            let all = TopK(queries: queries, k: k), filtered = TopK(queries: queries, k: k)
            var seen: [[Hit]] = Array(repeating: [], count: queries)
            var rows = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { rows.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            for row in rows {
                for q in 0..<queries {
                    // Query 0: 7 distinct scores (ties everywhere); 1: rising scores (every hit
                    // enters); 2: uniform.
                    let score: Float = q == 0 ? Float(rng.next() % 7) : q == 1 ? Float(row) : rng.uniform(-1, 1)
                    let hit = Hit(row: row, score: score)
                    seen[q].append(hit)
                    all.push(q, score: score, row: row)
                    if score >= filtered.threshold[q] { filtered.push(q, score: score, row: row) }
                    if seen[q].count % 37 == 0 || seen[q].count == n {  // checkpoints (a sort each)
                        let truth = Self.best(seen[q], k)
                        if truth.count == k { #expect(filtered.threshold[q] <= truth[k - 1].score, "k \(k) n \(n) q \(q)") }
                    }
                }
            }
            for q in 0..<queries {
                let truth = Self.best(seen[q], k)
                #expect(all.sorted(q) == truth, "k \(k) n \(n) q \(q): all pushed")
                #expect(filtered.sorted(q) == truth, "k \(k) n \(n) q \(q): filtered")
                #expect(TopK.merge([all], query: q, k: k) == truth, "k \(k) n \(n) q \(q): merge of one")
            }
        }
    }

    /// Parts holding disjoint rows merge to the best k of their union.
    @Test func mergeOfParts() {
        var rng = RNG(seed: 5)
        let k = 20
        let parts = (0..<3).map { _ in TopK(queries: 1, k: k) }
        var seen: [Hit] = []
        for row in 0..<500 {
            let score = Float(rng.next() % 40)
            seen.append(Hit(row: row, score: score))
            parts[row % 3].push(0, score: score, row: row)
        }
        #expect(TopK.merge(parts, query: 0, k: k) == Self.best(seen, k))
    }
}
