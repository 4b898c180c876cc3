// FlatIndex: exact maximum inner product search over embedding shards, top-k fused into a blocked gemm scan.
import Tensor

/// How many questions a job searches per call, so it can report progress and stop between
/// calls: a multiple of `FlatIndex`'s 1,024-query and `ScalarQuantizedIndex`'s 128-query
/// blocks (and BM25 and pq score each question alone), so the hits equal one call's.
public enum QuestionBlocks {
    public static let size = 8192
}

/// Exact inner-product search (FiD's `IndexFlatIP`) over shards read in place.
///
/// The corpus is cut into blocks of at most `blockRows` rows (never across a shard), the blocks
/// are split over threads, and each thread multiplies its blocks by the queries through the gemm
/// wrapper as whole products (one sgemm each, no tiles: the threads already split the corpus, and
/// each tile would re-pack the queries) into a (rows, Q) score block that `TopK.scan` filters
/// against each query's running k-th score. Float16 shards are widened block by block; float32
/// shards are read straight from the mapping. The per-thread heaps are merged at the end; ties
/// are broken by corpus row (shards in glob order, then file order). Memory beyond the shards:
/// per thread, one score block and one widened block.
///
/// Where the time goes (1M × 768, 1,000 queries, one thread, perf): OpenBLAS's sgemm ~96 %
/// (kernel 91 %, packing 3 %, zeroing the block for beta 0 1 %); the filter and heaps ~1.6 %,
/// bound by reading the 32 MB score block back from memory (1024-row blocks, 4 MB, filtered no
/// faster under load; neither did eight rows' compares or-ed before one test, nor a reservoir in
/// place of the heaps). A (Q, rows) block would make each query's filter one contiguous run, but
/// OpenBLAS 0.3.21's sgemm wrote it 2–3 % slower.
public final class FlatIndex {
    public let shards: [EmbeddingShard]
    /// N: rows over all shards.
    public let count: Int
    /// E: embedding width.
    public let dim: Int
    /// First corpus row of each shard.
    public let offsets: [Int]

    public init(shards: [EmbeddingShard]) throws {
        self.shards = shards
        var offsets: [Int] = []
        var n = 0
        for s in shards {
            offsets.append(n)
            n += s.count
        }
        (self.offsets, count) = (offsets, n)
        dim = shards.first?.dim ?? 0
        if let bad = shards.first(where: { $0.dim != dim }) {
            throw RetrievalError(file: bad.path, field: "width", expected: "\(dim) like \(shards[0].path)", found: "\(bad.dim)")
        }
    }

    /// (shard, row within it) of corpus row `row`.
    public func locate(_ row: Int) -> (shard: Int, local: Int) {
        var lo = 0, hi = offsets.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= row { lo = mid } else { hi = mid - 1 }
        }
        return (lo, row - offsets[lo])
    }

    /// The passage id of corpus row `row`.
    public func id(ofRow row: Int) -> String {
        let (s, l) = locate(row)
        return shards[s].ids[l]
    }

    /// The blocks of the corpus: (shard, lo, hi), at most `blockRows` rows each.
    func blocks(_ blockRows: Int) -> [(shard: Int, lo: Int, hi: Int)] {
        var out: [(Int, Int, Int)] = []
        for (i, s) in shards.enumerated() {
            var lo = 0
            while lo < s.count {
                out.append((i, lo, min(s.count, lo + blockRows)))
                lo += blockRows
            }
        }
        return out
    }

    /// The top `k` rows for each of `queryCount` queries ((B, E) row-major), best first. Fewer
    /// than k come back only when the corpus has fewer rows.
    ///
    /// - Parameters:
    ///   - blockRows: corpus rows per gemm: each product packs the queries once, so a block
    ///     thousands of rows tall amortises that (1M × 768, 1000 queries, one thread: 2048, 4096
    ///     and 8192 rows within 1 % of each other, 1024 about 2 % slower).
    ///   - queryBlock: queries per pass over the corpus (bounds the score block's size).
    public func search(
        queries: UnsafePointer<Float>, queryCount: Int, k: Int, threads: Int? = nil, blockRows: Int = 8192, queryBlock: Int = 1024
    ) -> [[Hit]] {
        precondition(k >= 1)
        var out: [[Hit]] = []
        out.reserveCapacity(queryCount)
        var q0 = 0
        while q0 < queryCount {
            let qn = min(queryBlock, queryCount - q0)
            let parts = scan(queries: queries + q0 * dim, queryCount: qn, k: k, threads: threads, blockRows: blockRows)
            for q in 0..<qn { out.append(TopK.merge(parts, query: q, k: k)) }
            q0 += qn
        }
        return out
    }

    /// One pass over the corpus for (Q, E) queries: one `TopK` per thread.
    func scan(queries: UnsafePointer<Float>, queryCount qn: Int, k: Int, threads: Int?, blockRows: Int) -> [TopK] {
        let blocks = self.blocks(blockRows)
        let threadCount = max(1, min(threads ?? Threads.count, blocks.count))
        let parts = (0..<threadCount).map { _ in TopK(queries: qn, k: k) }
        let widest = blocks.map { $0.hi - $0.lo }.max() ?? 0
        let dim = self.dim
        parallelFor(threadCount, threads: threadCount) { range in
            for t in range {
                let heap = parts[t]
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, widest * qn))  // (rows, Q)
                let widened = UnsafeMutablePointer<Float>.allocate(capacity: max(1, widest * dim))  // (rows, E)
                defer {
                    scores.deallocate()
                    widened.deallocate()
                }
                // Thread t takes a contiguous run of blocks, so its rows arrive in increasing order.
                let lo = t * blocks.count / threadCount, hi = (t + 1) * blocks.count / threadCount
                for b in blocks[lo..<hi] {
                    let n = b.hi - b.lo
                    let p = shards[b.shard].rows(b.lo, b.hi, scratch: widened)  // (rows, E)
                    Gemm.gemm(
                        transB: true, m: n, n: qn, k: dim, a: p, lda: dim, b: queries, ldb: dim,
                        c: scores, ldc: qn, whole: true)
                    heap.scan(block: scores, rows: n, ld: qn, firstRow: offsets[b.shard] + b.lo)
                }
            }
        }
        return parts
    }
}
