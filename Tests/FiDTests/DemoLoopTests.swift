// DemoLoopTests: a reduced ops/demo — the whole FiD-KD loop through the queue with two real workers —
// that fails when the method's promises fail.
import Foundation
import Testing

@testable import FiD

@Suite(.serialized) struct DemoLoopTests {
    static let root = QueueExamplesTests.root

    /// The demo's jobs, shorter (id → params replaced) so the default test run stays in budget:
    /// fewer evaluations. The reader and the retriever keep their budgets: the promises are about
    /// what the demo runs, and a reader trained for less is a draw per kernel family (its rounding
    /// decides when it learns to match the question's person).
    static let reduced: [String: [String: Any]] = [
        "reader-exercises": ["eval_freq": 2000],
        "reader-exercises-4": ["eval_freq": 600],
    ]

    /// Answer recall@k of a retrieval output (FiD JSON with `hasanswer` on each ctx).
    static func recall(_ path: String, _ k: Int) throws -> Double {
        let data = try #require(FileManager.default.contents(atPath: path), "missing \(path)")
        let examples = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        let hits = examples.filter { e in
            ((e["ctxs"] as? [[String: Any]]) ?? []).prefix(k).contains { ($0["hasanswer"] as? Bool) == true }
        }.count
        return Double(hits) / Double(max(1, examples.count))
    }

    /// Exact match of a finished score job: the share of `predictions.jsonl` rows marked exact.
    static func exactMatch(_ jobFolder: String) throws -> Double {
        let path = jobFolder + "/out/predictions.jsonl"
        let text = String(decoding: try #require(FileManager.default.contents(atPath: path), "missing \(path)"), as: UTF8.self)
        let rows = try text.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let exact = rows.filter { ($0["exact_match"] as? Bool) == true || ($0["exact_match"] as? Int) == 1 }.count
        return Double(exact) / Double(max(1, rows.count))
    }

    @Test(.timeLimit(.minutes(20)))
    func reducedLoopThroughTwoWorkersKeepsTheMethodsPromises() throws {
        let begun = Date()
        let fidq = QueueExamplesTests.fidq
        try #require(FileManager.default.isExecutableFile(atPath: fidq), "build first: swift build (looked for \(fidq))")
        let ws = FileManager.default.temporaryDirectory.appendingPathComponent("fidq-demo-loop-\(UUID().uuidString)").path
        let fm = FileManager.default
        try fm.createDirectory(atPath: ws + "/jobs", withIntermediateDirectories: true)
        defer { if ProcessInfo.processInfo.environment["FIDQ_KEEP_DEMO"] == nil { try? fm.removeItem(atPath: ws) } }

        // The demo's job files, reduced; MiniLM's tokenizer, which ops/demo copies in (the reader's comes
        // from the world job).
        let demo = Self.root.appendingPathComponent("queue/examples/demo").path
        var files: [String] = []
        for name in try fm.contentsOfDirectory(atPath: demo).sorted() where name.hasSuffix(".json") {
            let data = try #require(fm.contents(atPath: demo + "/" + name))
            var job = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let id = (job["id"] as? String) ?? String(name.dropLast(5))
            if let changes = Self.reduced[id] {
                var params = (job["params"] as? [String: Any]) ?? [:]
                params.merge(changes) { $1 }
                job["params"] = params
            }
            let path = ws + "/jobs/" + name
            try JSONSerialization.data(withJSONObject: job, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
            files.append(path)
        }
        for (dir, names) in [("minilm", ["vocab.txt", "tokenizer.json", "tokenizer_config.json"])] {
            try fm.createDirectory(atPath: ws + "/tokenizers/" + dir, withIntermediateDirectories: true)
            for n in names {
                try fm.copyItem(atPath: try ExampleWorldTests.asset(dir + "/" + n), toPath: ws + "/tokenizers/\(dir)/\(n)")
            }
        }
        // The retriever starts from MiniLM's weights (ops/assets), as ops/demo copies them in.
        try fm.createDirectory(atPath: ws + "/models/minilm", withIntermediateDirectories: true)
        for n in ["config.json", "model.safetensors", "vocab.txt"] {
            try fm.copyItem(atPath: try ExampleWorldTests.asset("minilm/" + n), toPath: ws + "/models/minilm/" + n)
        }

        let queue = ws + "/queue"
        func start(_ args: [String], log: String) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: fidq)
            p.arguments = args
            _ = fm.createFile(atPath: log, contents: nil)
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            return p
        }
        let submit = try start(["submit", "--queue", queue] + files, log: ws + "/submit.log")
        submit.waitUntilExit()
        let submitLog = String(decoding: fm.contents(atPath: ws + "/submit.log") ?? Data(), as: UTF8.self)
        try #require(submit.terminationStatus == 0, "submit refused the demo: \(submitLog)")

        let t0 = Date()
        let setup = t0.timeIntervalSince(begun)
        let workers = try (1...2).map { try start(["worker", "--queue", queue, "--drain", "--poll", "0.2"], log: ws + "/worker-\($0).log") }
        for w in workers { w.waitUntilExit() }
        let seconds = Date().timeIntervalSince(t0)

        let failed = (try? fm.contentsOfDirectory(atPath: queue + "/failed")) ?? []
        var errors = ""
        for id in failed { errors += "\(id): " + String(decoding: fm.contents(atPath: "\(queue)/failed/\(id)/error.json") ?? Data(), as: UTF8.self) + "\n" }
        #expect(failed.isEmpty, "failed jobs:\n\(errors)")
        let done = (try? fm.contentsOfDirectory(atPath: queue + "/done")) ?? []
        try #require(done.count == files.count, "\(done.count) of \(files.count) jobs done: \(done.sorted())")

        let worldFile = try #require(fm.contents(atPath: demo + "/world.json"))
        let worldJob = try JSONSerialization.jsonObject(with: worldFile) as? [String: Any]
        let worldParams = worldJob?["params"] as? [String: Any]
        let world = try ExampleWorld(config: ExampleWorldConfig(
            seed: UInt64(worldParams?["seed"] as? Int ?? 0), train: worldParams?["train"] as? Int ?? 600,
            dev: worldParams?["dev"] as? Int ?? 150, nContext: worldParams?["n_context"] as? Int ?? 10))
        let chance = world.chanceExactMatch(world.dev)
        let em = try Self.exactMatch(queue + "/done/answer-bm25-dev")
        let emAfter = try Self.exactMatch(queue + "/done/answer-dense-dev")
        let em5 = try Self.exactMatch(queue + "/done/answer-bm25-dev-5")
        let emAfter5 = try Self.exactMatch(queue + "/done/answer-dense-dev-5")
        let bm25 = (try Self.recall(ws + "/retrieved/bm25-dev.json", 5), try Self.recall(ws + "/retrieved/bm25-dev.json", 20))
        let dense = (try Self.recall(ws + "/retrieved/dense-dev.json", 5), try Self.recall(ws + "/retrieved/dense-dev.json", 20))
        let start = (try Self.recall(ws + "/retrieved/minilm-dev.json", 5), try Self.recall(ws + "/retrieved/minilm-dev.json", 20))
        // With the setup's seconds, the runner's "passed after" tells a slow setup from a late start.
        print("demo loop (reduced, \(Int(seconds)) s after a \(Int(setup)) s setup): EM top 10 \(em) (chance \(chance)), after \(emAfter); "
              + "EM top 5 \(em5), after \(emAfter5); "
              + "recall@5/@20 BM25 \(bm25.0)/\(bm25.1), MiniLM before \(start.0)/\(start.1), dense \(dense.0)/\(dense.1); workspace \(ws)")
        #expect(em >= 3 * chance, "reader EM \(em) is not far above chance \(chance)")
        #expect(bm25.1 > 0.9, "BM25 recall@20 \(bm25.1): the world no longer keeps the gold in BM25's reach")
        #expect(dense.0 > bm25.0, "dense recall@5 \(dense.0) is not above BM25's \(bm25.0)")
        #expect(dense.1 > start.1, "distillation did not improve recall@20 over MiniLM's start: \(dense.1) against \(start.1)")
        #expect(emAfter5 >= em5, "EM with the dense top 5 \(emAfter5) is below EM with BM25's top 5 \(em5)")
        // Reading the top 10 the dense passages hold more answer-like facts besides the gold (the
        // person's other facts, other people's facts of the same kind) than BM25's, which hold decoys
        // that state nothing; the reader, taught on exercises to take the question's person's value
        // of the question's kind, must read them at least as well.
        #expect(emAfter >= em, "EM with the dense top 10 \(emAfter) is below EM with BM25's top 10 \(em)")
    }
}
