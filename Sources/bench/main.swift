// bench: runs the benchmarks named on the command line; `ops/bench NAME…` builds it and its peers.
import Foundation

/// Every benchmark: name, one-line summary, entry point. A new benchmark adds a file and a line.
let benchmarks: [(name: String, summary: String, run: (TimingSettings) throws -> Void)] = [
    ("gemm", "Gemm.gemm vs raw OpenBLAS sgemm (C) vs torch.matmul, GFLOP/s", GemmBench.run),
    ("copy", "copy bandwidth (Swift loop and memcpy over 256 MiB), GB/s", CopyBench.run),
    ("softmax", "Softmax fwd/bwd GB/s vs copy bandwidth and torch.softmax", { try ElementwiseBench.run(.softmax, $0) }),
    ("rmsnorm", "RMSNorm (T5) fwd/bwd GB/s vs copy bandwidth and torch (T5LayerNorm)", { try ElementwiseBench.run(.rmsnorm, $0) }),
    ("vocab", "lm head gemv vs sgemm M=1 (t5-small), and the per-step vocabulary kernels", VocabBench.run),
    ("attention", "Attention fwd/bwd on FiD shapes, heads serial (products threaded) vs heads in parallel", AttentionBench.run),
    ("layernorm", "LayerNorm fwd/bwd GB/s vs copy bandwidth and F.layer_norm", { try ElementwiseBench.run(.layernorm, $0) }),
    ("dropout", "Dropout (p 0.1, a fresh mask per call) fwd/bwd GB/s vs copy bandwidth and F.dropout", { try ElementwiseBench.run(.dropout, $0) }),
    ("reader", "FiD T5 reader (t5-small shape): forward, train step, greedy per token vs transformers", ReaderBench.run),
    ("search", "exact and sq8 search (1M x 768, 1000 queries, k 100) vs faiss; BM25 vs bm25s", SearchBench.run),
    ("retriever", "MiniLM passage embedding (200 tokens, batch 64) vs sentence-transformers, passages/s", RetrieverBench.run),
]

func usage() -> String {
    // Padded to the longest name, never cut: `ops/bench` with no argument reads the names from here.
    let width = benchmarks.map(\.name.count).max() ?? 0
    return "usage: ops/bench NAME…   (builds in release, runs the peers side by side)\n"
        + benchmarks.map { "  \($0.name.padding(toLength: width, withPad: " ", startingAt: 0)) \($0.summary)" }
        .joined(separator: "\n")
}

let names = Array(CommandLine.arguments.dropFirst())
if names.isEmpty || names.contains(where: { ["-h", "--help", "--list"].contains($0) }) {
    print(usage())
    exit(names.isEmpty ? 2 : 0)
}
let unknown = names.filter { name in !benchmarks.contains { $0.name == name } }
if !unknown.isEmpty {
    FileHandle.standardError.write(Data("bench: unknown benchmark \(unknown.joined(separator: ", "))\n\(usage())\n".utf8))
    exit(2)
}
do {
    let settings = try TimingSettings.fromEnvironment()
    Machine.printHeader(settings)
    print()
    for name in names {
        try benchmarks.first { $0.name == name }!.run(settings)
    }
    print("load average at the end (1, 5, 15 min): \(Machine.loadAverage())")
} catch {
    FileHandle.standardError.write(Data("bench: \(error)\n".utf8))
    exit(1)
}
