// SearchBench: exact and sq8 search over 1M × 768 random vectors vs faiss, and BM25 vs bm25s, one run each.
import Foundation
import Retrieval
import Tensor

/// `ops/bench search`: exact inner-product search (1,000,000 × 768 float32, 1,000 queries, k 100)
/// against faiss `IndexFlatIP`; `sq8` (with its float32 re-rank) against faiss
/// `IndexScalarQuantizer` (QT_8bit) with recall@100 against exact; BM25 indexing and search against
/// bm25s (Lucene idf, k1 0.9, b 0.4) on 200,000 synthetic passages. Each search runs once per thread
/// count (a 1,000-query batch is seconds long, its own average). The corpus is written once as a
/// `.npy` shard both sides map; our index reads it in place, faiss copies it in.
/// Sizes: BENCH_SEARCH_N, BENCH_SEARCH_Q, BENCH_BM25_DOCS; BENCH_SQ_QUERIES queries for faiss's sq8.
/// With BENCH_CLOCK=cpu the exact and sq8 q/s rows (both sides) use process CPU time (fair at 1
/// thread under load); BM25's stay on the wall clock (bm25s may use worker processes).
/// BENCH_SEARCH_ONLY=flat runs the exact search alone (both sides), for quick iteration.
enum SearchBench {
    static func env(_ key: String, _ fallback: Int) -> Int { ProcessInfo.processInfo.environment[key].flatMap(Int.init) ?? fallback }

    static func run(_ settings: TimingSettings) throws {
        let n = env("BENCH_SEARCH_N", 1_000_000), e = 768, qn = env("BENCH_SEARCH_Q", 1000), k = 100
        let docs = env("BENCH_BM25_DOCS", 200_000)
        let flatOnly = ProcessInfo.processInfo.environment["BENCH_SEARCH_ONLY"] == "flat"
        let dir = ProcessInfo.processInfo.environment["BENCH_SEARCH_DIR"] ?? FileManager.default.currentDirectoryPath + "/.build/bench-search"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        print("## search: \(n) × \(e) float32 uniform(-1, 1), \(qn) queries, k = \(k); files in \(dir)\(cpuClock ? "; q/s on process CPU time" : "")\n")
        try writeVectors(stem: dir + "/corpus_00", rows: n, dim: e, seed: 1)
        try writeVectors(stem: dir + "/queries_00", rows: qn, dim: e, seed: 2)
        let corpus = try FlatIndex(shards: [EmbeddingShard(path: dir + "/corpus_00.npy")])
        let qshard = try EmbeddingShard(path: dir + "/queries_00.npy")
        let qbuf = UnsafeMutablePointer<Float>.allocate(capacity: qn * e)
        defer { qbuf.deallocate() }
        let queries = qshard.rows(0, qn, scratch: qbuf)
        // Warm the page cache and fault in every page of our mapping, as faiss copies the rows
        // into its memory before its clock starts (both sides then search memory they hold).
        var sink: Float = 0
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 8192 * e)
        defer { scratch.deallocate() }
        for b in stride(from: 0, to: n, by: 8192) {
            let p = corpus.shards[0].rows(b, min(n, b + 8192), scratch: scratch)
            for i in stride(from: 0, to: (min(n, b + 8192) - b) * e, by: 1024) { sink += p[i] }
        }
        var ours: [String: Double] = [:]
        var exact: [[Hit]] = []
        for t in settings.threads {
            let t0 = sampleSeconds()
            exact = corpus.search(queries: queries, queryCount: qn, k: k, threads: t)
            ours["flat_qps_\(t)"] = Double(qn) / (sampleSeconds() - t0)
        }
        var rows = [Int32](repeating: 0, count: qn * k)
        for (q, hits) in exact.enumerated() { for (i, h) in hits.enumerated() { rows[q * k + i] = Int32(h.row) } }
        try rows.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/ours_flat.i32")) }
        if !flatOnly { try sqAndBM25(settings, dir: dir, corpus: corpus, queries: queries, qn: qn, k: k, docs: docs, exact: exact, ours: &ours) }

        let peer = try runPeer(dir: dir, threads: settings.threads)
        if let peer { print("peers: faiss \(peer["faiss"] ?? "?"), bm25s \(peer["bm25s"] ?? "?"), numpy \(peer["numpy"] ?? "?")\n") }
        func p(_ key: String) -> Double? { (peer?[key] as? NSNumber)?.doubleValue }
        let table = Table(["what", "threads", "ours", "peer", "ours/peer"], widths: [44])
        func row(_ what: String, _ t: String, _ o: Double?, _ pv: Double?, higherIsBetter: Bool = true, digits: Int = 1) {
            let r = (o != nil && pv != nil) ? ratio(higherIsBetter ? o! / pv! : pv! / o!) : "-"
            table.add([what, t, o.map { fixed($0, digits) } ?? "-", pv.map { fixed($0, digits) } ?? "-", r])
        }
        for t in settings.threads {
            row("exact q/s (faiss IndexFlatIP)", "\(t)", ours["flat_qps_\(t)"], p("flat_qps_\(t)"))
        }
        if !flatOnly {
            for t in settings.threads {
                row("sq8+rerank q/s vs faiss IndexFlatIP", "\(t)", ours["sq_qps_\(t)"], p("flat_qps_\(t)"))
                row("sq8+rerank q/s vs faiss IndexScalarQuantizer", "\(t)", ours["sq_qps_\(t)"], p("sq_qps_\(t)"))
            }
            row("sq8 recall@100 vs exact (peer: its SQ8)", "-", ours["sq_recall"], p("sq_recall_at_k"), digits: 4)
            row("sq8 recall@100 without re-rank", "-", ours["sq_recall_norerank"], nil, digits: 4)
            row("sq8 build s", "all", ours["sq_build_s"], p("sq_build_s"), higherIsBetter: false, digits: 2)
            row("BM25 index s (\(docs) passages)", "1", ours["bm25_index_s"], p("bm25_index_s"), higherIsBetter: false, digits: 2)
            for t in settings.threads {
                row("BM25 q/s (bm25s)", "\(t)", ours["bm25_qps_\(t)"], p("bm25_qps_\(t)"))
            }
        }
        print()
        if let a = p("flat_agreement_with_ours") { print("faiss flat top-\(k) agreement with ours: \(percent(a))") }
        if let a = p("bm25_top10_agreement") { print("bm25s top-10 agreement with ours: \(percent(a))") }
        if let s = p("sq_queries") { print("faiss sq8 timed on its first \(Int(s)) queries (it scans without BLAS)") }
        print("(checksum \(sink))\n")
    }

    /// The sq8 index (build, search, recall against `exact`) and BM25 (index, search) into `ours`.
    static func sqAndBM25(
        _ settings: TimingSettings, dir: String, corpus: FlatIndex, queries: UnsafePointer<Float>, qn: Int, k: Int, docs: Int,
        exact: [[Hit]], ours: inout [String: Double]
    ) throws {
        var t0 = monotonicSeconds()
        let sq = try ScalarQuantizedIndex.build(shards: corpus.shards)
        ours["sq_build_s"] = monotonicSeconds() - t0
        var sqHits: [[Hit]] = []
        for t in settings.threads {
            t0 = sampleSeconds()
            sqHits = sq.search(queries: queries, queryCount: qn, k: k, rerank: 2, exact: corpus, threads: t)
            ours["sq_qps_\(t)"] = Double(qn) / (sampleSeconds() - t0)
        }
        ours["sq_recall"] = Hit.overlap(sqHits, exact)
        let plain = sq.search(queries: queries, queryCount: min(qn, 100), k: k, threads: settings.threads.max())
        ours["sq_recall_norerank"] = Hit.overlap(plain, Array(exact.prefix(plain.count)))

        // BM25 on synthetic passages: Zipf-distributed words over a 50k vocabulary.
        try writePassages(path: dir + "/passages.tsv", queriesPath: dir + "/bm25_queries.txt", docs: docs, queries: qn)
        t0 = monotonicSeconds()
        let reader = try PassageReader(path: dir + "/passages.tsv")
        let bm25 = try BM25Index.build(passages: { try reader.next() })
        ours["bm25_index_s"] = monotonicSeconds() - t0
        let bmQueries = try String(contentsOfFile: dir + "/bm25_queries.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        var bmHits: [[Hit]] = []
        for t in settings.threads {
            t0 = monotonicSeconds()  // wall clock even with BENCH_CLOCK=cpu: bm25s may use worker processes
            bmHits = bm25.search(bmQueries, k: k, threads: t)
            ours["bm25_qps_\(t)"] = Double(bmQueries.count) / (monotonicSeconds() - t0)
        }
        var bmRows = [Int32](repeating: -1, count: bmQueries.count * 10)
        for (q, hits) in bmHits.enumerated() { for (i, h) in hits.prefix(10).enumerated() { bmRows[q * 10 + i] = Int32(h.row) } }
        try bmRows.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir + "/ours_bm25.i32")) }
    }

    /// Uniform(-1, 1) float32 rows as a shard, unless one of that shape is already there.
    static func writeVectors(stem: String, rows: Int, dim: Int, seed: UInt64) throws {
        if let s = try? EmbeddingShard(path: stem + ".npy"), s.count == rows, s.dim == dim { return }
        let w = try ShardWriter(stem: stem, rows: rows, dim: dim, storage: .float32)
        var rng = RNG(seed: seed)
        let block = 16384
        var buf = [Float](repeating: 0, count: block * dim)
        var r = 0
        while r < rows {
            let m = min(block, rows - r)
            for i in 0..<(m * dim) { buf[i] = rng.uniform(-1, 1) }
            try buf.withUnsafeBufferPointer { try w.append(ids: (r..<(r + m)).map(String.init), embeddings: $0.baseAddress!) }
            r += m
        }
        try w.finish()
    }

    /// Synthetic passages (Zipf over 50k made-up words, 60 words each, a 3-word title) and
    /// queries of 4–8 words, written once.
    static func writePassages(path: String, queriesPath: String, docs: Int, queries: Int) throws {
        var rng = RNG(seed: 3)
        let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "qua", "den", "lar", "mos", "tri", "bel"]
        let vocab = (0..<50_000).map { i -> String in
            var w = "", x = i + 17
            repeat {
                w += syllables[x % syllables.count]
                x /= syllables.count
            } while x > 0
            return w
        }
        // Zipf(1) by inverse CDF over the harmonic numbers.
        var cdf = [Double](repeating: 0, count: vocab.count)
        var s = 0.0
        for i in 0..<vocab.count {
            s += 1 / Double(i + 1)
            cdf[i] = s
        }
        func word() -> String {
            let u = rng.nextDouble() * s
            var lo = 0, hi = cdf.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return vocab[lo]
        }
        if FileManager.default.fileExists(atPath: path), FileManager.default.fileExists(atPath: queriesPath),
           (try? PassageReader.count(path: path)) == docs
        {
            return
        }
        var text = "id\ttext\ttitle\n"
        for d in 0..<docs {
            text += "\(d + 1)\t" + (0..<60).map { _ in word() }.joined(separator: " ") + "\t" + (0..<3).map { _ in word() }.joined(separator: " ") + "\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let q = (0..<queries).map { i in (0..<(4 + i % 5)).map { _ in word() }.joined(separator: " ") }
        try (q.joined(separator: "\n") + "\n").write(toFile: queriesPath, atomically: true, encoding: .utf8)
    }

    /// Runs ops/benchmarks/search_peer.py (faiss, bm25s) and returns its JSON, or nil without a venv.
    static func runPeer(dir: String, threads: [Int]) throws -> [String: Any]? {
        let env = ProcessInfo.processInfo.environment
        guard let python = env["BENCH_SEARCH_PYTHON"], let peers = env["BENCH_PEERS_DIR"] else {
            print("note: faiss/bm25s peer not configured (run through `ops/bench search`); its columns show '-'.\n")
            return nil
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [peers + "/search_peer.py", dir] + threads.map(String.init)
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BenchError("search peer failed (status \(process.terminationStatus)): \(String(decoding: data, as: UTF8.self))")
        }
        return json
    }
}
