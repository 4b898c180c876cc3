// TrainReaderParamsTests: FiD's option names and defaults, strict decoding, and the bad values
// refused at submit with the field named.
import Foundation
import Testing
@testable import FiD
import Jobs

private func decode(_ json: String) throws -> TrainReaderParams {
    try JSONDecoder().decode(TrainReaderParams.self, from: Data(json.utf8))
}

/// The error's text as the queue reports it (`params.<field>: …`).
private func failure(_ json: String) -> String {
    do {
        let p = try decode(json)
        try p.validate()
        return "no error"
    } catch let e as DecodingError {
        return JobError.describe(e, root: "params").description
    } catch { return "\(error)" }
}

struct TrainReaderParamsTests {
    @Test func fidDefaults() throws {
        let p = try decode(#"{"train_data": "t.json", "model_path": "m"}"#)
        #expect(p.nContext == 1 && p.textMaxlength == 200 && p.answerMaxlength == -1)
        #expect(p.trainer.batchSize == 1 && p.trainer.accumulationSteps == 1)
        #expect(p.trainer.evalFreq == 500 && p.trainer.saveFreq == 5000 && p.trainer.evalPrintFreq == 1000)
        #expect(p.trainer.optim.optim == .adam && p.trainer.optim.scheduler == .fixed && p.trainer.optim.lr == 1e-4)
        #expect(p.trainer.optim.totalSteps == 1000 && p.trainer.optim.warmupSteps == 1000 && p.trainer.optim.clip == 1)
        #expect(p.trainer.seed == 0 && !p.useCheckpoint && p.name == "experiment_name" && p.checkpointDir == nil)
        #expect(p.inputPaths.map(\.field) == ["train_data", "model_path"])
    }

    @Test func everyFiDOptionIsReadAndRoundTrips() throws {
        let json = """
            {"train_data": "t.json", "eval_data": "d.json", "model_config": "c.json", "tokenizer": "spiece.model",
             "n_context": 10, "text_maxlength": 250, "answer_maxlength": 20, "per_gpu_batch_size": 2,
             "accumulation_steps": 4, "lr": 5e-05, "optim": "adamw", "scheduler": "linear", "weight_decay": 0.01,
             "warmup_steps": 100, "total_steps": 15000, "scheduler_steps": 20000, "fixed_lr": true, "clip": 2.5,
             "eval_freq": 50, "save_freq": 70, "eval_print_freq": 10, "use_checkpoint": true, "seed": 3,
             "name": "nq", "checkpoint_dir": "ckpt", "keep_last": 4}
            """
        let p = try decode(json)
        try p.validate()
        #expect(p.nContext == 10 && p.textMaxlength == 250 && p.answerMaxlength == 20)
        #expect(p.trainer.batchSize == 2 && p.trainer.accumulationSteps == 4 && p.trainer.keepLast == 4)
        let o = p.trainer.optim
        #expect(o.optim == .adamw && o.scheduler == .linear && o.lr == 5e-5 && o.weightDecay == 0.01)
        #expect(o.warmupSteps == 100 && o.totalSteps == 15000 && o.schedulerSteps == 20000 && o.fixedLr && o.clip == 2.5)
        #expect(p.trainer.evalFreq == 50 && p.trainer.saveFreq == 70 && p.trainer.evalPrintFreq == 10 && p.trainer.seed == 3)
        #expect(p.useCheckpoint && p.name == "nq" && p.checkpointDir == "ckpt")
        // What encode writes decodes to the same params (the log prints it; fidq run reads it).
        #expect(try JSONDecoder().decode(TrainReaderParams.self, from: JSONEncoder().encode(p)) == p)
    }

    @Test func badValuesNameTheirField() {
        let base = #""train_data": "t.json", "model_path": "m""#
        #expect(failure("{\(base), \"per_gpu_batch_size\": 0}").contains("params.per_gpu_batch_size"))
        #expect(failure("{\(base), \"n_context\": 0}").contains("params.n_context"))
        #expect(failure("{\(base), \"answer_maxlength\": 0}").contains("params.answer_maxlength"))
        #expect(failure("{\(base), \"accumulation_steps\": 0}").contains("params.accumulation_steps"))
        #expect(failure("{\(base), \"optim\": \"sgd\"}").contains("params.optim"))
        #expect(failure("{\(base), \"total_steps\": 0}").contains("params.total_steps"))
        #expect(failure("{\(base), \"lr\": 0}").contains("params.lr"))
        let unknown = failure("{\(base), \"n_contexts\": 3}")
        #expect(unknown.contains("n_contexts") && unknown.contains("did you mean 'n_context'"), "\(unknown)")
        #expect(failure(#"{"model_path": "m"}"#).contains("params.train_data"))
        #expect(failure(#"{"train_data": "t.json"}"#).contains("params.model_path"))
        #expect(failure(#"{"train_data": "t", "model_path": "m", "model_config": "c"}"#).contains("params.model_config"))
        #expect(failure(#"{"train_data": "t", "model_config": "c"}"#).contains("params.tokenizer"))
        // `name` is one folder of checkpoint_dir: `..` exported the run outside it, past the checks.
        for name in ["../../victim/pwned", "a/b", "..", ""] {
            #expect(failure("{\(base), \"checkpoint_dir\": \"ck\", \"name\": \"\(name)\"}").contains("params.name: expected a folder name"), "\(name)")
        }
        let retriever = try? JSONDecoder().decode(TrainRetrieverParams.self, from: Data(#"{"train_data": "t", "model_path": "m", "name": "../x"}"#.utf8))
        #expect(retriever == nil)
    }

    /// At submit, a model folder with a config and no weights (an example world's `reader/`)
    /// hints at `model_config`, which starts from fresh weights of that config.
    @Test func aModelFolderWithoutWeightsHintsAtModelConfig() throws {
        let folder = TestData.scratch("config-only")
        try FileManager.default.copyItem(atPath: ReaderFixture.folder + "/config.json", toPath: folder + "/config.json")
        let p = try decode(#"{"train_data": "t.json", "model_path": "\#(folder)"}"#)
        do {
            try p.validateInputs(resolve: { $0 })
            Issue.record("accepted a folder without weights")
        } catch let e as JobError {
            #expect(e.field == "params.model_path" && e.message.contains("holds no weights")
                    && e.hint?.contains("give model_config: \(folder)/config.json (and tokenizer) instead of model_path") == true, "\(e)")
        }
    }

    /// FiD's README trains with `--model_size base` and no model_path (t5-base from the hub):
    /// refused with a hint naming that model; beside a start it changes nothing and is named so,
    /// as is `no_title`, which FiD defines and never reads.
    @Test func fidsModelSizeAndNoTitle() throws {
        let alone = failure(#"{"train_data": "t.json", "model_size": "large"}"#)
        #expect(alone.hasPrefix("params.model_path: missing") && alone.contains("downloads t5-large") && alone.contains("fetch t5-large"), "\(alone)")
        let p = try decode(#"{"train_data": "t.json", "model_path": "m", "model_size": "base", "no_title": true}"#)
        #expect(p.modelSize == "base" && p.ignored.note("train_reader")
                == "train_reader: FiD options without effect here: no_title (FiD defines it and never reads it); "
                + "model_size (the reader starts from model_path or model_config)")
        #expect(try decode(#"{"train_data": "t.json", "model_path": "m"}"#).ignored.note("train_reader") == nil)
    }

    @Test func fidNoneMeansAbsent() throws {
        let p = try decode(#"{"train_data": "t.json", "model_path": "m", "eval_data": "none"}"#)
        #expect(p.evalData == nil)
    }
}
