// ScoreBench: part of `bench reader`: the `score` job as a whole `fidq score` process (start-up,
// model and tokenizer loading, data reading, collation, greedy decoding, outputs) against the
// PyTorch compute of FiD's test_reader.py (collation + encoder + generate) on the same folder.
import Foundation
import Models
import Tensor

enum ScoreBench {
    /// 4 questions × 10 passages × 200 tokens, greedy, one question per batch (FiD's default).
    static let questions = 4, passages = 10, L = 200

    /// A t5-small-shaped random reader (config.json, model.safetensors, the T5 tokenizer.json)
    /// and an eval set whose passages all fill L tokens; returns (model folder, data file).
    static func prepare(_ dir: String) throws -> (String, String)? {
        let fm = FileManager.default
        let tokenizer = fm.currentDirectoryPath + "/.assets/t5/tokenizer.json"
        guard fm.fileExists(atPath: tokenizer) else {
            print("score: skipped, no \(tokenizer) (run ops/assets)")
            return nil
        }
        let model = dir + "/model"
        try fm.createDirectory(atPath: model, withIntermediateDirectories: true)
        let config = """
            {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 32128, "d_model": 512,
             "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8, "feed_forward_proj": "relu",
             "tie_word_embeddings": true, "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1,
             "dropout_rate": 0.1, "layer_norm_epsilon": 1e-06, "relative_attention_num_buckets": 32,
             "relative_attention_max_distance": 128}
            """
        try config.write(toFile: model + "/config.json", atomically: true, encoding: .utf8)
        let m = T5Model(config: try T5Config.load(path: model + "/config.json"))
        m.initialize(seed: 11)
        try m.params.save(to: model + "/model.safetensors")
        try fm.copyItem(atPath: tokenizer, toPath: model + "/tokenizer.json")
        let words = ["river", "city", "ancient", "music", "science", "history", "north", "garden", "language", "winter",
                     "painter", "mountain", "library", "engine", "island", "festival", "harbour", "theory", "village", "planet"]
        var rng = RNG(seed: 5)
        func text(_ n: Int) -> String { (0..<n).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") }
        var items: [String] = []
        for q in 0..<questions {
            let ctxs = (0..<passages).map { p in #"{"title": "T\#(q)-\#(p)", "text": "\#(text(260))", "score": \#(passages - p)}"# }
            items.append(#"{"id": "q\#(q)", "question": "which \#(text(6))?", "answers": ["\#(text(2))"], "ctxs": [\#(ctxs.joined(separator: ", "))]}"#)
        }
        let data = dir + "/eval.json"
        try ("[" + items.joined(separator: ",\n") + "]").write(toFile: data, atomically: true, encoding: .utf8)
        return (model, data)
    }

    /// Prints one line: ours (the whole process) vs torch (compute only), and the ratio.
    static func run(threads: Int, peer: Peer?) throws {
        guard let fidq = ProcessInfo.processInfo.environment["BENCH_FIDQ"] else {
            print("score: skipped (run through `ops/bench reader`, which builds fidq in release)")
            return
        }
        let dir = NSTemporaryDirectory() + "fidq-score-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let (model, data) = try prepare(dir) else { return }
        // Both sides run in turn, `BENCH_SCORE_ROUNDS` times (default 3): one whole process is a
        // single sample of a noisy host, and a lone pair of them gave ratios 1.10 to 1.87.
        let text = ProcessInfo.processInfo.environment["BENCH_SCORE_ROUNDS"] ?? "3"
        guard let rounds = Int(text), rounds >= 1 else {
            throw BenchError("BENCH_SCORE_ROUNDS=\(text): expected a positive integer (rounds of both score processes)")
        }
        var ours: [Double] = [], torch: [Double] = [], torchTokens = "-", answered = 0
        for round in 0..<rounds {
            let out = dir + "/run\(round)"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: fidq)
            p.arguments = ["score", "--model_path", model, "--eval_data", data, "--n_context", "\(passages)", "--text_maxlength", "\(L)",
                           "--per_gpu_batch_size", "1", "--threads", "\(threads)", "--out", out]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            let t0 = monotonicSeconds()
            try p.run()
            p.waitUntilExit()
            ours.append(monotonicSeconds() - t0)
            guard p.terminationStatus == 0 else {
                throw BenchError("fidq score exited with \(p.terminationStatus); see \(out)/log.txt")
            }
            let preds = try String(contentsOfFile: out + "/out/predictions.jsonl", encoding: .utf8)
            answered = preds.split(separator: "\n").count
            if let peer {
                let reply = try peer.request("score \(model) \(data) \(passages) \(L) \(threads)").split(separator: " ")
                guard let seconds = reply.first.flatMap({ Double($0) }) else {
                    throw BenchError("the torch peer's score reply has no seconds: \(reply.joined(separator: " "))")
                }
                torch.append(seconds)
                if reply.count > 1 { torchTokens = String(reply[1]) }
            }
        }
        let o = Stats(ours)
        let t = torch.isEmpty ? nil : Stats(torch)
        print("score job, \(questions) questions × \(passages) passages × \(L) tokens, greedy, \(threads) thread\(threads == 1 ? "" : "s"): "
              + "fidq score whole process (start, load, read, collate, decode, write) \(fixed(o.median, 2)) s; "
              + "torch test_reader compute (collate + encoder + generate, model loaded, \(torchTokens) tokens) \(t.map { fixed($0.median, 2) } ?? "-") s; "
              + "ratio torch / ours \(t.map { ratio(o.speedup(over: $0)) } ?? "-") (goal ≥ 1; median of \(rounds) rounds in turn, spread \(percent(max(o.spread, t?.spread ?? 0)))); "
              + "ours answered \(answered) questions")
    }
}
