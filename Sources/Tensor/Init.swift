// Init: seeded parameter initialisation, and Hugging Face's T5 and BERT rules as std per parameter kind.

/// How one parameter tensor starts: drawn from a normal, or filled with a constant.
public enum InitRule: Equatable, Sendable {
    case normal(mean: Float, std: Float)
    case constant(Float)
}

/// Fills parameter storage; every random fill takes the caller's generator, so a model's initial
/// weights are fixed by one seed and the order of the calls.
public enum Init {
    /// Draws every element from N(mean, std²), in index order.
    public static func normal(_ x: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float, rng: inout RNG) {
        for i in x.indices { x[i] = rng.normal(mean: mean, std: std) }
    }

    /// Sets every element to `value`.
    public static func fill(_ x: UnsafeMutableBufferPointer<Float>, _ value: Float) {
        guard let base = x.baseAddress else { return }
        base.update(repeating: value, count: x.count)
    }

    /// Applies `rule`; a constant rule draws nothing from `rng`.
    public static func apply(_ rule: InitRule, to x: UnsafeMutableBufferPointer<Float>, rng: inout RNG) {
        switch rule {
        case .normal(let mean, let std): normal(x, mean: mean, std: std, rng: &rng)
        case .constant(let c): fill(x, c)
        }
    }

    /// `normal` over a tensor.
    public static func normal(_ t: inout Tensor, mean: Float = 0, std: Float, rng: inout RNG) {
        t.withUnsafeMutableBufferPointer { normal($0, mean: mean, std: std, rng: &rng) }
    }

    /// Sets a tensor to zeros.
    public static func zeros(_ t: inout Tensor) { t.withUnsafeMutableBufferPointer { fill($0, 0) } }

    /// Sets a tensor to ones.
    public static func ones(_ t: inout Tensor) { t.withUnsafeMutableBufferPointer { fill($0, 1) } }

    /// `apply` over a tensor.
    public static func apply(_ rule: InitRule, to t: inout Tensor, rng: inout RNG) {
        t.withUnsafeMutableBufferPointer { apply(rule, to: $0, rng: &rng) }
    }

    /// Zeroes row `row` of a rank-2 tensor: an embedding's padding row, as `nn.Embedding(padding_idx:)`
    /// and BERT's init leave it.
    public static func zeroRow(_ t: inout Tensor, row: Int) {
        precondition(t.rank == 2 && row >= 0 && row < t.shape[0], "Init.zeroRow: row \(row) of \(t.shape)")
        let n = t.shape[1]
        t.withUnsafeMutableBufferPointer { p in
            (p.baseAddress! + row * n).update(repeating: 0, count: n)
        }
    }
}

/// T5's `T5PreTrainedModel._init_weights` (Mesh TensorFlow's scheme), scaled by
/// `initializer_factor`. Biases do not exist in T5.
public struct T5Init: Equatable, Sendable {
    /// The parameter families `_init_weights` distinguishes.
    public enum Kind: String, CaseIterable, Sendable {
        /// Attention q projection (D, H·Dh): std factor·(D·Dh)^-½, so no 1/√Dh scaling is needed later.
        case query
        /// Attention k and v projections: std factor·D^-½.
        case key, value
        /// Attention output projection (H·Dh, D): std factor·(H·Dh)^-½.
        case attentionOutput
        /// Feed-forward input (`wi`, or `wi_0` and `wi_1` when gated): std factor·D^-½.
        case wi
        /// Feed-forward output: std factor·F^-½.
        case wo
        /// The shared token embedding (V, D): std factor·1.
        case sharedEmbedding
        /// An untied LM head: std factor·1.
        case lmHead
        /// Relative position bias table (buckets, H): std factor·D^-½.
        case relativeAttentionBias
        /// RMSNorm weights: the constant factor·1.
        case layerNorm
    }

    /// D: `d_model`.
    public var dModel: Int
    /// Dh: `d_kv`.
    public var dKV: Int
    /// H: `num_heads`.
    public var numHeads: Int
    /// F: `d_ff`.
    public var dFF: Int
    /// `initializer_factor` (1 in every released checkpoint).
    public var factor: Double

    public init(dModel: Int, dKV: Int, numHeads: Int, dFF: Int, factor: Double = 1) {
        self.dModel = dModel
        self.dKV = dKV
        self.numHeads = numHeads
        self.dFF = dFF
        self.factor = factor
    }

    /// The normal std for `kind`, or nil for the constant-filled RMSNorm weights.
    public func std(_ kind: Kind) -> Float? {
        func inv(_ n: Int) -> Double { 1 / Double(n).squareRoot() }
        let s: Double
        switch kind {
        case .query: s = factor * inv(dModel * dKV)
        case .key, .value, .wi, .relativeAttentionBias: s = factor * inv(dModel)
        case .attentionOutput: s = factor * inv(numHeads * dKV)
        case .wo: s = factor * inv(dFF)
        case .sharedEmbedding, .lmHead: s = factor
        case .layerNorm: return nil
        }
        return Float(s)
    }

    /// The rule for `kind`.
    public func rule(_ kind: Kind) -> InitRule {
        if let s = std(kind) { return .normal(mean: 0, std: s) }
        return .constant(Float(factor))
    }
}

/// BERT's `BertPreTrainedModel._init_weights`: every Linear weight and Embedding table from
/// N(0, initializer_range²), biases 0, LayerNorm weight 1 and bias 0. Embeddings with a padding
/// index (the word embeddings, `pad_token_id`) then get that row zeroed: `Init.zeroRow`.
public struct BertInit: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case linearWeight, linearBias, embedding, layerNormWeight, layerNormBias
    }

    /// `initializer_range` (0.02 in bert-base).
    public var initializerRange: Double

    public init(initializerRange: Double = 0.02) { self.initializerRange = initializerRange }

    /// The normal std for `kind`, or nil for the constant-filled ones.
    public func std(_ kind: Kind) -> Float? {
        switch kind {
        case .linearWeight, .embedding: return Float(initializerRange)
        case .linearBias, .layerNormWeight, .layerNormBias: return nil
        }
    }

    /// The rule for `kind`.
    public func rule(_ kind: Kind) -> InitRule {
        switch kind {
        case .linearWeight, .embedding: return .normal(mean: 0, std: Float(initializerRange))
        case .linearBias, .layerNormBias: return .constant(0)
        case .layerNormWeight: return .constant(1)
        }
    }
}
