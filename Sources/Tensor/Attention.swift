// Attention: multi-head scaled dot-product attention with bias, masks and dropout, forward and backward.

/// Multi-head attention on projected q, k, v:
/// `out = dropout(softmax(scale·q·kᵀ + bias, masked)) · v` per (batch, head).
///
/// Layout: q (B, Tq, H·Dh), k and v (B, Tk, H·Dh), out (B, Tq, H·Dh): heads are column blocks of
/// the projections, so each head's products run on strided views (leading dimension H·Dh) with
/// no transposes. The additive `bias` (H, Tq, Tk) is shared by every batch item (T5's relative
/// positions); `keyMask` (B, Tk) marks keys to attend with a nonzero value; `causal` hides key
/// j from query i when j > i + (Tk − Tq), so a suffix of queries may attend to a longer prefix.
/// Masked keys get probability exactly 0; a query with no visible key gets zeros.
///
/// `scale` is a parameter: T5 uses 1 (its init folds 1/√Dh into the weights), BERT 1/√Dh.
/// The probabilities (B, H, Tq, Tk) are kept for backward, before dropout.
public enum Attention {
    /// The sizes of one attention call.
    public struct Size: Sendable, Equatable {
        /// B: batch items (e.g. B·P passages for the FiD encoder).
        public var batch: Int
        /// H: heads.
        public var heads: Int
        /// Tq: query positions.
        public var queryLength: Int
        /// Tk: key and value positions.
        public var keyLength: Int
        /// Dh: head width.
        public var headDim: Int

        public init(batch: Int, heads: Int, queryLength: Int, keyLength: Int, headDim: Int) {
            self.batch = batch
            self.heads = heads
            self.queryLength = queryLength
            self.keyLength = keyLength
            self.headDim = headDim
        }

        /// Elements of q or out (B·Tq·H·Dh).
        public var queryCount: Int { batch * queryLength * heads * headDim }
        /// Elements of k or v (B·Tk·H·Dh).
        public var keyCount: Int { batch * keyLength * heads * headDim }
        /// Elements of the probabilities or logits (B·H·Tq·Tk).
        public var probsCount: Int { batch * heads * queryLength * keyLength }
        /// Elements of the bias (H·Tq·Tk).
        public var biasCount: Int { heads * queryLength * keyLength }
    }

    /// Whether the (batch, head) loop runs on all cores with single-threaded BLAS inside (true)
    /// or serially with multi-threaded BLAS (false). Per-head products are small (e.g. 250×64×250
    /// for a T5 passage): OpenBLAS gains little from a second thread on them (ref/perf.md: 94 →
    /// 125 GFLOP/s at 200×64×200) while the masking and softmax between them would run on one
    /// core. Measured with `ops/bench attention` (then a test behind FIDQ_BENCH=1; 2 threads, forward/backward
    /// best of 5, on a shared box at load ~10, so absolute times are inflated):
    /// T5 encoder 8×12 heads×250²×64: serial 305/254 ms, parallel 230/212 ms;
    /// BERT 16×12×200²×64: serial 409/495 ms, parallel 298/260 ms;
    /// decoder cross 1×12×20×5000×64: serial 94/160 ms, parallel 97/159 ms (a tie).
    /// The parallel loop is never worse, so it is the default; the flag exists for that benchmark
    /// and for the test that both ways give the same bits.
    /// (Those figures predate `Gemm`'s row tiles: the serial loop's products now split into
    /// tiles on `parallelFor` instead of OpenBLAS's pool.)
    nonisolated(unsafe) public static var parallelOverHeads = true

    /// Forward.
    ///
    /// - Parameters:
    ///   - out: (B, Tq, H·Dh), overwritten.
    ///   - probs: (B, H, Tq, Tk), overwritten with the softmax probabilities (before dropout); nil
    ///     when no backward follows: each head's block then lives in a (Tq, Tk) scratch that stays
    ///     in cache, instead of a buffer too large for it written out (T5-small at P 25: 32 MB a
    ///     layer; MiniLM, 64 passages of 200 tokens: 123 MB). `out` is the same bits either way.
    ///   - dropoutMask: (B, H, Tq, Tk), written when `dropout` > 0 (required then); else unused.
    ///   - logits: (B, H, Tq, Tk) or nil; receives scale·q·kᵀ + bias before any mask.
    ///   - q: (B, Tq, H·Dh); k, v: (B, Tk, H·Dh).
    ///   - bias: (H, Tq, Tk) or nil, added to every batch item.
    ///   - keyMask: (B, Tk) or nil; 0 hides a key.
    ///   - causal: hide keys after the query (see the type's comment).
    ///   - scale: multiplies q·kᵀ.
    ///   - dropout: probability of dropping an attention weight (0 in eval).
    ///   - rng: draws the dropout mask; not advanced when dropout is 0.
    ///   - ragged: items of their own lengths packed row after row (self-attention only): q, k, v,
    ///     out and the key mask then have `ragged.rows` rows, probs, dropoutMask and logits
    ///     `ragged.probsCount` entries; the bias stays (H, Tq, Tk).
    public static func forward(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>?,
        dropoutMask: UnsafeMutablePointer<Float>?, logits: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, keyMask: UnsafePointer<Float>?, causal: Bool,
        scale: Float, dropout: Float, rng: inout RNG, size: Size, ragged: Ragged? = nil
    ) {
        let B = size.batch, H = size.heads, Tq = size.queryLength, Tk = size.keyLength
        let Dh = size.headDim, HD = H * Dh
        check(size, "forward")
        check(ragged, size, causal: causal, "forward")
        precondition(dropout >= 0 && dropout < 1, "Attention.forward: dropout \(dropout) outside [0, 1)")
        precondition(dropout == 0 || dropoutMask != nil, "Attention.forward: dropout \(dropout) needs a dropoutMask buffer")
        if B == 0 { return }
        let mask = dropout > 0 ? dropoutMask : nil
        if let mask { Dropout.fillMask(mask, count: ragged?.probsCount ?? size.probsCount, p: dropout, rng: &rng) }
        // Parallel over heads, each head's product runs its tiles on its own thread.
        let headThreads: Int? = parallelOverHeads ? 1 : nil

        forEachHead(B * H, chunks: chunkCount(B * H)) { pairs, _ in
            // Scratch for the dropped-out probabilities of one head (Tq, Tk), and for its
            // probabilities when they are not kept.
            let scratch = mask == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: Tq * Tk)
            let unkept = probs == nil ? UnsafeMutablePointer<Float>.allocate(capacity: Tq * Tk) : nil
            defer {
                scratch?.deallocate()
                unkept?.deallocate()
            }
            for pair in pairs {
                let b = pair / H, h = pair % H
                let e = extent(b, size, ragged), tq = e.tq, tk = e.tk
                if tq == 0 { continue }
                let qp = q + e.qRow * HD + h * Dh  // head h of item b in q, row stride HD
                let kp = k + e.kRow * HD + h * Dh
                let vp = v + e.kRow * HD + h * Dh
                let block = e.probs + h * tq * tk  // (tq, tk) block of (b, h) in probs and masks
                let S = probs.map { $0 + block } ?? unkept!
                // S (tq, tk) = scale · Q (tq, Dh) · K (tk, Dh)ᵀ. One query (a greedy decoding
                // step) runs as gemv, which streams K about twice as fast as sgemm with M = 1.
                if tq == 1 {
                    Gemm.gemv(m: tk, n: Dh, alpha: scale, a: kp, lda: HD, x: qp, beta: 0, y: S, threads: headThreads)
                } else {
                    Gemm.gemm(
                        transB: true, m: tq, n: tk, k: Dh, alpha: scale, a: qp, lda: HD, b: kp, ldb: HD,
                        beta: 0, c: S, ldc: tk, threads: headThreads)
                }
                if let bias { accumulateBlock(S, ldt: tk, bias + h * Tq * Tk, lds: Tk, rows: tq, cols: tk) }
                if let logits { (logits + block).update(from: S, count: tq * tk) }
                // An item whose keys are all visible (every full-length passage) skips the mask
                // scan per row.
                let km = keyMask.map { $0 + e.kRow }
                let hidden = km.map { km in (0..<tk).contains { km[$0] == 0 } } ?? false
                if !hidden && !causal {
                    // Each row's exp pass also takes the next row's maximum (`Softmax.row`).
                    var m = Reduce.max(S, tk)
                    for i in 0..<tq {
                        let row = S + i * tk
                        m = Softmax.row(row, row, tk, max: m, next: i + 1 < tq ? UnsafePointer(row + tk) : nil)
                    }
                } else {
                    for i in 0..<tq {
                        let row = S + i * tk
                        if hidden, let km {
                            for j in 0..<tk where km[j] == 0 { row[j] = -.infinity }
                        }
                        if causal {
                            // Key j is visible to query i when j ≤ i + Tk − Tq.
                            let first = max(0, i + tk - tq + 1)
                            if first < tk { (row + first).update(repeating: -.infinity, count: tk - first) }
                        }
                        Softmax.row(row, row, tk)
                    }
                }
                var P = UnsafePointer(S)
                if let scratch, let mask {
                    let M = mask + block
                    for i in 0..<(tq * tk) { scratch[i] = S[i] * M[i] }
                    P = UnsafePointer(scratch)
                }
                // out (tq, Dh) of (b, h) = P (tq, tk) · V (tk, Dh); one query: Vᵀ·p as gemv.
                let o = out + e.qRow * HD + h * Dh
                if tq == 1 {
                    Gemm.gemv(transA: true, m: tk, n: Dh, a: vp, lda: HD, x: P, beta: 0, y: o, threads: headThreads)
                } else {
                    Gemm.gemm(
                        m: tq, n: Dh, k: tk, a: P, lda: tk, b: vp, ldb: HD, beta: 0,
                        c: o, ldc: HD, threads: headThreads)
                }
            }
        }
    }

    /// Backward: accumulates dq, dk, dv and (when given) dBias summed over the batch.
    ///
    /// With Pd = P∘M the probabilities after dropout: dv += Pdᵀ·dout; dP = (dout·vᵀ)∘M;
    /// dS = P∘(dP − Σ_j dP·P); dq += scale·dS·k; dk += scale·dSᵀ·q; dBias += Σ_b dS.
    ///
    /// - Parameters:
    ///   - dq: (B, Tq, H·Dh); dk, dv: (B, Tk, H·Dh); all accumulated.
    ///   - dBias: (H, Tq, Tk), accumulated; nil to skip.
    ///   - dOut: (B, Tq, H·Dh).
    ///   - probs, dropoutMask: from forward (B, H, Tq, Tk); the mask nil when dropout was 0.
    ///   - ragged: the layout forward ran with (see `forward`).
    ///   - threads: overrides `Threads.count` for this call. Every gradient, dBias included, is
    ///     the same to the bit on any thread count.
    public static func backward(
        dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>,
        dv: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
        dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
        v: UnsafePointer<Float>, probs: UnsafePointer<Float>, dropoutMask: UnsafePointer<Float>?,
        scale: Float, size: Size, ragged: Ragged? = nil, threads: Int? = nil
    ) {
        let B = size.batch, H = size.heads, Tq = size.queryLength, Tk = size.keyLength
        let Dh = size.headDim, HD = H * Dh
        check(size, "backward")
        check(ragged, size, causal: false, "backward")
        if B == 0 { return }
        // dBias sums dS over the batch items, and items of one head run on different threads. So
        // that the sum does not depend on how items fall to threads, the items go in fixed groups
        // (at most `maxBiasGroups`, from B alone): one work unit is a (group, head), summing its
        // items' dS in item order into the group's own (H, Tq, Tk) partial, and the partials are
        // added in group order after the loop. The result is bit-identical on any thread count;
        // the partials take at most maxBiasGroups·H·Tq·Tk floats whatever B is.
        let grouped = dBias != nil && B > 1
        let groupSize = grouped ? (B + maxBiasGroups - 1) / maxBiasGroups : 1
        let groups = (B + groupSize - 1) / groupSize
        let partials: UnsafeMutablePointer<Float>? = grouped ? .allocate(capacity: groups * size.biasCount) : nil
        partials?.initialize(repeating: 0, count: groups * size.biasCount)
        defer { partials?.deallocate() }
        let units = groups * H
        let chunks = chunkCount(units, threads: threads)
        // Parallel over heads, each head's product runs its tiles on its own thread.
        let headThreads: Int? = parallelOverHeads ? 1 : threads

        forEachHead(units, chunks: chunks) { unitRange, _ in
            let dS = UnsafeMutablePointer<Float>.allocate(capacity: Tq * Tk)
            let dropped = dropoutMask == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: Tq * Tk)
            defer {
                dS.deallocate()
                dropped?.deallocate()
            }
            for unit in unitRange {
                let group = unit / H, h = unit % H
                // Without grouping (B == 1 or no dBias) a unit is one item and writes dBias directly:
                // different units then hold different heads, or no dBias at all.
                let dB = partials.map { $0 + group * size.biasCount } ?? dBias
                for b in (group * groupSize)..<min(B, (group + 1) * groupSize) {
                    let e = extent(b, size, ragged), tq = e.tq, tk = e.tk
                    if tq == 0 { continue }
                    let qp = q + e.qRow * HD + h * Dh, kp = k + e.kRow * HD + h * Dh
                    let vp = v + e.kRow * HD + h * Dh, dO = dOut + e.qRow * HD + h * Dh
                    let block = e.probs + h * tq * tk
                    let P = probs + block  // (tq, tk)
                    let M = dropoutMask.map { $0 + block }
                    var Pd = P
                    if let dropped, let M {
                        for i in 0..<(tq * tk) { dropped[i] = P[i] * M[i] }
                        Pd = UnsafePointer(dropped)
                    }
                    // dV (tk, Dh) += Pd (tq, tk)ᵀ · dO (tq, Dh)
                    Gemm.gemm(
                        transA: true, m: tk, n: Dh, k: tq, a: Pd, lda: tk, b: dO, ldb: HD, beta: 1,
                        c: dv + e.kRow * HD + h * Dh, ldc: HD, threads: headThreads)
                    // dS (tq, tk) = dO (tq, Dh) · V (tk, Dh)ᵀ, then through dropout and softmax.
                    Gemm.gemm(
                        transB: true, m: tq, n: tk, k: Dh, a: dO, lda: HD, b: vp, ldb: HD, beta: 0,
                        c: dS, ldc: tk, threads: headThreads)
                    if let M { for i in 0..<(tq * tk) { dS[i] *= M[i] } }
                    for i in 0..<tq {
                        let g = dS + i * tk, p = P + i * tk
                        let s = Reduce.dot(g, p, tk)
                        for j in 0..<tk { g[j] = p[j] * (g[j] - s) }
                    }
                    if let dB { accumulateBlock(dB + h * Tq * Tk, ldt: Tk, dS, lds: tk, rows: tq, cols: tk) }
                    // dQ (tq, Dh) += scale · dS (tq, tk) · K (tk, Dh)
                    Gemm.gemm(
                        m: tq, n: Dh, k: tk, alpha: scale, a: dS, lda: tk, b: kp, ldb: HD, beta: 1,
                        c: dq + e.qRow * HD + h * Dh, ldc: HD, threads: headThreads)
                    // dK (tk, Dh) += scale · dS (tq, tk)ᵀ · Q (tq, Dh)
                    Gemm.gemm(
                        transA: true, m: tk, n: Dh, k: tq, alpha: scale, a: dS, lda: tk, b: qp, ldb: HD,
                        beta: 1, c: dk + e.kRow * HD + h * Dh, ldc: HD, threads: headThreads)
                }
            }
        }
        if let partials, let dBias {
            let n = size.biasCount
            parallelFor(n, grain: elementwiseGrain, threads: threads) { r in
                for g in 0..<groups {
                    let src = partials + g * n
                    for i in r { dBias[i] += src[i] }
                }
            }
        }
    }

    /// Most batch-item groups the backward sums dBias in (see `backward`): bounds the partials'
    /// memory while leaving groups × heads work units for the threads.
    static let maxBiasGroups = 8

    static func check(_ s: Size, _ what: String) {
        precondition(
            s.batch >= 0 && s.heads >= 1 && s.queryLength >= 1 && s.keyLength >= 1 && s.headDim >= 1,
            "Attention.\(what): bad size \(s)")
    }

    /// Threads the (batch, head) loop will use for `count` pairs.
    static func chunkCount(_ count: Int, threads: Int? = nil) -> Int {
        parallelOverHeads ? max(1, min(threads ?? Threads.count, count)) : 1
    }

    /// Runs `body(pairs, chunk)` over `0..<count` (batch, head) pairs split into `chunks`
    /// contiguous ranges, one thread each; the caller fixes `chunks` once (from `chunkCount`) so
    /// buffers it sized per chunk stay in bounds even if the thread setting changes meanwhile.
    ///
    /// The per-head products run their `Gemm` tiles on the calling thread (`threads: 1`), so
    /// nothing nests; where they run does not change their result.
    static func forEachHead(_ count: Int, chunks: Int, _ body: (Range<Int>, Int) -> Void) {
        if chunks <= 1 {
            body(0..<count, 0)
            return
        }
        let per = (count + chunks - 1) / chunks
        parallelFor(chunks, threads: chunks) { r in
            for c in r {
                let lo = min(count, c * per), hi = min(count, (c + 1) * per)
                if lo < hi { body(lo..<hi, c) }
            }
        }
    }
}

extension Attention {
    /// What backward needs from the tensor-level forward.
    public struct Cache: Sendable {
        /// Softmax probabilities before dropout (B, H, Tq, Tk).
        public var probs: Tensor
        /// Dropout factors (B, H, Tq, Tk), nil when no dropout ran.
        public var dropoutMask: Tensor?
        public var size: Size

        public init(probs: Tensor, dropoutMask: Tensor?, size: Size) {
            self.probs = probs
            self.dropoutMask = dropoutMask
            self.size = size
        }
    }

    /// Forward on tensors: q (B, Tq, H·Dh), k and v (B, Tk, H·Dh) give out (B, Tq, H·Dh), the
    /// cache, and the pre-softmax logits (B, H, Tq, Tk) when `returnLogits` is set.
    public static func forward(
        q: Tensor, k: Tensor, v: Tensor, heads: Int, scale: Float, bias: Tensor? = nil,
        keyMask: Tensor? = nil, causal: Bool = false, dropout: Float = 0, rng: inout RNG,
        returnLogits: Bool = false
    ) -> (out: Tensor, cache: Cache, logits: Tensor?) {
        precondition(q.rank == 3 && k.rank == 3 && v.shape == k.shape && q.shape[0] == k.shape[0] && q.shape[2] == k.shape[2] && heads >= 1 && q.shape[2] % heads == 0,
            "Attention.forward: q \(q.shape) k \(k.shape) v \(v.shape) heads \(heads)")
        let size = Size(batch: q.shape[0], heads: heads, queryLength: q.shape[1], keyLength: k.shape[1], headDim: q.shape[2] / heads)
        let (B, H, Tq, Tk) = (size.batch, heads, size.queryLength, size.keyLength)
        if let bias { precondition(bias.count == size.biasCount, "Attention.forward: bias \(bias.shape), expected [\(H), \(Tq), \(Tk)]") }
        if let keyMask { precondition(keyMask.count == B * Tk, "Attention.forward: keyMask \(keyMask.shape), expected [\(B), \(Tk)]") }
        var out = Tensor.zeros(q.shape)
        var probs = Tensor.zeros([B, H, Tq, Tk])
        var mask: Tensor? = dropout > 0 ? Tensor.zeros([B, H, Tq, Tk]) : nil
        var logits: Tensor? = returnLogits ? Tensor.zeros([B, H, Tq, Tk]) : nil
        var maskData = mask?.data ?? [], logitData = logits?.data ?? []
        let empty: [Float] = []
        q.withUnsafeBufferPointer { pq in k.withUnsafeBufferPointer { pk in v.withUnsafeBufferPointer { pv in
        (bias?.data ?? empty).withUnsafeBufferPointer { pb in (keyMask?.data ?? empty).withUnsafeBufferPointer { pkm in
        out.withUnsafeMutableBufferPointer { po in probs.withUnsafeMutableBufferPointer { pp in
        maskData.withUnsafeMutableBufferPointer { pm in logitData.withUnsafeMutableBufferPointer { pl in
            forward(
                out: po.baseAddress!, probs: pp.baseAddress!,
                dropoutMask: mask == nil ? nil : pm.baseAddress, logits: logits == nil ? nil : pl.baseAddress,
                q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!,
                bias: bias == nil ? nil : pb.baseAddress, keyMask: keyMask == nil ? nil : pkm.baseAddress,
                causal: causal, scale: scale, dropout: dropout, rng: &rng, size: size)
        } } } } } } } } }
        if mask != nil { mask = Tensor(shape: [B, H, Tq, Tk], data: maskData) }
        if logits != nil { logits = Tensor(shape: [B, H, Tq, Tk], data: logitData) }
        return (out, Cache(probs: probs, dropoutMask: mask, size: size), logits)
    }

    /// Backward on tensors: accumulates into dq, dk, dv (shapes of q, k, v) and, when given,
    /// dBias (H, Tq, Tk).
    public static func backward(
        dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, scale: Float, cache: Cache,
        dq: inout Tensor, dk: inout Tensor, dv: inout Tensor, dBias: inout Tensor?,
        threads: Int? = nil
    ) {
        let size = cache.size
        precondition(dOut.shape == q.shape && dq.shape == q.shape && dk.shape == k.shape && dv.shape == v.shape && q.count == size.queryCount && k.count == size.keyCount && v.count == size.keyCount,
            "Attention.backward: dOut \(dOut.shape) q \(q.shape) k \(k.shape) v \(v.shape) dq \(dq.shape) dk \(dk.shape) dv \(dv.shape) for \(size)")
        if let dBias { precondition(dBias.count == size.biasCount, "Attention.backward: dBias \(dBias.shape) for \(size)") }
        if size.batch == 0 { return }
        var db = dBias?.data ?? []
        let empty: [Float] = []
        dOut.withUnsafeBufferPointer { pg in q.withUnsafeBufferPointer { pq in k.withUnsafeBufferPointer { pk in
        v.withUnsafeBufferPointer { pv in cache.probs.withUnsafeBufferPointer { pp in
        (cache.dropoutMask?.data ?? empty).withUnsafeBufferPointer { pm in
        dq.withUnsafeMutableBufferPointer { pdq in dk.withUnsafeMutableBufferPointer { pdk in
        dv.withUnsafeMutableBufferPointer { pdv in db.withUnsafeMutableBufferPointer { pdb in
            backward(
                dq: pdq.baseAddress!, dk: pdk.baseAddress!, dv: pdv.baseAddress!,
                dBias: dBias == nil ? nil : pdb.baseAddress, dOut: pg.baseAddress!,
                q: pq.baseAddress!, k: pk.baseAddress!, v: pv.baseAddress!, probs: pp.baseAddress!,
                dropoutMask: cache.dropoutMask == nil ? nil : pm.baseAddress, scale: scale, size: size,
                threads: threads)
        } } } } } } } } } }
        if let shape = dBias?.shape { dBias = Tensor(shape: shape, data: db) }
    }
}

extension Attention {
    /// Keys per work unit of `fewQueries`. Fixed, so its sums split the same way on any thread count.
    public static let streamChunk = 256

    /// Floats of scratch `fewQueries` needs for `size`: one (Tq, H·Dh) partial context per chunk of keys.
    public static func fewQueriesScratchCount(_ s: Size) -> Int {
        s.batch * ((s.keyLength + streamChunk - 1) / streamChunk) * s.queryLength * s.heads * s.headDim
    }

    /// Inference attention for a few queries per item over many keys (a decoding step's
    /// cross-attention: Tq = beams, Tk = P·L memory positions), with `forward`'s layouts and
    /// results (no dropout, no causal mask).
    ///
    /// `forward` runs per (item, head): each head's gemv reads 64-float pieces of every key row,
    /// H passes over the rows. Here each key row (H·Dh contiguous floats) and each value row is
    /// read once for all heads and queries: the step's largest memory stream (2·Tk·H·Dh floats
    /// per layer) is read at streaming speed. Keys split into fixed chunks of `streamChunk`;
    /// chunk c's context partial goes to its own scratch slot and the partials are summed in
    /// chunk order, so the result is the same to the bit on any thread count.
    ///
    /// - Parameters:
    ///   - out: (B, Tq, H·Dh), overwritten.
    ///   - probs: (B, H, Tq, Tk), overwritten with the probabilities.
    ///   - logits: (B, H, Tq, Tk) or nil; receives scale·q·kᵀ + bias before the mask.
    ///   - q: (B, Tq, H·Dh); k, v: (B, Tk, H·Dh); bias (H, Tq, Tk) or nil; keyMask (B, Tk) or nil.
    ///   - scratch: `fewQueriesScratchCount(size)` floats.
    public static func fewQueries(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, keyMask: UnsafePointer<Float>?, scale: Float, size: Size,
        scratch: UnsafeMutablePointer<Float>, threads: Int? = nil
    ) {
        check(size, "fewQueries")
        let B = size.batch, H = size.heads, Tq = size.queryLength, Tk = size.keyLength, Dh = size.headDim, HD = H * Dh
        if B == 0 { return }
        let C = streamChunk, chunks = (Tk + C - 1) / C
        // 1. Logits S (B, H, Tq, Tk): key row j of item b against every (query, head).
        parallelFor(B * chunks, threads: threads) { units in
            for unit in units {
                let b = unit / chunks, c = unit % chunks
                for j in (c * C)..<min(Tk, (c + 1) * C) {
                    let kr = k + (b * Tk + j) * HD
                    for i in 0..<Tq {
                        let qr = q + (b * Tq + i) * HD
                        for h in 0..<H {
                            probs[((b * H + h) * Tq + i) * Tk + j] = scale * Reduce.dot(qr + h * Dh, kr + h * Dh, Dh)
                        }
                    }
                }
            }
        }
        // 2. Bias, logits, mask and softmax per (item, head, query) row.
        parallelFor(B * H * Tq, grain: 4, threads: threads) { rows in
            for row in rows {
                let b = row / (H * Tq), hi = row % (H * Tq)  // hi = h·Tq + i
                let S = probs + row * Tk
                if let bias {
                    let bh = bias + hi * Tk
                    for j in 0..<Tk { S[j] += bh[j] }
                }
                if let logits { (logits + row * Tk).update(from: S, count: Tk) }
                if let keyMask {
                    let km = keyMask + b * Tk
                    for j in 0..<Tk where km[j] == 0 { S[j] = -.infinity }
                }
                Softmax.row(S, S, Tk)
            }
        }
        // 3. Context partials per chunk: out_c (Tq, H·Dh) = Σ_{j in chunk} p_j · v_j, per head.
        let part = Tq * HD
        parallelFor(B * chunks, threads: threads) { units in
            for unit in units {
                let b = unit / chunks, c = unit % chunks
                let acc = scratch + unit * part
                acc.update(repeating: 0, count: part)
                for j in (c * C)..<min(Tk, (c + 1) * C) {
                    let vr = v + (b * Tk + j) * HD
                    for i in 0..<Tq {
                        for h in 0..<H {
                            let p = probs[((b * H + h) * Tq + i) * Tk + j]
                            if p == 0 { continue }  // masked keys (and underflow) add nothing
                            let o = acc + i * HD + h * Dh, x = vr + h * Dh
                            var d = 0
                            let vp = SIMD16<Float>(repeating: p)
                            while d + 16 <= Dh {
                                Reduce.store(Reduce.load(o + d) + vp * Reduce.load(x + d), o + d)
                                d += 16
                            }
                            while d < Dh {
                                o[d] += p * x[d]
                                d += 1
                            }
                        }
                    }
                }
            }
        }
        // 4. out = Σ_c partial_c in chunk order.
        parallelFor(B * Tq, threads: threads) { rows in
            for row in rows {
                let b = row / Tq, i = row % Tq
                let o = out + row * HD
                o.update(from: scratch + (b * chunks) * part + i * HD, count: HD)
                for c in 1..<max(1, chunks) {
                    let src = scratch + (b * chunks + c) * part + i * HD
                    for e in 0..<HD { o[e] += src[e] }
                }
            }
        }
    }
}
