// AttentionAbsorbed: cross-attention over a memory whose keys and values are never formed: the
// key weights folded into the queries, the value weights applied to the weighted memory. Forward
// and backward, for T5Model's training and eval passes over FiD's joined memory, where a few
// decoder positions attend to thousands of memory rows.

extension Attention {
    /// Multiply-adds of one item's cross-attention of `Tq` queries over `Tk` memory rows of width
    /// D, forward, by plan: `keys` forms K = X·Wkᵀ and V = X·Wvᵀ (2·Tk·H·Dh·D) and attends per
    /// head (2·H·Tq·Tk·Dh); `absorbed` folds the queries (H·Tq·Dh·D), scores and weighs the rows
    /// at full width (2·H·Tq·Tk·D) and applies Wv after (H·Tq·Dh·D). Backward costs twice
    /// either, so the cheaper forward is the cheaper pass.
    public static func crossAttentionWork(queries Tq: Int, keys Tk: Int, heads H: Int, headDim Dh: Int, width D: Int)
        -> (keys: Double, absorbed: Double)
    {
        let q = Double(Tq), k = Double(Tk), h = Double(H), dh = Double(Dh), d = Double(D)
        return (2 * k * h * dh * d + 2 * h * q * k * dh, 2 * h * q * k * d + 2 * h * q * dh * d)
    }

    /// Floats of scratch `absorbedForward` needs (the dropped-out probabilities of one item).
    public static func absorbedForwardScratchCount(_ s: Size, dropout: Float) -> Int {
        dropout > 0 ? s.heads * s.queryLength * s.keyLength : 0
    }

    /// Floats of scratch `absorbedBackward` needs: for one item, the probabilities after dropout
    /// stacked on ∂logits (2·H·Tq, Tk) and ∂weighted stacked on the scaled folded queries
    /// (2·H·Tq, D), so the memory's gradient from both is one product; and ∂folded (H·Tq, D).
    public static func absorbedBackwardScratchCount(_ s: Size, width D: Int) -> Int {
        let HT = s.heads * s.queryLength
        return 2 * HT * s.keyLength + 3 * HT * D
    }

    /// `forward` with k = X·Wkᵀ and v = X·Wvᵀ, computed without forming them:
    /// per item and head, F_h = Q_h·Wk_h (Tq, D), logits = scale·F_h·Xᵀ + bias,
    /// U_h = dropout(softmax(logits))·X (Tq, D), out_h = U_h·Wv_hᵀ. With few queries per item
    /// (a FiD decoder's answer tokens against P·L memory rows) this is several times less
    /// arithmetic than forming the keys and values (`crossAttentionWork`), and keeps two
    /// (H·Tq, D) blocks per item for backward instead of two (Tk, H·Dh).
    ///
    /// Items run one after another, each product split over threads as `Gemm` splits it (from
    /// its shape) and the softmax's rows too: every result is the same to the bit on any thread
    /// count.
    ///
    /// - Parameters:
    ///   - out: (B, Tq, H·Dh), overwritten.
    ///   - folded: (B, H, Tq, D), overwritten with F (kept for backward).
    ///   - weighted: (B, H, Tq, D), overwritten with U (kept for backward).
    ///   - probs: (B, H, Tq, Tk), overwritten with the probabilities before dropout.
    ///   - dropoutMask: (B, H, Tq, Tk), drawn and written when `dropout` > 0 (required then).
    ///   - logits: (B, H, Tq, Tk) or nil; receives scale·q·kᵀ + bias before the mask.
    ///   - q: (B, Tq, H·Dh); memory X: (B, Tk, D); keyWeight, valueWeight: (H·Dh, D), PyTorch's
    ///     Linear layout, head h the rows h·Dh..<(h+1)·Dh.
    ///   - bias: (H, Tq, Tk) or nil, added to every item; keyMask: (B, Tk) or nil, 0 hides a key.
    ///   - scratch: `absorbedForwardScratchCount` floats.
    public static func absorbedForward(
        out: UnsafeMutablePointer<Float>, folded: UnsafeMutablePointer<Float>, weighted: UnsafeMutablePointer<Float>,
        probs: UnsafeMutablePointer<Float>, dropoutMask: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, memory: UnsafePointer<Float>, keyWeight wk: UnsafePointer<Float>,
        valueWeight wv: UnsafePointer<Float>, bias: UnsafePointer<Float>?, keyMask: UnsafePointer<Float>?,
        scale: Float, dropout: Float, rng: inout RNG, size: Size, width D: Int,
        scratch: UnsafeMutablePointer<Float>?, threads: Int? = nil
    ) {
        let B = size.batch, H = size.heads, Tq = size.queryLength, Tk = size.keyLength
        let Dh = size.headDim, HD = H * Dh, HT = H * Tq
        check(size, "absorbedForward")
        precondition(D >= 1, "Attention.absorbedForward: width \(D)")
        precondition(dropout >= 0 && dropout < 1, "Attention.absorbedForward: dropout \(dropout) outside [0, 1)")
        precondition(dropout == 0 || (dropoutMask != nil && scratch != nil), "Attention.absorbedForward: dropout \(dropout) needs a dropoutMask and scratch")
        if B == 0 { return }
        let mask = dropout > 0 ? dropoutMask : nil
        if let mask { Dropout.fillMask(mask, count: size.probsCount, p: dropout, rng: &rng) }
        let headGrain = Threads.grain(work: Tq * Dh * D)
        let rowGrain = Threads.grain(work: 8 * Tk)
        for b in 0..<B {
            let qb = q + b * Tq * HD, x = memory + b * Tk * D
            let F = folded + b * HT * D, U = weighted + b * HT * D, S = probs + b * HT * Tk
            // F_h (Tq, D) = Q_h (Tq, Dh) · Wk_h (Dh, D)
            parallelFor(H, grain: headGrain, threads: threads) { hs in
                for h in hs {
                    Gemm.gemm(m: Tq, n: D, k: Dh, a: qb + h * Dh, lda: HD, b: wk + h * Dh * D, ldb: D, beta: 0,
                              c: F + h * Tq * D, ldc: D, threads: 1)
                }
            }
            // logits (H·Tq, Tk) = scale · F (H·Tq, D) · X (Tk, D)ᵀ
            Gemm.gemm(transB: true, m: HT, n: Tk, k: D, alpha: scale, a: F, lda: D, b: x, ldb: D, beta: 0, c: S, ldc: Tk,
                      threads: threads)
            let km = keyMask.map { $0 + b * Tk }
            let hidden = km.map { km in (0..<Tk).contains { km[$0] == 0 } } ?? false
            parallelFor(HT, grain: rowGrain, threads: threads) { rows in
                for r in rows {
                    let row = S + r * Tk
                    if let bias {
                        let br = bias + r * Tk  // (h, i) of the bias is row h·Tq + i, as r
                        for j in 0..<Tk { row[j] += br[j] }
                    }
                    if let logits { (logits + (b * HT + r) * Tk).update(from: row, count: Tk) }
                    if hidden, let km { for j in 0..<Tk where km[j] == 0 { row[j] = -.infinity } }
                    Softmax.row(row, row, Tk)
                    if let mask, let scratch {
                        let m = mask + (b * HT + r) * Tk, d = scratch + r * Tk
                        for j in 0..<Tk { d[j] = row[j] * m[j] }
                    }
                }
            }
            // U (H·Tq, D) = dropout(P) (H·Tq, Tk) · X (Tk, D)
            let Pd = mask == nil ? UnsafePointer(S) : UnsafePointer(scratch!)
            Gemm.gemm(m: HT, n: D, k: Tk, a: Pd, lda: Tk, b: x, ldb: D, beta: 0, c: U, ldc: D, threads: threads)
            // out_h (Tq, Dh) = U_h (Tq, D) · Wv_h (Dh, D)ᵀ
            parallelFor(H, grain: headGrain, threads: threads) { hs in
                for h in hs {
                    Gemm.gemm(transB: true, m: Tq, n: Dh, k: D, a: U + h * Tq * D, lda: D, b: wv + h * Dh * D, ldb: D, beta: 0,
                              c: out + b * Tq * HD + h * Dh, ldc: HD, threads: 1)
                }
            }
        }
    }

    /// Backward of `absorbedForward`: accumulates dq, dMemory, dKeyWeight, dValueWeight and (when
    /// given) dBias summed over the items, each the same to the bit on any thread count.
    ///
    /// With Pd the probabilities after dropout and G = ∂U: G_h = dOut_h·Wv_h, dWv_h += dOut_hᵀ·U_h;
    /// dP = G·Xᵀ∘M; dS = P∘(dP − Σ_j dP·P); dBias += dS; ∂F = scale·dS·X; dX += Pdᵀ·G + scale·dSᵀ·F;
    /// dq_h += ∂F_h·Wk_hᵀ; dWk_h += Q_hᵀ·∂F_h.
    ///
    /// - Parameters:
    ///   - dq: (B, Tq, H·Dh); dMemory: (B, Tk, D); dKeyWeight, dValueWeight: (H·Dh, D); all accumulated.
    ///   - dBias: (H, Tq, Tk), accumulated; nil to skip.
    ///   - dOut: (B, Tq, H·Dh). folded, weighted, probs, dropoutMask: as `absorbedForward` left them.
    ///   - scratch: `absorbedBackwardScratchCount` floats.
    public static func absorbedBackward(
        dq: UnsafeMutablePointer<Float>, dMemory: UnsafeMutablePointer<Float>, dKeyWeight dwk: UnsafeMutablePointer<Float>,
        dValueWeight dwv: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, dOut: UnsafePointer<Float>,
        q: UnsafePointer<Float>, memory: UnsafePointer<Float>, keyWeight wk: UnsafePointer<Float>,
        valueWeight wv: UnsafePointer<Float>, folded: UnsafePointer<Float>, weighted: UnsafePointer<Float>,
        probs: UnsafePointer<Float>, dropoutMask: UnsafePointer<Float>?, scale: Float, size: Size, width D: Int,
        scratch: UnsafeMutablePointer<Float>, threads: Int? = nil
    ) {
        let B = size.batch, H = size.heads, Tq = size.queryLength, Tk = size.keyLength
        let Dh = size.headDim, HD = H * Dh, HT = H * Tq
        check(size, "absorbedBackward")
        if B == 0 { return }
        // Stacked (2·H·Tq, Tk): Pd above dS. Stacked (2·H·Tq, D): G above scale·F. Then ∂F (H·Tq, D).
        let stackP = scratch, dS = stackP + HT * Tk
        let stackG = stackP + 2 * HT * Tk, G = stackG, scaledF = stackG + HT * D
        let dF = stackG + 2 * HT * D
        let headGrain = Threads.grain(work: Tq * Dh * D)
        let rowGrain = Threads.grain(work: 8 * Tk)
        for b in 0..<B {
            let qb = q + b * Tq * HD, x = memory + b * Tk * D, dO = dOut + b * Tq * HD
            let F = folded + b * HT * D, U = weighted + b * HT * D, P = probs + b * HT * Tk
            // G_h (Tq, D) = dOut_h (Tq, Dh) · Wv_h (Dh, D); dWv_h (Dh, D) += dOut_hᵀ · U_h. Heads
            // own disjoint rows of dWv, and items add in order.
            parallelFor(H, grain: headGrain, threads: threads) { hs in
                for h in hs {
                    Gemm.gemm(m: Tq, n: D, k: Dh, a: dO + h * Dh, lda: HD, b: wv + h * Dh * D, ldb: D, beta: 0,
                              c: G + h * Tq * D, ldc: D, threads: 1)
                    Gemm.gemm(transA: true, m: Dh, n: D, k: Tq, a: dO + h * Dh, lda: HD, b: U + h * Tq * D, ldb: D, beta: 1,
                              c: dwv + h * Dh * D, ldc: D, threads: 1)
                }
            }
            // dP (H·Tq, Tk) = G (H·Tq, D) · X (Tk, D)ᵀ, then through dropout and softmax.
            Gemm.gemm(transB: true, m: HT, n: Tk, k: D, a: G, lda: D, b: x, ldb: D, beta: 0, c: dS, ldc: Tk, threads: threads)
            parallelFor(HT, grain: rowGrain, threads: threads) { rows in
                for r in rows {
                    let g = dS + r * Tk, p = P + r * Tk, pd = stackP + r * Tk
                    if let dropoutMask {
                        let m = dropoutMask + (b * HT + r) * Tk
                        for j in 0..<Tk {
                            g[j] *= m[j]
                            pd[j] = p[j] * m[j]
                        }
                    } else {
                        pd.update(from: p, count: Tk)
                    }
                    let s = Reduce.dot(g, p, Tk)
                    for j in 0..<Tk { g[j] = p[j] * (g[j] - s) }
                    if let dBias {
                        let t = dBias + r * Tk
                        for j in 0..<Tk { t[j] += g[j] }
                    }
                    let f = F + r * D, sf = scaledF + r * D
                    for e in 0..<D { sf[e] = scale * f[e] }
                }
            }
            // ∂F (H·Tq, D) = scale · dS (H·Tq, Tk) · X (Tk, D)
            Gemm.gemm(m: HT, n: D, k: Tk, alpha: scale, a: dS, lda: Tk, b: x, ldb: D, beta: 0, c: dF, ldc: D, threads: threads)
            // dX (Tk, D) += [Pd; dS]ᵀ (Tk, 2·H·Tq) · [G; scale·F] (2·H·Tq, D): both paths in one product.
            Gemm.gemm(transA: true, m: Tk, n: D, k: 2 * HT, a: stackP, lda: Tk, b: stackG, ldb: D, beta: 1,
                      c: dMemory + b * Tk * D, ldc: D, threads: threads)
            // dq_h (Tq, Dh) += ∂F_h (Tq, D) · Wk_h (Dh, D)ᵀ; dWk_h (Dh, D) += Q_hᵀ · ∂F_h.
            parallelFor(H, grain: headGrain, threads: threads) { hs in
                for h in hs {
                    Gemm.gemm(transB: true, m: Tq, n: Dh, k: D, a: dF + h * Tq * D, lda: D, b: wk + h * Dh * D, ldb: D, beta: 1,
                              c: dq + b * Tq * HD + h * Dh, ldc: HD, threads: 1)
                    Gemm.gemm(transA: true, m: Dh, n: D, k: Tq, a: qb + h * Dh, lda: HD, b: dF + h * Tq * D, ldb: D, beta: 1,
                              c: dwk + h * Dh * D, ldc: D, threads: 1)
                }
            }
        }
    }
}
