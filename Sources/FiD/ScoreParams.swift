// ScoreParams: the params of the `score` job and `fidq score` (FiD's test_reader.py options).
import Formats
import Foundation
import Jobs
import Models
import Tokenizers

/// What `score` reads and how: FiD's `test_reader.py` options (fid-spec §1.1, §1.3), plus
/// `tokenizer`, `num_beams` and the sharding of `embed` (`shard_id`, `num_shards`).
public struct ScoreParams: JobParams, Equatable {
    /// Only how often it logs; the batches it resumes are the same.
    public static var resumableChanges: Set<String> { ["eval_print_freq"] }
    /// The reader: a Hugging Face or FiD T5 folder (`config.json` + weights, usually a tokenizer).
    public var modelPath: String
    /// FiD data (JSON list or JSON Lines) with `question`, `answers` and `ctxs`.
    public var evalData: String
    /// A tokenizer file or folder, for model folders without one (FiD's released readers).
    public var tokenizer: String?
    /// P: passages read per question.
    public var nContext = 1
    /// B: questions per batch.
    public var perGpuBatchSize = 1
    /// L: tokens per passage.
    public var textMaxlength = 200
    /// Accepted for FiD's command lines; generation stops at FiD's `max_length` of 50 (with the start token).
    public var answerMaxlength = -1
    /// Also write `final_output.txt` (`id<TAB>answer` per question), as FiD's `--write_results`.
    public var writeResults = false
    /// Also write `dataset_wscores.json`: the data with each read passage's `score` set to the
    /// reader's cross-attention score (the input of `train_retriever`).
    public var writeCrossattentionScores = false
    /// 1: greedy decoding (FiD's); more: beam search.
    public var numBeams = 1
    /// This job scores examples `k` with `k % num_shards == shard_id`.
    public var shardId = 0
    public var numShards = 1
    /// A log line every this many batches.
    public var evalPrintFreq = 1000
    /// FiD's run name: with `checkpoint_dir`, the outputs are also copied to `checkpoint_dir/name/`.
    public var name = "experiment_name"
    /// FiD's `checkpoint_dir`: `final_output.txt` and `dataset_wscores.json` also go to
    /// `checkpoint_dir/name/`, where FiD's test_reader.py writes them.
    public var checkpointDir: String?
    /// FiD's test_reader.py options that change nothing (it ignores them too).
    public var ignored = FiDIgnoredOptions()

    /// Tokens per answer, the start token included (FiD's `generate(max_length=50)`).
    public static let maxLength = 50

    enum CodingKeys: String, CodingKey, CaseIterable {
        case modelPath = "model_path", evalData = "eval_data", tokenizer
        case nContext = "n_context", perGpuBatchSize = "per_gpu_batch_size", textMaxlength = "text_maxlength"
        case answerMaxlength = "answer_maxlength", writeResults = "write_results"
        case writeCrossattentionScores = "write_crossattention_scores", numBeams = "num_beams"
        case shardId = "shard_id", numShards = "num_shards", evalPrintFreq = "eval_print_freq"
        case name, checkpointDir = "checkpoint_dir"
        case useCheckpoint = "use_checkpoint", modelSize = "model_size", seed, noTitle = "no_title"
        case maxload, localRank = "local_rank", mainPort = "main_port"
        case trainData = "train_data", evalFreq = "eval_freq", saveFreq = "save_freq"
    }

    public init(modelPath: String, evalData: String) {
        self.modelPath = modelPath
        self.evalData = evalData
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        modelPath = try c.require(try c.decode(String.self, forKey: .modelPath), .modelPath, "a model folder") { !$0.isEmpty }
        evalData = try c.require(try c.decode(String.self, forKey: .evalData), .evalData, "a FiD data file") { !$0.isEmpty }
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        nContext = try c.require(try c.decode(.nContext, default: 1), .nContext, "an integer >= 1 (passages per question)") { $0 >= 1 }
        perGpuBatchSize = try c.require(try c.decode(.perGpuBatchSize, default: 1), .perGpuBatchSize,
                                        "an integer >= 1 (questions per batch)") { $0 >= 1 }
        textMaxlength = try c.require(try c.decode(.textMaxlength, default: 200), .textMaxlength,
                                      "an integer >= 1 (tokens per passage)") { $0 >= 1 }
        answerMaxlength = try c.require(try c.decode(.answerMaxlength, default: -1), .answerMaxlength, "-1 or an integer >= 1") {
            $0 == -1 || $0 >= 1
        }
        writeResults = try c.decode(.writeResults, default: false)
        writeCrossattentionScores = try c.decode(.writeCrossattentionScores, default: false)
        numBeams = try c.require(try c.decode(.numBeams, default: 1), .numBeams, "an integer >= 1 (1: greedy)") { $0 >= 1 }
        numShards = try c.require(try c.decode(.numShards, default: 1), .numShards, "an integer >= 1") { $0 >= 1 }
        shardId = try c.require(try c.decode(.shardId, default: 0), .shardId, "an integer in 0..<num_shards (\(numShards))") {
            $0 >= 0 && $0 < numShards
        }
        evalPrintFreq = try c.require(try c.decode(.evalPrintFreq, default: 1000), .evalPrintFreq, "an integer >= 1") { $0 >= 1 }
        name = try FiDLayout.runName(c, .name)
        checkpointDir = try c.decodeIfPresent(String.self, forKey: .checkpointDir)
        if checkpointDir != nil && numShards > 1 {
            throw DecodingError.dataCorrupted(.init(
                codingPath: c.codingPath + [CodingKeys.checkpointDir],
                debugDescription: "one folder for \(numShards) shards: each would write checkpoint_dir/name/final_output.txt "
                    + "(hint: give checkpoint_dir and name to the merge job of the shards, or score without shards)"))
        }
        ignored = FiDIgnoredOptions(c, [
            (.useCheckpoint, "checkpointing saves memory in training only"), (.modelSize, "the reader is model_path"),
            (.seed, "scoring draws nothing at random"), (.noTitle, "FiD defines it and never reads it"),
            (.trainData, "test_reader.py reads eval_data only"), (.evalFreq, "test_reader.py trains nothing"),
            (.saveFreq, "test_reader.py trains nothing"),
        ] + FiDIgnoredOptions.base(.maxload, .localRank, .mainPort))
    }

    /// The params as a descriptor carries them (the options without effect left out).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelPath, forKey: .modelPath)
        try c.encode(evalData, forKey: .evalData)
        try c.encodeIfPresent(tokenizer, forKey: .tokenizer)
        try c.encode(nContext, forKey: .nContext)
        try c.encode(perGpuBatchSize, forKey: .perGpuBatchSize)
        try c.encode(textMaxlength, forKey: .textMaxlength)
        try c.encode(answerMaxlength, forKey: .answerMaxlength)
        try c.encode(writeResults, forKey: .writeResults)
        try c.encode(writeCrossattentionScores, forKey: .writeCrossattentionScores)
        try c.encode(numBeams, forKey: .numBeams)
        try c.encode(shardId, forKey: .shardId)
        try c.encode(numShards, forKey: .numShards)
        try c.encode(evalPrintFreq, forKey: .evalPrintFreq)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(checkpointDir, forKey: .checkpointDir)
    }

    public var outputPaths: [(field: String, path: String)] {
        // The run folder itself, links followed: a `name` linking elsewhere is refused at submit.
        checkpointDir.map { [("checkpoint_dir", $0 + "/" + name)] } ?? []
    }
    /// FiD's layout: runs of other names share a `checkpoint_dir`.
    public var exclusiveOutputs: [(field: String, path: String)] {
        checkpointDir.map { [("checkpoint_dir", $0 + "/" + name)] } ?? []
    }

    public var inputPaths: [(field: String, path: String)] {
        [("model_path", modelPath), ("eval_data", evalData)] + (tokenizer.map { [("tokenizer", $0)] } ?? [])
    }

    /// Refuses, before any work: a model folder without `config.json` or weights, and a data file
    /// whose first example is not FiD data. Questions without `answers` are answered, and exact
    /// match is taken over those that have them (none: `exact_match` is null).
    public func validateInputs(resolve: (String) -> String) throws {
        try ScoreParams.checkModelFolder(resolve(modelPath), field: "params.model_path")
        try ScoreParams.checkFirstExample(resolve(evalData), field: "params.eval_data", needAnswers: false)
    }

    /// The weight files `T5Model.load(folder:)` reads, any one of which makes a model folder.
    static let weightFiles = T5Model.weightFileNames

    /// A model's load error as a job error on the param it comes from: `tokenizer` when a
    /// tokenizer was given and the failing file is not in the model folder (or the tokenizer
    /// file cannot be read), else `model_path`.
    static func loadError(_ error: Error, folder: String, tokenizer: String?, prefix: String = "") -> JobError {
        if let e = error as? ModelLoadError {
            let inFolder = e.path == folder || e.path.hasPrefix(folder + "/")
            return JobError.permanent(prefix + e.description, field: tokenizer != nil && !inFolder ? "params.tokenizer" : "params.model_path")
        }
        if let e = error as? JobError { return e }
        if let e = error as? TokenizerError {
            return JobError.permanent(prefix + e.description, field: tokenizer != nil ? "params.tokenizer" : "params.model_path")
        }
        return JobError.permanent(prefix + "\(error)", field: "params.model_path")
    }

    /// At submit: `folder` holds config.json and weights. For a training job (`training`), a
    /// folder with a config and no weights (an `example` world's `reader/`, a config copied alone)
    /// hints at `model_config`, which starts from fresh weights of that config.
    static func checkModelFolder(_ folder: String, field: String, architecture: String = "T5", training: Bool = false,
                                 parseConfig: (String) throws -> Void = { _ = try T5Config.load(path: $0) }) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw JobError.permanent("\(folder) is not a folder", field: field, hint: "a model folder with config.json and model.safetensors")
        }
        guard fm.fileExists(atPath: folder + "/config.json") else {
            throw JobError.permanent("\(folder) holds no config.json", field: field, hint: "a Hugging Face or FiD \(architecture) folder")
        }
        // The config first (a few hundred bytes): a folder of the other architecture is named as such.
        do { try parseConfig(folder + "/config.json") } catch let e as JobError { throw e } catch {
            throw JobError.permanent("\(error)", field: field)
        }
        guard weightFiles.contains(where: { fm.fileExists(atPath: folder + "/" + $0) }) else {
            throw JobError.permanent("\(folder) holds no weights (\(weightFiles.joined(separator: ", ")))", field: field,
                                     hint: training ? noWeightsTrainingHint(folder)
                                         : "an unfinished download or training run? point at a folder with its weights")
        }
    }

    /// The hint for a training job whose `model_path` has a config but no weights.
    static func noWeightsTrainingHint(_ folder: String) -> String {
        "to train from fresh weights of this config, give model_config: \(folder)/config.json (and tokenizer) instead of model_path; "
            + "to start from trained weights, point at a folder that holds them"
    }

    static func checkFirstExample(_ path: String, field: String, needAnswers: Bool, passages: FiDExample.Passages = .titleAndText) throws {
        do {
            var data = FiDData(path: path)
            data.passages = passages
            guard let first = try data.first() else { return }
            if needAnswers && first.answers.isEmpty {
                throw JobError.permanent("\(path): example \(first.idText) (the first) has no answers", field: field,
                                         hint: "exact match during training needs each dev example's answers")
            }
        } catch let e as FormatError {
            throw JobError.permanent(e.description, field: field, hint: e.hint == nil ? "FiD data: a JSON list or JSON Lines of {question, answers, ctxs}" : nil)
        }
    }
}
