// BertRetriever: FiD's retriever (src/model.py `Retriever`): one BERT encoder shared by questions and
// passages, an optional projection, pooling, scores dot/√E, and the KL distillation loss against the
// reader's passage scores; forward and backward over one parameter slab.
//
// Shape legend (DESIGN.md): B questions, P passages per question, Lq question tokens, L passage
// tokens, D hidden width, E embedding width (the projection's, or D).
import Tensor

/// How the KL loss is reduced: FiD's `KLDivLoss()` default `mean` divides by every element (B·P),
/// PyTorch's recommended `batchmean` by B (the true KL per question).
public enum KLReduction: String, Codable, Sendable, CaseIterable {
    case mean, batchmean
}

/// One training or evaluation batch of the retriever: tokenised, padded questions and passages.
public struct RetrieverBatch: Sendable {
    /// B.
    public var questions: Int
    /// P: passages per question.
    public var passages: Int
    /// Lq.
    public var questionLength: Int
    /// L.
    public var passageLength: Int
    /// (B, Lq) token ids.
    public var questionIds: [Int32]
    /// (B, Lq) 1 for a token, 0 for padding.
    public var questionMask: [Float]
    /// (B·P, L) token ids, question b's passages at rows b·P ..< (b+1)·P.
    public var passageIds: [Int32]
    /// (B·P, L).
    public var passageMask: [Float]
    /// (B, P) the reader's scores (the distillation target); nil for embedding only.
    public var readerScores: [Float]?

    public init(questions: Int, passages: Int, questionLength: Int, passageLength: Int, questionIds: [Int32], questionMask: [Float],
                passageIds: [Int32], passageMask: [Float], readerScores: [Float]?) {
        precondition(questionIds.count == questions * questionLength && questionMask.count == questionIds.count,
                     "RetrieverBatch: question ids \(questionIds.count), mask \(questionMask.count), expected \(questions)×\(questionLength)")
        precondition(passageIds.count == questions * passages * passageLength && passageMask.count == passageIds.count,
                     "RetrieverBatch: passage ids \(passageIds.count), mask \(passageMask.count), expected \(questions)×\(passages)×\(passageLength)")
        precondition(readerScores.map { $0.count == questions * passages } ?? true, "RetrieverBatch: reader scores must be (B, P)")
        self.questions = questions
        self.passages = passages
        self.questionLength = questionLength
        self.passageLength = passageLength
        self.questionIds = questionIds
        self.questionMask = questionMask
        self.passageIds = passageIds
        self.passageMask = passageMask
        self.readerScores = readerScores
    }
}

/// What a retriever forward gives.
public struct RetrieverOutput: Sendable {
    /// (B, E).
    public var questionEmbeddings: Tensor
    /// (B, P, E).
    public var passageEmbeddings: Tensor
    /// (B, P) ⟨q, p⟩ / √E.
    public var scores: Tensor
    /// The KL loss when the batch has reader scores.
    public var loss: Float?
}

/// FiD's retriever over one `ParameterSlab` under Hugging Face's `BertModel` names (plus `proj.*`,
/// `norm.*`). Activations live in an arena allocated once for the largest shape; `forward` keeps
/// what `backward` needs, `backward` accumulates into a gradient slab of the same layout.
public final class BertRetriever {
    public let config: BertConfig
    public let layout: ParameterLayout
    public let params: ParameterSlab
    /// `pooler.dense.{weight,bias}`: never used by FiD, carried so a saved folder is a whole BertModel.
    public var pooler: TensorMap
    /// Divides the reader scores before their softmax (FiD: 1).
    public var temperature: Float = 1
    /// The KL reduction (FiD: `mean`).
    public var reduction: KLReduction = .mean
    /// Also score each question against the other questions' passages in the batch, as passages
    /// the reader gave probability 0 (DPR's in-batch negatives; FiD-KD has none, so off by
    /// default). A retriever trained only on its candidates never sees passages unlike them: a
    /// retriever trained from scratch learns what tells the candidates apart (say, which of one
    /// person's passages holds the fact) but not what every candidate shares (the person).
    public var inBatchNegatives = false

    let arena = T5Arena()
    var last: Saved?
    /// The encoder's weights packed for bfloat16 products, while `withHalfPrecision` runs.
    var half: HalfPrecisionPacks?

    /// A half-precision pass's kernel and its packed Linear weights, by module name.
    struct HalfPrecisionPacks {
        let kernel: Gemm.BF16Kernel
        let weights: [String: Gemm.BF16Weights]
    }

    struct Saved {
        var batch: RetrieverBatch
        var training: Bool
        var q: Tensor
        var p: Tensor
        var kl: DistillationLoss.Cache?
    }

    /// A model with zero parameters of the config's layout (load or initialise them next).
    public init(config: BertConfig) {
        self.config = config
        layout = config.layout()
        params = ParameterSlab(layout: layout)
        pooler = TensorMap(source: "pooler")
    }

    /// E: the embedding width.
    public var embeddingWidth: Int { config.embeddingWidth }
    /// Bytes of activation buffers currently held.
    public var activationBytes: Int { arena.bytes }

    /// Initialises every parameter as transformers' `BertPreTrainedModel._init_weights` does
    /// (normal(0, initializer_range) weights and tables, zero biases, unit LayerNorms, the padding
    /// row of the word table zeroed); the projection as PyTorch's `nn.Linear` and `nn.LayerNorm`
    /// default (uniform ±1/√D), as FiD creates it.
    public func initialize(seed: UInt64) {
        var rng = RNG(seed: seed)
        let bert = BertInit(initializerRange: Double(config.initializerRange))
        for e in layout.entries {
            let b = params.buffer(e.name)
            if e.name == "proj.weight" || e.name == "proj.bias" {
                let bound = 1 / Float(config.D).squareRoot()
                for i in 0..<b.count { b[i] = rng.uniform(-bound, bound) }
                continue
            }
            let kind: BertInit.Kind
            if e.name == "norm.weight" || e.name.hasSuffix("LayerNorm.weight") {
                kind = .layerNormWeight
            } else if e.name == "norm.bias" || e.name.hasSuffix("LayerNorm.bias") {
                kind = .layerNormBias
            } else if e.name.hasPrefix("embeddings.") {
                kind = .embedding
            } else {
                kind = e.name.hasSuffix(".bias") ? .linearBias : .linearWeight
            }
            Init.apply(bert.rule(kind), to: b, rng: &rng)
        }
        let D = config.D
        params.buffer("embeddings.word_embeddings.weight").baseAddress!.advanced(by: config.padTokenId * D).update(repeating: 0, count: D)
        var w = Tensor.zeros([D, D])
        Init.apply(bert.rule(.linearWeight), to: &w, rng: &rng)
        pooler = TensorMap([("pooler.dense.weight", w), ("pooler.dense.bias", .zeros([D]))], source: "pooler")
    }

    // MARK: - Head

    /// FiD's `embed_text` after BERT (fid-spec §5.3): the projection per token when configured,
    /// then [CLS] or the (masked) mean. hidden (n·L, D), mask (n, L) → (n, E).
    func headForward(pre: String, hidden: UnsafePointer<Float>, mask: UnsafePointer<Float>, n: Int, L: Int, applyMask: Bool) -> Tensor {
        let N = n * L, D = config.D, E = embeddingWidth
        var tokens = UnsafePointer(hidden)
        if config.projection {
            let y = A(pre + ".proj", N * E), z = A(pre + ".pnorm", N * E)
            linear(y, hidden, "proj", rows: N, inF: D, outF: E)
            layerNorm(pre + ".pln", y: z, x: y, "norm", rows: N, eps: 1e-5, width: E)
            tokens = UnsafePointer(z)
        }
        if config.extractCLS {
            var out = Tensor.zeros([n, E])
            out.withUnsafeMutableBufferPointer { o in
                for b in 0..<n { (o.baseAddress! + b * E).update(from: tokens + b * L * E, count: E) }
            }
            return out
        }
        // Pooled straight from the arena: no copy of the (n·L, E) token states.
        var out = Tensor.zeros([n, E])
        out.withUnsafeMutableBufferPointer { o in
            MaskedMeanPool.forward(out: o.baseAddress!, x: tokens, mask: applyMask ? mask : nil, batch: n, length: L, dim: E)
        }
        return out
    }

    /// The pooling mask: the padding mask, or all ones (FiD's plain mean when masks are off).
    func poolMask(_ mask: UnsafePointer<Float>, n: Int, L: Int, applyMask: Bool) -> Tensor {
        applyMask ? Tensor(shape: [n, L], data: Array(UnsafeBufferPointer(start: mask, count: n * L))) : Tensor(shape: [n, L], repeating: 1)
    }

    /// Backward of `headForward`: dPooled (n, E) → ∂/∂hidden (n·L, D), in the arena.
    func headBackward(pre: String, dPooled: Tensor, mask: UnsafePointer<Float>, n: Int, L: Int, applyMask: Bool,
                      grads: ParameterSlab) -> UnsafeMutablePointer<Float> {
        let N = n * L, D = config.D, E = embeddingWidth
        var dTokens = Tensor.zeros([n, L, E])
        if config.extractCLS {
            dPooled.withUnsafeBufferPointer { g in
                dTokens.withUnsafeMutableBufferPointer { d in
                    for b in 0..<n { (d.baseAddress! + b * L * E).update(from: g.baseAddress! + b * E, count: E) }
                }
            }
        } else {
            MaskedMeanPool.backward(dOut: dPooled, mask: poolMask(mask, n: n, L: L, applyMask: applyMask), dX: &dTokens)
        }
        let dHidden = Z(pre + ".dhidden", N * D)
        dTokens.withUnsafeBufferPointer { dt in
            let dt = dt.baseAddress!
            if config.projection {
                let dy = Z("grad.proj", N * E)
                layerNormBackward(pre + ".pln", dx: dy, dy: dt, x: A(pre + ".proj", N * E), "norm", rows: N, grads: grads, width: E)
                linearBackward(dx: dHidden, dy: dy, x: hiddenOf(pre, N), "proj", rows: N, inF: D, outF: E, grads: grads)
            } else {
                dHidden.update(from: dt, count: N * D)
            }
        }
        return dHidden
    }

    /// The last hidden state a kept forward left under `pre`.
    func hiddenOf(_ pre: String, _ N: Int) -> UnsafeMutablePointer<Float> {
        A("\(pre).x\(config.numHiddenLayers)", N * config.D)
    }

    // MARK: - Training forward and backward

    /// FiD's `Retriever.forward` (fid-spec §5.4): embeds the questions and their passages with the
    /// shared encoder, scores ⟨q, p⟩/√E, and with reader scores the KL loss between
    /// softmax(reader / temperature) and log_softmax(scores), reduced per `reduction`.
    public func forward(_ batch: RetrieverBatch, training: Bool, rng: inout RNG) -> RetrieverOutput {
        let B = batch.questions, P = batch.passages, Lq = batch.questionLength, L = batch.passageLength, E = embeddingWidth
        let q = batch.questionIds.withUnsafeBufferPointer { ids in
            batch.questionMask.withUnsafeBufferPointer { m in
                let h = encoderForward(pre: "q", ids: ids.baseAddress!, mask: m.baseAddress!, n: B, L: Lq,
                                       applyMask: config.applyQuestionMask, training: training, keep: true, rng: &rng)
                return headForward(pre: "q", hidden: h, mask: m.baseAddress!, n: B, L: Lq, applyMask: config.applyQuestionMask)
            }
        }
        let p = batch.passageIds.withUnsafeBufferPointer { ids in
            batch.passageMask.withUnsafeBufferPointer { m in
                let h = encoderForward(pre: "p", ids: ids.baseAddress!, mask: m.baseAddress!, n: B * P, L: L,
                                       applyMask: config.applyPassageMask, training: training, keep: true, rng: &rng)
                return headForward(pre: "p", hidden: h, mask: m.baseAddress!, n: B * P, L: L, applyMask: config.applyPassageMask)
            }
        }
        let scores = Self.scores(q: q, p: p, B: B, P: P, E: E)
        var loss: Float? = nil
        var kl: DistillationLoss.Cache? = nil
        if let reader = batch.readerScores {
            // Columns: each question's own P passages, or all B·P passages of the batch, the
            // others' as −∞ reader scores (target probability 0).
            let columns = inBatchNegatives ? B * P : P
            let pairs = inBatchNegatives ? Self.allScores(q: q, p: p, B: B, P: P, E: E) : scores  // (B, columns)
            var target = Tensor(shape: [B, columns], data: [Float](repeating: -.infinity, count: B * columns))
            for b in 0..<B {
                let first = inBatchNegatives ? b * P : 0
                for i in 0..<P { target.data[b * columns + first + i] = reader[b * P + i] / temperature }
            }
            let (value, cache) = DistillationLoss.forward(retrieverScores: pairs, readerScores: target)
            loss = value * lossScale(columns: columns, P: P)
            kl = cache
        }
        last = Saved(batch: batch, training: training, q: q, p: p, kl: kl)
        return RetrieverOutput(questionEmbeddings: q, passageEmbeddings: p.reshaped([B, P, E]), scores: scores, loss: loss)
    }

    /// Eval forward (no dropout).
    public func forward(_ batch: RetrieverBatch) -> RetrieverOutput {
        var rng = RNG(seed: 0)
        return forward(batch, training: false, rng: &rng)
    }

    /// DistillationLoss divides by every element (B·columns); FiD's `mean` divides by B·P and
    /// `batchmean` by B, whatever the columns.
    func lossScale(columns: Int, P: Int) -> Float {
        reduction == .batchmean ? Float(columns) : Float(columns) / Float(P)
    }

    /// score[b, j] = ⟨q_b, p_j⟩ / √E over every passage of the batch. q (B, E), p (B·P, E) → (B, B·P).
    static func allScores(q: Tensor, p: Tensor, B: Int, P: Int, E: Int) -> Tensor {
        var s = Tensor.zeros([B, B * P])
        let scale = 1 / Float(E).squareRoot()
        for b in 0..<B {
            for j in 0..<(B * P) {
                var acc: Float = 0
                for e in 0..<E { acc += q.data[b * E + e] * p.data[j * E + e] }
                s.data[b * B * P + j] = acc * scale
            }
        }
        return s
    }

    /// score[b, i] = ⟨q_b, p_{b,i}⟩ / √E. q (B, E), p (B·P, E) → (B, P).
    static func scores(q: Tensor, p: Tensor, B: Int, P: Int, E: Int) -> Tensor {
        var s = Tensor.zeros([B, P])
        let scale = 1 / Float(E).squareRoot()
        for b in 0..<B {
            for i in 0..<P {
                var acc: Float = 0
                for e in 0..<E { acc += q.data[b * E + e] * p.data[(b * P + i) * E + e] }
                s.data[b * P + i] = acc * scale
            }
        }
        return s
    }

    /// Accumulates ∂loss/∂parameters of the last forward (which must have had reader scores).
    public func backward(into grads: ParameterSlab) {
        guard let s = last, let kl = s.kl else { preconditionFailure("BertRetriever.backward: needs a forward with reader scores first") }
        precondition(grads.layout == layout, "BertRetriever.backward: gradient slab of another layout")
        let batch = s.batch, B = batch.questions, P = batch.passages, E = embeddingWidth
        let columns = kl.q.shape[1]
        let inBatch = columns != P
        var dScores = Tensor.zeros([B, columns])
        DistillationLoss.backward(dLoss: lossScale(columns: columns, P: P), cache: kl, dRetrieverScores: &dScores)
        // score = ⟨q_b, p_j⟩/√E: dq_b = Σ_j ds·p_j/√E, dp_j = Σ_b ds·q_b/√E, where j runs over
        // question b's passages, or over the whole batch's with in-batch negatives.
        let scale = 1 / Float(E).squareRoot()
        var dq = Tensor.zeros([B, E]), dp = Tensor.zeros([B * P, E])
        for b in 0..<B {
            for c in 0..<columns {
                let j = inBatch ? c : b * P + c
                let g = dScores.data[b * columns + c] * scale
                if g == 0 { continue }
                for e in 0..<E {
                    dq.data[b * E + e] += g * s.p.data[j * E + e]
                    dp.data[j * E + e] += g * s.q.data[b * E + e]
                }
            }
        }
        batch.passageIds.withUnsafeBufferPointer { ids in
            batch.passageMask.withUnsafeBufferPointer { m in
                let dh = headBackward(pre: "p", dPooled: dp, mask: m.baseAddress!, n: B * P, L: batch.passageLength,
                                      applyMask: config.applyPassageMask, grads: grads)
                encoderBackward(pre: "p", ids: ids.baseAddress!, n: B * P, L: batch.passageLength, applyMask: config.applyPassageMask,
                                training: s.training, dOut: dh, grads: grads)
            }
        }
        batch.questionIds.withUnsafeBufferPointer { ids in
            batch.questionMask.withUnsafeBufferPointer { m in
                let dh = headBackward(pre: "q", dPooled: dq, mask: m.baseAddress!, n: B, L: batch.questionLength,
                                      applyMask: config.applyQuestionMask, grads: grads)
                encoderBackward(pre: "q", ids: ids.baseAddress!, n: B, L: batch.questionLength, applyMask: config.applyQuestionMask,
                                training: s.training, dOut: dh, grads: grads)
            }
        }
    }

    // MARK: - Inference

    /// Embeddings (n, E) of n tokenised sequences of L tokens, forward only: no dropout, and one
    /// set of layer buffers reused through the encoder (nothing is kept for backward).
    ///
    /// - Parameters:
    ///   - ids: (n, L); mask: (n, L) 1 for tokens.
    ///   - applyMask: FiD's `apply_question_mask` / `apply_passage_mask`.
    public func embed(ids: UnsafePointer<Int32>, mask: UnsafePointer<Float>, n: Int, L: Int, applyMask: Bool) -> Tensor {
        var rng = RNG(seed: 0)
        let h = encoderForward(pre: "e", ids: ids, mask: mask, n: n, L: L, applyMask: applyMask, training: false, keep: false, rng: &rng)
        return headForward(pre: "e", hidden: h, mask: mask, n: n, L: L, applyMask: applyMask)
    }

    /// Runs `body` with `embed`'s encoder products at half precision (FiD's scripts embed with
    /// `.half()` unless `--no_fp16`): each layer's six Linear weights packed once as bfloat16, its
    /// activations rounded to bfloat16 as a product reads them, every sum, norm, softmax and GELU
    /// in float32. Training passes are unaffected. The packs are dropped when `body` returns, so
    /// weights changed afterwards are never read stale.
    public func withHalfPrecision<R>(kernel: Gemm.BF16Kernel, _ body: () throws -> R) rethrows -> R {
        precondition(half == nil, "BertRetriever.withHalfPrecision: already inside one")
        let D = config.D, F = config.intermediateSize
        var weights: [String: Gemm.BF16Weights] = [:]
        for l in 0..<config.numHiddenLayers {
            let w = "encoder.layer.\(l)."
            for (m, o, i) in [("attention.self.query", D, D), ("attention.self.key", D, D), ("attention.self.value", D, D),
                              ("attention.output.dense", D, D), ("intermediate.dense", F, D), ("output.dense", D, F)] {
                weights[w + m] = Gemm.BF16Weights(params[w + m + ".weight"], outFeatures: o, inFeatures: i)
            }
        }
        half = HalfPrecisionPacks(kernel: kernel, weights: weights)
        defer { half = nil }
        return try body()
    }

    /// Frees the activation buffers (they grow back on the next pass).
    public func releaseActivations() {
        arena.release()
        last = nil
    }
}
