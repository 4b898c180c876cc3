// T5MemoryPlan: the activation arena a pass will hold, computed before running it, so a job can
// refuse a shape that cannot fit instead of dying in the allocation.
import Tensor

/// One pass over a batch of `questions` × `passages` passages of `length` tokens and `target`
/// decoder tokens.
public struct T5PlannedPass: Sendable {
    public enum Mode: Sendable {
        /// Training forward with dropout, then backward (`train_reader`'s step).
        case train
        /// Eval forward (`score`'s scores, evaluation), `scores` keeping the cross-attention logits.
        case eval(scores: Bool)
        /// The encoder alone (`encode`, before greedy or beam decoding).
        case encode
    }
    public var mode: Mode
    public var questions: Int, passages: Int, length: Int, target: Int

    public init(_ mode: Mode, questions: Int, passages: Int, length: Int, target: Int) {
        self.mode = mode
        self.questions = questions
        self.passages = passages
        self.length = length
        self.target = target
    }
}

extension T5Model {
    /// The bytes `activationBytes` reports after running `passes` in order on a fresh model: the
    /// arena's buffers replayed by name and size, as the passes take them (each name keeps the
    /// largest size asked). In Double: an absurd shape overflows Int. The logits and their
    /// gradient (T·V floats each, outside the arena) are not counted.
    ///
    /// This mirrors `forward`, `backward` and the sublayers buffer for buffer; the twin test
    /// (`T5MemoryPlanTests`) runs the passes and compares, so a buffer added there fails it.
    public func plannedActivationBytes(_ passes: [T5PlannedPass]) -> Double {
        var slots: [String: Double] = [:]
        func A(_ name: String, _ count: Double) { slots[name] = max(slots[name] ?? 0, max(count, 1)) }
        let D = Double(D), I = Double(I), F = Double(F), H = Double(H)
        let gated = config.feedForwardProj != .relu
        var dropping = false  // training with dropout on
        func drop(_ name: String, _ n: Double) { if dropping { A(name, n) } }

        func attention(_ pre: String, rows R: Double, keys K: Double, probs: Double, keepProbs: Bool = true) {
            A(pre + ".h", R * D); A(pre + ".rstd", R)
            A(pre + ".q", R * I); A(pre + ".k", K * I); A(pre + ".v", K * I)
            A(pre + ".ctx", R * I); drop(pre + ".pmask", probs)
            if keepProbs { A(pre + ".probs", probs) }
            A(pre + ".o", R * D); drop(pre + ".omask", R * D)
        }
        func attentionBack(rows R: Double, keys K: Double) {
            drop("grad.o", R * D)
            A("grad.ctx", R * I); A("grad.q", R * I); A("grad.k", K * I); A("grad.v", K * I); A("grad.h", R * D)
        }
        // The decoder's cross-attention under `.absorbed`: no keys or values, the folded queries
        // and the weighted memory (B·H·T, D) instead, and the kernels' scratch.
        func absorbedAttention(_ pre: String, rows R: Double, size: Attention.Size) {
            A(pre + ".h", R * D); A(pre + ".rstd", R); A(pre + ".q", R * I); A(pre + ".ctx", R * I)
            let probs = Double(size.probsCount)
            A(pre + ".probs", probs); drop(pre + ".pmask", probs)
            A(pre + ".fold", R * H * D); A(pre + ".wtd", R * H * D)
            drop("ca.scratch", Double(Attention.absorbedForwardScratchCount(size, dropout: rate)))
            A(pre + ".o", R * D); drop(pre + ".omask", R * D)
        }
        func absorbedAttentionBack(rows R: Double, size: Attention.Size) {
            drop("grad.o", R * D)
            A("grad.ctx", R * I); A("grad.q", R * I); A("grad.h", R * D)
            A("grad.caScratch", Double(Attention.absorbedBackwardScratchCount(size, width: config.dModel)))
        }
        func ffn(_ pre: String, rows R: Double) {
            A(pre + ".h", R * D); A(pre + ".rstd", R); A(pre + ".r", R * F)
            if gated { A(pre + ".g0", R * F); A(pre + ".g1", R * F) } else { A(pre + ".a", R * F) }
            drop(pre + ".rmask", R * F)
            A(pre + ".f", R * D); drop(pre + ".fmask", R * D)
        }
        func ffnBack(rows R: Double) {
            drop("grad.f", R * D)
            A("grad.r", R * F); A("grad.h", R * D)
            if gated { A("grad.g0", R * F); A("grad.g1", R * F) } else { A("grad.a", R * F) }
        }
        func encoderBlock(_ l: Int, _ pre: String, N: Double, NP: Double, L: Double, keepProbs: Bool) {
            A("x.e\(l)", N * D); A(pre + ".xm", N * D); A("x.e\(l + 1)", N * D)
            attention(pre + ".sa", rows: N, keys: N, probs: NP * H * L * L, keepProbs: keepProbs)
            ffn(pre + ".ff", rows: N)
        }
        func encoder(NP: Double, L: Double, training: Bool) {
            let N = NP * L
            // Full-length passages, the most the encoder takes: it computes only each passage's
            // rows up to its last attended token (`T5EncoderRows`).
            A("mask", N); A("e.kmask", N); A("x.e0", N * D); drop("e.embmask", N * D); A("e.bias", H * L * L)
            for l in 0..<config.numLayers {
                let pre = encPrefix(l, training: training)
                encoderBlock(l, pre, N: N, NP: NP, L: L, keepProbs: pre != "eR")
            }
            A("e.out", N * D); A("e.outRstd", N); A("x.e\(config.numLayers)", N * D); drop("e.outmask", N * D)
        }

        for pass in passes {
            let B = Double(pass.questions), P = Double(pass.passages), L = Double(pass.length), T = Double(pass.target)
            let NP = B * P, N = NP * L, M = P * L, Td = B * T
            let training: Bool, scores: Bool
            switch pass.mode {
            case .train: (training, scores) = (true, false)
            case .eval(let s): (training, scores) = (false, s)
            case .encode:
                dropping = false
                encoder(NP: NP, L: L, training: false)
                continue
            }
            dropping = training && rate > 0
            encoder(NP: NP, L: L, training: training)
            let absorbed = crossPlan(T: pass.target, M: pass.passages * pass.length) == .absorbed
            let crossSize = Attention.Size(batch: pass.questions, heads: config.numHeads, queryLength: pass.target,
                                           keyLength: pass.passages * pass.length, headDim: config.dKV)
            A("x.d0", Td * D); drop("d.embmask", Td * D); A("d.bias", H * T * T)
            if crossBiasOn { A("d.crossBias", H * T * M) }
            for l in 0..<config.decoderLayers {
                if scores { A("d\(l).ca.logits", B * H * T * M) }
                let pre = "d\(l)"
                A("x.d\(l)", Td * D); A(pre + ".x1", Td * D); A(pre + ".x2", Td * D); A("x.d\(l + 1)", Td * D)
                attention(pre + ".sa", rows: Td, keys: Td, probs: B * H * T * T)
                if absorbed {
                    absorbedAttention(pre + ".ca", rows: Td, size: crossSize)
                } else {
                    attention(pre + ".ca", rows: Td, keys: B * M, probs: B * H * T * M)
                }
                ffn(pre + ".ff", rows: Td)
            }
            A("d.out", Td * D); A("d.outRstd", Td); drop("d.outmask", Td * D)
            guard training else { continue }
            // backward
            A("grad.y", Td * D); A("grad.xd", Td * D); A("grad.memory", N * D); A("grad.dbias", H * T * T)
            if crossBiasOn { A("grad.cbias", H * T * M) }
            for _ in 0..<config.decoderLayers {
                ffnBack(rows: Td)
                if absorbed { absorbedAttentionBack(rows: Td, size: crossSize) } else { attentionBack(rows: Td, keys: B * M) }
                attentionBack(rows: Td, keys: Td)
            }
            A("grad.xe", N * D); A("grad.ebias", H * L * L)
            for l in stride(from: config.numLayers - 1, through: 0, by: -1) {
                let pre = encPrefix(l, training: true)
                if pre == "eR" { encoderBlock(l, pre, N: N, NP: NP, L: L, keepProbs: true) }
                ffnBack(rows: N)
                attentionBack(rows: N, keys: N)
            }
        }
        return 4 * slots.values.reduce(0, +)
    }
}
