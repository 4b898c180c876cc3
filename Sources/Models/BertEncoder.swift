// BertEncoder: the BERT encoder's passes over a set of sequences (embeddings, post-LN layers),
// forward and backward side by side, activations in the retriever's arena under a prefix.
//
// Shape legend (DESIGN.md): n sequences of L tokens, N = n·L token rows, D hidden width,
// H heads, Dh = D/H, F intermediate width, V vocabulary.
import Tensor

extension BertRetriever {
    /// Runs the encoder over n sequences of L tokens and returns the last hidden state (N, D) in
    /// the arena (valid until the next pass with the same prefix).
    ///
    /// Keeps every activation backward needs under `pre` when `keep`; the inference path
    /// (`keep` false) reuses one set of buffers for every layer.
    ///
    /// - Parameters:
    ///   - ids: token ids (n, L).
    ///   - mask: 1 for tokens, 0 for padding (n, L); attended with only when `applyMask`, else
    ///     BERT attends to padding too (FiD's `apply_mask = False`).
    func encoderForward(pre: String, ids: UnsafePointer<Int32>, mask: UnsafePointer<Float>, n: Int, L: Int, applyMask: Bool,
                        training: Bool, keep: Bool, rng: inout RNG) -> UnsafeMutablePointer<Float> {
        precondition(L <= config.maxPositionEmbeddings, "BertRetriever: \(L) tokens > max_position_embeddings \(config.maxPositionEmbeddings)")
        let N = n * L, D = config.D, V = config.vocabSize
        for i in 0..<N where ids[i] < 0 || Int(ids[i]) >= V {
            preconditionFailure("BertRetriever: token id \(ids[i]) at row \(i / L), position \(i % L) outside the vocabulary 0..<\(V)")
        }
        let keyMask = A(pre + ".mask", N)
        keyMask.update(from: mask, count: N)
        // Embeddings: word[ids] + position[t] + token_type[0], LayerNorm, dropout.
        let e = A(pre + ".emb", N * D)
        Embedding.forward(out: e, ids: ids, table: W("embeddings.word_embeddings.weight"), count: N, vocab: V, dim: D)
        let pos = W("embeddings.position_embeddings.weight"), type0 = W("embeddings.token_type_embeddings.weight")
        parallelFor(N, grain: max(1, 8192 / D)) { r in
            for row in r {
                let er = e + row * D, pr = pos + (row % L) * D
                for d in 0..<D { er[d] += pr[d] + type0[d] }
            }
        }
        let x0 = A(pre + ".x0", N * D)
        layerNorm(pre + ".embln", y: x0, x: e, "embeddings.LayerNorm", rows: N, eps: config.layerNormEps)
        drop(pre + ".embdrop", x0, N * D, p: training ? config.hiddenDropoutProb : 0, rng: &rng)
        var x = x0
        for l in 0..<config.numHiddenLayers {
            let lp = keep ? "\(pre).\(l)" : "\(pre).inf"
            let out = A(keep ? "\(pre).x\(l + 1)" : "\(pre).inf\((l + 1) % 2).x", N * D)
            layerForward(l, pre: lp, x: x, out: out, n: n, L: L, keyMask: applyMask ? keyMask : nil, training: training, keep: keep,
                         rng: &rng)
            x = out
        }
        return x
    }

    /// Backward of `encoderForward` (which must have run with `keep`): dOut (N, D) is ∂/∂(last
    /// hidden state), consumed; gradients accumulate into `grads`.
    func encoderBackward(pre: String, ids: UnsafePointer<Int32>, n: Int, L: Int, applyMask: Bool, training: Bool,
                         dOut: UnsafeMutablePointer<Float>, grads: ParameterSlab) {
        let N = n * L, D = config.D
        var dx = dOut
        for l in stride(from: config.numHiddenLayers - 1, through: 0, by: -1) {
            let dIn = A(pre + ".dx\(l % 2)", N * D)
            layerBackward(l, pre: "\(pre).\(l)", x: A(l == 0 ? "\(pre).x0" : "\(pre).x\(l)", N * D), dOut: dx, dIn: dIn, n: n, L: L,
                          keyMask: applyMask ? A(pre + ".mask", N) : nil, training: training, grads: grads)
            dx = dIn
        }
        dropBack(pre + ".embdrop", dx, N * D, p: training ? config.hiddenDropoutProb : 0)
        let de = Z("grad.emb", N * D)
        layerNormBackward(pre + ".embln", dx: de, dy: dx, x: A(pre + ".emb", N * D), "embeddings.LayerNorm", rows: N, grads: grads)
        let dWord = grads["embeddings.word_embeddings.weight"]
        Embedding.backward(dTable: dWord, dOut: de, ids: ids, count: N, vocab: config.vocabSize, dim: D)
        // BERT's word table has padding_idx = pad_token_id: PyTorch never gives that row a gradient
        // (it matters when masks are off and padding feeds the pooled mean).
        (dWord + config.padTokenId * D).update(repeating: 0, count: D)
        // Positions and the one token type: the same scatter-add with fixed ids.
        let posIds = positionIds(n: n, L: L)
        posIds.withUnsafeBufferPointer {
            Embedding.backward(dTable: grads["embeddings.position_embeddings.weight"], dOut: de, ids: $0.baseAddress!, count: N,
                               vocab: config.maxPositionEmbeddings, dim: D)
        }
        [Int32](repeating: 0, count: N).withUnsafeBufferPointer {
            Embedding.backward(dTable: grads["embeddings.token_type_embeddings.weight"], dOut: de, ids: $0.baseAddress!, count: N,
                               vocab: config.typeVocabSize, dim: D)
        }
    }

    func positionIds(n: Int, L: Int) -> [Int32] {
        var ids = [Int32](repeating: 0, count: n * L)
        for i in 0..<(n * L) { ids[i] = Int32(i % L) }
        return ids
    }

    /// One post-LN layer: h1 = LN(x + drop(Wo·attn(x))), out = LN(h1 + drop(W2·gelu(W1·h1))).
    /// x, out (N, D); keyMask (n, L) or nil.
    func layerForward(_ l: Int, pre: String, x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, n: Int, L: Int,
                      keyMask: UnsafePointer<Float>?, training: Bool, keep: Bool, rng: inout RNG) {
        let N = n * L, D = config.D, F = config.intermediateSize, H = config.numAttentionHeads
        let w = "encoder.layer.\(l)."
        // Half precision only where nothing is kept for a backward (`withHalfPrecision`).
        let half = keep ? nil : self.half
        let q = A(pre + ".q", N * D), k = A(pre + ".k", N * D), v = A(pre + ".v", N * D)
        // Three independent products: side by side when each is one Gemm tile, which would
        // leave every core but one idle (the same bits either way: each product is unchanged).
        concurrently(3, threads: Gemm.isOneTile(m: N, n: D, k: D) ? nil : 1) { i in
            let (y, name) = i == 0 ? (q, "query") : i == 1 ? (k, "key") : (v, "value")
            linear(y, x, w + "attention.self." + name, rows: N, inF: D, outF: D, half: half)
        }
        let size = Attention.Size(batch: n, heads: H, queryLength: L, keyLength: L, headDim: config.headDim)
        let p = training ? config.attentionProbsDropoutProb : 0
        // Inference keeps no probabilities (no backward follows).
        let ctx = A(pre + ".ctx", N * D), probs = keep ? A(pre + ".probs", size.probsCount) : nil
        let pmask = p > 0 ? A(pre + ".pmask", size.probsCount) : nil
        // FiD's BERT adds (1 − m)·−10000 to masked keys' logits; in float32 their probability then
        // underflows to exactly 0 whenever one key is visible ([CLS] always is), which is what the
        // kernel's hidden keys get.
        Attention.forward(out: ctx, probs: probs, dropoutMask: pmask, logits: nil, q: q, k: k, v: v, bias: nil, keyMask: keyMask,
                          causal: false, scale: 1 / Float(config.headDim).squareRoot(), dropout: p, rng: &rng, size: size)
        let hp = training ? config.hiddenDropoutProb : 0
        let a = A(pre + ".a", N * D)
        linearDropAdd(a, ctx, w + "attention.output.dense", rows: N, inF: D, outF: D, residual: x, drop: pre + ".adrop", p: hp, rng: &rng,
                      half: half)
        let h1 = A(pre + ".h1", N * D)
        layerNorm(pre + ".ln1", y: h1, x: a, w + "attention.output.LayerNorm", rows: N, eps: config.layerNormEps)
        // Inference writes g over i (backward needs neither); a kept forward keeps i for GELU′.
        // (The bias stays in the product: with beta = 0 OpenBLAS zeroes C first, a pass as long
        // as the bias seeding, so a bias fused into the GELU pass saved nothing.)
        let i = A(pre + ".i", N * F), g = keep ? A(pre + ".g", N * F) : i
        linear(i, h1, w + "intermediate.dense", rows: N, inF: D, outF: F, half: half)
        GELU.forward(out: g, x: i, count: N * F, approximate: config.gelu)
        let o = A(pre + ".o", N * D)
        linearDropAdd(o, g, w + "output.dense", rows: N, inF: F, outF: D, residual: h1, drop: pre + ".odrop", p: hp, rng: &rng,
                      half: half)
        layerNorm(pre + ".ln2", y: out, x: o, w + "output.LayerNorm", rows: N, eps: config.layerNormEps)
    }

    /// Backward of `layerForward`: dOut (N, D) is ∂/∂out (overwritten as scratch), dIn (N, D)
    /// receives ∂/∂x.
    func layerBackward(_ l: Int, pre: String, x: UnsafePointer<Float>, dOut: UnsafeMutablePointer<Float>,
                       dIn: UnsafeMutablePointer<Float>, n: Int, L: Int, keyMask: UnsafePointer<Float>?, training: Bool,
                       grads: ParameterSlab) {
        let N = n * L, D = config.D, F = config.intermediateSize, H = config.numAttentionHeads
        let w = "encoder.layer.\(l)."
        let hp = training ? config.hiddenDropoutProb : 0
        // out = LN2(o + h1): do = dh1 (residual part) = LN2′(dOut).
        let dO = Z("grad.o", N * D)
        layerNormBackward(pre + ".ln2", dx: dO, dy: dOut, x: A(pre + ".o", N * D), w + "output.LayerNorm", rows: N, grads: grads)
        let dh1 = A("grad.h1", N * D)
        dh1.update(from: dO, count: N * D)
        dropBack(pre + ".odrop", dO, N * D, p: hp)
        let dg = Z("grad.g", N * F)
        linearBackward(dx: dg, dy: dO, x: A(pre + ".g", N * F), w + "output.dense", rows: N, inF: F, outF: D, grads: grads)
        let di = Z("grad.i", N * F)
        GELU.backward(dx: di, dy: dg, x: A(pre + ".i", N * F), count: N * F, approximate: config.gelu)
        linearBackward(dx: dh1, dy: di, x: A(pre + ".h1", N * D), w + "intermediate.dense", rows: N, inF: D, outF: F, grads: grads)
        // h1 = LN1(a + x): da = dx (residual part) = LN1′(dh1).
        let dA = Z("grad.a", N * D)
        layerNormBackward(pre + ".ln1", dx: dA, dy: dh1, x: A(pre + ".a", N * D), w + "attention.output.LayerNorm", rows: N, grads: grads)
        dIn.update(from: dA, count: N * D)
        dropBack(pre + ".adrop", dA, N * D, p: hp)
        let dctx = Z("grad.ctx", N * D)
        linearBackward(dx: dctx, dy: dA, x: A(pre + ".ctx", N * D), w + "attention.output.dense", rows: N, inF: D, outF: D, grads: grads)
        let size = Attention.Size(batch: n, heads: H, queryLength: L, keyLength: L, headDim: config.headDim)
        let p = training ? config.attentionProbsDropoutProb : 0
        let dq = Z("grad.q", N * D), dk = Z("grad.k", N * D), dv = Z("grad.v", N * D)
        let q = A(pre + ".q", N * D), k = A(pre + ".k", N * D), v = A(pre + ".v", N * D)
        Attention.backward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dctx, q: q, k: k, v: v, probs: A(pre + ".probs", size.probsCount),
                           dropoutMask: p > 0 ? UnsafePointer(A(pre + ".pmask", size.probsCount)) : nil,
                           scale: 1 / Float(config.headDim).squareRoot(), size: size)
        linearBackward(dx: dIn, dy: dq, x: x, w + "attention.self.query", rows: N, inF: D, outF: D, grads: grads)
        linearBackward(dx: dIn, dy: dk, x: x, w + "attention.self.key", rows: N, inF: D, outF: D, grads: grads)
        linearBackward(dx: dIn, dy: dv, x: x, w + "attention.self.value", rows: N, inF: D, outF: D, grads: grads)
        _ = keyMask  // masked keys got probability 0 in forward; backward reads the probabilities alone
    }

    // MARK: - Building blocks over the slab

    func A(_ name: String, _ n: Int) -> UnsafeMutablePointer<Float> { arena.take(name, n) }
    func Z(_ name: String, _ n: Int) -> UnsafeMutablePointer<Float> { arena.takeZeroed(name, n) }
    func W(_ name: String) -> UnsafeMutablePointer<Float> { params[name] }

    /// y (rows, out) = x (rows, in) · Wᵀ + b (+ residual (rows, out)) for the Linear named `m`
    /// (`m.weight`, `m.bias`); with `half`'s pack of `m`, the product at half precision.
    func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ m: String, rows: Int, inF: Int, outF: Int,
                residual: UnsafePointer<Float>? = nil, half: HalfPrecisionPacks? = nil) {
        if let half, let packed = half.weights[m] {
            Linear.forward(y: y, x: x, weights: packed, kernel: half.kernel, bias: W(m + ".bias"), residual: residual, rows: rows)
            return
        }
        Linear.forward(y: y, x: x, weight: W(m + ".weight"), bias: W(m + ".bias"), residual: residual, rows: rows,
                       inFeatures: inF, outFeatures: outF)
    }

    /// y = dropout(x·Wᵀ + b) + residual, the dropout's mask kept under `drop`. Without dropout the
    /// residual and the bias seed the product's output (beta = 1): no add pass of their own.
    func linearDropAdd(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ m: String, rows: Int, inF: Int, outF: Int,
                       residual: UnsafePointer<Float>, drop name: String, p: Float, rng: inout RNG,
                       half: HalfPrecisionPacks? = nil) {
        if p > 0 {
            linear(y, x, m, rows: rows, inF: inF, outF: outF, half: half)
            drop(name, y, rows * outF, p: p, rng: &rng)
            Elementwise.add(out: y, y, residual, count: rows * outF)
        } else {
            linear(y, x, m, rows: rows, inF: inF, outF: outF, residual: residual, half: half)
        }
    }

    /// dx += dy·W (when dx is given), dW += dyᵀ·x, db += Σ dy for the Linear named `m`.
    func linearBackward(dx: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, _ m: String,
                        rows: Int, inF: Int, outF: Int, grads: ParameterSlab) {
        Linear.backward(dx: dx, dWeight: grads[m + ".weight"], dBias: grads[m + ".bias"], dy: dy, x: x, weight: W(m + ".weight"),
                        rows: rows, inFeatures: inF, outFeatures: outF)
    }

    /// y = LayerNorm named `m` (`m.weight`, `m.bias`) of x, keeping mean and rstd under `pre`.
    func layerNorm(_ pre: String, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, _ m: String, rows: Int, eps: Float,
                   width: Int? = nil) {
        let D = width ?? config.D
        LayerNorm.forward(y: y, mean: A(pre + ".mean", rows), rstd: A(pre + ".rstd", rows), x: x, weight: W(m + ".weight"),
                          bias: W(m + ".bias"), rows: rows, dim: D, eps: eps)
    }

    /// dx += LayerNorm′ · dy, with the weight and bias gradients, from the statistics under `pre`.
    func layerNormBackward(_ pre: String, dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                           _ m: String, rows: Int, grads: ParameterSlab, width: Int? = nil) {
        let D = width ?? config.D
        LayerNorm.backward(dx: dx, dWeight: grads[m + ".weight"], dBias: grads[m + ".bias"], dy: dy, x: x, weight: W(m + ".weight"),
                           mean: A(pre + ".mean", rows), rstd: A(pre + ".rstd", rows), rows: rows, dim: D)
    }

    /// Inverted dropout in place, keeping its mask under `name` (only when p > 0).
    func drop(_ name: String, _ x: UnsafeMutablePointer<Float>, _ n: Int, p: Float, rng: inout RNG) {
        guard p > 0 else { return }
        Dropout.forward(out: x, mask: A(name, n), x: x, count: n, p: p, training: true, rng: &rng)
    }

    /// dx *= the mask kept under `name` (only when p > 0).
    func dropBack(_ name: String, _ dx: UnsafeMutablePointer<Float>, _ n: Int, p: Float) {
        guard p > 0 else { return }
        let m = A(name, n)
        parallelFor(n, grain: 16_384) { r in for i in r { dx[i] *= m[i] } }
    }
}
