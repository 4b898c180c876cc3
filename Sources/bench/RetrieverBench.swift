// RetrieverBench: `bench retriever`, the embedding half: all-MiniLM-L6-v2 (the real weights ops/assets
// unpacks) embedding passages of 200 tokens in batches of 64, ours against sentence-transformers on
// torch, same texts, same threads, interleaved. (The search half is added by the index's helper.)
import Foundation
import Models
import Tensor

enum RetrieverBench {
    /// Passages per timed call, their token length (special tokens included) and the batch size.
    static let count = Int(ProcessInfo.processInfo.environment["BENCH_RETRIEVER_N"] ?? "") ?? 64, L = 200, batch = 64
    /// Goal (issue 13): ≥ 1.4× sentence-transformers' passages per second.
    static let goal = 1.4

    /// The same synthetic passages the peer builds (torch_retriever.py `texts`): 230 common words
    /// each, so every one is truncated to exactly L tokens.
    static func texts(_ n: Int) -> [String] {
        let words = ["the", "history", "of", "city", "river", "was", "built", "in", "century", "by", "people", "who",
                     "lived", "near", "mountain", "and", "traded", "with", "their", "neighbours", "during", "long",
                     "winter", "when", "snow", "covered", "fields", "around", "old", "castle", "king", "ordered",
                     "new", "bridge", "across", "water", "after", "great", "flood", "destroyed", "many", "houses",
                     "school", "church", "market", "became", "centre", "region", "famous", "for"]
        return (0..<n).map { i in (0..<230).map { j in words[(i * 7 + j * 3 + j / 11) % words.count] }.joined(separator: " ") }
    }

    static func miniLMFolder() -> String {
        ProcessInfo.processInfo.environment["BENCH_MINILM"] ?? ".assets/minilm"
    }

    static func run(_ settings: TimingSettings) throws {
        print("## retriever: all-MiniLM-L6-v2 (6 layers, 384 wide), \(count) passages of \(L) tokens per call, batch \(batch),")
        print("tokenisation included, mean pooling, no normalisation. Peer: sentence-transformers encode (Transformer + Pooling).")
        print("ratio: torch time / ours (> 1: ours faster). Goal ≥ \(goal). \(LoadMeter.legend)")
        print("split (2+ threads): the other threading plan, one model per thread on its share of the passages, 1 thread each.")
        print("half: ours at half precision (bfloat16 products, float32 sums: the embed job's default, as FiD's .half()),")
        print("against torch in float32 (the goal's peer) and against torch's own half precision (the model cast to bfloat16).")
        let rm = try RetrieverModel.load(folder: miniLMFolder())
        var half = try RetrieverModel.load(folder: miniLMFolder())
        half.halfPrecision = Gemm.BF16Kernel.fast
        if half.halfPrecision == nil { print("(this CPU has no AVX-512 BF16: no half rows)") }
        let passages = texts(count)
        let lengths = rm.tokenizer.encodeAll(passages, maxLength: L).map(\.count)
        guard lengths.allSatisfy({ $0 == L }) else { throw BenchError("retriever bench: passages are \(Set(lengths)) tokens, expected \(L)") }
        for threads in settings.threads {
            Threads.set(threads)
            let peer = try Peer.torch(script: "torch_retriever.py", threads: threads, first: threads == settings.threads.first,
                                      bench: "retriever")
            defer { peer?.close() }
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            let table = Table(["what", "ours ms", "torch ms", "ours psg/s", "torch psg/s", "ratio", "goal", "spread", "other+steal"], widths: [12])
            var contenders = [
                Contender(name: "ours", sample: {
                    Timing.sample(minTime: settings.minTime) { _ = rm.embed(passages, maxLength: L, applyMask: true, batchSize: batch) }
                }),
                Contender(name: "torch", sample: {
                    guard let peer else { return .nan }
                    return try peer.sample("embed \(count) \(L) \(batch) \(threads) \(settings.minTime)")
                }),
            ]
            if half.halfPrecision != nil {
                contenders.append(Contender(name: "ours half", sample: {
                    Timing.sample(minTime: settings.minTime) { _ = half.embed(passages, maxLength: L, applyMask: true, batchSize: batch) }
                }))
                contenders.append(Contender(name: "torch bf16", sample: {
                    guard let peer else { return .nan }
                    return try peer.sample("embed \(count) \(L) \(batch) \(threads) \(settings.minTime) bfloat16")
                }))
            }
            let splitIndex = contenders.count
            // The other threading plan, for comparison: the passages split into one part per
            // thread, each embedded by its own model (own arena) on one thread, instead of every
            // product's tiles and every kernel's rows spread over the threads.
            let parts = threads > 1 ? try (0..<threads).map { _ in try RetrieverModel.load(folder: miniLMFolder()) } : []
            if threads > 1 {
                let size = (count + threads - 1) / threads
                contenders.append(Contender(name: "ours split", sample: {
                    Timing.sample(minTime: settings.minTime) {
                        Threads.set(1)
                        defer { Threads.set(threads) }
                        DispatchQueue.concurrentPerform(iterations: threads) { t in
                            let part = Array(passages[min(count, t * size)..<min(count, (t + 1) * size)])
                            _ = parts[t].embed(part, maxLength: L, applyMask: true, batchSize: batch)
                        }
                    }
                }))
            }
            try Machine.waitForQuiet(settings)
            let meter = LoadMeter(peers: peer.map { [$0.pid] } ?? [])
            let stats = try Timing.interleaved(contenders, settings)
            let ours = stats[0].median, torch = peer == nil ? Double.nan : stats[1].median
            let spread = max(stats[0].spread, peer == nil ? 0 : stats[1].spread)
            table.add(["f32", fixed(ours * 1000), torch.isNaN ? "-" : fixed(torch * 1000), fixed(Double(count) / ours),
                       torch.isNaN ? "-" : fixed(Double(count) / torch), torch.isNaN ? "-" : ratio(torch / ours), "≥ \(goal)",
                       percent(spread), meter.summary()])
            if half.halfPrecision != nil {
                let h = stats[2].median, tb = peer == nil ? Double.nan : stats[3].median
                table.add(["half", fixed(h * 1000), torch.isNaN ? "-" : fixed(torch * 1000), fixed(Double(count) / h),
                           torch.isNaN ? "-" : fixed(Double(count) / torch), torch.isNaN ? "-" : ratio(torch / h), "≥ \(goal)",
                           percent(max(stats[2].spread, peer == nil ? 0 : stats[1].spread)), "-"])
                table.add(["half vs bf16", fixed(h * 1000), tb.isNaN ? "-" : fixed(tb * 1000), fixed(Double(count) / h),
                           tb.isNaN ? "-" : fixed(Double(count) / tb), tb.isNaN ? "-" : ratio(tb / h), "-",
                           percent(max(stats[2].spread, peer == nil ? 0 : stats[3].spread)), "-"])
            }
            if threads > 1 {
                let split = stats[splitIndex].median
                table.add(["split", fixed(split * 1000), torch.isNaN ? "-" : fixed(torch * 1000), fixed(Double(count) / split),
                           torch.isNaN ? "-" : fixed(Double(count) / torch), torch.isNaN ? "-" : ratio(torch / split), "-",
                           percent(stats[splitIndex].spread), "-"])
            }
        }
    }
}
