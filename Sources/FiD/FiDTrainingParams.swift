// FiDTrainingParams: what train_reader's and train_retriever's params share under FiD's names: the
// data, the starting point, the run's name and export folder, and the paths they declare.
import Jobs

/// The part of a training kind's params that both kinds read alike. Each kind still decodes its
/// whole object strictly (its `CodingKeys` list these keys too); `FiDTrainingStart` reads them.
public protocol FiDTrainingParams: JobParams {
    /// FiD JSON or JSONL training examples.
    var trainData: String { get }
    /// Dev examples (nil: no evaluation).
    var evalData: String? { get }
    /// The model folder to start from.
    var modelPath: String? { get }
    /// A `config.json` to start from scratch with random weights.
    var modelConfig: String? { get }
    /// The tokenizer when the model folder has none (and always with `model_config`).
    var tokenizer: String? { get }
    /// FiD's run name.
    var name: String { get }
    /// FiD's export folder (`checkpoint_dir/name`).
    var checkpointDir: String? { get }
}

/// Reads and writes the shared keys beside a kind's own strict container.
enum FiDTrainingStart {
    enum Keys: String, CodingKey {
        case trainData = "train_data", evalData = "eval_data", modelPath = "model_path", modelConfig = "model_config"
        case tokenizer, name, checkpointDir = "checkpoint_dir"
    }

    struct Values {
        var trainData: String
        var evalData: String?
        var modelPath: String?
        var modelConfig: String?
        var tokenizer: String?
        var name: String
        var checkpointDir: String?
    }

    static func decode(from decoder: Decoder) throws -> Values {
        let c = try decoder.container(keyedBy: Keys.self)
        var v = Values(
            trainData: try c.decode(String.self, forKey: .trainData),
            evalData: try c.decodeIfPresent(String.self, forKey: .evalData),
            modelPath: try c.decodeIfPresent(String.self, forKey: .modelPath),
            modelConfig: try c.decodeIfPresent(String.self, forKey: .modelConfig),
            tokenizer: try c.decodeIfPresent(String.self, forKey: .tokenizer),
            name: try FiDLayout.runName(c, .name),
            checkpointDir: try c.decodeIfPresent(String.self, forKey: .checkpointDir))
        // FiD passes the string "none" for an absent path.
        if v.evalData == "none" { v.evalData = nil }
        if v.modelPath == "none" { v.modelPath = nil }
        return v
    }

    static func encode(_ p: some FiDTrainingParams, to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(p.trainData, forKey: .trainData)
        try c.encodeIfPresent(p.evalData, forKey: .evalData)
        try c.encodeIfPresent(p.modelPath, forKey: .modelPath)
        try c.encodeIfPresent(p.modelConfig, forKey: .modelConfig)
        try c.encodeIfPresent(p.tokenizer, forKey: .tokenizer)
        try c.encode(p.name, forKey: .name)
        try c.encodeIfPresent(p.checkpointDir, forKey: .checkpointDir)
    }
}

extension FiDTrainingParams {
    /// Exactly one starting point, a tokenizer for a fresh model, and lr > 0; `missing` and
    /// `hint` say what the kind starts from, `tokenizerHint` which tokenizers fit it.
    func validateStart(missing: String, hint: String, tokenizerHint: String, lr: Double) throws {
        switch (modelPath, modelConfig) {
        case (nil, nil):
            throw JobError.permanent("missing: give \(missing)", field: "params.model_path", hint: hint)
        case (.some, .some):
            throw JobError.permanent("give model_path or model_config, not both", field: "params.model_config")
        case (nil, .some) where tokenizer == nil:
            throw JobError.permanent("a model from model_config needs the tokenizer param", field: "params.tokenizer", hint: tokenizerHint)
        default: break
        }
        if !(lr > 0) { throw JobError.permanent("expected lr > 0, found \(lr)", field: "params.lr") }
    }

    public var inputPaths: [(field: String, path: String)] {
        var p: [(String, String)] = [("train_data", trainData)]
        if let evalData { p.append(("eval_data", evalData)) }
        if let modelPath { p.append(("model_path", modelPath)) }
        if let modelConfig { p.append(("model_config", modelConfig)) }
        if let tokenizer { p.append(("tokenizer", tokenizer)) }
        return p
    }

    public var outputPaths: [(field: String, path: String)] {
        // The run folder itself, links followed: a `name` linking elsewhere is refused at submit.
        checkpointDir.map { [("checkpoint_dir", $0 + "/" + name)] } ?? []
    }

    /// FiD's layout: runs of other names share a `checkpoint_dir`.
    public var exclusiveOutputs: [(field: String, path: String)] { outputPaths }
}
