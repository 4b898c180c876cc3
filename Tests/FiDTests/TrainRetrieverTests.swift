// TrainRetrieverTests: the train_retriever kind: params under FiD's names, bad data (no reader
// scores, too few passages) named by file, index and field, and the synthetic learning check: a
// tiny retriever trained from scratch on reader scores that favour passages sharing a hidden
// feature with the question ranks the reader's top passage first far above chance.
import Formats
import Foundation
import Testing
import TestSupport
@testable import FiD
@testable import Jobs
@testable import Models
@testable import Tensor
import Tokenizers

/// A synthetic scored data set: each question names one of 8 colours among filler words; of its
/// 4 passages one shares the colour (reader score 3 + noise), the others carry other colours
/// (score noise only), in shuffled file order, with `hasanswer` on the matching one.
enum SyntheticRetrieval {
    static let colours = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
    static let fillers = ["river", "city", "old", "king", "snow", "field", "bridge", "market", "school", "winter"]

    /// Writes vocab.txt and a BERT config.json (hidden 32, 2 layers) into `dir`.
    static func writeModelFiles(_ dir: String) throws {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "question", "title", "context", ":", "about", "t"] + colours + fillers
        try (vocab.joined(separator: "\n") + "\n").write(toFile: dir + "/vocab.txt", atomically: true, encoding: .utf8)
        let config: [String: Any] = ["model_type": "bert", "vocab_size": vocab.count, "hidden_size": 32, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
    }

    static func examples(_ n: Int, seed: UInt64, scores: Bool = true, passages: Int = 4) -> [[String: Any]] {
        var rng = RNG(seed: seed)
        func filler(_ k: Int) -> String { (0..<k).map { _ in fillers[Int(rng.next() % UInt64(fillers.count))] }.joined(separator: " ") }
        return (0..<n).map { _ in
            let c = Int(rng.next() % UInt64(colours.count))
            var ctxs: [[String: Any]] = []
            for j in 0..<passages {
                let colour = j == 0 ? c : (c + 1 + Int(rng.next() % UInt64(colours.count - 1))) % colours.count
                var p: [String: Any] = ["title": "t", "text": "\(filler(2)) \(colours[colour]) \(filler(3))", "hasanswer": j == 0]
                if scores { p["score"] = (j == 0 ? 3.0 : 0.0) + Double(rng.nextFloat()) * 0.5 }
                ctxs.append(p)
            }
            // Shuffled, so file order says nothing.
            for i in stride(from: ctxs.count - 1, to: 0, by: -1) { ctxs.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            return ["question": "about \(filler(1)) \(colours[c]) \(filler(1))", "answers": ["x"], "ctxs": ctxs]
        }
    }

    static func write(_ examples: [[String: Any]], to path: String) throws {
        try JSONSerialization.data(withJSONObject: examples).write(to: URL(fileURLWithPath: path))
    }
}

extension RetrieverTrainable {
    /// Top-1 agreement of a fresh model (seed 3, no training) on `dir`'s dev.json, and of a
    /// collapsed one (all weights zero: every passage scores alike), which must be 0.
    static func evaluateFresh(dir: String) throws -> Double {
        let config = try TrainRetrieverKind.headConfig(try BertConfig.load(path: dir + "/config.json"),
                                                       try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(#"{"train_data": "x", "model_config": "c", "indexing_dimension": 16}"#.utf8)),
                                                       fresh: true, configFile: dir + "/config.json")
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let dev = try RetrieverExamples(path: dir + "/dev.json", tokenizer: tok, nContext: 4, questionMaxlength: 8, passageMaxlength: 12, threads: 1)
        let fresh = BertRetriever(config: config)
        fresh.initialize(seed: 3)
        let collapsed = BertRetriever(config: config)
        let zero = try RetrieverTrainable(model: collapsed, tokenizerPath: nil, train: dev, dev: dev, evalBatchSize: 8).evaluation(dev)
        #expect(zero.top1Agreement == 0 && zero.recall!["1"]! == 0, "collapsed: \(zero)")
        return try RetrieverTrainable(model: fresh, tokenizerPath: nil, train: dev, dev: dev, evalBatchSize: 8).evaluation(dev).top1Agreement
    }
}

/// Runs `train_retriever` in the foreground with `params` into `out`.
@discardableResult
func runTrainRetriever(_ params: [String: Any], out: String, workspace: String) throws -> JSONValue {
    let registry = KindRegistry()
    registry.register(TrainRetrieverKind())
    let job = out + ".json"
    try JSONSerialization.data(withJSONObject: ["kind": "train_retriever", "id": "tr", "params": params]).write(to: URL(fileURLWithPath: job))
    var run = ForegroundRun(file: job, workspace: workspace)
    run.outDir = out
    return try run.run(registry: registry)
}

struct TrainRetrieverTests {
    @Test func paramsTakeFiDNamesAndDefaults() throws {
        let json = #"{"train_data": "t.json", "model_path": "m", "n_context": 20, "no_projection": true, "extract_cls": true, "lr": 0.001, "optim": "adamw", "reduction": "batchmean", "temperature": 2}"#
        let p = try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(json.utf8))
        #expect(p.nContext == 20 && p.noProjection && p.extractCLS && p.reduction == .batchmean && p.temperature == 2)
        #expect(p.questionMaxlength == 40 && p.passageMaxlength == 200 && p.indexingDimension == 768 && p.dropout == nil)
        #expect(p.trainer.optim.optim == .adamw && p.trainer.optim.lr == 0.001)
        let again = try JSONDecoder().decode(TrainRetrieverParams.self, from: try JSONEncoder().encode(p))
        #expect(again == p)
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(#"{"train_data": "t", "model_path": "m", "n_contexts": 2}"#.utf8))
        }
        let sum = #expect(throws: (any Error).self) {
            try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(#"{"train_data": "t", "model_path": "m", "reduction": "sum"}"#.utf8))
        }
        #expect("\(String(describing: sum))".contains("found sum"), "the value given, not nil: \(String(describing: sum))")
        // A row of one token is [CLS] alone: every passage would score alike.
        for key in ["question_maxlength", "passage_maxlength"] {
            let e = #expect(throws: (any Error).self) {
                try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(#"{"train_data": "t", "model_path": "m", "\#(key)": 1}"#.utf8))
            }
            #expect("\(String(describing: e))".contains(">= 2"), "\(key): \(String(describing: e))")
        }
    }

    @Test func dataWithoutReaderScoresNamesFileIndexAndScore() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        var ex = SyntheticRetrieval.examples(3, seed: 1)
        var ctxs = ex[2]["ctxs"] as! [[String: Any]]
        ctxs[1].removeValue(forKey: "score")
        ex[2]["ctxs"] = ctxs
        try SyntheticRetrieval.write(ex, to: dir + "/train.json")
        let params: [String: Any] = ["train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 4,
                                     "total_steps": 1]
        do {
            try runTrainRetriever(params, out: dir + "/run", workspace: dir)
            Issue.record("trained on data without scores")
        } catch {
            let e = "\(error)"
            #expect(e.contains("train.json") && e.contains("[2]") && e.contains("ctxs[1].score") && e.contains("train_data"), "\(e)")
        }
    }

    /// A temperature that turns a reader score past float32's range is refused before training,
    /// naming the score (it made every weight NaN while the loss read 0).
    @Test func aTemperatureOverflowingAScoreIsRefused() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        var ex = SyntheticRetrieval.examples(3, seed: 1)
        var ctxs = ex[1]["ctxs"] as! [[String: Any]]
        ctxs[2]["score"] = -1e30
        ex[1]["ctxs"] = ctxs
        try SyntheticRetrieval.write(ex, to: dir + "/train.json")
        func run(_ temperature: Double) throws {
            try runTrainRetriever(["train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 4,
                                   "total_steps": 1, "temperature": temperature], out: dir + "/run-\(temperature)", workspace: dir)
        }
        do {
            try run(1e-9)
            Issue.record("trained with scores / temperature past float32")
        } catch let e as JobError {
            #expect(e.field == "params.temperature" && e.message.contains("train.json [1].ctxs[") && e.message.contains("1e+30"), "\(e)")
        }
        try run(1e-8)  // 1e38: still a float32
    }

    /// A model folder with a config and no weights (an example world's `retriever/`) is refused
    /// before training, hinting at `model_config`; a T5 folder is named as such.
    @Test func aModelFolderWithoutWeightsHintsAtModelConfig() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(3, seed: 1), to: dir + "/train.json")
        func error(_ params: [String: Any]) -> JobError? {
            do { _ = try runTrainRetriever(params, out: dir + "/run-\(UUID().uuidString)", workspace: dir); return nil } catch { return error as? JobError }
        }
        let e = error(["train_data": "train.json", "model_path": dir, "n_context": 4, "total_steps": 1])
        #expect(e?.field == "params.model_path" && e?.message.contains("holds no weights") == true
                && e?.hint?.contains("give model_config: \(dir)/config.json (and tokenizer) instead of model_path") == true, "\(String(describing: e))")
        let t5 = dir + "/t5"
        try FileManager.default.createDirectory(atPath: t5, withIntermediateDirectories: true)
        try #"{"model_type": "t5", "d_model": 8}"#.write(toFile: t5 + "/config.json", atomically: true, encoding: .utf8)
        let wrong = error(["train_data": "train.json", "model_path": "t5", "n_context": 4, "total_steps": 1])
        #expect(wrong?.field == "params.model_path" && wrong?.message.contains("field model_type is 't5', expected 'bert'") == true,
                "\(String(describing: wrong))")
        // As the hint says: the same config as model_config trains.
        #expect(error(["train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 4, "total_steps": 1]) == nil)
    }

    /// FiD's set_dropout runs on a fresh model only: a model_path start keeps its config's rates
    /// unless `dropout` is given (it was set to 0.1 either way); a fresh one gets FiD's 0.1.
    @Test func dropoutLeftOutKeepsTheStartFoldersRates() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(8, seed: 1), to: dir + "/train.json")
        func savedRates(_ params: [String: Any], _ run: String) throws -> (String, [Double]) {
            let value = try runTrainRetriever(params.merging(["train_data": "train.json", "n_context": 4, "question_maxlength": 8,
                                                              "passage_maxlength": 12, "indexing_dimension": 16, "per_gpu_batch_size": 4,
                                                              "total_steps": 1]) { a, _ in a },
                                              out: dir + "/" + run, workspace: dir)
            let latest = try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(value)).training.latest
            let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: latest + "/config.json"))) as? [String: Any])
            return (latest, ["hidden_dropout_prob", "attention_probs_dropout_prob"].map { (config[$0] as? NSNumber)?.doubleValue ?? -1 })
        }
        let fresh: [String: Any] = ["model_config": "config.json", "tokenizer": "vocab.txt"]
        #expect(try savedRates(fresh, "fresh").1 == [0.1, 0.1])
        let (start, rates) = try savedRates(fresh.merging(["dropout": 0.0]) { a, _ in a }, "zero")
        #expect(rates == [0, 0])
        #expect(try savedRates(["model_path": start], "kept").1 == [0, 0])
        #expect(try savedRates(["model_path": start, "dropout": 0.25], "given").1 == [0.25, 0.25])
    }

    /// Without a projection the embeddings are the hidden states: an indexing_dimension given
    /// beside no_projection must be the model's width (FiD asserts 768); it was dropped silently.
    @Test func noProjectionWithAnotherIndexingDimensionIsRefused() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(2, seed: 1), to: dir + "/train.json")
        func params(_ extra: String) throws -> TrainRetrieverParams {
            try JSONDecoder().decode(TrainRetrieverParams.self, from: Data(
                #"{"train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "no_projection": true\#(extra)}"#.utf8))
        }
        let resolve = { (path: String) in dir + "/" + path }
        let e = #expect(throws: JobError.self) { try params(#", "indexing_dimension": 256"#).validateInputs(resolve: resolve) }
        #expect(e?.field == "params.indexing_dimension" && e?.message.contains("32 wide (hidden_size in \(dir)/config.json); found indexing_dimension 256") == true
                && e?.hint?.contains("drop no_projection") == true, "\(String(describing: e))")
        // Left out (FiD's 768 is its BERT's width) or equal to the width: the hidden states.
        for extra in ["", #", "indexing_dimension": 32"#] {
            let p = try params(extra)
            try p.validateInputs(resolve: resolve)
            let c = try TrainRetrieverKind.headConfig(try BertConfig.load(path: dir + "/config.json"), p, fresh: true, configFile: "c")
            #expect(!c.projection && c.indexingDimension == 32)
        }
        // The job refuses it too (a descriptor that skipped submit).
        #expect(throws: JobError.self) {
            _ = try runTrainRetriever(["train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "no_projection": true,
                                       "indexing_dimension": 256, "n_context": 4, "total_steps": 1], out: dir + "/run", workspace: dir)
        }
    }

    @Test func fewerPassagesThanNContextIsRefused() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(3, seed: 1, passages: 4), to: dir + "/train.json")
        let params: [String: Any] = ["train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 5,
                                     "total_steps": 1]
        do {
            try runTrainRetriever(params, out: dir + "/run", workspace: dir)
            Issue.record("trained with n_context above the passages")
        } catch {
            let e = "\(error)"
            #expect(e.contains("train.json") && e.contains("[0]") && e.contains("4 passages") && e.contains("n_context 5"), "\(e)")
        }
    }

    /// A score job that read fewer passages than the file holds (n_context 4 of 6) leaves the rest
    /// with the retrieval's string scores, another scale: FiD's sort would rank them among the
    /// reader's (here above them all). Only the reader's scored passages are ranked and distilled,
    /// and an n_context beyond them is refused naming the first passage it has not scored.
    @Test func passagesTheReaderDidNotScoreAreLeftOut() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        var ex = SyntheticRetrieval.examples(3, seed: 1)
        var readerScores: [[Double]] = []
        for i in ex.indices {
            var ctxs = ex[i]["ctxs"] as! [[String: Any]]
            readerScores.append(ctxs.map { $0["score"] as! Double }.sorted(by: >))
            ctxs += [["title": "t", "text": "red river", "score": "99.5"], ["title": "t", "text": "blue city", "score": "98.0"]]
            ex[i]["ctxs"] = ctxs
        }
        try SyntheticRetrieval.write(ex, to: dir + "/train.json")
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let set = try RetrieverExamples(path: dir + "/train.json", tokenizer: tok, nContext: 4, questionMaxlength: 8, passageMaxlength: 12, threads: 1)
        #expect(set.partlyScored == 3)
        let prepared = try set.prepared([0, 1, 2])
        #expect(prepared.originalRank.allSatisfy { $0.allSatisfy { $0 < 4 } }, "\(prepared.originalRank)")
        #expect(prepared.batch.readerScores == readerScores.flatMap { $0.map(Float.init) }, "\(prepared.batch.readerScores)")
        do {
            _ = try RetrieverExamples(path: dir + "/train.json", tokenizer: tok, nContext: 5, questionMaxlength: 8, passageMaxlength: 12, threads: 1)
            Issue.record("n_context 5 with 4 passages scored by the reader")
        } catch let e as FormatError {
            #expect(e.location == "[0].ctxs[4].score" && e.message.contains("a string") && e.message.contains("scored 4 of this example's 6 passages")
                    && e.hint?.contains("score this data with n_context 6") == true, "\(e)")
        }
    }

    /// The learning check: from scratch, 240 micro-batches of 4 questions × 4 passages; the
    /// retriever's top passage is the reader's on held-out questions far more often than chance
    /// (1/4), its answer recall@1 beats the file order's, and the eval loss fell.
    @Test(.timeLimit(.minutes(2))) func aTinyRetrieverLearnsTheReadersRanking() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(200, seed: 1), to: dir + "/train.json")
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(64, seed: 2), to: dir + "/dev.json")
        let params: [String: Any] = [
            "train_data": "train.json", "eval_data": "dev.json", "model_config": "config.json", "tokenizer": "vocab.txt",
            "n_context": 4, "question_maxlength": 8, "passage_maxlength": 12, "indexing_dimension": 16, "per_gpu_batch_size": 4,
            "total_steps": 240, "eval_freq": 240, "save_freq": 120, "lr": 0.001, "optim": "adamw", "weight_decay": 0.01,
            "dropout": 0.0, "seed": 3, "checkpoint_dir": "ck", "name": "distil", "no_title": true,
        ]
        let value = try runTrainRetriever(params, out: dir + "/run", workspace: dir)
        let result = try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(value))
        let e = try #require(result.evaluation)
        #expect(e.examples == 64)
        #expect(e.top1Agreement >= 0.75, "top-1 agreement \(e.top1Agreement) (chance 0.25)")
        // Ties count against the retriever, and an untrained one stays near chance.
        let untrained = try RetrieverTrainable.evaluateFresh(dir: dir)
        #expect(untrained < 0.5, "untrained top-1 agreement \(untrained)")
        #expect(e.recall!["1"]! >= 0.75 && e.recall!["1"]! > e.recallOriginal!["1"]! + 0.3, "\(e)")
        #expect(result.training.steps == 240)
        // result.json names the metric for what it is: the eval loss, positive (the trainer
        // maximises −loss), not an `em`.
        guard case .object(let r) = value, case .object(let training)? = r["training"],
              case .number(let final)? = training["final_eval_loss"], case .number(let best)? = training["best_eval_loss"] else {
            Issue.record("result: \(value)")
            return
        }
        #expect(training["final_em"] == nil && training["best_em"] == nil)
        #expect(abs(final - e.loss) <= 1e-12 * e.loss && final > 0 && best <= final, "final \(final), best \(best), eval \(e.loss)")
        #expect(result.training.metric == "eval_loss" && result.training.finalMetric == final)
        let log = try String(contentsOfFile: dir + "/run/log.txt", encoding: .utf8)
        #expect(log.contains("| evaluation loss \(String(format: "%.5f", e.loss))"), "log: \(log.suffix(600))")
        // checkpoint_dir/name: FiD's layout (as train_reader's): the last step and best_dev with
        // pytorch_model.bin under the saved names (FiD's Retriever's), no model.safetensors, and
        // `latest` a symlink to the last step, as FiD's util.save leaves them.
        let exported = dir + "/ck/distil/checkpoint"
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: exported + "/latest") == "step-240")
        for (copy, original) in [("step-240", result.training.latest), ("best_dev", try #require(result.training.bestDev))] {
            let saved = try SafeTensors.read(original + "/model.safetensors")
            let bin = try TorchCheckpoint.read(path: exported + "/\(copy)/pytorch_model.bin")
            #expect(bin.names == saved.names && bin.names.allSatisfy { (try? bin.tensor($0)) == (try? saved.tensor($0)) }, "\(copy)")
            #expect(!FileManager.default.fileExists(atPath: exported + "/\(copy)/model.safetensors"))
            // FiD's optimizer.pth.tar: the step, the best eval loss, the last step's moments.
            let tar = try ReadBack(path: exported + "/\(copy)/optimizer.pth.tar")
            #expect(ReadBack.get(tar.root, "step")?.intValue == (copy == "best_dev" ? result.training.bestStep : 240))
            #expect(ReadBack.float(ReadBack.get(tar.root, "best_eval_metric")) == best)
            let state = ReadBack.dict(ReadBack.dict(ReadBack.get(tar.root, "optimizer")).flatMap { ReadBack.get($0, "state") })
            #expect(state?.count == (copy == "best_dev" ? 0 : saved.names.filter { !$0.hasPrefix("model.pooler.") }.count), "\(copy)")
        }
        #expect(log.contains("train_retriever: FiD options without effect here: no_title (FiD defines it and never reads it)"))
        // The saved checkpoint is a retriever folder the loader reads, with its tokenizer.
        let rm = try RetrieverModel.load(folder: result.training.latest)
        #expect(rm.model.config.projection && rm.model.embeddingWidth == 16)
        // fidq reads the exported folder back through `latest`: the same weights.
        let back = try RetrieverModel.load(folder: exported + "/latest")
        #expect(back.model.params.count == rm.model.params.count
                && (0..<rm.model.params.count).allSatisfy { back.model.params.base[$0] == rm.model.params.base[$0] })
    }

    /// A run killed mid-window (after its step-15 checkpoint) and resumed reports what the
    /// uninterrupted run does: the training-loss window travels in the checkpoint (final_loss
    /// was the mean of steps 16–20 alone), and a resume past the last eval evaluates again
    /// (evaluation was null).
    @Test func aRunResumedMidWindowReportsTheUninterruptedFigures() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(40, seed: 5), to: dir + "/train.json")
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(16, seed: 6), to: dir + "/dev.json")
        let params: [String: Any] = [
            "train_data": "train.json", "eval_data": "dev.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 4,
            "question_maxlength": 8, "passage_maxlength": 12, "indexing_dimension": 16, "per_gpu_batch_size": 2,
            "total_steps": 20, "save_freq": 5, "keep_last": 5, "eval_freq": 100, "eval_print_freq": 20, "lr": 0.001, "optim": "adamw",
            "dropout": 0.1, "seed": 4,
        ]
        func result(_ v: JSONValue) throws -> TrainRetrieverResult { try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(v)) }
        let whole = try result(try runTrainRetriever(params, out: dir + "/whole", workspace: dir))
        let fm = FileManager.default
        // Killed after step 15 was saved: its checkpoints up to 15, latest naming it, no result.
        try fm.copyItem(atPath: dir + "/whole", toPath: dir + "/killed")
        try fm.removeItem(atPath: dir + "/killed/out/checkpoint/step-20")
        try Data("step-15".utf8).write(to: URL(fileURLWithPath: dir + "/killed/out/checkpoint/latest"))
        try fm.removeItem(atPath: dir + "/killed/result.json")
        let resumed = try result(try runTrainRetriever(params, out: dir + "/killed", workspace: dir))
        #expect(resumed.training.resumedFrom == 15)
        #expect(whole.training.finalLoss != nil && resumed.training.finalLoss == whole.training.finalLoss,
                "\(String(describing: resumed.training.finalLoss)) vs \(String(describing: whole.training.finalLoss))")
        // Killed after the last step's eval (while exporting): nothing left to train.
        try fm.removeItem(atPath: dir + "/killed/result.json")
        let ended = try result(try runTrainRetriever(params, out: dir + "/killed", workspace: dir))
        #expect(ended.training.resumedFrom == 20 && ended.evaluation != nil && ended.evaluation?.loss == whole.evaluation?.loss,
                "\(String(describing: ended.evaluation)) vs \(String(describing: whole.evaluation))")
        #expect(ended.training.finalLoss == whole.training.finalLoss)
        // No step ran: no speed (it read 0, a stalled run), where a run with steps has one.
        #expect(ended.training.tokensPerS == nil && (whole.training.tokensPerS ?? 0) > 0 && (resumed.training.tokensPerS ?? 0) > 0)
        let text = try String(contentsOfFile: dir + "/killed/result.json", encoding: .utf8)
        #expect(text.contains(#""tokens_per_s" : null"#) || text.contains(#""tokens_per_s":null"#), "\(text)")
    }

    /// A run stopped at step 10 and resumed to 20 ends with the weights of an uninterrupted 20-step
    /// run (dropout on: the RNG state travels in the checkpoint).
    @Test func resumedRunEndsWithTheUninterruptedWeights() throws {
        let dir = scratch()
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(40, seed: 5), to: dir + "/train.json")
        var params: [String: Any] = [
            "train_data": "train.json", "model_config": "config.json", "tokenizer": "vocab.txt", "n_context": 4,
            "question_maxlength": 8, "passage_maxlength": 12, "indexing_dimension": 16, "per_gpu_batch_size": 2,
            "accumulation_steps": 2, "total_steps": 20, "save_freq": 10, "eval_freq": 100, "lr": 0.001, "optim": "adamw",
            "dropout": 0.1, "seed": 4,
        ]
        let whole = try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(
            try runTrainRetriever(params, out: dir + "/whole", workspace: dir)))
        params["total_steps"] = 10
        try runTrainRetriever(params, out: dir + "/split", workspace: dir)
        params["total_steps"] = 20
        let resumed = try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(
            try runTrainRetriever(params, out: dir + "/split", workspace: dir)))
        #expect(resumed.training.resumedFrom == 10 && resumed.training.steps == 20)
        let a = try SafeTensors.read(whole.training.latest + "/model.safetensors")
        let b = try SafeTensors.read(resumed.training.latest + "/model.safetensors")
        #expect(a.names == b.names && !a.names.isEmpty)
        for n in a.names { #expect(try a.tensor(n) == (try b.tensor(n)), "\(n)") }
        // `dropout` left out where the config's rate is the same (BERT's 0.1) is the same run:
        // checked through the model's settings, not as a param given or not.
        var same = params
        same["dropout"] = nil
        try FileManager.default.removeItem(atPath: dir + "/split/run.json")  // `fidq run`'s own check compares params as typed
        #expect(try JSONDecoder().decode(TrainRetrieverResult.self, from: try JSONEncoder().encode(
            try runTrainRetriever(same, out: dir + "/split", workspace: dir))).training.steps == 20)
        // Other data under the same path (re-scored passages) is not mixed into the run.
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(40, seed: 6), to: dir + "/train.json")
        same["total_steps"] = 30
        do {
            try runTrainRetriever(same, out: dir + "/split", workspace: dir)
            Issue.record("resumed on other data")
        } catch let e as JobError {
            #expect(e.field == "params.train_data" && e.message.contains("belongs to a run of other settings (train_data: 40 examples, "), "\(e)")
        }
    }
}
