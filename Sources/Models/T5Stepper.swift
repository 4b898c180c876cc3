// T5Stepper: incremental T5 decoding for greedy and beam search: a self-attention key/value cache
// per row, and a cross-attention over each question's encoder memory shared by its beams (the
// beams of a question are folded into the query axis of one cross-attention call), either over
// keys/values computed once or with the key and value weights absorbed into the queries.
import Tensor
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A decoding request the stepper cannot serve.
public struct T5DecodingError: Error, CustomStringConvertible {
    public let description: String
    /// The model computed NaN or ±inf (weights near float32's limit): the fault is the model's.
    public var nonFinite = false
}

/// How a decoding step's cross-attention reads the encoder memory X (M, D) of its question.
public enum T5CrossAttentionPlan: Sendable {
    /// Keys X·Wkᵀ and values X·Wvᵀ (M, H·Dh) of every decoder layer computed once when the
    /// stepper starts (2·M·D·H·Dh multiply-adds per layer); each step streams them from memory.
    case cachedKeys
    /// No keys or values: each step folds the key weights into its queries (u_h = Wk_hᵀ·q_h, a
    /// D-vector per head), scores the memory rows against them (x_j·u_h = k_j·q_h), sums the
    /// memory rows weighted by the probabilities and applies the value weights after (Wv_h·Σ p_j x_j
    /// = Σ p_j v_j). A step then costs 2·M·D·H·beams multiply-adds per layer (D/Dh times the
    /// cached plan's) and reads the memory's M·D floats per layer (the cached plan reads its
    /// 2·M·H·Dh keys and values), and nothing is computed up front: less arithmetic in all while
    /// beams × steps stays under Dh.
    case absorbed

    /// The plan for up to `maxLength` steps of `beams` beams: the absorbed steps' arithmetic is
    /// beams·steps/Dh of the keys and values computed up front. The bound is 2·Dh, not Dh,
    /// because `maxLength` is a cap: FiD's answers end after a few tokens (FiD's greedy cap of
    /// 50 absorbs), while a cached step still streams the keys and values from memory.
    public static func choose(beams: Int, maxLength: Int, headDim: Int) -> T5CrossAttentionPlan {
        return beams * maxLength <= 2 * headDim ? .absorbed : .cachedKeys
    }
}

/// Decodes `questions × beams` rows over one encoded FiD batch; row q·beams + b is beam b of question q.
///
/// A class so that its large buffers are never copied; `DecodingStepper`'s `mutating`
/// requirements are met by reference semantics.
public final class T5Stepper {
    let model: T5Model
    /// V.
    public let vocabSize: Int
    /// Rows held: questions · beams.
    public let rows: Int
    let questions: Int, beams: Int, M: Int, maxLength: Int, P: Int, L: Int
    /// Set before the first step to also compute FiD's passage scores (fid-spec §3.5) from that
    /// step's cross-attention logits (the first decoding step, as FiD's `score_storage` keeps).
    public var recordScores = false
    /// FiD's cross-attention passage scores of each question, after the first step with
    /// `recordScores` (beam 0's query; every beam feeds the same start token).  // (questions, P)
    public private(set) var scores: Tensor?
    /// Tokens fed so far (the next position).
    public private(set) var position = 0
    /// How the cross-attention reads the memory (chosen from beams and maxLength unless given).
    public let crossPlan: T5CrossAttentionPlan
    private var owned: [UnsafeMutablePointer<Float>] = []
    /// Per decoder layer with `.cachedKeys`: cross keys and values (questions, M, I); the self cache (rows, maxLength, I).
    private var crossK: [UnsafeMutablePointer<Float>] = [], crossV: [UnsafeMutablePointer<Float>] = []
    /// With `.absorbed`: the encoder memory (questions, M, D); the queries folded through the key
    /// weights and the probability-weighted memory rows, both (questions, H, beams, D).
    private var memory: UnsafeMutablePointer<Float>!, folded: UnsafeMutablePointer<Float>!, weighted: UnsafeMutablePointer<Float>!
    private var selfK: [UnsafeMutablePointer<Float>] = [], selfV: [UnsafeMutablePointer<Float>] = []
    private var mask: UnsafeMutablePointer<Float>!  // (questions, M)
    private var x: UnsafeMutablePointer<Float>!, h: UnsafeMutablePointer<Float>!, q: UnsafeMutablePointer<Float>!
    private var ctx: UnsafeMutablePointer<Float>!, o: UnsafeMutablePointer<Float>!, act: UnsafeMutablePointer<Float>!
    private var act1: UnsafeMutablePointer<Float>!, probs: UnsafeMutablePointer<Float>!, rstd: UnsafeMutablePointer<Float>!
    private var crossBias: UnsafeMutablePointer<Float>!, selfBias: UnsafeMutablePointer<Float>!, gather: UnsafeMutablePointer<Float>!
    /// `Attention.fewQueries`' per-chunk context partials for the cross-attention.
    private var crossScratch: UnsafeMutablePointer<Float>!
    private var ids: [Int32]
    /// Rows up to which the lm head runs as one gemv per row over lm_head (V, D) in place
    /// (`Gemm.gemv`'s row-dot kernel streams it at memory speed; sgemm with M = 1 reads it at
    /// about a third of that, ref/perf.md §1.2), so no transposed copy is built per stepper.
    static let gemvRows = 4

    private func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(p)
        return p
    }

    /// Encodes the passages (eval, no dropout) and prepares a cache for `maxLength` tokens per row.
    ///
    /// - Parameters:
    ///   - inputIds, attentionMask: (questions·P, L) as in `T5Batch`.
    ///   - beams: rows per question (1 for greedy).
    ///   - crossPlan: the cross-attention's plan; nil chooses by `T5CrossAttentionPlan.choose`
    ///     (both give the same function, rounded differently).
    public init(model: T5Model, questions: Int, passages P: Int, passageLength L: Int, inputIds: [Int32],
                attentionMask: [Float], beams: Int = 1, maxLength: Int, crossPlan: T5CrossAttentionPlan? = nil) {
        precondition(beams >= 1 && maxLength >= 1 && questions >= 1, "T5Stepper: questions \(questions), beams \(beams), maxLength \(maxLength)")
        precondition(inputIds.count == questions * P * L && attentionMask.count == inputIds.count, "T5Stepper: ids/mask count vs B·P·L")
        self.model = model
        let c = model.config, D = c.dModel, I = c.innerDim, F = c.dFF, H = c.numHeads
        vocabSize = c.vocabSize
        self.questions = questions
        self.beams = beams
        rows = questions * beams
        M = P * L
        self.P = P
        self.L = L
        self.maxLength = maxLength
        let plan = crossPlan ?? .choose(beams: beams, maxLength: maxLength, headDim: c.dKV)
        self.crossPlan = plan
        ids = [Int32](repeating: 0, count: questions * beams)
        let N = questions * M, R = rows
        mask = alloc(N)
        attentionMask.withUnsafeBufferPointer { mask.update(from: $0.baseAddress!, count: N) }
        // The encoder's output lives in the model's arena until its next pass: copied when kept.
        let encoded = model.encode(inputIds: inputIds, attentionMask: attentionMask, rows: questions * P, L: L)
        if plan == .absorbed {
            memory = alloc(N * D)
            memory.update(from: encoded, count: N * D)
            folded = alloc(R * H * D)
            weighted = alloc(R * H * D)
        }
        for l in 0..<c.decoderLayers {
            if plan == .cachedKeys {
                let w = "decoder.block.\(l).layer.1.EncDecAttention"
                let kc = alloc(N * I), vc = alloc(N * I)
                model.linear(kc, encoded, model.W(w + ".k.weight"), rows: N, inF: D, outF: I)
                model.linear(vc, encoded, model.W(w + ".v.weight"), rows: N, inF: D, outF: I)
                crossK.append(kc)
                crossV.append(vc)
            }
            selfK.append(alloc(R * maxLength * I))
            selfV.append(alloc(R * maxLength * I))
        }
        x = alloc(R * D); h = alloc(R * D); q = alloc(R * I); ctx = alloc(R * I); o = alloc(R * D)
        act = alloc(R * F); act1 = alloc(R * F); rstd = alloc(R)
        probs = alloc(R * H * max(M, maxLength))
        crossBias = alloc(H * beams * M); selfBias = alloc(H * maxLength)
        // Also the scratch of one step's 3.0.2 cross bias, (H, M): larger than the cache rows when
        // P·L is long (FiD's readers: H 12, M 25,000 against 50·768 per row).
        gather = alloc(max(R * maxLength * I, H * M))
        crossScratch = alloc(plan == .absorbed ? Attention.overMemoryScratchCount(batch: questions, queries: H * beams, keys: M, width: D)
                                                : Attention.fewQueriesScratchCount(crossSize))
    }

    deinit { for p in owned { p.deallocate() } }

    /// Bytes a stepper of this shape allocates (its buffers above, and the (rows, V) logits a
    /// step returns), so a job can refuse a shape (num_beams 1,000,000) before allocating it.
    public static func bytes(_ c: T5Config, questions: Int, passages P: Int, passageLength L: Int, beams: Int, maxLength: Int,
                             crossPlan: T5CrossAttentionPlan? = nil) -> Double {
        let B = Double(questions), R = B * Double(beams), M = Double(P) * Double(L), T = Double(maxLength)
        let D = Double(c.dModel), I = Double(c.innerDim), F = Double(c.dFF), H = Double(c.numHeads)
        let absorbed = (crossPlan ?? .choose(beams: beams, maxLength: maxLength, headDim: c.dKV)) == .absorbed
        let chunks = (M + Double(Attention.streamChunk) - 1) / Double(Attention.streamChunk)
        // Cached keys: two (B, M, I) per layer and a (Tq, I) scratch per chunk; absorbed: the
        // memory once, the folded and weighted queries, a (H·beams, D + 2) scratch per chunk.
        let cross = absorbed ? B * M * D + 2 * R * H * D + B * chunks * H * Double(beams) * (D + 2)
            : Double(c.decoderLayers) * 2 * B * M * I + B * chunks * Double(beams) * I
        let perLayer = 2 * R * T * I
        let rows = R * (3 * D + 2 * I + 2 * F + 1 + Double(c.vocabSize)) + R * H * max(M, T)
        return 4 * (Double(c.decoderLayers) * perLayer + cross + rows + B * M + H * Double(beams) * M + H * T + max(R * T * I, H * M))
    }

    /// The cross-attention of one step: questions × beams queries over their M memory positions.
    var crossSize: Attention.Size {
        let c = model.config
        return .init(batch: questions, heads: c.numHeads, queryLength: beams, keyLength: M, headDim: c.dKV)
    }

    /// Feeds one token per row at `position` and writes the next-token logits (rows, V).
    public func step(_ tokens: UnsafeBufferPointer<Int32>, logits: UnsafeMutablePointer<Float>) throws {
        guard tokens.count == rows else {
            throw T5DecodingError(description: "T5Stepper.step: \(tokens.count) tokens for \(rows) rows")
        }
        guard position < maxLength else {
            throw T5DecodingError(description: "T5Stepper.step: position \(position) is past the cache's maxLength \(maxLength)")
        }
        let m = model, c = m.config, D = c.dModel, I = c.innerDim, F = c.dFF, H = c.numHeads, Dh = c.dKV, V = c.vocabSize
        let R = rows, t = position, NB = c.relativeAttentionNumBuckets, dist = c.relativeAttentionMaxDistance, eps = c.layerNormEpsilon
        let x = x!, h = h!, q = q!, ctx = ctx!, o = o!, rstd = rstd!, probs = probs!, selfBias = selfBias!
        m.timed(.embed) { Embedding.forward(out: x, ids: tokens.baseAddress!, table: m.W("shared.weight"), count: R, vocab: V, dim: D) }
        // Self bias (H, t+1) for the query at t; the 3.0.2 cross bias (H, beams, M) row t, per beam.
        let sb = RelativePosition.buckets(queryLength: 1, keyLength: t + 1, queryStart: t, bidirectional: false, numBuckets: NB, maxDistance: dist)
        RelativePosition.forward(bias: selfBias, table: m.W("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
                                 buckets: sb, count: t + 1, heads: H)
        var cross: UnsafePointer<Float>? = nil
        if m.crossBiasOn {
            let cb = RelativePosition.buckets(queryLength: 1, keyLength: M, queryStart: t, bidirectional: false, numBuckets: NB, maxDistance: dist)
            let one = gather!
            RelativePosition.forward(bias: one, table: m.W(T5Model.crossBiasName), buckets: cb, count: M, heads: H)
            for hh in 0..<H { for b in 0..<beams { (crossBias + (hh * beams + b) * M).update(from: one + hh * M, count: M) } }
            cross = UnsafePointer(crossBias)
        }
        let T = maxLength, K = t + 1
        // Pre-softmax cross logits of each layer for the passage scores.  // (questions, H, beams, M) each
        var crossLogits: [UnsafeMutablePointer<Float>] = []
        if recordScores && t == 0 {
            crossLogits = (0..<c.decoderLayers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: questions * H * beams * M) }
        }
        defer { for p in crossLogits { p.deallocate() } }
        for l in 0..<c.decoderLayers {
            let w = "decoder.block.\(l).layer"
            // Self-attention over the cache: this row's keys 0…t.
            m.timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: x, weight: m.W(w + ".0.layer_norm.weight"), rows: R, dim: D, eps: eps) }
            let kc = selfK[l], vc = selfV[l]
            m.linear(q, h, m.W(w + ".0.SelfAttention.q.weight"), rows: R, inF: D, outF: I)
            // New keys and values go straight into their cache slots (row stride T·I).
            m.linear(kc + t * I, h, m.W(w + ".0.SelfAttention.k.weight"), rows: R, inF: D, outF: I, ldy: T * I)
            m.linear(vc + t * I, h, m.W(w + ".0.SelfAttention.v.weight"), rows: R, inF: D, outF: I, ldy: T * I)
            m.timed(.cacheAttention) {
                parallelFor(R * H) { pairs in
                    for pair in pairs {
                        let r = pair / H, hh = pair % H
                        let qp = q + r * I + hh * Dh, s = probs + pair * T
                        for j in 0..<K {
                            let kp = kc + (r * T + j) * I + hh * Dh
                            var dot: Float = 0
                            for d in 0..<Dh { dot += qp[d] * kp[d] }
                            s[j] = dot + selfBias[hh * K + j]
                        }
                        var mx = -Float.infinity
                        for j in 0..<K { mx = max(mx, s[j]) }
                        var sum: Float = 0
                        for j in 0..<K {
                            s[j] = expf(s[j] - mx)
                            sum += s[j]
                        }
                        for j in 0..<K { s[j] /= sum }
                        let out = ctx + r * I + hh * Dh
                        for d in 0..<Dh { out[d] = 0 }
                        for j in 0..<K {
                            let vp = vc + (r * T + j) * I + hh * Dh, p = s[j]
                            for d in 0..<Dh { out[d] += p * vp[d] }
                        }
                    }
                }
            }
            m.linear(o, ctx, m.W(w + ".0.SelfAttention.o.weight"), rows: R, inF: I, outF: D)
            m.timed(.elementwise) { Elementwise.accumulate(x, o, count: R * D) }
            // Cross-attention: beams of a question are its query positions.
            m.timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: x, weight: m.W(w + ".1.layer_norm.weight"), rows: R, dim: D, eps: eps) }
            m.linear(q, h, m.W(w + ".1.EncDecAttention.q.weight"), rows: R, inF: D, outF: I)
            let mask = mask!, stepLogits = crossLogits.isEmpty ? nil : crossLogits[l]
            if crossPlan == .cachedKeys {
                // One pass over the cached keys and values for all heads (the step's largest read).
                m.timed(.attention) {
                    Attention.fewQueries(out: ctx, probs: probs, logits: stepLogits, q: q, k: crossK[l], v: crossV[l],
                                         bias: cross, keyMask: mask, scale: 1, size: crossSize, scratch: crossScratch)
                }
            } else {
                absorbedCrossAttention(layer: l, logits: stepLogits, bias: cross)
            }
            m.linear(o, ctx, m.W(w + ".1.EncDecAttention.o.weight"), rows: R, inF: I, outF: D)
            m.timed(.elementwise) { Elementwise.accumulate(x, o, count: R * D) }
            // Feed-forward.
            m.timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: x, weight: m.W(w + ".2.layer_norm.weight"), rows: R, dim: D, eps: eps) }
            if c.feedForwardProj == .relu {
                m.linear(act, h, m.W(w + ".2.DenseReluDense.wi.weight"), rows: R, inF: D, outF: F)
                m.timed(.elementwise) { ReLU.forward(out: act, x: act, count: R * F) }
            } else {
                m.linear(act, h, m.W(w + ".2.DenseReluDense.wi_0.weight"), rows: R, inF: D, outF: F)
                m.linear(act1, h, m.W(w + ".2.DenseReluDense.wi_1.weight"), rows: R, inF: D, outF: F)
                m.timed(.elementwise) { GatedGELU.forward(out: act, gate: act, linear: act1, count: R * F, approximate: .tanh) }
            }
            m.linear(o, act, m.W(w + ".2.DenseReluDense.wo.weight"), rows: R, inF: F, outF: D)
            m.timed(.elementwise) { Elementwise.accumulate(x, o, count: R * D) }
        }
        m.timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: x, weight: m.W("decoder.final_layer_norm.weight"), rows: R, dim: D, eps: eps) }
        m.timed(.lmHead) {
            if R <= Self.gemvRows {
                let w = m.W("lm_head.weight")
                for r in 0..<R { Gemm.gemv(m: V, n: D, alpha: m.outputScale, a: w, lda: D, x: h + r * D, beta: 0, y: logits + r * V) }
            } else {
                Gemm.gemm(transB: true, m: R, n: V, k: D, alpha: m.outputScale, a: h, lda: D, b: m.W("lm_head.weight"), ldb: D,
                          beta: 0, c: logits, ldc: V)
            }
        }
        // Argmax and top-k over NaN pick arbitrary tokens, and the scores that follow are NaN:
        // a model that overflows float32 (finite weights near its limit) fails here, named.
        if let i = UnsafeBufferPointer(start: logits, count: R * V).firstIndex(where: { !$0.isFinite }) {
            throw T5DecodingError(description: "the reader's logits hold \(logits[i]) at decoding step \(t + 1), row \(i / V): "
                                      + "its weights overflow float32's range in this batch", nonFinite: true)
        }
        if !crossLogits.isEmpty {
            scores = m.passageScores(crossLogits, mask: mask!, B: questions, P: P, L: L, T: beams)
        }
        position += 1
    }

    /// The cross-attention of decoder layer `layer` for the queries in `q`, into `ctx`, with the
    /// key and value weights applied to the queries and the weighted memory (`T5CrossAttentionPlan.absorbed`).
    private func absorbedCrossAttention(layer l: Int, logits: UnsafeMutablePointer<Float>?, bias: UnsafePointer<Float>?) {
        let m = model, c = m.config, D = c.dModel, I = c.innerDim, H = c.numHeads, Dh = c.dKV
        let w = "decoder.block.\(l).layer.1.EncDecAttention"
        let wk = UnsafePointer(m.W(w + ".k.weight")), wv = UnsafePointer(m.W(w + ".v.weight"))  // (I, D) each
        let q = UnsafePointer(self.q!), ctx = self.ctx!, probs = self.probs!, beams = self.beams
        let folded = self.folded!, weighted = self.weighted!, memory = UnsafePointer(self.memory!), mask = UnsafePointer(self.mask!)
        m.timed(.attention) {
            // u (b, h, i) = Wk_hᵀ · q_h of row b·beams + i: (D) from the head's (Dh, D) rows of Wk.
            // Threads share the pairs past `Threads.minSplitWork` each: a greedy step's eight
            // heads (1 MB of weights) split in two.
            let grain = Threads.grain(work: Dh * D)
            parallelFor(rows * H, grain: grain) { pairs in
                for pair in pairs {
                    let r = pair / H, h = pair % H, b = r / beams, i = r % beams
                    Gemm.gemv(transA: true, m: Dh, n: D, a: wk + h * Dh * D, lda: D, x: q + r * I + h * Dh, beta: 0,
                              y: folded + ((b * H + h) * beams + i) * D, threads: 1)
                }
            }
            Attention.overMemory(out: weighted, probs: probs, logits: logits, q: folded, memory: memory, bias: bias,
                                 keyMask: mask, scale: 1, batch: questions, queries: H * beams, keys: M, width: D, scratch: crossScratch)
            // ctx_h of row b·beams + i = Wv_h · (Σ_j p_j x_j): (Dh) from the head's rows of Wv.
            parallelFor(rows * H, grain: grain) { pairs in
                for pair in pairs {
                    let r = pair / H, h = pair % H, b = r / beams, i = r % beams
                    Gemm.gemv(m: Dh, n: D, a: wv + h * Dh * D, lda: D, x: weighted + ((b * H + h) * beams + i) * D, beta: 0,
                              y: ctx + r * I + h * Dh, threads: 1)
                }
            }
        }
    }

    /// Reorders the self cache: new row r takes old row source[r] (beam search).
    public func reorder(_ source: UnsafeBufferPointer<Int32>) {
        precondition(source.count == rows, "T5Stepper.reorder: \(source.count) sources for \(rows) rows")
        let I = model.config.innerDim, T = maxLength, n = position * I
        for r in 0..<rows {
            let s = Int(source[r])
            precondition(s >= 0 && s < rows && s / beams == r / beams, "T5Stepper.reorder: row \(r) from \(s) crosses questions")
        }
        for cache in selfK + selfV {
            for r in 0..<rows { (gather + r * T * I).update(from: cache + Int(source[r]) * T * I, count: n) }
            for r in 0..<rows { (cache + r * T * I).update(from: gather + r * T * I, count: n) }
        }
    }
}

extension T5Stepper: DecodingStepper {}
