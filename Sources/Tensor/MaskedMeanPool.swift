// MaskedMeanPool: the retriever's mean over the unmasked tokens of each sequence, forward and backward.

/// Masked mean pooling, as FiD's retriever pools BERT outputs (fid-spec §5.3):
/// `out[b] = Σ_l mask[b,l]·x[b,l] / Σ_l mask[b,l]`.
///
/// The mask is boolean in meaning: any nonzero entry counts as 1. A row with no unmasked token
/// pools to zeros and passes no gradient (FiD would divide 0 by 0).
public enum MaskedMeanPool {
    /// - Parameters:
    ///   - x: token states.  // (B, L, D)
    ///   - mask: 1 for tokens to average, 0 for padding.  // (B, L)
    /// - Returns: the pooled states.  // (B, D)
    public static func forward(x: Tensor, mask: Tensor) -> Tensor {
        let (B, L, D) = checkShapes(x: x, mask: mask)
        var out = Tensor.zeros([B, D])
        x.withUnsafeBufferPointer { x in
            mask.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    forward(out: o.baseAddress!, x: x.baseAddress!, mask: m.baseAddress!, batch: B, length: L, dim: D)
                }
            }
        }
        return out
    }

    /// `forward` on buffers, with no copy of the token states (the inference path pools straight
    /// from the encoder's arena).
    ///
    /// - Parameters:
    ///   - out: the pooled states, overwritten.  // (B, D)
    ///   - x: token states.  // (B, L, D)
    ///   - mask: 1 for tokens to average, 0 for padding, or nil for every token.  // (B, L)
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, mask: UnsafePointer<Float>?, batch B: Int, length L: Int, dim D: Int
    ) {
        precondition(B >= 0 && L >= 0 && D >= 0, "MaskedMeanPool.forward: batch \(B), length \(L), dim \(D)")
        out.update(repeating: 0, count: B * D)
        parallelFor(B, grain: max(1, 16_384 / max(L * D, 1))) { rows in
            for b in rows {
                let orow = out + b * D
                var count = 0
                for l in 0..<L where mask.map({ $0[b * L + l] != 0 }) ?? true {
                    count += 1
                    let xrow = x + (b * L + l) * D
                    for d in 0..<D { orow[d] += xrow[d] }
                }
                if count == 0 { continue }
                let inv = 1 / Float(count)
                for d in 0..<D { orow[d] *= inv }
            }
        }
    }

    /// Accumulates the gradient: each unmasked token of row b gets `dOut[b] / count_b`.
    ///
    /// - Parameters:
    ///   - dOut: gradient of the pooled states.  // (B, D)
    ///   - mask: the forward mask.  // (B, L)
    ///   - dX: gradient accumulator for the token states.  // (B, L, D)
    public static func backward(dOut: Tensor, mask: Tensor, dX: inout Tensor) {
        let (B, L, D) = checkShapes(x: dX, mask: mask)
        precondition(dOut.shape == [B, D], "MaskedMeanPool.backward: dOut \(dOut.shape), expected \([B, D])")
        dOut.withUnsafeBufferPointer { g in
            mask.withUnsafeBufferPointer { m in
                dX.withUnsafeMutableBufferPointer { dx in
                    parallelFor(B, grain: max(1, 16_384 / max(L * D, 1))) { rows in
                        for b in rows {
                            var count = 0
                            for l in 0..<L where m[b * L + l] != 0 { count += 1 }
                            if count == 0 { continue }
                            let inv = 1 / Float(count)
                            let grow = g.baseAddress! + b * D
                            for l in 0..<L where m[b * L + l] != 0 {
                                let drow = dx.baseAddress! + (b * L + l) * D
                                for d in 0..<D { drow[d] += grow[d] * inv }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The pooled states by the plain formula in Double, for tests.  // (B, D)
    public static func naive(x: Tensor, mask: Tensor) -> [Double] {
        let (B, L, D) = checkShapes(x: x, mask: mask)
        var out = [Double](repeating: 0, count: B * D)
        for b in 0..<B {
            let n = (0..<L).filter { mask.data[b * L + $0] != 0 }.count
            for d in 0..<D where n > 0 {
                var s = 0.0
                for l in 0..<L where mask.data[b * L + l] != 0 { s += Double(x.data[(b * L + l) * D + d]) }
                out[b * D + d] = s / Double(n)
            }
        }
        return out
    }

    private static func checkShapes(x: Tensor, mask: Tensor) -> (Int, Int, Int) {
        precondition(x.rank == 3, "MaskedMeanPool: x must be (B, L, D), got \(x.shape)")
        precondition(
            mask.shape == [x.shape[0], x.shape[1]],
            "MaskedMeanPool: mask \(mask.shape), expected (B, L) = \([x.shape[0], x.shape[1]]) for x \(x.shape)")
        return (x.shape[0], x.shape[1], x.shape[2])
    }
}
