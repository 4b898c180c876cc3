// Softmax: row softmax with an optional additive mask, forward and backward.

/// Softmax over the last axis: `p = exp(z − max z) / Σ exp(z − max z)` with z = x + mask.
///
/// Layout: x and p (N, C); the additive mask is one row (C) shared by every row
/// (`maskRowStride` 0) or (N, C) (`maskRowStride` C). An entry is masked when its z is −∞;
/// a row whose every entry is −∞ gives zeros, never NaN (PyTorch would give NaN).
public enum Softmax {
    /// Softmax of one row of n logits from z into p (p may equal z); −∞ entries get 0, an all −∞
    /// row becomes zeros. Three SIMD16 passes: the maximum, exp(z − max) written to p while
    /// summing, one scaling pass. Only the first reads memory; the row is in L1 after it.
    @inlinable
    static func row(_ p: UnsafeMutablePointer<Float>, _ z: UnsafePointer<Float>, _ n: Int) {
        _ = row(p, z, n, max: Reduce.max(z, n), next: nil)
    }

    /// `row` given the row's maximum m, also returning the maximum of `next` (the following row,
    /// n entries; −∞ when nil), taken inside the exp pass: the next row's memory reads then
    /// overlap this row's exp arithmetic instead of stalling a pass of their own.
    @inlinable
    static func row(
        _ p: UnsafeMutablePointer<Float>, _ z: UnsafePointer<Float>, _ n: Int, max m: Float,
        next: UnsafePointer<Float>?
    ) -> Float {
        if m == -.infinity {
            // Every entry masked gives zeros; every entry NaN stays NaN (Reduce.max skips NaN).
            p.update(repeating: Reduce.containsNaN(z, n) ? .nan : 0, count: n)
            return next.map { Reduce.max($0, n) } ?? -.infinity
        }
        let vm = SIMD16<Float>(repeating: m)
        let full = n & ~15, rest = n - full
        // A ragged end (n ≥ 16) is the last 16 entries, overlapping the full blocks: its exp is
        // taken before the loop overwrites them (p may be z) and stored after, rewriting the
        // overlap with the same values; only its last `rest` lanes join the sum.
        var last = SIMD16<Float>()
        if rest > 0 && n >= 16 { last = VectorMath.exp(Reduce.load(z + n - 16) - vm) }
        var acc = SIMD16<Float>()
        var nextMax = SIMD16<Float>(repeating: -.infinity)
        var j = 0
        if let next {
            while j < full {
                let e = VectorMath.exp(Reduce.load(z + j) - vm)
                Reduce.store(e, p + j)
                acc += e
                let v = Reduce.load(next + j)
                nextMax.replace(with: v, where: v .> nextMax)
                j += 16
            }
        } else {
            while j < full {
                let e = VectorMath.exp(Reduce.load(z + j) - vm)
                Reduce.store(e, p + j)
                acc += e
                j += 16
            }
        }
        if rest > 0 {
            if n >= 16 {
                Reduce.store(last, p + n - 16)
                acc += Reduce.dropLanes(last, below: 16 - rest)
            } else {
                // −∞ padding: exp gives 0 in the unused lanes, so they add nothing to the sum.
                let e = VectorMath.exp(Reduce.load(z, count: n, padding: -.infinity) - vm)
                Reduce.store(e, p, count: n)
                acc += e
            }
        }
        scale(p, n, by: 1 / acc.sum())
        guard let next else { return -.infinity }
        if n < 16 { return Reduce.max(next, n) }
        if rest > 0 {
            let v = Reduce.load(next + n - 16)
            nextMax.replace(with: v, where: v .> nextMax)
        }
        return nextMax.max()
    }

    /// p[j] *= c for j in 0..<n.
    @inlinable @inline(__always)
    static func scale(_ p: UnsafeMutablePointer<Float>, _ n: Int, by c: Float) {
        let vc = SIMD16<Float>(repeating: c)
        let full = n & ~15
        // Ragged end: the last 16 scaled before the loop, stored after (see `row`).
        let last = n > full && n >= 16 ? Reduce.load(p + n - 16) * vc : SIMD16<Float>()
        var j = 0
        while j < full {
            Reduce.store(Reduce.load(p + j) * vc, p + j)
            j += 16
        }
        if n > full {
            if n >= 16 {
                Reduce.store(last, p + n - 16)
            } else {
                for j in 0..<n { p[j] *= c }
            }
        }
    }

    /// Rows per `parallelFor` chunk at least: ~16k elements, so dispatch stays far below the work.
    @usableFromInline
    static func grain(_ cols: Int) -> Int { max(1, 16_384 / cols) }

    /// Forward: p (N, C) = softmax(x + mask) per row. p may alias x.
    ///
    /// - Parameters:
    ///   - mask: additive, (C) or (N, C), or nil.
    ///   - maskRowStride: 0 when one mask row serves all rows, C when each row has its own.
    public static func forward(
        p: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, mask: UnsafePointer<Float>? = nil,
        maskRowStride: Int = 0, rows: Int, cols: Int
    ) {
        let N = rows, C = cols
        precondition(N >= 0 && C >= 1, "Softmax.forward: rows=\(N) cols=\(C)")
        precondition(maskRowStride == 0 || maskRowStride == C, "Softmax.forward: maskRowStride \(maskRowStride) is neither 0 nor cols \(C)")
        parallelFor(N, grain: grain(C)) { r in
            var m = mask == nil ? Reduce.max(x + r.lowerBound * C, C) : 0
            for n in r {
                let xr = x + n * C, pr = p + n * C
                if let mask {
                    // z = x + mask into p first; the row then stays in L1 for the three passes.
                    Elementwise.addRow(out: pr, xr, mask + n * maskRowStride, count: C)
                    row(pr, pr, C)
                } else {
                    // The next row's maximum comes out of this row's exp pass (see `row`).
                    let next = n + 1 < r.upperBound ? xr + C : nil
                    m = row(pr, xr, C, max: m, next: next)
                }
            }
        }
    }

    /// Backward: dx += p · (dy − Σ_j dy_j·p_j) per row.
    ///
    /// - Parameters:
    ///   - dx: (N, C), accumulated.
    ///   - dy: (N, C).
    ///   - p: the forward output (N, C).
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, p: UnsafePointer<Float>,
        rows: Int, cols: Int
    ) {
        let N = rows, C = cols
        precondition(N >= 0 && C >= 1, "Softmax.backward: rows=\(N) cols=\(C)")
        parallelFor(N, grain: grain(C)) { r in
            for n in r {
                let gr = dy + n * C, pr = p + n * C, dr = dx + n * C
                let s = Reduce.dot(gr, pr, C)
                let vs = SIMD16<Float>(repeating: s)
                var j = 0
                while j + 16 <= C {
                    let pj = Reduce.load(pr + j)
                    Reduce.store(Reduce.load(dr + j).addingProduct(pj, Reduce.load(gr + j) - vs), dr + j)
                    j += 16
                }
                while j < C {
                    dr[j] += pr[j] * (gr[j] - s)
                    j += 1
                }
            }
        }
    }
}

extension Softmax {
    /// Forward on tensors over the last axis; the mask is (C) or the shape of x.
    public static func forward(_ x: Tensor, mask: Tensor? = nil) -> Tensor {
        precondition(x.rank >= 1 && x.shape.last! >= 1, "Softmax.forward: x \(x.shape)")
        let C = x.shape.last!, N = x.count / C
        var stride = 0
        if let mask {
            precondition(mask.count == C || mask.shape == x.shape, "Softmax.forward: mask \(mask.shape) for x \(x.shape)")
            stride = mask.count == C && N != 1 ? 0 : C
        }
        var p = Tensor.zeros(x.shape)
        if N == 0 { return p }
        x.withUnsafeBufferPointer { px in
            p.withUnsafeMutableBufferPointer { pp in
                if let mask {
                    mask.withUnsafeBufferPointer { pm in
                        forward(p: pp.baseAddress!, x: px.baseAddress!, mask: pm.baseAddress!, maskRowStride: stride, rows: N, cols: C)
                    }
                } else {
                    forward(p: pp.baseAddress!, x: px.baseAddress!, rows: N, cols: C)
                }
            }
        }
        return p
    }

    /// Backward on tensors: accumulates into dx (same shape as p).
    public static func backward(dy: Tensor, p: Tensor, dx: inout Tensor) {
        precondition(dy.shape == p.shape && dx.shape == p.shape && p.rank >= 1, "Softmax.backward: dy \(dy.shape) p \(p.shape) dx \(dx.shape)")
        let C = p.shape.last!, N = p.count / max(1, C)
        if N == 0 || C == 0 { return }
        dy.withUnsafeBufferPointer { pg in
            p.withUnsafeBufferPointer { pp in
                dx.withUnsafeMutableBufferPointer { pd in
                    backward(dx: pd.baseAddress!, dy: pg.baseAddress!, p: pp.baseAddress!, rows: N, cols: C)
                }
            }
        }
    }
}
