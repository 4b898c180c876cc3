// TrainReaderParams: the `train_reader` job's params and `fidq train-reader`'s flags, under FiD's
// option names (fid-spec §1.1, §1.2), decoded strictly.
import Foundation
import Jobs
import Models
import Tensor

/// Options of FiD's `train_reader.py` that fidq runs. Keys are FiD's; every field but
/// `train_data` and one of `model_path` / `model_config` has FiD's default.
public struct TrainReaderParams: FiDTrainingParams, Equatable {
    public static var resumableChanges: Set<String> { trainerResumableChanges }
    /// FiD JSON or JSONL training examples.
    public var trainData: String
    /// Dev examples for exact match every `eval_freq` (nil: no evaluation).
    public var evalData: String?
    /// A Hugging Face or FiD T5 folder to start from.
    public var modelPath: String?
    /// A `config.json` (Hugging Face T5 names) to start from scratch with random weights.
    public var modelConfig: String?
    /// A `tokenizer.json`, `spiece.model` or a folder holding one, when the model folder has none
    /// (and always with `model_config`).
    public var tokenizer: String?
    /// Passages per question.
    public var nContext = 1
    /// Tokens per passage (question and title included), truncated and padded.
    public var textMaxlength = 200
    /// Target tokens (with `</s>`), truncated and padded; -1 = no truncation, padded to the batch's longest.
    public var answerMaxlength = -1
    /// The loop: batch, accumulation, frequencies, seed, optimizer and schedule.
    public var trainer = TrainerConfig()
    /// FiD's activation checkpointing of the encoder (same gradients, less memory).
    public var useCheckpoint = false
    /// FiD's run name: log lines and the export folder `checkpoint_dir/name`.
    public var name = "experiment_name"
    /// When set, the final and best models are also exported to `checkpoint_dir/name/checkpoint/`
    /// (FiD's layout); the job's own checkpoints always live in its `out/checkpoint/`.
    public var checkpointDir: String?
    /// FiD's `model_size` (t5-<size> from the Hugging Face hub when there is no model_path): fidq
    /// reads a folder, so it only shapes the hint when neither start is given.
    public var modelSize: String?
    /// FiD's train_reader.py options that change nothing.
    public var ignored = FiDIgnoredOptions()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tokenizer, name, lr, optim, scheduler, clip, seed
        case trainData = "train_data", evalData = "eval_data", modelPath = "model_path", modelConfig = "model_config"
        case nContext = "n_context", textMaxlength = "text_maxlength", answerMaxlength = "answer_maxlength"
        case perGpuBatchSize = "per_gpu_batch_size", accumulationSteps = "accumulation_steps"
        case weightDecay = "weight_decay", warmupSteps = "warmup_steps", totalSteps = "total_steps"
        case schedulerSteps = "scheduler_steps", fixedLr = "fixed_lr"
        case evalFreq = "eval_freq", saveFreq = "save_freq", evalPrintFreq = "eval_print_freq"
        case useCheckpoint = "use_checkpoint", checkpointDir = "checkpoint_dir", keepLast = "keep_last"
        case modelSize = "model_size", noTitle = "no_title", dropout
        case maxload, localRank = "local_rank", mainPort = "main_port"
    }

    /// Params with `train_data` and FiD's defaults (set `model_path` or `model_config` next).
    public init(trainData: String) { self.trainData = trainData }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let start = try FiDTrainingStart.decode(from: decoder)
        (trainData, evalData, modelPath, modelConfig, tokenizer) = (start.trainData, start.evalData, start.modelPath, start.modelConfig, start.tokenizer)
        (name, checkpointDir) = (start.name, start.checkpointDir)
        func positive(_ key: CodingKeys, _ fallback: Int) throws -> Int {
            try c.require(try c.decode(key, default: fallback), key, "an integer >= 1") { $0 >= 1 }
        }
        nContext = try positive(.nContext, 1)
        textMaxlength = try positive(.textMaxlength, 200)
        answerMaxlength = try c.require(try c.decode(.answerMaxlength, default: -1), .answerMaxlength,
                                        "-1 (no truncation) or an integer >= 1") { $0 == -1 || $0 >= 1 }
        trainer = try TrainerConfig(fidOptionsFrom: decoder)
        useCheckpoint = try c.decode(.useCheckpoint, default: false)
        modelSize = try c.decodeIfPresent(String.self, forKey: .modelSize)
        ignored = FiDIgnoredOptions(c, [
            (.noTitle, "FiD defines it and never reads it"),
            (.dropout, "train_reader.py never reads it: the model's dropout_rate (its config.json) applies"),
        ] + FiDIgnoredOptions.base(.maxload, .localRank, .mainPort)
            + (modelPath != nil || modelConfig != nil ? [(.modelSize, "the reader starts from model_path or model_config")] : []))
    }

    public func encode(to encoder: Encoder) throws {
        try FiDTrainingStart.encode(self, to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nContext, forKey: .nContext)
        try c.encode(textMaxlength, forKey: .textMaxlength)
        try c.encode(answerMaxlength, forKey: .answerMaxlength)
        try c.encode(useCheckpoint, forKey: .useCheckpoint)
        try trainer.encodeFiDOptions(to: encoder)
    }

    /// Exactly one starting point; a fresh model needs a tokenizer.
    public func validate() throws {
        try validateStart(
            missing: "model_path (a T5 folder) or model_config (a config.json)",
            hint: "FiD's train_reader.py downloads t5-\(modelSize ?? "<model_size>") from the Hugging Face hub; "
                + "fidq reads the folder itself: fetch t5-\(modelSize ?? "base")'s config.json, model.safetensors "
                + "and tokenizer.json into a folder and give it as model_path",
            tokenizerHint: "a tokenizer.json or spiece.model whose ids fit the config's vocab_size", lr: trainer.optim.lr)
    }

    /// At submit, once the files exist: the model folder holds config.json and weights (or the
    /// config parses), and the first example of each data file is FiD data with a question (and,
    /// for `eval_data`, answers). Later examples are checked when the job loads them.
    public func validateInputs(resolve: (String) -> String) throws {
        if let modelPath { try ScoreParams.checkModelFolder(resolve(modelPath), field: "params.model_path", training: true) }
        if let modelConfig {
            do { _ = try T5Config.load(path: resolve(modelConfig)) } catch {
                throw JobError.permanent("\(error)", field: "params.model_config")
            }
        }
        try ScoreParams.checkFirstExample(resolve(trainData), field: "params.train_data", needAnswers: false)
        if let evalData { try ScoreParams.checkFirstExample(resolve(evalData), field: "params.eval_data", needAnswers: true) }
    }
}
