// Softmax: row softmax with an optional additive mask, forward and backward.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Softmax over the last axis: `p = exp(z − max z) / Σ exp(z − max z)` with z = x + mask.
///
/// Layout: x and p (N, C); the additive mask is one row (C) shared by every row
/// (`maskRowStride` 0) or (N, C) (`maskRowStride` C). An entry is masked when its z is −∞;
/// a row whose every entry is −∞ gives zeros, never NaN (PyTorch would give NaN).
public enum Softmax {
    /// In-place softmax of one row of n logits; −∞ entries get 0, an all −∞ row becomes zeros.
    @inlinable
    static func row(_ z: UnsafeMutablePointer<Float>, _ n: Int) {
        let m = Reduce.max(z, n)
        if m == -.infinity {
            z.update(repeating: 0, count: n)
            return
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
        var s = acc.sum()
        while j < n {
            let e = exp(z[j] - m)
            z[j] = e
            s += e
            j += 1
        }
        let inv = 1 / s
        for j in 0..<n { z[j] *= inv }
    }

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
        parallelFor(N, grain: max(1, 8192 / C)) { r in
            for n in r {
                let xr = x + n * C, pr = p + n * C
                if let mask {
                    let mr = mask + n * maskRowStride
                    for j in 0..<C { pr[j] = xr[j] + mr[j] }
                } else if UnsafePointer(pr) != xr {
                    pr.update(from: xr, count: C)
                }
                row(pr, C)
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
        parallelFor(N, grain: max(1, 8192 / C)) { r in
            for n in r {
                let gr = dy + n * C, pr = p + n * C, dr = dx + n * C
                let s = Reduce.dot(gr, pr, C)
                for j in 0..<C { dr[j] += pr[j] * (gr[j] - s) }
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
