// SearchProbe (temporary): exact search time vs its gemm alone, per blocking.
import Foundation
import Retrieval
import Tensor

enum SearchProbe {
    static func run(_ settings: TimingSettings) throws {
        let env = ProcessInfo.processInfo.environment
        let dir = env["BENCH_SEARCH_DIR"] ?? FileManager.default.currentDirectoryPath + "/.build/bench-search"
        let corpus = try FlatIndex(shards: [EmbeddingShard(path: dir + "/corpus_00.npy")])
        let qshard = try EmbeddingShard(path: dir + "/queries_00.npy")
        let qn = Int(env["BENCH_SEARCH_Q"] ?? "1000")!, e = corpus.dim, k = 100
        let nLimit = Int(env["PROBE_N"] ?? "\(corpus.count)")!
        let qbuf = UnsafeMutablePointer<Float>.allocate(capacity: qn * e)
        let queries = qshard.rows(0, qn, scratch: qbuf)
        let configs = (env["PROBE"] ?? "8192x1024").split(separator: ",").map { c -> (Int, Int) in
            let p = c.split(separator: "x").map { Int($0)! }
            return (p[0], p[1])
        }
        let modes = (env["PROBE_MODES"] ?? "gemm,search").split(separator: ",").map(String.init)
        let base = corpus.shards[0].rows(0, nLimit, scratch: qbuf)
        for t in settings.threads {
            for (rows, qb) in configs {
                for mode in modes {
                    let t0 = sampleSeconds()
                    if mode.hasPrefix("gemm") {
                        // The same products without the top-k: rows×Q (or Q×rows) blocks.
                        let blocks = stride(from: 0, to: nLimit, by: rows).map { $0 }
                        parallelFor(t, threads: t) { r in
                            for th in r {
                                let c = UnsafeMutablePointer<Float>.allocate(capacity: rows * qb)
                                defer { c.deallocate() }
                                var q0 = 0
                                while q0 < qn {
                                    let m = min(qb, qn - q0)
                                    for b in blocks[(th * blocks.count / t)..<((th + 1) * blocks.count / t)] {
                                        let n = min(rows, nLimit - b)
                                        if mode == "gemm" || mode == "gemmW" {
                                            Gemm.gemm(transB: true, m: n, n: m, k: e, a: base + b * e, lda: e, b: queries + q0 * e, ldb: e, c: c, ldc: m, threads: 1, whole: mode == "gemmW")
                                        } else {
                                            Gemm.gemm(transB: true, m: m, n: n, k: e, a: queries + q0 * e, lda: e, b: base + b * e, ldb: e, c: c, ldc: n, threads: 1, whole: mode == "gemmTW")
                                        }
                                    }
                                    q0 += m
                                }
                            }
                        }
                    } else {
                        FlatIndex.probeWhole = !mode.contains("Tiled")
                        FlatIndex.probeOldScan = mode.contains("Old")
                        (FlatIndex.probeGemm, FlatIndex.probeScan) = (0, 0)
                        _ = corpus.search(queries: queries, queryCount: qn, k: k, threads: t, blockRows: rows, queryBlock: qb)
                    }
                    let dt = sampleSeconds() - t0
                    let gflops = 2.0 * Double(nLimit) * Double(qn) * Double(e) / dt / 1e9
                    print("threads \(t) rows \(rows) qblock \(qb) \(mode): \(fixed(dt, 3)) s, \(fixed(Double(qn) / dt * Double(nLimit) / 1e6, 1)) q/s (full-corpus equiv), \(fixed(gflops, 1)) GFLOP/s\(mode.hasPrefix("search") ? "; in it gemm \(fixed(FlatIndex.probeGemm, 3)) s, scan \(fixed(FlatIndex.probeScan, 3)) s" : "")")
                }
            }
        }
    }
}
