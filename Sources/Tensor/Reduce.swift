// Reduce: SIMD16 loads, stores and row reductions (sum, dot, max, Σexp) shared by every kernel and loss.

/// Row reductions over contiguous Float32 runs with SIMD16 accumulators.
///
/// Sixteen lanes of partial sums both vectorise (two ymm FMAs per step under `-target-cpu
/// haswell`) and cut the rounding error of a long serial sum by spreading it over 16 chains.
@usableFromInline
enum Reduce {
    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inlinable @inline(__always)
    static func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }

    /// Loads `count` ≤ 16 floats into the low lanes, `padding` above: the tail of a strip-mined loop.
    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>, count: Int, padding: Float = 0) -> SIMD16<Float> {
        if count == 16 { return load(p) }
        var v = SIMD16<Float>(repeating: padding)
        for l in 0..<count { v[l] = p[l] }
        return v
    }

    /// Stores the low `count` ≤ 16 lanes.
    @inlinable @inline(__always)
    static func store(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>, count: Int) {
        if count == 16 { return store(v, p) }
        for l in 0..<count { p[l] = v[l] }
    }

    /// Σ x[i] for i in 0..<n.
    @inlinable
    static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            acc += load(x + i)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += x[i]
            i += 1
        }
        return s
    }

    /// Σ a[i]·b[i] for i in 0..<n.
    @inlinable
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            acc = acc.addingProduct(load(a + i), load(b + i))
            i += 16
        }
        var s = acc.sum()
        while i < n {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    /// Σ (x[i] − c)² for i in 0..<n.
    @inlinable
    static func sumSquaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, around c: Float) -> Float {
        var acc = SIMD16<Float>()
        let vc = SIMD16<Float>(repeating: c)
        var i = 0
        while i + 16 <= n {
            let d = load(x + i) - vc
            acc = acc.addingProduct(d, d)
            i += 16
        }
        var s = acc.sum()
        while i < n {
            let d = x[i] - c
            s += d * d
            i += 1
        }
        return s
    }

    /// max x[i] for i in 0..<n over the non-NaN entries; −∞ when n == 0 or every entry is −∞ or
    /// NaN. NaN entries are skipped here and surface through what callers compute next: exp(NaN − m)
    /// is NaN, so a softmax row or a log-sum-exp with a NaN in it is NaN (a diverged model gives a
    /// NaN loss, not a plausible one); `containsNaN` tells the all-NaN row from the all-masked one.
    @inlinable
    static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        // Two compare-and-blend chains (one vmaxps-like step each; pointwiseMax's NaN rules do not
        // vectorise), so the blends' latency overlaps.
        var a = SIMD16<Float>(repeating: -.infinity), b = a
        var i = 0
        while i + 32 <= n {
            let u = load(x + i), v = load(x + i + 16)
            a.replace(with: u, where: u .> a)
            b.replace(with: v, where: v .> b)
            i += 32
        }
        if i + 16 <= n {
            let v = load(x + i)
            a.replace(with: v, where: v .> a)
            i += 16
        }
        if i < n {
            // The last 16 entries, overlapping ones already seen (harmless for a maximum): one
            // vector load instead of a lane-by-lane tail.
            let v = n >= 16 ? load(x + n - 16) : load(x + i, count: n - i, padding: -.infinity)
            a.replace(with: v, where: v .> a)
        }
        a.replace(with: b, where: b .> a)
        return a.max()
    }

    /// Whether any x[i] is NaN, for i in 0..<n.
    @inlinable
    static func containsNaN(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
        for i in 0..<n where x[i].isNaN { return true }
        return false
    }

    /// Σ exp(x[i] − shift) for i in 0..<n, with `VectorMath.exp` (tail lanes included).
    @inlinable
    static func sumExp(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
        let vm = SIMD16<Float>(repeating: shift)
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            acc += VectorMath.exp(load(x + i) - vm)
            i += 16
        }
        if i < n {
            acc += n >= 16
                ? dropLanes(VectorMath.exp(load(x + n - 16) - vm), below: 16 - (n - i))
                // −∞ padding: exp gives exactly 0 in the unused lanes.
                : VectorMath.exp(load(x + i, count: n - i, padding: -.infinity) - vm)
        }
        return acc.sum()
    }

    /// v with lanes 0..<k set to 0: the part of an overlapping last block already counted.
    ///
    /// Integer arithmetic, no lane comparison: `lane .< k` against a variable k compiled to a
    /// lane-by-lane loop through the stack, whose store-forwarding stalls took ~40 % of a
    /// 200-key softmax row. (lane − k) >> 31 is all ones exactly where lane < k.
    @inlinable @inline(__always)
    static func dropLanes(_ v: SIMD16<Float>, below k: Int) -> SIMD16<Float> {
        let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let below = (lane &- SIMD16(repeating: Int32(truncatingIfNeeded: k))) &>> 31
        return unsafeBitCast(unsafeBitCast(v, to: SIMD16<Int32>.self) & ~below, to: SIMD16<Float>.self)
    }

    /// Most chunks `rowChunksWithPartials` splits its rows into.
    @usableFromInline static let maxRowChunks = 64

    /// Splits `0..<rows` into chunks of a fixed size (at least `grain` rows, at most
    /// `maxRowChunks` chunks), runs `body(rows, partial)` on each chunk with its own zeroed
    /// `width`-float partial buffer, adds the partials in chunk order, and hands the sum to
    /// `finish`.
    ///
    /// This is how row kernels produce column sums (dw, db of a norm) in the same pass that
    /// writes dx, reading x and dy once, without two threads ever adding into one element. The
    /// chunks depend on `rows` and `grain` only, never on the thread count, so the sums are
    /// bit-identical on any number of threads (a resumed run may use another thread count).
    /// `threads` overrides `Threads.count` for this call.
    @inlinable
    static func rowChunksWithPartials(
        rows N: Int, grain: Int, width W: Int, threads: Int? = nil,
        _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void,
        finish: (UnsafeMutablePointer<Float>) -> Void
    ) {
        let per = Swift.max(1, grain, (N + maxRowChunks - 1) / maxRowChunks)
        let chunks = Swift.max(1, (N + per - 1) / per)
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: chunks * W)
        partials.initialize(repeating: 0, count: chunks * W)
        defer { partials.deallocate() }
        parallelFor(chunks, threads: threads) { r in
            for c in r {
                let lo = Swift.min(N, c * per), hi = Swift.min(N, lo + per)
                body(lo..<hi, partials + c * W)
            }
        }
        if chunks > 1 {
            // Chunk by chunk over contiguous columns, so the adds vectorise (a strided Double
            // loop per column made LayerNorm's backward ~40 % slower at 2000×512); every element
            // still sums its chunks in the order 0, 1, 2, …
            parallelFor(W, grain: 4096, threads: threads) { r in
                for c in 1..<chunks {
                    let p = partials + c * W
                    for i in r { partials[i] += p[i] }
                }
            }
        }
        finish(partials)
    }
}
