// TrainRetrieverParams: the `train_retriever` job's params and `fidq train-retriever`'s flags, under
// FiD's option names (fid-spec §1.1, §1.4, §5.6), decoded strictly.
import Foundation
import Jobs
import Models
import Tensor

/// Options of FiD's `train_retriever.py` that fidq runs, plus `temperature` and `reduction`.
/// Keys are FiD's; every field but `train_data` and one of `model_path` / `model_config` has
/// FiD's default.
public struct TrainRetrieverParams: FiDTrainingParams, Equatable {
    public static var resumableChanges: Set<String> { trainerResumableChanges }
    public static var defaultNotes: [String: String] {
        [
            "dropout": "0.1 (FiD's) on a model_config start; a model_path start keeps its config's",
            "indexing_dimension": "768 (FiD's); with no_projection the model's hidden size",
            "question_maxlength": "40 (FiD's), lowered to a smaller max_position_embeddings",
            "passage_maxlength": "200 (FiD's), lowered to a smaller max_position_embeddings",
        ]
    }
    /// FiD JSON or JSONL examples whose passages carry the reader's `score` (`dataset_wscores.json`).
    public var trainData: String
    /// Examples evaluated every `eval_freq` (nil: no evaluation).
    public var evalData: String?
    /// A FiD retriever folder or any BERT folder (MiniLM) to start from.
    public var modelPath: String?
    /// A BERT `config.json` to start from scratch with random weights (needs `tokenizer`).
    public var modelConfig: String?
    /// A `tokenizer.json`, `vocab.txt` or a folder holding one, when the model folder has none.
    public var tokenizer: String?
    public var nContext = 1
    public var questionMaxlength = Self.defaultQuestionMaxlength
    public var passageMaxlength = Self.defaultPassageMaxlength
    /// FiD's defaults (lowered to a smaller model's position table, `fittingLengths`).
    static let defaultQuestionMaxlength = 40, defaultPassageMaxlength = 200
    /// The projection width (a fresh projection is created when the start model has none and
    /// `no_projection` is off).
    public var indexingDimension = 768
    /// `indexing_dimension` was given (with `no_projection` it must then equal the model's width,
    /// as FiD asserts; left out it follows the model).
    public var indexingDimensionGiven = false
    public var noProjection = false
    public var noQuestionMask = false
    public var noPassageMask = false
    public var extractCLS = false
    /// FiD's `--dropout`, set on every dropout of the model (hidden and attention). Left out: 0.1
    /// (FiD's default) on a `model_config` start, while a `model_path` start keeps its config's
    /// rates, as FiD's train_retriever.py calls `set_dropout` on a fresh model only.
    public var dropout: Float?
    /// FiD's default.
    static let defaultDropout: Float = 0.1
    /// Divides the reader scores before their softmax (FiD: 1).
    public var temperature: Float = 1
    /// `mean` (FiD's element-wise KLDivLoss default) or `batchmean`.
    public var reduction: KLReduction = .mean
    /// fidq's addition (FiD-KD has none): each question's KL also covers the batch's other
    /// passages, as target probability 0 (see `BertRetriever.inBatchNegatives`).
    public var inBatchNegatives = false
    public var trainer = TrainerConfig()
    public var name = "experiment_name"
    /// When set, the final and best models are also exported to `checkpoint_dir/name/checkpoint/`
    /// (FiD's layout), as `train_reader` does.
    public var checkpointDir: String?
    /// FiD's train_retriever.py options that change nothing.
    public var ignored = FiDIgnoredOptions()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tokenizer, name, lr, optim, scheduler, clip, seed, dropout, temperature, reduction
        case trainData = "train_data", evalData = "eval_data", modelPath = "model_path", modelConfig = "model_config"
        case nContext = "n_context", questionMaxlength = "question_maxlength", passageMaxlength = "passage_maxlength"
        case indexingDimension = "indexing_dimension", noProjection = "no_projection", noQuestionMask = "no_question_mask"
        case noPassageMask = "no_passage_mask", extractCLS = "extract_cls", inBatchNegatives = "in_batch_negatives"
        case perGpuBatchSize = "per_gpu_batch_size", accumulationSteps = "accumulation_steps"
        case weightDecay = "weight_decay", warmupSteps = "warmup_steps", totalSteps = "total_steps"
        case schedulerSteps = "scheduler_steps", fixedLr = "fixed_lr"
        case evalFreq = "eval_freq", saveFreq = "save_freq", evalPrintFreq = "eval_print_freq", keepLast = "keep_last"
        case checkpointDir = "checkpoint_dir", noTitle = "no_title"
        case maxload, localRank = "local_rank", mainPort = "main_port"
    }

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
        // At least [CLS] and [SEP], as embed and retrieve require: at 1 every row is [CLS] alone.
        func tokens(_ key: CodingKeys, _ fallback: Int) throws -> Int {
            try c.require(try c.decode(key, default: fallback), key, "an integer >= 2 (CLS and SEP)") { $0 >= 2 }
        }
        questionMaxlength = try tokens(.questionMaxlength, Self.defaultQuestionMaxlength)
        passageMaxlength = try tokens(.passageMaxlength, Self.defaultPassageMaxlength)
        indexingDimension = try positive(.indexingDimension, 768)
        indexingDimensionGiven = c.contains(.indexingDimension)
        noProjection = try c.decode(.noProjection, default: false)
        noQuestionMask = try c.decode(.noQuestionMask, default: false)
        noPassageMask = try c.decode(.noPassageMask, default: false)
        extractCLS = try c.decode(.extractCLS, default: false)
        if c.contains(.dropout) {
            dropout = try c.require(try c.decode(.dropout, default: Self.defaultDropout), .dropout, "a number in [0, 1)") { $0 >= 0 && $0 < 1 }
        }
        temperature = try c.require(try c.decode(.temperature, default: Float(1)), .temperature, "a number > 0") { $0 > 0 && $0.isFinite }
        let r = try c.decode(.reduction, default: "mean")
        // Checked as the string given: the Optional printed "found nil".
        reduction = try KLReduction(rawValue: c.require(r, .reduction, "\"mean\" (FiD's) or \"batchmean\"") { KLReduction(rawValue: $0) != nil })!
        inBatchNegatives = try c.decode(.inBatchNegatives, default: false)
        trainer = try TrainerConfig(fidOptionsFrom: decoder)
        ignored = FiDIgnoredOptions(c, [(.noTitle, "FiD defines it and never reads it")] + FiDIgnoredOptions.base(.maxload, .localRank, .mainPort))
    }

    public func encode(to encoder: Encoder) throws {
        try FiDTrainingStart.encode(self, to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nContext, forKey: .nContext)
        try c.encode(questionMaxlength, forKey: .questionMaxlength)
        try c.encode(passageMaxlength, forKey: .passageMaxlength)
        // Only as given: decoded again, a written default would read as given (see checkHead).
        if indexingDimensionGiven { try c.encode(indexingDimension, forKey: .indexingDimension) }
        try c.encode(noProjection, forKey: .noProjection)
        try c.encode(noQuestionMask, forKey: .noQuestionMask)
        try c.encode(noPassageMask, forKey: .noPassageMask)
        try c.encode(extractCLS, forKey: .extractCLS)
        try c.encodeIfPresent(dropout, forKey: .dropout)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(reduction.rawValue, forKey: .reduction)
        try c.encode(inBatchNegatives, forKey: .inBatchNegatives)
        try trainer.encodeFiDOptions(to: encoder)
    }

    /// Exactly one starting point; a fresh model needs a tokenizer.
    public func validate() throws {
        try validateStart(
            missing: "model_path (a FiD retriever or BERT folder) or model_config (a BERT config.json)",
            hint: "FiD's train_retriever.py starts from bert-base-uncased; fidq needs the folder itself",
            tokenizerHint: "a vocab.txt or tokenizer.json whose ids fit the config's vocab_size", lr: trainer.optim.lr)
    }

    /// At submit, once the files exist: the model folder holds a BERT config.json and weights
    /// (or `model_config` parses as one), and the first example of each data file is FiD data
    /// with a question. Scores and passage counts are checked when the job loads the data.
    public func validateInputs(resolve: (String) -> String) throws {
        if let modelPath {
            try ScoreParams.checkModelFolder(resolve(modelPath), field: "params.model_path", architecture: "BERT", training: true) {
                let config = try BertConfig.load(path: $0)
                _ = try fittingLengths(config, configFile: $0)
                try checkHead(config, configFile: $0)
            }
        }
        if let modelConfig {
            let config: BertConfig
            do { config = try BertConfig.load(path: resolve(modelConfig)) } catch {
                throw JobError.permanent("\(error)", field: "params.model_config")
            }
            _ = try fittingLengths(config, configFile: resolve(modelConfig))
            try checkHead(config, configFile: resolve(modelConfig))
        }
        try ScoreParams.checkFirstExample(resolve(trainData), field: "params.train_data", needAnswers: false)
        if let evalData { try ScoreParams.checkFirstExample(resolve(evalData), field: "params.eval_data", needAnswers: false) }
    }
}
