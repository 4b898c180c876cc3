// T5Model: Fusion-in-Decoder's T5 (transformers' T5ForConditionalGeneration with FiD's encoder
// wrapper) over one parameter slab: forward, loss and backward, layer by layer in mirrored order.
//
// Shape legend (DESIGN.md): B questions, P passages, L passage tokens, N = B·P·L encoder rows,
// M = P·L memory positions per question, T decoder positions, D d_model, H heads, Dh d_kv,
// I = H·Dh, F d_ff, V vocabulary.
import Tensor

/// A T5 encoder-decoder with its parameters in one `ParameterSlab` under Hugging Face names.
///
/// Activations live in an arena keyed by layer, allocated once for the largest batch shape.
/// `forward` keeps what `backward` needs; `backward` accumulates into a gradient slab of the same
/// layout, so the optimizer and clipping see one flat buffer.
public final class T5Model {
    public let config: T5Config
    public let layout: ParameterLayout
    public let params: ParameterSlab
    /// Whether the checkpoint carries transformers 3.0.2's block-0 cross-attention bias.
    public let hasCrossAttentionBias: Bool
    /// Apply that bias as 3.0.2 did (fid-spec §3.8); false does what transformers 4+ does (none).
    public var useCrossAttentionBias: Bool
    /// Recompute each encoder block in backward from its saved input and RNG state, instead of
    /// keeping its activations (FiD's `--use_checkpoint`). Gradients are bit-identical.
    /// Switching frees the activation buffers, so the arena then holds only what the new mode needs.
    public var useCheckpoint = false {
        didSet {
            if useCheckpoint != oldValue {
                arena.release()
                last = nil
            }
        }
    }

    /// The plan of the decoder's cross-attention in `forward` and `backward`: `.absorbed` never
    /// forms the memory's keys and values, `.cachedKeys` forms them per pass. nil (the default)
    /// picks, per batch, the one with less arithmetic for its shape (`crossPlan`): with FiD's
    /// short answers that is `.absorbed`. Both compute the same function with the same dropout
    /// draws; set it to compare them.
    public var crossAttentionPlan: T5CrossAttentionPlan?

    /// Per-phase timing of forward, backward and decoding steps while attached (nil: none).
    public var profile: T5Profile?

    let arena = T5Arena()
    /// What the last forward saw, for backward.
    var last: Saved?
    /// RNG state before each encoder block in the last encoder pass (replayed when checkpointing).
    var lastRngAtBlock: [RNG] = []
    /// The rows the last encoder pass computed.
    var lastEncoderRows: EncoderRows?
    /// Compute the padded rows too, as transformers does (tests compare the two).
    var keepsPaddedRows = false
    /// The multiple each passage's kept rows are rounded up to (`T5EncoderRows`).
    var encoderRowAlignment = Gemm.rowBlocking

    /// The encoder's kept rows and their attention layout (nil when every row is kept).
    struct EncoderRows {
        var rows: T5EncoderRows
        var ragged: Attention.Ragged?

        init(_ rows: T5EncoderRows, heads: Int) {
            self.rows = rows
            ragged = rows.ragged(heads: heads)
        }
    }

    struct Saved {
        var batch: T5Batch
        var training: Bool
        var rngAtBlock: [RNG]
        var encoderRows: EncoderRows
        var logits: Tensor
        var ce: CrossEntropy.Cache?
        var encBuckets: [Int32]
        var decBuckets: [Int32]
        var crossBuckets: [Int32]?
        /// Whether the decoder's cross-attention ran under `.absorbed`.
        var absorbed: Bool
    }

    /// A model with zero parameters of the config's layout (load or initialise them next).
    public init(config: T5Config, crossAttentionBias: Bool = false) {
        self.config = config
        layout = config.layout(crossAttentionBias: crossAttentionBias)
        params = ParameterSlab(layout: layout)
        hasCrossAttentionBias = crossAttentionBias
        useCrossAttentionBias = crossAttentionBias
    }

    var D: Int { config.dModel }
    var H: Int { config.numHeads }
    var Dh: Int { config.dKV }
    var I: Int { config.innerDim }
    var F: Int { config.dFF }
    var V: Int { config.vocabSize }
    var eps: Float { config.layerNormEpsilon }
    var rate: Float { config.dropoutRate }
    var crossBiasOn: Bool { hasCrossAttentionBias && useCrossAttentionBias }

    /// The cross-attention plan of a pass with T decoder positions over M memory rows per
    /// question: `crossAttentionPlan`, else the one with less arithmetic
    /// (`Attention.crossAttentionWork`; for t5-small's widths over 25 passages of 200 tokens,
    /// `.absorbed` while T ≤ 72). It follows from the shape alone, so a batch's results do not
    /// depend on anything else.
    func crossPlan(T: Int, M: Int) -> T5CrossAttentionPlan {
        if let p = crossAttentionPlan { return p }
        let work = Attention.crossAttentionWork(queries: T, keys: M, heads: H, headDim: Dh, width: D)
        return work.absorbed <= work.keys ? .absorbed : .cachedKeys
    }
    /// transformers 3.0.2's relative bias of decoder block 0's cross-attention (fid-spec §3.8).
    public static let crossBiasName = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"

    /// Bytes of activation buffers currently held (grows to the largest shape run).
    public var activationBytes: Int { arena.bytes }

    /// Initialises the parameters as transformers' `T5PreTrainedModel._init_weights` does
    /// (normal with factor 1.0), from a seed.
    public func initialize(seed: UInt64) {
        var rng = RNG(seed: seed)
        for e in layout.entries {
            let s = e.shape
            let std: Float
            if e.name.hasSuffix("layer_norm.weight") {
                params.buffer(e.name).update(repeating: 1)
                continue
            } else if e.name == "shared.weight" || e.name == "lm_head.weight" {
                std = 1
            } else if e.name.hasSuffix(".q.weight") {
                std = 1 / Float(D * Dh).squareRoot()
            } else if e.name.hasSuffix(".k.weight") || e.name.hasSuffix(".v.weight") || e.name.hasSuffix(".wi.weight")
                || e.name.hasSuffix(".wi_0.weight") || e.name.hasSuffix(".wi_1.weight")
            {
                std = 1 / Float(D).squareRoot()
            } else if e.name.hasSuffix(".o.weight") {
                std = 1 / Float(I).squareRoot()
            } else if e.name.hasSuffix(".wo.weight") {
                std = 1 / Float(F).squareRoot()
            } else if e.name.hasSuffix("relative_attention_bias.weight") {
                std = 1 / Float(D).squareRoot()
            } else {
                preconditionFailure("T5Model.initialize: no rule for \(e.name) \(s)")
            }
            let b = params.buffer(e.name)
            for i in 0..<b.count { b[i] = rng.normal(std: std) }
        }
    }

    // MARK: - Building blocks

    func A(_ name: String, _ n: Int) -> UnsafeMutablePointer<Float> { arena.take(name, n) }
    func Z(_ name: String, _ n: Int) -> UnsafeMutablePointer<Float> { arena.takeZeroed(name, n) }
    func W(_ name: String) -> UnsafeMutablePointer<Float> { params[name] }

    /// y (rows, out) = x (rows, in) · w (out, in)ᵀ, PyTorch's Linear without bias.
    ///
    /// One or two rows (decoding steps) run as sgemv per row: OpenBLAS's sgemm with M = 1 reads
    /// the weights at about half gemv's rate (ref/perf.md §1.2). `ldy` is y's row stride.
    func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int,
                ldy: Int? = nil) {
        let ld = ldy ?? outF
        timed(.linear) {
            if rows <= Self.gemvRows {
                for r in 0..<rows { Gemm.gemv(m: outF, n: inF, a: w, lda: inF, x: x + r * inF, beta: 0, y: y + r * ld) }
            } else {
                Gemm.gemm(transB: true, m: rows, n: outF, k: inF, a: x, lda: inF, b: w, ldb: inF, beta: 0, c: y, ldc: ld)
            }
        }
    }

    /// Rows up to which `linear` runs as one sgemv per row.
    static let gemvRows = 2

    /// dx (rows, in) = (or +=, with dxBeta 1) dy · w; dw (out, in) += dyᵀ · x.
    func linearBackward(
        dx: UnsafeMutablePointer<Float>?, dxBeta: Float, dw: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
        x: UnsafePointer<Float>, w: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int
    ) {
        // The two products are independent: side by side when each is one tile (a small model's
        // layers, the decoder's rows), else one after the other (their tiles spread already).
        let apart = dx != nil && Gemm.isOneTile(m: rows, n: inF, k: outF) && Gemm.isOneTile(m: outF, n: inF, k: rows)
        timed(.linearBack) {
            concurrently(dx == nil ? 1 : 2, threads: apart ? nil : 1) { i in
                if i == 0 {
                    Gemm.gemm(transA: true, m: outF, n: inF, k: rows, a: dy, lda: outF, b: x, ldb: inF, beta: 1, c: dw, ldc: inF)
                } else if let dx {
                    Gemm.gemm(m: rows, n: inF, k: outF, a: dy, lda: outF, b: w, ldb: inF, beta: dxBeta, c: dx, ldc: inF)
                }
            }
        }
    }

    /// Inverted dropout in place, keeping the mask under `name` (training only).
    func drop(_ name: String, _ x: UnsafeMutablePointer<Float>, _ n: Int, training: Bool, rng: inout RNG) {
        guard training && rate > 0 else { return }
        let mask = A(name, n)
        timed(.elementwise) { Dropout.forward(out: x, mask: mask, x: x, count: n, p: rate, training: true, rng: &rng) }
    }

    /// dx *= the mask kept under `name` (training only).
    func dropBack(_ name: String, _ dx: UnsafeMutablePointer<Float>, _ n: Int, training: Bool) {
        guard training && rate > 0 else { return }
        let m = A(name, n)
        timed(.elementwiseBack) { parallelFor(n, grain: 16_384) { r in for i in r { dx[i] *= m[i] } } }
    }

    /// The gradient at a sublayer's output before its dropout: dx itself without dropout, else
    /// dx·mask (the mask kept under `mask`) in the buffer `name`; one pass instead of a copy and
    /// a multiply. dx is left as is (the residual's gradient).
    func outputGrad(_ name: String, mask: String, _ dx: UnsafeMutablePointer<Float>, _ n: Int, training: Bool) -> UnsafeMutablePointer<Float> {
        guard training && rate > 0 else { return dx }
        let out = A(name, n), m = A(mask, n)
        timed(.elementwiseBack) { parallelFor(n, grain: 16_384) { r in for i in r { out[i] = dx[i] * m[i] } } }
        return out
    }

    /// Attention sublayer: xOut = xIn + drop(o(attn(q(h), k(src), v(src)))), h = RMSNorm(xIn);
    /// src = h (self-attention) or `memory` (cross-attention).
    ///
    /// - Parameters:
    ///   - xIn, xOut: (rows, D); rows = size.batch · size.queryLength.
    ///   - memory: (size.batch · size.keyLength, D) or nil for self-attention.
    ///   - logits: (B, H, Tq, Tk) receives the pre-softmax logits when given.
    ///   - keepProbs: keep the probabilities for a backward of this sublayer; false where none
    ///     follows this pass (eval, and a checkpointed block's first pass, which backward replays).
    func attentionForward(
        _ pre: String, _ w: String, ln: String, xIn: UnsafePointer<Float>, xOut: UnsafeMutablePointer<Float>,
        memory: UnsafePointer<Float>?, size: Attention.Size, ragged: Attention.Ragged? = nil, bias: UnsafePointer<Float>?,
        keyMask: UnsafePointer<Float>?, causal: Bool, training: Bool, rng: inout RNG, logits: UnsafeMutablePointer<Float>? = nil,
        absorbed: Bool = false, keepProbs: Bool = true
    ) {
        let rows = ragged?.rows ?? size.batch * size.queryLength, kRows = ragged?.rows ?? size.batch * size.keyLength
        let probsCount = ragged?.probsCount ?? size.probsCount
        let h = A(pre + ".h", rows * D), rstd = A(pre + ".rstd", rows)
        timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: xIn, weight: W(ln), rows: rows, dim: D, eps: eps) }
        let q = A(pre + ".q", rows * I), ctx = A(pre + ".ctx", rows * I)
        let p = training ? rate : 0
        let pmask = p > 0 ? A(pre + ".pmask", probsCount) : nil
        if absorbed, let memory {
            let probs = A(pre + ".probs", probsCount)
            // Cross-attention without keys or values (`T5CrossAttentionPlan.absorbed`).
            linear(q, h, W(w + ".q.weight"), rows: rows, inF: D, outF: I)
            let folded = A(pre + ".fold", rows * H * D), weighted = A(pre + ".wtd", rows * H * D)
            let scratch = p > 0 ? A("ca.scratch", Attention.absorbedForwardScratchCount(size, dropout: p)) : nil
            timed(.attention) {
                Attention.absorbedForward(
                    out: ctx, folded: folded, weighted: weighted, probs: probs, dropoutMask: pmask, logits: logits, q: q,
                    memory: memory, keyWeight: W(w + ".k.weight"), valueWeight: W(w + ".v.weight"), bias: bias, keyMask: keyMask,
                    scale: 1, dropout: p, rng: &rng, size: size, width: D, scratch: scratch)
            }
        } else {
            let src = memory ?? UnsafePointer(h)
            let k = A(pre + ".k", kRows * I), v = A(pre + ".v", kRows * I)
            if rows > Self.gemvRows && Gemm.isOneTile(m: rows, n: I, k: D) && Gemm.isOneTile(m: kRows, n: I, k: D) {
                // Three independent one-tile products: side by side (see linearBackward).
                timed(.linear) {
                    concurrently(3) { i in
                        let (out, x, n) = i == 0 ? (q, UnsafePointer(h), rows) : (i == 1 ? k : v, src, kRows)
                        let wi = W(w + (i == 0 ? ".q.weight" : i == 1 ? ".k.weight" : ".v.weight"))
                        Gemm.gemm(transB: true, m: n, n: I, k: D, a: x, lda: D, b: wi, ldb: D, beta: 0, c: out, ldc: I)
                    }
                }
            } else {
                linear(q, h, W(w + ".q.weight"), rows: rows, inF: D, outF: I)
                linear(k, src, W(w + ".k.weight"), rows: kRows, inF: D, outF: I)
                linear(v, src, W(w + ".v.weight"), rows: kRows, inF: D, outF: I)
            }
            let probs = keepProbs ? A(pre + ".probs", probsCount) : nil
            timed(.attention) {
                Attention.forward(
                    out: ctx, probs: probs, dropoutMask: pmask, logits: logits, q: q, k: k, v: v, bias: bias, keyMask: keyMask,
                    causal: causal, scale: 1, dropout: p, rng: &rng, size: size, ragged: ragged)
            }
        }
        let o = A(pre + ".o", rows * D)
        linear(o, ctx, W(w + ".o.weight"), rows: rows, inF: I, outF: D)
        drop(pre + ".omask", o, rows * D, training: training, rng: &rng)
        timed(.elementwise) { Elementwise.add(out: xOut, xIn, o, count: rows * D) }
    }

    /// Backward of `attentionForward`: dx (rows, D) holds ∂/∂xOut on entry and ∂/∂xIn on exit;
    /// dMemory (kRows, D) accumulates for cross-attention; dBias (H, Tq, Tk) accumulates.
    func attentionBackward(
        _ pre: String, _ w: String, ln: String, xIn: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
        memory: UnsafePointer<Float>?, dMemory: UnsafeMutablePointer<Float>?, size: Attention.Size, ragged: Attention.Ragged? = nil,
        dBias: UnsafeMutablePointer<Float>?, training: Bool, grads: ParameterSlab, absorbed: Bool = false
    ) {
        let rows = ragged?.rows ?? size.batch * size.queryLength, kRows = ragged?.rows ?? size.batch * size.keyLength
        let probsCount = ragged?.probsCount ?? size.probsCount
        let h = A(pre + ".h", rows * D), rstd = A(pre + ".rstd", rows)
        let q = A(pre + ".q", rows * I), ctx = A(pre + ".ctx", rows * I)
        let dO = outputGrad("grad.o", mask: pre + ".omask", dx, rows * D, training: training)
        let dctx = A("grad.ctx", rows * I)
        linearBackward(dx: dctx, dxBeta: 0, dw: grads[w + ".o.weight"], dy: dO, x: ctx, w: W(w + ".o.weight"), rows: rows, inF: I, outF: D)
        let dq = Z("grad.q", rows * I)
        let p = training ? rate : 0
        let probs = A(pre + ".probs", probsCount), pmask = p > 0 ? UnsafePointer(A(pre + ".pmask", probsCount)) : nil
        let dh = A("grad.h", rows * D)
        if absorbed, let memory, let dMemory {
            let folded = A(pre + ".fold", rows * H * D), weighted = A(pre + ".wtd", rows * H * D)
            let scratch = A("grad.caScratch", Attention.absorbedBackwardScratchCount(size, width: D))
            timed(.attentionBack) {
                Attention.absorbedBackward(
                    dq: dq, dMemory: dMemory, dKeyWeight: grads[w + ".k.weight"], dValueWeight: grads[w + ".v.weight"], dBias: dBias,
                    dOut: dctx, q: q, memory: memory, keyWeight: W(w + ".k.weight"), valueWeight: W(w + ".v.weight"),
                    folded: folded, weighted: weighted, probs: probs, dropoutMask: pmask, scale: 1, size: size, width: D,
                    scratch: scratch)
            }
            linearBackward(dx: dh, dxBeta: 0, dw: grads[w + ".q.weight"], dy: dq, x: h, w: W(w + ".q.weight"), rows: rows, inF: D, outF: I)
        } else {
            let k = A(pre + ".k", kRows * I), v = A(pre + ".v", kRows * I)
            let dk = Z("grad.k", kRows * I), dv = Z("grad.v", kRows * I)
            timed(.attentionBack) {
                Attention.backward(
                    dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dctx, q: q, k: k, v: v, probs: probs, dropoutMask: pmask, scale: 1, size: size,
                    ragged: ragged)
            }
            linearBackward(dx: dh, dxBeta: 0, dw: grads[w + ".q.weight"], dy: dq, x: h, w: W(w + ".q.weight"), rows: rows, inF: D, outF: I)
            if let memory, let dMemory {
                linearBackward(dx: dMemory, dxBeta: 1, dw: grads[w + ".k.weight"], dy: dk, x: memory, w: W(w + ".k.weight"), rows: kRows, inF: D, outF: I)
                linearBackward(dx: dMemory, dxBeta: 1, dw: grads[w + ".v.weight"], dy: dv, x: memory, w: W(w + ".v.weight"), rows: kRows, inF: D, outF: I)
            } else {
                linearBackward(dx: dh, dxBeta: 1, dw: grads[w + ".k.weight"], dy: dk, x: h, w: W(w + ".k.weight"), rows: kRows, inF: D, outF: I)
                linearBackward(dx: dh, dxBeta: 1, dw: grads[w + ".v.weight"], dy: dv, x: h, w: W(w + ".v.weight"), rows: kRows, inF: D, outF: I)
            }
        }
        timed(.normBack) { RMSNorm.backward(dx: dx, dWeight: grads[ln], dy: dh, x: xIn, weight: W(ln), rstd: rstd, rows: rows, dim: D) }
    }

    /// Feed-forward sublayer: xOut = xIn + drop(wo(drop(act(wi(RMSNorm(xIn)))))), act = ReLU or
    /// gelu_new(wi_0·h)·(wi_1·h). xIn, xOut (rows, D).
    func ffnForward(
        _ pre: String, _ w: String, xIn: UnsafePointer<Float>, xOut: UnsafeMutablePointer<Float>, rows: Int,
        training: Bool, rng: inout RNG
    ) {
        let h = A(pre + ".h", rows * D), rstd = A(pre + ".rstd", rows)
        timed(.norm) { RMSNorm.forward(y: h, rstd: rstd, x: xIn, weight: W(w + ".layer_norm.weight"), rows: rows, dim: D, eps: eps) }
        let r = A(pre + ".r", rows * F)
        if config.feedForwardProj == .relu {
            let a = A(pre + ".a", rows * F)
            linear(a, h, W(w + ".DenseReluDense.wi.weight"), rows: rows, inF: D, outF: F)
            timed(.elementwise) { ReLU.forward(out: r, x: a, count: rows * F) }
        } else {
            let g0 = A(pre + ".g0", rows * F), g1 = A(pre + ".g1", rows * F)
            linear(g0, h, W(w + ".DenseReluDense.wi_0.weight"), rows: rows, inF: D, outF: F)
            linear(g1, h, W(w + ".DenseReluDense.wi_1.weight"), rows: rows, inF: D, outF: F)
            timed(.elementwise) { GatedGELU.forward(out: r, gate: g0, linear: g1, count: rows * F, approximate: .tanh) }
        }
        drop(pre + ".rmask", r, rows * F, training: training, rng: &rng)
        let f = A(pre + ".f", rows * D)
        linear(f, r, W(w + ".DenseReluDense.wo.weight"), rows: rows, inF: F, outF: D)
        drop(pre + ".fmask", f, rows * D, training: training, rng: &rng)
        timed(.elementwise) { Elementwise.add(out: xOut, xIn, f, count: rows * D) }
    }

    /// Backward of `ffnForward`: dx holds ∂/∂xOut on entry and ∂/∂xIn on exit.
    func ffnBackward(
        _ pre: String, _ w: String, xIn: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int,
        training: Bool, grads: ParameterSlab
    ) {
        let h = A(pre + ".h", rows * D), rstd = A(pre + ".rstd", rows), r = A(pre + ".r", rows * F)
        let df = outputGrad("grad.f", mask: pre + ".fmask", dx, rows * D, training: training)
        let dr = A("grad.r", rows * F)
        let wo = w + ".DenseReluDense.wo.weight"
        linearBackward(dx: dr, dxBeta: 0, dw: grads[wo], dy: df, x: r, w: W(wo), rows: rows, inF: F, outF: D)
        let dh = A("grad.h", rows * D)
        if config.feedForwardProj == .relu {
            // da = dr·mask where a > 0: dropout's and ReLU's backward in one pass.
            let a = A(pre + ".a", rows * F), da = A("grad.a", rows * F)
            let mask = training && rate > 0 ? UnsafePointer(A(pre + ".rmask", rows * F)) : nil
            timed(.elementwiseBack) { ReLU.backward(out: da, dy: dr, dropoutMask: mask, x: a, count: rows * F) }
            let wi = w + ".DenseReluDense.wi.weight"
            linearBackward(dx: dh, dxBeta: 0, dw: grads[wi], dy: da, x: h, w: W(wi), rows: rows, inF: D, outF: F)
        } else {
            dropBack(pre + ".rmask", dr, rows * F, training: training)
            let g0 = A(pre + ".g0", rows * F), g1 = A(pre + ".g1", rows * F)
            let dg0 = Z("grad.g0", rows * F), dg1 = Z("grad.g1", rows * F)
            timed(.elementwiseBack) {
                GatedGELU.backward(dGate: dg0, dLinear: dg1, dy: dr, gate: g0, linear: g1, count: rows * F, approximate: .tanh)
            }
            let w0 = w + ".DenseReluDense.wi_0.weight", w1 = w + ".DenseReluDense.wi_1.weight"
            linearBackward(dx: dh, dxBeta: 0, dw: grads[w0], dy: dg0, x: h, w: W(w0), rows: rows, inF: D, outF: F)
            linearBackward(dx: dh, dxBeta: 1, dw: grads[w1], dy: dg1, x: h, w: W(w1), rows: rows, inF: D, outF: F)
        }
        let ln = w + ".layer_norm.weight"
        timed(.normBack) { RMSNorm.backward(dx: dx, dWeight: grads[ln], dy: dh, x: xIn, weight: W(ln), rstd: rstd, rows: rows, dim: D) }
    }
}
