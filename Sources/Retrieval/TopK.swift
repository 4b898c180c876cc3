// TopK: per-query bounded heaps of the best (score, row) pairs, with the running k-th score kept for a cheap pre-check.

/// One search result: a row of the corpus (shards concatenated in glob order) and its score.
public struct Hit: Equatable, Sendable {
    public var row: Int
    public var score: Float
    public init(row: Int, score: Float) { (self.row, self.score) = (row, score) }

    /// Best first: higher score, then the earlier row (ties broken by corpus order, hence by id
    /// order within a shard).
    @inlinable
    public static func better(_ a: Hit, _ b: Hit) -> Bool { a.score > b.score || (a.score == b.score && a.row < b.row) }
}

extension Hit {
    /// The share of `exact`'s rows that `approx` also returned, over all queries (recall@k of an
    /// approximate index against exact search).
    public static func overlap(_ approx: [[Hit]], _ exact: [[Hit]]) -> Double {
        var hit = 0, total = 0
        for (a, e) in zip(approx, exact) {
            let truth = Set(e.map(\.row))
            hit += a.filter { truth.contains($0.row) }.count
            total += e.count
        }
        return Double(hit) / Double(max(total, 1))
    }
}

/// K best hits for each of Q queries, as min-heaps in flat buffers (no per-hit allocation).
///
/// `threshold[q]` is -inf until query q holds k hits, then its worst kept score: a scan compares
/// each score with it (`>=`, so an equal score on an earlier row still reaches `push`, which
/// applies the exact order) before touching the heap.
public final class TopK {
    public let k: Int
    public let queries: Int
    @usableFromInline let scores: UnsafeMutablePointer<Float>
    @usableFromInline let rows: UnsafeMutablePointer<Int>
    @usableFromInline let counts: UnsafeMutablePointer<Int>
    public let threshold: UnsafeMutablePointer<Float>

    public init(queries: Int, k: Int) {
        precondition(k >= 1 && queries >= 0)
        (self.k, self.queries) = (k, queries)
        scores = .allocate(capacity: max(1, queries * k))
        rows = .allocate(capacity: max(1, queries * k))
        counts = .allocate(capacity: max(1, queries))
        counts.initialize(repeating: 0, count: max(1, queries))
        threshold = .allocate(capacity: max(1, queries))
        threshold.initialize(repeating: -.infinity, count: max(1, queries))
    }

    deinit {
        scores.deallocate()
        rows.deallocate()
        counts.deallocate()
        threshold.deallocate()
    }

    /// Whether heap entry i is worse than entry j (the root is the worst kept hit).
    @inlinable
    func worse(_ base: Int, _ i: Int, _ j: Int) -> Bool {
        let si = scores[base + i], sj = scores[base + j]
        return si < sj || (si == sj && rows[base + i] > rows[base + j])
    }

    @inlinable
    func swapAt(_ base: Int, _ i: Int, _ j: Int) {
        swap(&scores[base + i], &scores[base + j])
        swap(&rows[base + i], &rows[base + j])
    }

    /// Offers (score, row) to query q's heap. A score of ±inf is refused, as NaN never passes the
    /// threshold: a corpus row holding ±inf or NaN (a float16 shard that overflowed) ranked
    /// first for every query with +inf (and last, with -inf, where k reached it).
    @inlinable
    public func push(_ q: Int, score: Float, row: Int) {
        guard score.isFinite else { return }
        let base = q * k
        var n = counts[q]
        if n < k {
            // Sift up.
            scores[base + n] = score
            rows[base + n] = row
            var i = n
            while i > 0 {
                let parent = (i - 1) / 2
                guard worse(base, i, parent) else { break }
                swapAt(base, i, parent)
                i = parent
            }
            n += 1
            counts[q] = n
            if n == k { threshold[q] = scores[base] }
            return
        }
        guard Hit.better(Hit(row: row, score: score), Hit(row: rows[base], score: scores[base])) else { return }
        scores[base] = score
        rows[base] = row
        // Sift down.
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < k, worse(base, l, m) { m = l }
            if r < k, worse(base, r, m) { m = r }
            if m == i { break }
            swapAt(base, i, m)
            i = m
        }
        threshold[q] = scores[base]
    }

    /// Query q's hits, best first.
    public func sorted(_ q: Int) -> [Hit] {
        let base = q * k
        return (0..<counts[q]).map { Hit(row: rows[base + $0], score: scores[base + $0]) }.sorted(by: Hit.better)
    }

    /// Merges per-thread heaps: query q's best k over all of them, best first.
    public static func merge(_ parts: [TopK], query q: Int, k: Int) -> [Hit] {
        var all: [Hit] = []
        for p in parts {
            let base = q * p.k
            for i in 0..<p.counts[q] { all.append(Hit(row: p.rows[base + i], score: p.scores[base + i])) }
        }
        all.sort(by: Hit.better)
        return Array(all.prefix(k))
    }

    /// Offers every score of a (rows, Q) block, row-major with leading dimension `ld`, whose row
    /// r is corpus row `firstRow + r`: 16 queries at a time against their thresholds, the heap
    /// touched only where a score can enter.
    @inlinable
    public func scan(block: UnsafePointer<Float>, rows count: Int, ld: Int, firstRow: Int) {
        let q16 = queries & ~15
        for r in 0..<count {
            let line = block + r * ld
            var q = 0
            while q < q16 {
                let s = UnsafeRawPointer(line + q).loadUnaligned(as: SIMD16<Float>.self)
                let t = UnsafeRawPointer(threshold + q).loadUnaligned(as: SIMD16<Float>.self)
                if any(s .>= t) {
                    for j in q..<(q + 16) where line[j] >= threshold[j] { push(j, score: line[j], row: firstRow + r) }
                }
                q += 16
            }
            while q < queries {
                if line[q] >= threshold[q] { push(q, score: line[q], row: firstRow + r) }
                q += 1
            }
        }
    }
}
