// T5Config: a T5 model's hyperparameters from Hugging Face's config.json, and its parameter layout.
import Foundation
import Tensor

/// T5's hyperparameters under Hugging Face's names; missing fields take `T5Config`'s defaults
/// (those of transformers' `T5Config`).
public struct T5Config: Codable, Equatable, Sendable {
    /// The feed-forward variant: v1.0's ReLU or v1.1's gated tanh-GELU.
    public enum FeedForward: String, Codable, Sendable {
        case relu
        case gatedGELU = "gated-gelu"
    }

    public var vocabSize = 32128
    public var dModel = 512
    public var dKV = 64
    public var dFF = 2048
    public var numLayers = 6
    /// Decoder blocks; transformers defaults it to `num_layers`.
    public var numDecoderLayers: Int? = nil
    public var numHeads = 8
    public var relativeAttentionNumBuckets = 32
    public var relativeAttentionMaxDistance = 128
    public var dropoutRate: Float = 0.1
    public var layerNormEpsilon: Float = 1e-6
    public var feedForwardProj: FeedForward = .relu
    /// Whether lm_head is the shared embedding; when true the decoder output is scaled by d_model^-0.5.
    public var tieWordEmbeddings = true
    /// transformers 5's explicit switch for the d_model^-0.5 rescale; nil follows `tieWordEmbeddings`.
    public var scaleDecoderOutputs: Bool? = nil
    public var padTokenId = 0
    public var eosTokenId = 1
    public var decoderStartTokenId = 0

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", dModel = "d_model", dKV = "d_kv", dFF = "d_ff"
        case numLayers = "num_layers", numDecoderLayers = "num_decoder_layers", numHeads = "num_heads"
        case relativeAttentionNumBuckets = "relative_attention_num_buckets"
        case relativeAttentionMaxDistance = "relative_attention_max_distance"
        case dropoutRate = "dropout_rate", layerNormEpsilon = "layer_norm_epsilon"
        case feedForwardProj = "feed_forward_proj", tieWordEmbeddings = "tie_word_embeddings"
        case scaleDecoderOutputs = "scale_decoder_outputs"
        case padTokenId = "pad_token_id", eosTokenId = "eos_token_id"
        case decoderStartTokenId = "decoder_start_token_id"
    }

    public init() {}

    /// A config with the given sizes (tests, benchmarks).
    public init(
        vocabSize: Int, dModel: Int, dKV: Int, dFF: Int, numLayers: Int, numDecoderLayers: Int? = nil,
        numHeads: Int, numBuckets: Int = 32, maxDistance: Int = 128, dropoutRate: Float = 0.1,
        feedForwardProj: FeedForward = .relu, tieWordEmbeddings: Bool = true
    ) {
        self.vocabSize = vocabSize
        self.dModel = dModel
        self.dKV = dKV
        self.dFF = dFF
        self.numLayers = numLayers
        self.numDecoderLayers = numDecoderLayers
        self.numHeads = numHeads
        relativeAttentionNumBuckets = numBuckets
        relativeAttentionMaxDistance = maxDistance
        self.dropoutRate = dropoutRate
        self.feedForwardProj = feedForwardProj
        self.tieWordEmbeddings = tieWordEmbeddings
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        let d = T5Config()
        vocabSize = try get(.vocabSize, d.vocabSize)
        dModel = try get(.dModel, d.dModel)
        dKV = try get(.dKV, d.dKV)
        dFF = try get(.dFF, d.dFF)
        numLayers = try get(.numLayers, d.numLayers)
        numDecoderLayers = try c.decodeIfPresent(Int.self, forKey: .numDecoderLayers)
        numHeads = try get(.numHeads, d.numHeads)
        relativeAttentionNumBuckets = try get(.relativeAttentionNumBuckets, d.relativeAttentionNumBuckets)
        relativeAttentionMaxDistance = try get(.relativeAttentionMaxDistance, d.relativeAttentionMaxDistance)
        dropoutRate = try get(.dropoutRate, d.dropoutRate)
        layerNormEpsilon = try get(.layerNormEpsilon, d.layerNormEpsilon)
        tieWordEmbeddings = try get(.tieWordEmbeddings, d.tieWordEmbeddings)
        scaleDecoderOutputs = try c.decodeIfPresent(Bool.self, forKey: .scaleDecoderOutputs)
        padTokenId = try get(.padTokenId, d.padTokenId)
        eosTokenId = try get(.eosTokenId, d.eosTokenId)
        decoderStartTokenId = try get(.decoderStartTokenId, d.decoderStartTokenId)
        // Read as a string first so an unknown variant is reported by name, not as a decoding failure.
        let ff = try get(.feedForwardProj, "relu")
        guard let f = FeedForward(rawValue: ff) else {
            throw DecodingError.dataCorruptedError(
                forKey: .feedForwardProj, in: c,
                debugDescription: "feed_forward_proj is '\(ff)'; fidq supports 'relu' (T5 v1.0) and 'gated-gelu' (T5 v1.1)")
        }
        feedForwardProj = f
    }

    /// Decoder blocks.
    public var decoderLayers: Int { numDecoderLayers ?? numLayers }
    /// H·Dh, the width of q, k, v.
    public var innerDim: Int { numHeads * dKV }
    /// A lower bound of the bytes one pass holds at once for attention over `batch` questions of
    /// `passages` passages of `length` tokens and `targetLength` decoder tokens: the encoder's
    /// position bias (H, L, L) and one layer's scores (B·P, H, L, L); the decoder's bias (H, T, T),
    /// self-attention scores (B, H, T, T) and cross-attention scores (B, H, T, P·L). In Double, as
    /// an absurd setting overflows Int.
    public func attentionBytes(batch: Int, passages: Int, length: Int, targetLength: Int) -> (encoder: Double, decoder: Double) {
        let B = Double(batch), P = Double(passages), L = Double(length), T = Double(targetLength), H = Double(numHeads)
        return (4 * (H * L * L + B * P * H * L * L), 4 * (H * T * T + B * H * T * T + B * H * T * P * L))
    }

    /// Whether the decoder output is multiplied by d_model^-0.5 before lm_head.
    public var scalesDecoderOutput: Bool { scaleDecoderOutputs ?? tieWordEmbeddings }

    /// Reads `config.json`, refusing non-T5 architectures and unknown variants by field.
    /// - Throws: `ModelLoadError` naming the file and the field.
    public static func load(path: String) throws -> T5Config {
        let (data, json) = try ModelFolder.readJSONObject(path, what: "model config", hint: "a Hugging Face T5 folder has config.json next to its weights (as save_pretrained writes it)")
        try ModelFolder.requireConfigFields(json, anyOf: ["model_type", "architectures", "d_model"], path: path, model: "T5")
        if let type = json["model_type"] as? String, type != "t5" {
            throw ModelLoadError(path: path, "field model_type is '\(type)', expected 't5'", hint: "fidq's reader is a T5")
        }
        if let archs = json["architectures"] as? [String],
            let bad = archs.first(where: { !["T5ForConditionalGeneration", "FiDT5", "T5Model"].contains($0) })
        {
            throw ModelLoadError(path: path, "field architectures lists '\(bad)', expected T5ForConditionalGeneration or FiDT5",
                                 hint: "fidq's reader is an encoder-decoder T5")
        }
        if let gated = json["is_gated_act"] as? Bool, let ff = json["feed_forward_proj"] as? String,
            gated != ff.hasPrefix("gated")
        {
            throw ModelLoadError(path: path, "fields is_gated_act (\(gated)) and feed_forward_proj ('\(ff)') disagree")
        }
        let config = try ModelFolder.decodeConfig(T5Config.self, from: data, path: path)
        try config.validate(path: path)
        return config
    }

    /// Checks sizes that the model code relies on, and that the parameters fit in `available` bytes.
    public func validate(path: String = "config", available: Int = AvailableMemory.bytes) throws {
        let checks: [(String, Int)] = [
            ("vocab_size", vocabSize), ("d_model", dModel), ("d_kv", dKV), ("d_ff", dFF), ("num_layers", numLayers),
            ("num_decoder_layers", decoderLayers), ("num_heads", numHeads),
            ("relative_attention_num_buckets", relativeAttentionNumBuckets),
            ("relative_attention_max_distance", relativeAttentionMaxDistance),
        ]
        for (field, value) in checks where value < 1 {
            throw ModelLoadError(path: path, "field \(field) is \(value), expected at least 1")
        }
        try ModelFolder.checkLimits([
            ("vocab_size", vocabSize, 1 << 24), ("d_model", dModel, 1 << 18), ("d_kv", dKV, 1 << 14), ("d_ff", dFF, 1 << 20),
            ("num_layers", numLayers, 1 << 12), ("num_decoder_layers", decoderLayers, 1 << 12), ("num_heads", numHeads, 1 << 10),
            ("relative_attention_num_buckets", relativeAttentionNumBuckets, 1 << 16),
            ("relative_attention_max_distance", relativeAttentionMaxDistance, 1 << 30),
        ], path: path)
        if relativeAttentionNumBuckets < 4 {
            throw ModelLoadError(path: path, "field relative_attention_num_buckets is \(relativeAttentionNumBuckets), expected at least 4")
        }
        // Distances past the exact buckets share log-spaced ones up to max_distance; the
        // decoder's exact range is num_buckets / 2, and at or below it the spacing's log is 0 or
        // negative (transformers divides by zero there, or indexes its table with a negative bucket).
        if relativeAttentionMaxDistance <= relativeAttentionNumBuckets / 2 {
            throw ModelLoadError(path: path, "field relative_attention_max_distance is \(relativeAttentionMaxDistance), expected more than relative_attention_num_buckets / 2 (\(relativeAttentionNumBuckets / 2))",
                                 hint: "T5 uses 32 buckets and 128")
        }
        if !(dropoutRate >= 0 && dropoutRate < 1) {
            throw ModelLoadError(path: path, "field dropout_rate is \(dropoutRate), expected [0, 1)")
        }
        for (field, id) in [("pad_token_id", padTokenId), ("eos_token_id", eosTokenId), ("decoder_start_token_id", decoderStartTokenId)]
        where id < 0 || id >= vocabSize {
            throw ModelLoadError(path: path, "field \(field) is \(id), outside the vocabulary 0..<\(vocabSize)")
        }
        try ModelFolder.checkParameters(layout(), path: path, available: available)
    }

    /// Every parameter under its Hugging Face name, in slab order; tied names are aliases.
    ///
    /// - Parameter crossAttentionBias: include transformers 3.0.2's
    ///   `decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight` (fid-spec §3.8).
    public func layout(crossAttentionBias: Bool = false) -> ParameterLayout {
        var l = ParameterLayout()
        let D = dModel, I = innerDim, F = dFF, NB = relativeAttentionNumBuckets, H = numHeads
        l.add("shared.weight", [vocabSize, D])
        l.tie("encoder.embed_tokens.weight", to: "shared.weight")
        l.tie("decoder.embed_tokens.weight", to: "shared.weight")
        func attention(_ p: String) {
            l.add(p + ".q.weight", [I, D])
            l.add(p + ".k.weight", [I, D])
            l.add(p + ".v.weight", [I, D])
            l.add(p + ".o.weight", [D, I])
        }
        func ffn(_ p: String) {
            if feedForwardProj == .relu {
                l.add(p + ".DenseReluDense.wi.weight", [F, D])
            } else {
                l.add(p + ".DenseReluDense.wi_0.weight", [F, D])
                l.add(p + ".DenseReluDense.wi_1.weight", [F, D])
            }
            l.add(p + ".DenseReluDense.wo.weight", [D, F])
            l.add(p + ".layer_norm.weight", [D])
        }
        for i in 0..<numLayers {
            let b = "encoder.block.\(i).layer"
            attention(b + ".0.SelfAttention")
            if i == 0 { l.add(b + ".0.SelfAttention.relative_attention_bias.weight", [NB, H]) }
            l.add(b + ".0.layer_norm.weight", [D])
            ffn(b + ".1")
        }
        l.add("encoder.final_layer_norm.weight", [D])
        for i in 0..<decoderLayers {
            let b = "decoder.block.\(i).layer"
            attention(b + ".0.SelfAttention")
            if i == 0 { l.add(b + ".0.SelfAttention.relative_attention_bias.weight", [NB, H]) }
            l.add(b + ".0.layer_norm.weight", [D])
            attention(b + ".1.EncDecAttention")
            if i == 0 && crossAttentionBias { l.add(b + ".1.EncDecAttention.relative_attention_bias.weight", [NB, H]) }
            l.add(b + ".1.layer_norm.weight", [D])
            ffn(b + ".2")
        }
        l.add("decoder.final_layer_norm.weight", [D])
        if tieWordEmbeddings {
            l.tie("lm_head.weight", to: "shared.weight")
        } else {
            l.add("lm_head.weight", [vocabSize, D])
        }
        return l
    }
}

/// A model folder or file that cannot be used: the file, what is wrong, and a hint.
public struct ModelLoadError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public let hint: String?

    public init(path: String, _ message: String, hint: String? = nil) {
        self.path = path
        self.message = message
        self.hint = hint
    }

    public var description: String {
        "\(path): \(message)" + (hint.map { " (hint: \($0))" } ?? "")
    }
}
