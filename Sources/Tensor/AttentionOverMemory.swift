// AttentionOverMemory: inference attention of a few wide queries whose keys and values are the
// memory rows themselves: a decoding step's cross-attention with the key and value weights
// folded into the queries and applied after (T5Stepper's absorbed plan).

import COverMemory
import CPrefetch

extension Attention {
    /// Floats of scratch `overMemory` needs: per chunk of keys, a (Tq, D) partial context and
    /// each query's maximum logit and sum of exponentials over the chunk.
    public static func overMemoryScratchCount(batch B: Int, queries Tq: Int, keys Tk: Int, width D: Int) -> Int {
        B * ((Tk + streamChunk - 1) / streamChunk) * Tq * (D + 2)
    }

    /// out = softmax(mask(scale·q·Xᵀ + bias))·X per item, X its memory rows: `fewQueries` with one
    /// head of width D and the keys and values both X, in one pass over X with blocked kernels.
    ///
    /// Keys split into fixed chunks of `streamChunk`. Each chunk is scored, exponentiated against
    /// its own maximum and summed into a context partial while its rows are still in cache, so X
    /// is read from memory once (scoring and summing in two passes read it twice, and X outgrows
    /// the cache at FiD's sizes); the partials are then rescaled to the global maximum and summed
    /// in chunk order (the online softmax). A key pair is scored against four queries at once
    /// (eight independent sums over 8-float lanes) and a 16-float slice of four queries' contexts
    /// stays in registers over a chunk's live keys, packed with their weights in a temporary
    /// buffer (on the stack where it fits). The scoring asks for the rows 8 keys ahead into L2,
    /// so the pass runs from memory about as fast as from cache. Every sum's order follows from
    /// D and the chunks, so the result is the same to the bit on any thread count, and with
    /// either `kernel` (Zen 4 runs both passes in AVX-512 C with wider tiles). Masked keys
    /// add nothing to the context, whatever their rows hold; an item whose keys are all masked
    /// gets zeros (like `Softmax`), and NaN logits give NaN.
    ///
    /// - Parameters:
    ///   - out: (B, Tq, D), overwritten.
    ///   - probs: (B, Tq, Tk), overwritten with the probabilities.
    ///   - logits: (B, Tq, Tk) or nil; receives scale·q·xᵀ + bias before the mask.
    ///   - q: (B, Tq, D); memory: (B, Tk, D); bias (Tq, Tk) or nil (shared by the items); keyMask (B, Tk) or nil.
    ///   - scratch: `overMemoryScratchCount` floats.
    ///   - kernel: the scoring and context kernels (the same bits either way); one this CPU runs.
    public static func overMemory(
        out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>?,
        q: UnsafePointer<Float>, memory: UnsafePointer<Float>, bias: UnsafePointer<Float>?, keyMask: UnsafePointer<Float>?,
        scale: Float, batch B: Int, queries Tq: Int, keys Tk: Int, width D: Int,
        scratch: UnsafeMutablePointer<Float>, threads: Int? = nil, kernel: OverMemoryKernel = .best
    ) {
        precondition(B >= 0 && Tq >= 1 && Tk >= 1 && D >= 1, "overMemory: batch \(B), queries \(Tq), keys \(Tk), width \(D)")
        precondition(kernel.isSupported, "overMemory: the \(kernel) kernel does not run on this CPU")
        if B == 0 { return }
        let C = streamChunk, chunks = (Tk + C - 1) / C, part = Tq * D
        // Per (item, chunk, query): the chunk's maximum logit and Σ exp(logit − maximum).
        let maxima = scratch + B * chunks * part, sums = maxima + B * chunks * Tq
        parallelFor(B * chunks, threads: threads) { units in
            for unit in units {
                let b = unit / chunks, c = unit % chunks, lo = c * C, hi = min(Tk, (c + 1) * C), n = hi - lo
                scoreChunk(probs + b * Tq * Tk, q: q + b * Tq * D, memory: memory + b * Tk * D, scale: scale,
                           queries: Tq, keys: Tk, width: D, from: lo, to: hi, kernel: kernel)
                for i in 0..<Tq {
                    let z = probs + (b * Tq + i) * Tk + lo
                    if let bias {
                        let bi = bias + i * Tk + lo
                        for j in 0..<n { z[j] += bi[j] }
                    }
                    if let logits { (logits + (b * Tq + i) * Tk + lo).update(from: z, count: n) }
                    if let keyMask {
                        let km = keyMask + b * Tk + lo
                        for j in 0..<n where km[j] == 0 { z[j] = -.infinity }
                    }
                    let m = Reduce.max(z, n)
                    maxima[unit * Tq + i] = m
                    sums[unit * Tq + i] = exponentiate(z, n, max: m)
                }
                // The chunk's live keys, packed: each one's row offset and its Tq weights side by
                // side, so the context kernel reads no mask and broadcasts from one cache line.
                withUnsafeTemporaryAllocation(of: Int.self, capacity: n) { rows in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: n * Tq) { w in
                        let p = probs + b * Tq * Tk + lo, km = keyMask.map { $0 + b * Tk + lo }
                        var live = 0
                        for j in 0..<n where km.map({ $0[j] != 0 }) ?? true {
                            rows[live] = (lo + j) * D
                            for i in 0..<Tq { w[live * Tq + i] = p[i * Tk + j] }
                            live += 1
                        }
                        contextChunk(scratch + unit * part, weights: w.baseAddress!, rows: rows.baseAddress!, count: live,
                                     memory: memory + b * Tk * D, queries: Tq, width: D, kernel: kernel)
                    }
                }
            }
        }
        // Rescale to the global maximum, sum the partials in chunk order, normalise: threads
        // share the rows only past `Threads.minSplitWork` each (a greedy step's eight rows are a
        // few µs, less than waking a helper).
        parallelFor(B * Tq, grain: Threads.grain(work: chunks * (D + C)), threads: threads) { rows in
            for row in rows {
                let b = row / Tq, i = row % Tq
                var top = -Float.infinity
                for c in 0..<chunks { top = max(top, maxima[(b * chunks + c) * Tq + i]) }
                let o = out + row * D
                o.update(repeating: 0, count: D)
                var total: Float = 0
                for c in 0..<chunks {
                    let unit = b * chunks + c, m = maxima[unit * Tq + i], l = sums[unit * Tq + i]
                    // A chunk of masked keys weighs 0 (its sum is 0, or NaN when its logits were).
                    let w = m == -.infinity ? (l.isNaN ? Float.nan : 0) : exp1(m - top)
                    total += w * l
                    if w == 0 { continue }
                    let src = scratch + unit * part + i * D
                    for e in 0..<D { o[e] += w * src[e] }
                }
                // Every key masked: zeros, as `Softmax` gives.
                let inv: Float = top == -.infinity && !total.isNaN ? 0 : 1 / total
                for e in 0..<D { o[e] *= inv }
                for c in 0..<chunks {
                    let unit = b * chunks + c, m = maxima[unit * Tq + i]
                    let w = m == -.infinity ? (sums[unit * Tq + i].isNaN ? Float.nan : 0) : exp1(m - top) * inv
                    let p = probs + row * Tk + c * C, n = min(Tk, (c + 1) * C) - c * C
                    for j in 0..<n { p[j] *= w }
                }
            }
        }
    }

    /// exp of one float, by `VectorMath.exp` (the softmax's own).
    @inline(__always)
    static func exp1(_ x: Float) -> Float { VectorMath.exp(SIMD16<Float>(repeating: x))[0] }

    /// z[j] = exp(z[j] − m) over n entries, returning their sum; an all −∞ run (m = −∞) becomes
    /// zeros with sum 0, or NaN when it holds NaN (`Reduce.max` skips NaN).
    static func exponentiate(_ z: UnsafeMutablePointer<Float>, _ n: Int, max m: Float) -> Float {
        if m == -.infinity {
            let nan = Reduce.containsNaN(z, n)
            z.update(repeating: nan ? .nan : 0, count: n)
            return nan ? .nan : 0
        }
        let vm = SIMD16<Float>(repeating: m)
        var acc = SIMD16<Float>()
        var j = 0
        while j + 16 <= n {
            let e = VectorMath.exp(Reduce.load(z + j) - vm)
            Reduce.store(e, z + j)
            acc += e
            j += 16
        }
        if j < n {
            // −∞ padding: exp gives 0 in the unused lanes.
            let e = VectorMath.exp(Reduce.load(z + j, count: n - j, padding: -.infinity) - vm)
            Reduce.store(e, z + j, count: n - j)
            acc += e
        }
        return acc.sum()
    }

    /// The register tile of both kernels: four rows (queries) by two columns (keys in
    /// `scoreChunk`, halves of a 16-float slice in `contextChunk`) of 8-float accumulators, each
    /// updated by one multiply-add per step: t_rc += r_r · x_c.
    struct Tile {
        var t00 = SIMD8<Float>(), t01 = SIMD8<Float>(), t10 = SIMD8<Float>(), t11 = SIMD8<Float>()
        var t20 = SIMD8<Float>(), t21 = SIMD8<Float>(), t30 = SIMD8<Float>(), t31 = SIMD8<Float>()

        @inline(__always)
        mutating func add(_ r: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>), _ x0: SIMD8<Float>, _ x1: SIMD8<Float>) {
            t00 = t00.addingProduct(r.0, x0)
            t01 = t01.addingProduct(r.0, x1)
            t10 = t10.addingProduct(r.1, x0)
            t11 = t11.addingProduct(r.1, x1)
            t20 = t20.addingProduct(r.2, x0)
            t21 = t21.addingProduct(r.2, x1)
            t30 = t30.addingProduct(r.3, x0)
            t31 = t31.addingProduct(r.3, x1)
        }
    }

    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

    /// S[i, j] = scale · q_i · x_j for keys lo..<hi, S (Tq, Tk). Tiles of two keys × four queries;
    /// a missing key or query repeats the last one (computed, not written), so each product is
    /// summed the same way wherever it falls: 8-float lanes over D, then the lanes first to last,
    /// then D's tail (`kernel` avx512: tiles of 4 keys × 8 queries, the same sums).
    static func scoreChunk(
        _ S: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, memory x: UnsafePointer<Float>, scale: Float,
        queries Tq: Int, keys Tk: Int, width D: Int, from lo: Int, to hi: Int, kernel: OverMemoryKernel = .best
    ) {
        if kernel == .avx512 {
            fidq_over_memory_scores_avx512(S, q, x, scale, Tq, Tk, D, lo, hi)
            return
        }
        let full = D & ~7
        var j = lo
        while j < hi {
            let keys = min(2, hi - j)
            let k0 = x + j * D, k1 = k0 + (keys - 1) * D
            var i = 0
            while i < Tq {
                let n = min(4, Tq - i)
                let q0 = q + i * D, q1 = q + (i + min(1, n - 1)) * D, q2 = q + (i + min(2, n - 1)) * D, q3 = q + (i + n - 1) * D
                var a = Tile()
                var d = 0
                // The first query tile asks for the rows 8 keys ahead into L2, a line per 16
                // floats: the hardware's stream prefetch alone left this loop waiting on memory
                // (at P 25, one thread, 1.8 ms a pass from memory against 1.2 ms from cache).
                let ahead = i == 0 && j + 9 < Tk ? k0 + 8 * D : nil
                while d < full {
                    if let ahead, d & 15 == 0 { fidq_prefetch(ahead + d); fidq_prefetch(ahead + D + d) }
                    a.add((load8(q0 + d), load8(q1 + d), load8(q2 + d), load8(q3 + d)), load8(k0 + d), load8(k1 + d))
                    d += 8
                }
                var s = (a.t00.sum(), a.t01.sum(), a.t10.sum(), a.t11.sum(), a.t20.sum(), a.t21.sum(), a.t30.sum(), a.t31.sum())
                while d < D {
                    s.0 += q0[d] * k0[d]
                    s.1 += q0[d] * k1[d]
                    s.2 += q1[d] * k0[d]
                    s.3 += q1[d] * k1[d]
                    s.4 += q2[d] * k0[d]
                    s.5 += q2[d] * k1[d]
                    s.6 += q3[d] * k0[d]
                    s.7 += q3[d] * k1[d]
                    d += 1
                }
                @inline(__always) func put(_ t: Int, _ first: Float, _ second: Float) {
                    guard t < n else { return }
                    let row = S + (i + t) * Tk + j
                    row[0] = scale * first
                    if keys == 2 { row[1] = scale * second }
                }
                put(0, s.0, s.1)
                put(1, s.2, s.3)
                put(2, s.4, s.5)
                put(3, s.6, s.7)
                i += 4
            }
            j += keys
        }
    }

    /// A set of `overMemory`'s kernels (scoring and context). Both give the same bits: `avx512`
    /// (COverMemory, Zen 4: tiles of 8 queries × 4 keys and 8 queries × 32 floats in 16 zmm
    /// accumulators) and `swift` (4 queries × 2 keys and 4 × 16 floats, AVX2).
    public enum OverMemoryKernel: String, CaseIterable, Sendable {
        case swift, avx512

        public var isSupported: Bool { self == .swift || Self.hasAVX512 }

        private static let hasAVX512 = fidq_over_memory_avx512_supported() != 0

        /// The fastest this CPU runs, or `FIDQ_OVER_MEMORY_KERNEL` (swift, avx512) when set and
        /// supported (to time or test Zen 3's path on Zen 4; see `KernelSwitch`).
        public static let best: OverMemoryKernel = KernelSwitch.fromEnvironment(
            "FIDQ_OVER_MEMORY_KERNEL", variants: allCases, name: \.rawValue, isSupported: { $0.isSupported },
            fallback: OverMemoryKernel.avx512.isSupported ? .avx512 : .swift)
    }

    /// acc (Tq, D) = Σ_k w[k, i] · x[rows[k]] over a chunk's n live keys in order, w (n, Tq) their
    /// weights key-major and rows[k] a row's offset in x. Four queries × 16 floats of D stay in
    /// registers over the keys (`kernel` avx512: 8 × 32); each element adds its keys in order.
    static func contextChunk(
        _ acc: UnsafeMutablePointer<Float>, weights w: UnsafePointer<Float>, rows: UnsafePointer<Int>, count n: Int,
        memory x: UnsafePointer<Float>, queries Tq: Int, width D: Int, kernel: OverMemoryKernel = .best
    ) {
        let full = D & ~15
        if kernel == .avx512 {
            fidq_over_memory_context_avx512(acc, w, rows, n, x, Tq, D)
            contextTail(acc, weights: w, rows: rows, count: n, memory: x, queries: Tq, width: D)
            return
        }
        var i = 0
        while i < Tq {
            let m = min(4, Tq - i)
            // A missing query repeats the last one and is never stored.
            let c1 = min(1, m - 1), c2 = min(2, m - 1), c3 = m - 1
            var d = 0
            while d < full {
                var c = Tile()
                var wk = w + i
                for k in 0..<n {
                    let xr = x + rows[k] + d
                    c.add((SIMD8(repeating: wk[0]), SIMD8(repeating: wk[c1]), SIMD8(repeating: wk[c2]), SIMD8(repeating: wk[c3])),
                          load8(xr), load8(xr + 8))
                    wk += Tq
                }
                let o = acc + i * D + d
                store8(c.t00, o)
                store8(c.t01, o + 8)
                if m > 1 {
                    store8(c.t10, o + D)
                    store8(c.t11, o + D + 8)
                }
                if m > 2 {
                    store8(c.t20, o + 2 * D)
                    store8(c.t21, o + 2 * D + 8)
                }
                if m > 3 {
                    store8(c.t30, o + 3 * D)
                    store8(c.t31, o + 3 * D + 8)
                }
                d += 16
            }
            i += 4
        }
        contextTail(acc, weights: w, rows: rows, count: n, memory: x, queries: Tq, width: D)
    }

    /// `contextChunk`'s columns past D's last multiple of 16, element by element in the same key order.
    static func contextTail(
        _ acc: UnsafeMutablePointer<Float>, weights w: UnsafePointer<Float>, rows: UnsafePointer<Int>, count n: Int,
        memory x: UnsafePointer<Float>, queries Tq: Int, width D: Int
    ) {
        let full = D & ~15
        if full == D { return }
        for i in 0..<Tq {
            let o = acc + i * D
            for e in full..<D {
                var s: Float = 0
                for k in 0..<n { s += w[k * Tq + i] * x[rows[k] + e] }
                o[e] = s
            }
        }
    }
}
