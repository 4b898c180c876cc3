// ProductQuantizedIndex: `pq`, FiD's IndexPQ (n_subquantizers × n_bits), seeded k-means, lookup-table scan.
import Tensor

/// Product quantisation as FiD builds it (`faiss.IndexPQ(d, n_subquantizers, n_bits, IP)`): the
/// width E is cut into M sub-vectors of E/M, each replaced by the nearest (L2, as faiss trains and
/// encodes) of 2^n_bits centroids learned by k-means on a seeded sample of rows. A query's score
/// against a row is the sum of M table lookups (query sub-vector · centroid), no re-rank, as in FiD.
public final class ProductQuantizedIndex {
    static let magic = "FIDQPQ1\u{0}", version: UInt32 = 1

    public let count: Int
    public let dim: Int
    /// M sub-quantizers and 2^bits centroids each.
    public let subquantizers: Int
    public let bits: Int
    public let ids: [String]
    /// (M, 2^bits, E/M) centroids.
    public let centroids: [Float]
    /// (N, M) codes.
    public let codes: [UInt8]

    var centroidCount: Int { 1 << bits }
    var subDim: Int { dim / subquantizers }

    private init(count: Int, dim: Int, subquantizers: Int, bits: Int, ids: [String], centroids: [Float], codes: [UInt8]) {
        (self.count, self.dim, self.subquantizers, self.bits, self.ids, self.centroids, self.codes) =
            (count, dim, subquantizers, bits, ids, centroids, codes)
    }

    /// Trains on up to `trainRows` rows (seeded sample) and encodes every row.
    public static func build(
        shards: [EmbeddingShard], subquantizers m: Int, bits: Int, seed: UInt64 = 0, trainRows: Int = 65536,
        iterations: Int = 20, threads: Int? = nil
    ) throws -> ProductQuantizedIndex {
        let flat = try FlatIndex(shards: shards)
        let dim = flat.dim, n = flat.count
        guard m >= 1, dim % m == 0 else {
            let divisors = (1...max(dim, 1)).filter { dim % $0 == 0 }
            throw RetrievalError(file: "params", field: "n_subquantizers", expected: "a divisor of the embedding width \(dim)", found: "\(m)",
                                 hint: "one of " + divisors.map(String.init).joined(separator: ", "))
        }
        guard (1...8).contains(bits) else {
            throw RetrievalError(file: "params", field: "n_bits", expected: "1…8 (codes are bytes)", found: "\(bits)")
        }
        let ks = 1 << bits, sd = dim / m
        var rng = RNG(seed: seed)
        // Training sample: every row if few, else a seeded choice (sorted, so reading is sequential).
        var picks = Array(0..<n)
        if n > trainRows {
            for i in 0..<trainRows { picks.swapAt(i, i + Int(rng.next() % UInt64(n - i))) }
            picks = Array(picks[0..<trainRows]).sorted()
        }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: dim)
        defer { scratch.deallocate() }
        var sample = [Float](repeating: 0, count: picks.count * dim)  // (S, E)
        for (i, r) in picks.enumerated() {
            let (s, l) = flat.locate(r)
            let p = shards[s].rows(l, l + 1, scratch: scratch)
            for j in 0..<dim { sample[i * dim + j] = p[j] }
        }
        var centroids = [Float](repeating: 0, count: m * ks * sd)
        for sub in 0..<m {
            let c = kmeans(sample: sample, rows: picks.count, dim: dim, offset: sub * sd, subDim: sd, k: ks, iterations: iterations, rng: &rng)
            for i in 0..<(ks * sd) { centroids[sub * ks * sd + i] = c[i] }
        }
        var codes = [UInt8](repeating: 0, count: n * m)
        let blockRows = 4096
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * dim)
        defer { buffer.deallocate() }
        try centroids.withUnsafeBufferPointer { cent in
            try codes.withUnsafeMutableBufferPointer { out in
                for b in flat.blocks(blockRows) {
                    let p = shards[b.shard].rows(b.lo, b.hi, scratch: buffer)
                    // A row with NaN or ±inf has no nearest centroid, and the scan would score it
                    // as a real one: refused, as faiss refuses such training data.
                    for r in 0..<(b.hi - b.lo) where !(0..<dim).allSatisfy({ p[r * dim + $0].isFinite }) {
                        throw RetrievalError(file: shards[b.shard].path, field: "row \(b.lo + r) (id \(shards[b.shard].ids[b.lo + r]))",
                                             expected: "finite values (pq encodes every row)", found: "NaN or ±inf",
                                             hint: "index flat never returns such rows (their scores are not finite), sq8 codes them at its range's ends; re-embed the passages (no_fp16 if float16 overflowed)")
                    }
                    let base = flat.offsets[b.shard] + b.lo
                    parallelFor(b.hi - b.lo, grain: 64, threads: threads) { rows in
                        for r in rows {
                            for sub in 0..<m {
                                let x = p + r * dim + sub * sd
                                out[(base + r) * m + sub] = UInt8(nearest(x, cent.baseAddress! + sub * ks * sd, k: ks, subDim: sd))
                            }
                        }
                    }
                }
            }
        }
        return ProductQuantizedIndex(count: n, dim: dim, subquantizers: m, bits: bits, ids: shards.flatMap(\.ids), centroids: centroids, codes: codes)
    }

    /// The centroid nearest to x in L2.
    static func nearest(_ x: UnsafePointer<Float>, _ c: UnsafePointer<Float>, k: Int, subDim sd: Int) -> Int {
        var best = 0
        var bestD = Float.infinity
        for i in 0..<k {
            var d: Float = 0
            for j in 0..<sd {
                let t = x[j] - c[i * sd + j]
                d += t * t
            }
            if d < bestD { (best, bestD) = (i, d) }
        }
        return best
    }

    /// Lloyd's k-means on columns offset..<offset+subDim of the sample; initial centroids are
    /// distinct seeded rows; an emptied cluster takes the row farthest from its centroid.
    static func kmeans(
        sample: [Float], rows: Int, dim: Int, offset: Int, subDim sd: Int, k: Int, iterations: Int, rng: inout RNG
    ) -> [Float] {
        var c = [Float](repeating: 0, count: k * sd)
        guard rows > 0 else { return c }
        var order = Array(0..<rows)
        for i in 0..<min(k, rows) { order.swapAt(i, i + Int(rng.next() % UInt64(rows - i))) }
        for i in 0..<k {
            let r = order[i % rows]
            for j in 0..<sd { c[i * sd + j] = sample[r * dim + offset + j] }
        }
        var assign = [Int](repeating: 0, count: rows)
        var dist = [Float](repeating: 0, count: rows)
        var x = [Float](repeating: 0, count: sd)
        for _ in 0..<iterations {
            c.withUnsafeBufferPointer { cp in
                for r in 0..<rows {
                    for j in 0..<sd { x[j] = sample[r * dim + offset + j] }
                    let a = x.withUnsafeBufferPointer { nearest($0.baseAddress!, cp.baseAddress!, k: k, subDim: sd) }
                    assign[r] = a
                    var d: Float = 0
                    for j in 0..<sd { d += (x[j] - cp[a * sd + j]) * (x[j] - cp[a * sd + j]) }
                    dist[r] = d
                }
            }
            var sums = [Double](repeating: 0, count: k * sd)
            var counts = [Int](repeating: 0, count: k)
            for r in 0..<rows {
                counts[assign[r]] += 1
                for j in 0..<sd { sums[assign[r] * sd + j] += Double(sample[r * dim + offset + j]) }
            }
            for i in 0..<k {
                if counts[i] == 0 {
                    // Re-seed at the worst-served row.
                    let far = dist.indices.max { dist[$0] < dist[$1] } ?? 0
                    for j in 0..<sd { c[i * sd + j] = sample[far * dim + offset + j] }
                    dist[far] = 0
                } else {
                    for j in 0..<sd { c[i * sd + j] = Float(sums[i * sd + j] / Double(counts[i])) }
                }
            }
        }
        return c
    }

    public func save(to path: String) throws {
        let w = try IndexFileWriter(path: path, magic: Self.magic, version: Self.version)
        for v in [count, dim, subquantizers, bits] { try w.append(UInt64(v)) }
        try w.append(array: centroids)
        try w.append(array: codes)
        try w.append(strings: ids)
        try w.finish()
    }

    public convenience init(path: String) throws {
        let r = try IndexFileReader(path: path, magic: Self.magic, version: Self.version)
        let n = try r.count("count"), d = try r.count("dim")
        let m = try r.count("n_subquantizers"), bits = try r.count("n_bits")
        guard m >= 1, d % m == 0, (1...8).contains(bits) else {
            throw RetrievalError(file: path, field: "header", expected: "n_subquantizers dividing dim, n_bits 1…8", found: "\(m), \(bits) for dim \(d)")
        }
        let cent = Array(try r.array(try r.product(m << bits, d / m, "centroids"), of: Float.self, "centroids"))
        let codes = Array(try r.array(try r.product(n, m, "codes"), of: UInt8.self, "codes"))
        // A code past the centroids would read past a sub-quantizer's table.
        if let bad = codes.firstIndex(where: { Int($0) >> bits != 0 }) {
            throw RetrievalError(file: path, field: "codes", expected: "codes below 2^n_bits = \(1 << bits)",
                                 found: "\(codes[bad]) at row \(bad / m), sub-quantizer \(bad % m)", hint: "the file is damaged: delete it, and the job builds the index again")
        }
        let ids = try r.strings("ids")
        guard ids.count == n else { throw RetrievalError(file: path, field: "ids", expected: "\(n)", found: "\(ids.count)") }
        self.init(count: n, dim: d, subquantizers: m, bits: bits, ids: ids, centroids: cent, codes: codes)
    }

    /// Top `k` per query by table lookups; queries split over threads.
    public func search(queries: UnsafePointer<Float>, queryCount qn: Int, k: Int, threads: Int? = nil) -> [[Hit]] {
        var out = [[Hit]](repeating: [], count: qn)
        let m = subquantizers, ks = centroidCount, sd = subDim, dim = self.dim, count = self.count
        out.withUnsafeMutableBufferPointer { out in
            centroids.withUnsafeBufferPointer { cent in
                codes.withUnsafeBufferPointer { codes in
                    parallelFor(qn, threads: threads) { range in
                        var table = [Float](repeating: 0, count: m * ks)  // (M, 2^bits)
                        for q in range {
                            let x = queries + q * dim
                            for sub in 0..<m {
                                for c in 0..<ks {
                                    var s: Float = 0
                                    for j in 0..<sd { s += x[sub * sd + j] * cent[(sub * ks + c) * sd + j] }
                                    table[sub * ks + c] = s
                                }
                            }
                            let h = TopK(queries: 1, k: k)
                            table.withUnsafeBufferPointer { t in
                                for r in 0..<count {
                                    let code = codes.baseAddress! + r * m
                                    var s: Float = 0
                                    for sub in 0..<m { s += t[sub * ks + Int(code[sub])] }
                                    if s >= h.threshold[0] { h.push(0, score: s, row: r) }
                                }
                            }
                            out[q] = h.sorted(0)
                        }
                    }
                }
            }
        }
        return out
    }
}
