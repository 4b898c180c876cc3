// T5ModelPasses: the whole-model forward (FiD encoder per passage, joined memory, decoder, loss)
// and its backward, in mirrored order.
import Tensor

extension T5Model {
    /// Internal buffer prefix of encoder block l: one per block when training keeps them for
    /// backward; one shared set when checkpointing, and in eval (`score`, evaluation), whose
    /// forward no backward follows as a rule: a backward after one recomputes each block from
    /// its saved input, as checkpointing does. (Eval kept every block's buffers: most of a
    /// score job's memory, some 0.19 GB per passage for t5-base at 250 tokens.)
    func encPrefix(_ l: Int, training: Bool) -> String { useCheckpoint || !training ? "eR" : "e\(l)" }

    /// Runs FiD's forward. With `training` dropout is on (drawn from `rng`) and backward may
    /// follow; `scores` also returns the cross-attention passage scores.
    public func forward(_ batch: T5Batch, training: Bool = false, rng: inout RNG, scores wantScores: Bool = false) -> T5Output {
        let B = batch.questions, P = batch.passages, L = batch.passageLength, T = batch.targetLength
        let NP = B * P, N = NP * L, M = P * L, Td = B * T
        let Ld = config.decoderLayers, NB = config.relativeAttentionNumBuckets
        let maxDist = config.relativeAttentionMaxDistance

        let memory = encoderForward(batch.inputIds, batch.attentionMask, rows: NP, L: L, training: training, rng: &rng)
        let mask = A("mask", N)
        let encBuckets = encoderBuckets(L)
        let rngAtBlock = lastRngAtBlock, encoderRows = lastEncoderRows!

        // Decoder.
        let y0 = A("x.d0", Td * D)
        timed(.embed) {
            batch.decoderInputIds.withUnsafeBufferPointer {
                Embedding.forward(out: y0, ids: $0.baseAddress!, table: W("shared.weight"), count: Td, vocab: V, dim: D)
            }
        }
        drop("d.embmask", y0, Td * D, training: training, rng: &rng)
        let decBuckets = RelativePosition.buckets(queryLength: T, keyLength: T, bidirectional: false, numBuckets: NB, maxDistance: maxDist)
        let decBias = A("d.bias", H * T * T)
        RelativePosition.forward(bias: decBias, table: W("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
                                 buckets: decBuckets, count: T * T, heads: H)
        var crossBuckets: [Int32]? = nil
        var crossBias: UnsafeMutablePointer<Float>? = nil
        if crossBiasOn {
            // transformers 3.0.2: causal buckets of (memory position − decoder position) over the joined P·L memory.
            let b = RelativePosition.buckets(queryLength: T, keyLength: M, bidirectional: false, numBuckets: NB, maxDistance: maxDist)
            let bias = A("d.crossBias", H * T * M)
            RelativePosition.forward(bias: bias, table: W(Self.crossBiasName), buckets: b, count: T * M, heads: H)
            crossBuckets = b
            crossBias = bias
        }
        var crossLogits: [UnsafeMutablePointer<Float>] = []
        let absorbed = crossPlan(T: T, M: M) == .absorbed
        for l in 0..<Ld {
            let logits = wantScores ? A("d\(l).ca.logits", B * H * T * M) : nil
            if let logits { crossLogits.append(logits) }
            decoderBlockForward(l, B: B, T: T, M: M, memory: memory, mask: mask, selfBias: decBias, crossBias: crossBias,
                                training: training, rng: &rng, crossLogits: logits, absorbed: absorbed)
        }
        let y = A("d.out", Td * D), dRstd = A("d.outRstd", Td)
        let yIn = A("x.d\(Ld)", Td * D)
        timed(.norm) { RMSNorm.forward(y: y, rstd: dRstd, x: yIn, weight: W("decoder.final_layer_norm.weight"), rows: Td, dim: D, eps: eps) }
        drop("d.outmask", y, Td * D, training: training, rng: &rng)

        // LM head: logits = (y · d_model^-0.5) · lm_headᵀ when tied.
        var logits = Tensor.zeros([Td, V])
        timed(.lmHead) {
            logits.withUnsafeMutableBufferPointer { out in
                Gemm.gemm(transB: true, m: Td, n: V, k: D, alpha: outputScale, a: y, lda: D, b: W("lm_head.weight"), ldb: D,
                          beta: 0, c: out.baseAddress!, ldc: V)
            }
        }
        var loss: Float? = nil
        var ce: CrossEntropy.Cache? = nil
        if let labels = batch.labels {
            let (value, cache) = timed(.loss) { CrossEntropy.forward(logits: logits, targets: labels) }
            loss = value
            ce = cache
        }
        last = Saved(batch: batch, training: training, rngAtBlock: rngAtBlock, encoderRows: encoderRows, logits: logits, ce: ce,
                     encBuckets: encBuckets, decBuckets: decBuckets, crossBuckets: crossBuckets, absorbed: absorbed)
        var scoreTensor: Tensor? = nil
        if wantScores { scoreTensor = passageScores(crossLogits, mask: mask, B: B, P: P, L: L, T: T) }
        return T5Output(logits: logits.reshaped([B, T, V]), loss: loss, scores: scoreTensor)
    }

    func encoderBuckets(_ L: Int) -> [Int32] {
        RelativePosition.buckets(queryLength: L, keyLength: L, bidirectional: true, numBuckets: config.relativeAttentionNumBuckets,
                                 maxDistance: config.relativeAttentionMaxDistance)
    }

    /// FiD's encoder: every passage row alone, relative positions restarting per passage, over
    /// the kept rows only (`T5EncoderRows`: each passage without its trailing padding).
    /// Returns the memory (rows·L, D), i.e. (B, P·L, D) for rows = B·P, zero at the dropped rows;
    /// keeps the mask under "mask", the kept rows in `lastEncoderRows` and the RNG state before
    /// each block in `lastRngAtBlock`.
    func encoderForward(_ ids: [Int32], _ attentionMask: [Float], rows NP: Int, L: Int, training: Bool, rng: inout RNG) -> UnsafeMutablePointer<Float> {
        let N = NP * L, Le = config.numLayers
        let mask = A("mask", N)
        attentionMask.withUnsafeBufferPointer { mask.update(from: $0.baseAddress!, count: N) }
        let kept = EncoderRows(keepsPaddedRows ? T5EncoderRows(keepingAll: NP, length: L) : T5EncoderRows(mask: mask, passages: NP, length: L, alignment: encoderRowAlignment),
                               heads: H)
        lastEncoderRows = kept
        let Nk = kept.rows.rows  // N': kept rows
        let keyMask = A("e.kmask", Nk)
        kept.rows.pack(mask, into: keyMask)
        let x0 = A("x.e0", Nk * D)
        timed(.embed) {
            kept.rows.pack(ids).withUnsafeBufferPointer {
                Embedding.forward(out: x0, ids: $0.baseAddress!, table: W("shared.weight"), count: Nk, vocab: V, dim: D)
            }
        }
        drop("e.embmask", x0, Nk * D, training: training, rng: &rng)
        let encBias = A("e.bias", H * L * L)
        RelativePosition.forward(bias: encBias, table: W("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
                                 buckets: encoderBuckets(L), count: L * L, heads: H)
        lastRngAtBlock = []
        for l in 0..<Le {
            lastRngAtBlock.append(rng)
            // A block under the shared "eR" prefix (eval, use_checkpoint) is replayed before its
            // backward, so this pass keeps no probabilities.
            let pre = encPrefix(l, training: training)
            encoderBlockForward(l, pre: pre, kept: kept, passages: NP, L: L, training: training, keepProbs: pre != "eR", rng: &rng)
        }
        let memory = A("e.out", N * D), eRstd = A("e.outRstd", Nk)
        let eIn = A("x.e\(Le)", Nk * D)
        timed(.norm) {
            // Every row kept is one run: one call over all rows, as before.
            for (r, n) in kept.rows.lengths.enumerated() where n < L {
                (memory + (r * L + n) * D).update(repeating: 0, count: (L - n) * D)
            }
            for run in kept.rows.runs {
                RMSNorm.forward(y: memory + run.padded * D, rstd: eRstd + run.packed, x: eIn + run.packed * D,
                                weight: W("encoder.final_layer_norm.weight"), rows: run.count, dim: D, eps: eps)
            }
        }
        drop("e.outmask", memory, N * D, training: training, rng: &rng)
        return memory
    }

    /// The eval encoder (FiD's, per passage row): the memory (rows·L, D) in the model's arena,
    /// valid until the next forward or encode.
    public func encode(inputIds: [Int32], attentionMask: [Float], rows: Int, L: Int) -> UnsafeMutablePointer<Float> {
        var rng = RNG(seed: 0)
        return encoderForward(inputIds, attentionMask, rows: rows, L: L, training: false, rng: &rng)
    }

    /// Eval forward (no dropout, no RNG needed).
    public func forward(_ batch: T5Batch, scores: Bool = false) -> T5Output {
        var rng = RNG(seed: 0)
        return forward(batch, training: false, rng: &rng, scores: scores)
    }

    /// d_model^-0.5 when the output layer is the tied embedding, else 1.
    var outputScale: Float { config.scalesDecoderOutput ? 1 / Float(D).squareRoot() : 1 }

    /// FiD's passage scores (fid-spec §3.5): the first decoder position's pre-softmax
    /// cross-attention logits, summed over heads, layers and each passage's real tokens, divided
    /// by their number (heads · layers · tokens). A passage without real tokens scores 0 (FiD
    /// divides by zero there).
    func passageScores(_ logits: [UnsafeMutablePointer<Float>], mask: UnsafePointer<Float>, B: Int, P: Int, L: Int, T: Int) -> Tensor {
        let M = P * L
        var out = Tensor.zeros([B, P])
        for b in 0..<B {
            for p in 0..<P {
                var sum = 0.0
                var real = 0
                for t in 0..<L where mask[(b * P + p) * L + t] != 0 { real += 1 }
                for lg in logits {
                    for h in 0..<H {
                        let row = lg + ((b * H + h) * T + 0) * M + p * L
                        for t in 0..<L where mask[(b * P + p) * L + t] != 0 { sum += Double(row[t]) }
                    }
                }
                let count = real * H * logits.count
                out.data[b * P + p] = count == 0 ? 0 : Float(sum / Double(count))
            }
        }
        return out
    }

    func encoderBlockForward(_ l: Int, pre: String, kept: EncoderRows, passages NP: Int, L: Int, training: Bool, keepProbs: Bool,
                             rng: inout RNG) {
        let w = "encoder.block.\(l).layer", N = kept.rows.rows
        let xIn = A("x.e\(l)", N * D), xMid = A(pre + ".xm", N * D), xOut = A("x.e\(l + 1)", N * D)
        attentionForward(pre + ".sa", w + ".0.SelfAttention", ln: w + ".0.layer_norm.weight", xIn: xIn, xOut: xMid, memory: nil,
                         size: .init(batch: NP, heads: H, queryLength: L, keyLength: L, headDim: Dh), ragged: kept.ragged,
                         bias: A("e.bias", H * L * L), keyMask: A("e.kmask", N), causal: false, training: training, rng: &rng,
                         keepProbs: keepProbs)
        ffnForward(pre + ".ff", w + ".1", xIn: xMid, xOut: xOut, rows: N, training: training, rng: &rng)
    }

    func encoderBlockBackward(_ l: Int, pre: String, kept: EncoderRows, passages NP: Int, L: Int, dx: UnsafeMutablePointer<Float>,
                              dBias: UnsafeMutablePointer<Float>, training: Bool, grads: ParameterSlab) {
        let w = "encoder.block.\(l).layer", N = kept.rows.rows
        ffnBackward(pre + ".ff", w + ".1", xIn: A(pre + ".xm", N * D), dx: dx, rows: N, training: training, grads: grads)
        attentionBackward(pre + ".sa", w + ".0.SelfAttention", ln: w + ".0.layer_norm.weight", xIn: A("x.e\(l)", N * D), dx: dx,
                          memory: nil, dMemory: nil, size: .init(batch: NP, heads: H, queryLength: L, keyLength: L, headDim: Dh),
                          ragged: kept.ragged, dBias: dBias, training: training, grads: grads)
    }

    func decoderBlockForward(
        _ l: Int, B: Int, T: Int, M: Int, memory: UnsafePointer<Float>, mask: UnsafePointer<Float>,
        selfBias: UnsafePointer<Float>, crossBias: UnsafePointer<Float>?, training: Bool, rng: inout RNG,
        crossLogits: UnsafeMutablePointer<Float>?, absorbed: Bool
    ) {
        let w = "decoder.block.\(l).layer", pre = "d\(l)", Td = B * T
        let xIn = A("x.d\(l)", Td * D), x1 = A(pre + ".x1", Td * D), x2 = A(pre + ".x2", Td * D), xOut = A("x.d\(l + 1)", Td * D)
        attentionForward(pre + ".sa", w + ".0.SelfAttention", ln: w + ".0.layer_norm.weight", xIn: xIn, xOut: x1, memory: nil,
                         size: .init(batch: B, heads: H, queryLength: T, keyLength: T, headDim: Dh), bias: selfBias, keyMask: nil,
                         causal: true, training: training, rng: &rng)
        attentionForward(pre + ".ca", w + ".1.EncDecAttention", ln: w + ".1.layer_norm.weight", xIn: x1, xOut: x2, memory: memory,
                         size: .init(batch: B, heads: H, queryLength: T, keyLength: M, headDim: Dh), bias: crossBias, keyMask: mask,
                         causal: false, training: training, rng: &rng, logits: crossLogits, absorbed: absorbed)
        ffnForward(pre + ".ff", w + ".2", xIn: x2, xOut: xOut, rows: Td, training: training, rng: &rng)
    }

    func decoderBlockBackward(
        _ l: Int, B: Int, T: Int, M: Int, memory: UnsafePointer<Float>, dMemory: UnsafeMutablePointer<Float>,
        dx: UnsafeMutablePointer<Float>, dSelfBias: UnsafeMutablePointer<Float>, dCrossBias: UnsafeMutablePointer<Float>?,
        training: Bool, grads: ParameterSlab, absorbed: Bool
    ) {
        let w = "decoder.block.\(l).layer", pre = "d\(l)", Td = B * T
        ffnBackward(pre + ".ff", w + ".2", xIn: A(pre + ".x2", Td * D), dx: dx, rows: Td, training: training, grads: grads)
        attentionBackward(pre + ".ca", w + ".1.EncDecAttention", ln: w + ".1.layer_norm.weight", xIn: A(pre + ".x1", Td * D), dx: dx,
                          memory: memory, dMemory: dMemory, size: .init(batch: B, heads: H, queryLength: T, keyLength: M, headDim: Dh),
                          dBias: dCrossBias, training: training, grads: grads, absorbed: absorbed)
        attentionBackward(pre + ".sa", w + ".0.SelfAttention", ln: w + ".0.layer_norm.weight", xIn: A("x.d\(l)", Td * D), dx: dx,
                          memory: nil, dMemory: nil, size: .init(batch: B, heads: H, queryLength: T, keyLength: T, headDim: Dh),
                          dBias: dSelfBias, training: training, grads: grads)
    }

    /// Accumulates ∂loss/∂parameters of the last forward (which must have had labels) into `grads`.
    public func backward(into grads: ParameterSlab) {
        guard let s = last, let ce = s.ce, let labels = s.batch.labels else {
            preconditionFailure("T5Model.backward: needs a forward with labels first")
        }
        precondition(grads.layout == layout, "T5Model.backward: gradient slab of another layout")
        let batch = s.batch, training = s.training
        let B = batch.questions, P = batch.passages, L = batch.passageLength, T = batch.targetLength
        let NP = B * P, N = NP * L, M = P * L, Td = B * T
        let Le = config.numLayers, Ld = config.decoderLayers, NB = config.relativeAttentionNumBuckets

        // Loss and LM head.
        var dLogits = Tensor.zeros([Td, V])
        timed(.loss) { CrossEntropy.backward(dLoss: 1, logits: s.logits, targets: labels, cache: ce, dLogits: &dLogits) }
        let y = A("d.out", Td * D), dy = A("grad.y", Td * D)
        timed(.lmHeadBack) {
            dLogits.withUnsafeBufferPointer { g in
                let g = g.baseAddress!
                let dW = grads["lm_head.weight"], apart = Gemm.isOneTile(m: Td, n: D, k: V) && Gemm.isOneTile(m: V, n: D, k: Td)
                concurrently(2, threads: apart ? nil : 1) { i in
                    if i == 0 {
                        Gemm.gemm(m: Td, n: D, k: V, alpha: outputScale, a: g, lda: V, b: W("lm_head.weight"), ldb: D, beta: 0, c: dy, ldc: D)
                    } else {
                        Gemm.gemm(transA: true, m: V, n: D, k: Td, alpha: outputScale, a: g, lda: V, b: y, ldb: D, beta: 1, c: dW, ldc: D)
                    }
                }
            }
        }
        dropBack("d.outmask", dy, Td * D, training: training)
        let dx = Z("grad.xd", Td * D), yIn = A("x.d\(Ld)", Td * D), yRstd = A("d.outRstd", Td)
        timed(.normBack) {
            RMSNorm.backward(dx: dx, dWeight: grads["decoder.final_layer_norm.weight"], dy: dy, x: yIn,
                             weight: W("decoder.final_layer_norm.weight"), rstd: yRstd, rows: Td, dim: D)
        }

        // Decoder blocks, last first; the memory's gradient gathers from every cross-attention.
        let memory = A("e.out", N * D), dMemory = Z("grad.memory", N * D)
        let dDecBias = Z("grad.dbias", H * T * T)
        let dCrossBias = s.crossBuckets != nil ? Z("grad.cbias", H * T * M) : nil
        for l in stride(from: Ld - 1, through: 0, by: -1) {
            decoderBlockBackward(l, B: B, T: T, M: M, memory: memory, dMemory: dMemory, dx: dx, dSelfBias: dDecBias,
                                 dCrossBias: dCrossBias, training: training, grads: grads, absorbed: s.absorbed)
        }
        dropBack("d.embmask", dx, Td * D, training: training)
        timed(.embed) {
            batch.decoderInputIds.withUnsafeBufferPointer {
                Embedding.backward(dTable: grads["shared.weight"], dOut: dx, ids: $0.baseAddress!, count: Td, vocab: V, dim: D)
            }
        }
        RelativePosition.backward(dTable: grads["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                                  dBias: dDecBias, buckets: s.decBuckets, count: T * T, heads: H, numBuckets: NB)
        if let dCrossBias, let b = s.crossBuckets {
            RelativePosition.backward(dTable: grads[Self.crossBiasName], dBias: dCrossBias, buckets: b, count: T * M, heads: H, numBuckets: NB)
        }

        // Encoder, over its kept rows.
        let kept = s.encoderRows, Nk = kept.rows.rows
        dropBack("e.outmask", dMemory, N * D, training: training)
        let de = Z("grad.xe", Nk * D), eIn = A("x.e\(Le)", Nk * D), eRstd = A("e.outRstd", Nk)
        timed(.normBack) {
            // The dropped rows' gradient is zero (the decoder masks them), so only the runs read it.
            for run in kept.rows.runs {
                RMSNorm.backward(dx: de + run.packed * D, dWeight: grads["encoder.final_layer_norm.weight"], dy: dMemory + run.padded * D,
                                 x: eIn + run.packed * D, weight: W("encoder.final_layer_norm.weight"), rstd: eRstd + run.packed,
                                 rows: run.count, dim: D)
            }
        }
        let dEncBias = Z("grad.ebias", H * L * L)
        for l in stride(from: Le - 1, through: 0, by: -1) {
            let pre = encPrefix(l, training: training)
            if pre == "eR" {
                // Replays block l from its saved input with the same dropout draws (none in eval).
                var rng = s.rngAtBlock[l]
                encoderBlockForward(l, pre: pre, kept: kept, passages: NP, L: L, training: training, keepProbs: true, rng: &rng)
            }
            encoderBlockBackward(l, pre: pre, kept: kept, passages: NP, L: L, dx: de, dBias: dEncBias, training: training, grads: grads)
        }
        dropBack("e.embmask", de, Nk * D, training: training)
        timed(.embed) {
            kept.rows.pack(batch.inputIds).withUnsafeBufferPointer {
                Embedding.backward(dTable: grads["shared.weight"], dOut: de, ids: $0.baseAddress!, count: Nk, vocab: V, dim: D)
            }
        }
        RelativePosition.backward(dTable: grads["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                                  dBias: dEncBias, buckets: s.encBuckets, count: L * L, heads: H, numBuckets: NB)
    }
}
