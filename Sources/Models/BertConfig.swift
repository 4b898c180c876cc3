// BertConfig: a BERT encoder's hyperparameters from Hugging Face's config.json, FiD's retriever head
// settings (its RetrieverConfig fields), and the parameter layout under Hugging Face's names.
import Foundation
import Tensor

/// A BERT encoder and FiD's retriever head (fid-spec §5.1), under Hugging Face's and FiD's names.
///
/// Two kinds of folders hold one: FiD's saved retrievers (`RetrieverConfig`: the BERT fields plus
/// `indexing_dimension`, `projection`, `apply_question_mask`, `apply_passage_mask`, `extract_cls`,
/// `passage_maxlength`, `question_maxlength`; missing ones take FiD's defaults), and plain BERT
/// folders such as all-MiniLM-L6-v2, which carry none of them: those read as FiD's released
/// retrievers are used (no projection, masks applied, masked mean pooling), as Pyserini does.
public struct BertConfig: Codable, Equatable, Sendable {
    public var vocabSize = 30522
    public var hiddenSize = 768
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var intermediateSize = 3072
    /// `gelu` (exact, erf) or `gelu_new` / `gelu_pytorch_tanh` (the tanh form).
    public var hiddenAct = "gelu"
    public var hiddenDropoutProb: Float = 0.1
    public var attentionProbsDropoutProb: Float = 0.1
    public var maxPositionEmbeddings = 512
    public var typeVocabSize = 2
    public var initializerRange: Float = 0.02
    public var layerNormEps: Float = 1e-12
    public var padTokenId = 0

    // FiD's RetrieverConfig (src/model.py); the defaults are FiD's.
    /// E: the projection's output width (the embedding width when `projection`).
    public var indexingDimension = 768
    /// Linear(D → E) then LayerNorm(E, eps 1e-5) on every token before pooling.
    public var projection = true
    /// Questions attend with their padding mask (and pool over real tokens only).
    public var applyQuestionMask = false
    /// Passages attend with their padding mask (and pool over real tokens only).
    public var applyPassageMask = false
    /// Pool by the [CLS] state instead of the (masked) mean.
    public var extractCLS = false
    public var passageMaxlength = 200
    public var questionMaxlength = 40

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size", hiddenAct = "hidden_act"
        case hiddenDropoutProb = "hidden_dropout_prob", attentionProbsDropoutProb = "attention_probs_dropout_prob"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case initializerRange = "initializer_range", layerNormEps = "layer_norm_eps", padTokenId = "pad_token_id"
        case indexingDimension = "indexing_dimension", projection, applyQuestionMask = "apply_question_mask"
        case applyPassageMask = "apply_passage_mask", extractCLS = "extract_cls", passageMaxlength = "passage_maxlength"
        case questionMaxlength = "question_maxlength"
    }

    /// The retriever keys; a config.json with none of them is a plain BERT.
    static let retrieverKeys: [CodingKeys] = [
        .indexingDimension, .projection, .applyQuestionMask, .applyPassageMask, .extractCLS, .passageMaxlength, .questionMaxlength,
    ]

    public init() {}

    /// A config with the given sizes (tests, benchmarks, fresh small models).
    public init(vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, maxPositions: Int = 512,
                projection: Bool = false, indexingDimension: Int? = nil, applyMask: Bool = true, extractCLS: Bool = false) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        numHiddenLayers = layers
        numAttentionHeads = heads
        self.intermediateSize = intermediateSize
        maxPositionEmbeddings = maxPositions
        self.projection = projection
        self.indexingDimension = indexingDimension ?? hiddenSize
        applyQuestionMask = applyMask
        applyPassageMask = applyMask
        self.extractCLS = extractCLS
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        let d = BertConfig()
        vocabSize = try get(.vocabSize, d.vocabSize)
        hiddenSize = try get(.hiddenSize, d.hiddenSize)
        numHiddenLayers = try get(.numHiddenLayers, d.numHiddenLayers)
        numAttentionHeads = try get(.numAttentionHeads, d.numAttentionHeads)
        intermediateSize = try get(.intermediateSize, d.intermediateSize)
        hiddenAct = try get(.hiddenAct, d.hiddenAct)
        hiddenDropoutProb = try get(.hiddenDropoutProb, d.hiddenDropoutProb)
        attentionProbsDropoutProb = try get(.attentionProbsDropoutProb, d.attentionProbsDropoutProb)
        maxPositionEmbeddings = try get(.maxPositionEmbeddings, d.maxPositionEmbeddings)
        typeVocabSize = try get(.typeVocabSize, d.typeVocabSize)
        initializerRange = try get(.initializerRange, d.initializerRange)
        layerNormEps = try get(.layerNormEps, d.layerNormEps)
        padTokenId = try get(.padTokenId, d.padTokenId)
        if Self.retrieverKeys.contains(where: c.contains) {
            indexingDimension = try get(.indexingDimension, d.indexingDimension)
            projection = try get(.projection, d.projection)
            applyQuestionMask = try get(.applyQuestionMask, d.applyQuestionMask)
            applyPassageMask = try get(.applyPassageMask, d.applyPassageMask)
            extractCLS = try get(.extractCLS, d.extractCLS)
            passageMaxlength = try get(.passageMaxlength, d.passageMaxlength)
            questionMaxlength = try get(.questionMaxlength, d.questionMaxlength)
        } else {
            // A plain BERT: used as FiD's released retrievers are (Pyserini's port).
            indexingDimension = hiddenSize
            projection = false
            applyQuestionMask = true
            applyPassageMask = true
        }
    }

    /// D: the encoder width.
    public var D: Int { hiddenSize }
    /// E: the width of an embedding (the projection's, or D).
    public var embeddingWidth: Int { projection ? indexingDimension : hiddenSize }
    /// Dh: one head's width.
    public var headDim: Int { hiddenSize / numAttentionHeads }

    /// The GELU form `hidden_act` names.
    public var gelu: GELU.Approximation { hiddenAct == "gelu" ? .none : .tanh }

    static let activations = ["gelu", "gelu_new", "gelu_pytorch_tanh"]

    /// Reads `config.json`, refusing other architectures and unsupported variants by field.
    /// - Throws: `ModelLoadError` naming the file and the field.
    public static func load(path: String) throws -> BertConfig {
        let (data, json) = try ModelFolder.readJSONObject(path, what: "model config", hint: "a Hugging Face BERT or FiD retriever folder has config.json next to its weights (as save_pretrained writes it)")
        try ModelFolder.requireConfigFields(json, anyOf: ["model_type", "architectures", "hidden_size"], path: path, model: "BERT")
        if let type = json["model_type"] as? String, type != "bert" {
            throw ModelLoadError(path: path, "field model_type is '\(type)', expected 'bert'",
                                 hint: "fidq's retriever is a BERT encoder (FiD's Retriever, or a BertModel such as MiniLM)")
        }
        if let archs = json["architectures"] as? [String],
            let bad = archs.first(where: { !($0.hasPrefix("Bert") || $0 == "Retriever") })
        {
            throw ModelLoadError(path: path, "field architectures lists '\(bad)', expected BertModel or Retriever",
                                 hint: "fidq's retriever is a BERT encoder")
        }
        if let kind = json["position_embedding_type"] as? String, kind != "absolute" {
            throw ModelLoadError(path: path, "field position_embedding_type is '\(kind)', expected 'absolute'")
        }
        let config = try ModelFolder.decodeConfig(BertConfig.self, from: data, path: path)
        try config.validate(path: path)
        return config
    }

    /// Checks the sizes and settings the model code relies on, and that the parameters fit in `available` bytes.
    public func validate(path: String = "config", available: Int = AvailableMemory.bytes) throws {
        let checks: [(String, Int)] = [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
            ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
            ("max_position_embeddings", maxPositionEmbeddings), ("type_vocab_size", typeVocabSize),
            ("indexing_dimension", indexingDimension), ("passage_maxlength", passageMaxlength), ("question_maxlength", questionMaxlength),
        ]
        for (field, value) in checks where value < 1 {
            throw ModelLoadError(path: path, "field \(field) is \(value), expected at least 1")
        }
        try ModelFolder.checkLimits([
            ("vocab_size", vocabSize, 1 << 24), ("hidden_size", hiddenSize, 1 << 18), ("num_hidden_layers", numHiddenLayers, 1 << 12),
            ("num_attention_heads", numAttentionHeads, 1 << 12), ("intermediate_size", intermediateSize, 1 << 20),
            ("max_position_embeddings", maxPositionEmbeddings, 1 << 20), ("type_vocab_size", typeVocabSize, 1 << 16),
            ("indexing_dimension", indexingDimension, 1 << 18), ("passage_maxlength", passageMaxlength, 1 << 20),
            ("question_maxlength", questionMaxlength, 1 << 20),
        ], path: path)
        if hiddenSize % numAttentionHeads != 0 {
            throw ModelLoadError(path: path, "field hidden_size (\(hiddenSize)) is not a multiple of num_attention_heads (\(numAttentionHeads))")
        }
        if !Self.activations.contains(hiddenAct) {
            throw ModelLoadError(path: path, "field hidden_act is '\(hiddenAct)', expected one of \(Self.activations.joined(separator: ", "))")
        }
        for (field, p) in [("hidden_dropout_prob", hiddenDropoutProb), ("attention_probs_dropout_prob", attentionProbsDropoutProb)]
        where !(p >= 0 && p < 1) {
            throw ModelLoadError(path: path, "field \(field) is \(p), expected [0, 1)")
        }
        if !projection && indexingDimension != hiddenSize {
            // FiD asserts the same (src/model.py: without projection indexing_dimension must be 768).
            throw ModelLoadError(path: path, "field indexing_dimension is \(indexingDimension) without a projection, expected hidden_size \(hiddenSize)",
                                 hint: "set projection true, or indexing_dimension to hidden_size")
        }
        if padTokenId < 0 || padTokenId >= vocabSize {
            throw ModelLoadError(path: path, "field pad_token_id is \(padTokenId), outside the vocabulary 0..<\(vocabSize)")
        }
        try ModelFolder.checkParameters(layout(), path: path, available: available)
    }

    /// Every trained parameter under its canonical name (Hugging Face's `BertModel` names, FiD's
    /// `proj.*` / `norm.*`), in slab order, with FiD's `model.`-prefixed names as aliases. The pooler is not here: FiD never uses it
    /// (`BertRetriever.pooler` carries it through load and save).
    public func layout() -> ParameterLayout {
        var l = ParameterLayout()
        let D = hiddenSize, F = intermediateSize, E = indexingDimension
        l.add("embeddings.word_embeddings.weight", [vocabSize, D])
        l.add("embeddings.position_embeddings.weight", [maxPositionEmbeddings, D])
        l.add("embeddings.token_type_embeddings.weight", [typeVocabSize, D])
        l.add("embeddings.LayerNorm.weight", [D])
        l.add("embeddings.LayerNorm.bias", [D])
        for i in 0..<numHiddenLayers {
            let p = "encoder.layer.\(i)."
            for m in ["query", "key", "value"] {
                l.add(p + "attention.self.\(m).weight", [D, D])
                l.add(p + "attention.self.\(m).bias", [D])
            }
            l.add(p + "attention.output.dense.weight", [D, D])
            l.add(p + "attention.output.dense.bias", [D])
            l.add(p + "attention.output.LayerNorm.weight", [D])
            l.add(p + "attention.output.LayerNorm.bias", [D])
            l.add(p + "intermediate.dense.weight", [F, D])
            l.add(p + "intermediate.dense.bias", [F])
            l.add(p + "output.dense.weight", [D, F])
            l.add(p + "output.dense.bias", [D])
            l.add(p + "output.LayerNorm.weight", [D])
            l.add(p + "output.LayerNorm.bias", [D])
        }
        // FiD's Retriever stores the encoder under `model.`: those names are aliases, so a slab
        // loads from a FiD folder (or a checkpoint this code saved) by name alone.
        for e in l.entries { l.tie("model." + e.name, to: e.name) }
        if projection {
            l.add("proj.weight", [E, D])
            l.add("proj.bias", [E])
            l.add("norm.weight", [E])
            l.add("norm.bias", [E])
        }
        return l
    }

    /// config.json as FiD's `RetrieverConfig.save_pretrained` writes it (BertConfig's fields plus
    /// the retriever's), so FiD's `Retriever` and transformers' `BertModel` both read it.
    public func jsonObject(architecture: String) -> [String: Any] {
        // A Float's shortest decimal (0.1, not 0.10000000149011612).
        func short(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }
        return [
            "architectures": [architecture], "model_type": "bert", "vocab_size": vocabSize, "hidden_size": hiddenSize,
            "num_hidden_layers": numHiddenLayers, "num_attention_heads": numAttentionHeads, "intermediate_size": intermediateSize,
            "hidden_act": hiddenAct, "hidden_dropout_prob": short(hiddenDropoutProb),
            "attention_probs_dropout_prob": short(attentionProbsDropoutProb), "max_position_embeddings": maxPositionEmbeddings,
            "type_vocab_size": typeVocabSize, "initializer_range": short(initializerRange), "layer_norm_eps": short(layerNormEps),
            "pad_token_id": padTokenId, "position_embedding_type": "absolute",
            "indexing_dimension": indexingDimension, "projection": projection, "apply_question_mask": applyQuestionMask,
            "apply_passage_mask": applyPassageMask, "extract_cls": extractCLS, "passage_maxlength": passageMaxlength,
            "question_maxlength": questionMaxlength,
        ]
    }
}
