// FiDFixtureTests: the collator, the loss, greedy answers, exact match and dataset_wscores.json
// against FiD's own pipeline on a tiny random T5 (ops/fixtures/fid_reader.py).
import Formats
import Foundation
import Jobs
import Models
import Tensor
import Testing
@testable import FiD

struct ReaderFixture {
    static let folder = TestData.fixtures + "/reader"

    struct Row: Decodable {
        let strings: [String], answer: String, ids: [Int32], scores: [Double]
        let exact_match: Bool
    }
    struct Batch: Decodable {
        let passage_ids: [Int32], passage_masks: [Int32], labels: [Int32], T: Int, loss: Double, rows: [Row]
    }
    struct Meta: Decodable { let n_context: Int, text_maxlength: Int, per_gpu_batch_size: Int, exact_match: Double }
    struct File: Decodable { let meta: Meta, batches: [Batch] }

    static func load() throws -> File {
        try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/expected.json")))
    }

    /// Runs a `score` job in the foreground into a fresh folder; returns the folder.
    static func runScore(_ params: [String: JSONValue], registry: KindRegistry? = nil) throws -> (folder: String, result: JSONValue) {
        let reg = registry ?? {
            let r = KindRegistry()
            r.register(ScoreKind())
            r.register(MergeKind())
            return r
        }()
        let dir = TestData.scratch("score")
        let d = JobDescriptor(kind: "score", id: "score", maxAttempts: 1, params: .object(params))
        return (dir + "/run", try foreground(dir).run(d, registry: reg))
    }

    /// A foreground `score` run in `dir` (its folder `dir/run`), reading anywhere, on 2 threads.
    static func foreground(_ dir: String) -> ForegroundRun {
        var job = ForegroundRun(file: dir + "/score.json", workspace: dir)
        job.outDir = dir + "/run"
        job.allowedRoots = ["/"]
        job.threads = 2
        return job
    }

    /// The fixture reader with finite weights that overflow float32 (values near its limit), so
    /// it computes NaN; returns its folder.
    static func overflowingModel() throws -> String {
        let model = TestData.scratch("overflow") + "/model"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: folder + "/config.json", toPath: model + "/config.json")
        var map = try SafeTensorsFile(path: folder + "/model.safetensors").readAll()
        let name = "decoder.block.0.layer.1.EncDecAttention.q.weight"
        var q = try map.tensor(name)
        q.data = [Float](repeating: .greatestFiniteMagnitude, count: q.data.count)
        map[name] = q
        try SafeTensors.write(map, to: model + "/model.safetensors", metadata: ["format": "pt"])
        return model
    }

    static func baseParams() throws -> [String: JSONValue] {
        ["model_path": .string(folder), "eval_data": .string(folder + "/eval.json"), "tokenizer": .string(try TestData.t5TokenizerPath()),
         "n_context": .number(3), "text_maxlength": .number(24), "per_gpu_batch_size": .number(2)]
    }
}

@Suite struct FiDFixtureTests {
    @Test func collatorAndLossMatchFiD() throws {
        let fx = try ReaderFixture.load()
        let reader = try T5Reader.load(folder: ReaderFixture.folder, tokenizer: try TestData.t5TokenizerPath())
        let format = FiDFormat(nContext: fx.meta.n_context, textMaxLength: fx.meta.text_maxlength)
        let collator = FiDCollator(format: format, tokenizer: reader.tokenizer)
        let examples = try FiDData(path: ReaderFixture.folder + "/eval.json").load()
        for (i, expected) in fx.batches.enumerated() {
            let exs = Array(examples[(2 * i)..<min(2 * i + 2, examples.count)])
            let fb = collator.collate(exs, targets: exs.map { $0.target ?? $0.answers[0] })
            #expect(fb.encoderStrings == expected.rows.map(\.strings))
            #expect(fb.batch.inputIds == expected.passage_ids, "batch \(i) ids")
            #expect(fb.batch.attentionMask == expected.passage_masks.map(Float.init), "batch \(i) masks")
            #expect(fb.batch.labels! == expected.labels && fb.batch.targetLength == expected.T, "batch \(i) labels")
            var rng = RNG(seed: 0)
            let loss = Double(reader.model.forward(fb.batch, rng: &rng).loss!)
            #expect(abs(loss - expected.loss) <= 1e-4 * max(1, abs(expected.loss)), "batch \(i) loss \(loss) vs \(expected.loss)")
        }
    }

    @Test func scoreJobMatchesFiD() throws {
        let fx = try ReaderFixture.load()
        var params = try ReaderFixture.baseParams()
        params["write_results"] = .bool(true)
        params["write_crossattention_scores"] = .bool(true)
        let (out, result) = try ReaderFixture.runScore(params)
        let rows = fx.batches.flatMap(\.rows)
        // predictions.jsonl: one record per question, in order, FiD's answers and exact match.
        var preds: [JSONNode] = []
        try JSONStream(path: out + "/out/predictions.jsonl").forEachLine { preds.append($0.value) }
        #expect(preds.count == rows.count)
        for (p, r) in zip(preds, rows) {
            #expect(p["prediction"]?.stringValue == r.answer)
            #expect(p["exact_match"] == .bool(r.exact_match))
        }
        guard case .object(let o) = result, case .number(let em)? = o["exact_match"] else { Issue.record("no exact_match in \(result)"); return }
        #expect(abs(em - fx.meta.exact_match) < 1e-9)
        // final_output.txt: id<TAB>answer.
        let lines = try String(contentsOfFile: out + "/out/final_output.txt", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == rows.count + 1 && lines.last == "")
        #expect(lines.first == "q0\t" + rows[0].answer && lines[1] == "1\t" + rows[1].answer)
        // dataset_wscores.json: FiD's file, scores within 1e-4, everything else identical.
        try Self.expectSameWithScores(out + "/out/dataset_wscores.json", ReaderFixture.folder + "/dataset_wscores.json")
    }

    /// Compares two FiD data files: equal except `score` values, which must agree within 1e-4.
    static func expectSameWithScores(_ got: String, _ want: String) throws {
        var a: [JSONNode] = [], b: [JSONNode] = []
        try JSONStream(path: got).forEachElement { a.append($0.value) }
        try JSONStream(path: want).forEachElement { b.append($0.value) }
        #expect(a.count == b.count)
        func same(_ x: JSONNode, _ y: JSONNode, _ path: String) {
            switch (x, y) {
            case let (.object(p), .object(q)):
                #expect(p.map(\.0) == q.map(\.0), "\(path) keys")
                for ((k, v), (_, w)) in zip(p, q) {
                    if k == "score", let dv = v.doubleValue, let dw = w.doubleValue, case .number = v {
                        #expect(abs(dv - dw) <= 1e-4, "\(path).score \(dv) vs \(dw)")
                    } else {
                        same(v, w, path + "." + k)
                    }
                }
            case let (.array(p), .array(q)):
                #expect(p.count == q.count, "\(path) count")
                for (i, (v, w)) in zip(p, q).enumerated() { same(v, w, path + "[\(i)]") }
            case let (.number(s), .number(t)) where Double(s) == Double(t): break
            case let (.integer(n), .number(t)) where Double(n) == Double(t): break
            case let (.number(t), .integer(n)) where Double(n) == Double(t): break
            default: #expect(x == y, "\(path)")
            }
        }
        for (i, (x, y)) in zip(a, b).enumerated() { same(x, y, "[\(i)]") }
    }
}
