// RMSNorm: T5's layer norm (scale only, no mean subtraction), forward and backward.

/// T5's `T5LayerNorm`: `y = w · x / sqrt(mean(x²) + eps)` over the last axis, no mean, no bias.
///
/// Layout: x and y (N, D), w (D), rstd (N) = 1/sqrt(mean(x²) + eps), kept for backward.
/// Float32 throughout, which is what T5 does for the variance ("variance in fp32").
public enum RMSNorm {
    /// What backward needs from forward.
    public struct Cache: Sendable {
        /// 1/sqrt(mean(x²) + eps) per row (N).
        public var rstd: [Float]
        public init(rstd: [Float]) { self.rstd = rstd }
    }

    /// Forward: y (N, D) = w · x · rstd, writing rstd (N). y may alias x.
    public static func forward(
        y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float = 1e-6
    ) {
        let N = rows, D = dim
        precondition(N >= 0 && D >= 1, "RMSNorm.forward: rows=\(N) dim=\(D)")
        parallelFor(N, grain: max(1, 8192 / D)) { r in
            for n in r {
                let xr = x + n * D, yr = y + n * D
                let s = 1 / (Reduce.dot(xr, xr, D) / Float(D) + eps).squareRoot()
                rstd[n] = s
                // T5 order: (x · rstd) then · w.
                for i in 0..<D { yr[i] = weight[i] * (xr[i] * s) }
            }
        }
    }

    /// Backward: dx += rstd·(w·dy − x·rstd²·mean(w·dy·x)), dw += Σ_rows dy·x·rstd.
    ///
    /// - Parameters:
    ///   - dx: (N, D), accumulated; nil to skip.
    ///   - dWeight: (D), accumulated; nil to skip.
    ///   - dy: (N, D).
    ///   - x: the forward input (N, D).
    ///   - rstd: from forward (N).
    ///   - threads: overrides `Threads.count` for this call. dw is the same to the bit on any
    ///     thread count: rows go in fixed chunks whose partials are added in order.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
        dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rstd: UnsafePointer<Float>, rows: Int, dim: Int, threads: Int? = nil
    ) {
        let N = rows, D = dim
        precondition(N >= 0 && D >= 1, "RMSNorm.backward: rows=\(N) dim=\(D)")
        // One pass over rows: dx row by row, dw into per-chunk partials summed in chunk order.
        Reduce.rowChunksWithPartials(rows: N, grain: max(1, 8192 / D), width: D, threads: threads) { rows, dw in
            for n in rows {
                let xr = x + n * D, gr = dy + n * D
                let s = rstd[n]
                for i in 0..<D { dw[i] += gr[i] * xr[i] * s }
                guard let dx else { continue }
                let dr = dx + n * D
                // Σ w·dy·x with SIMD16 lanes.
                var acc = SIMD16<Float>()
                var i = 0
                while i + 16 <= D {
                    acc = acc.addingProduct(Reduce.load(weight + i) * Reduce.load(gr + i), Reduce.load(xr + i))
                    i += 16
                }
                var dot = acc.sum()
                while i < D {
                    dot += weight[i] * gr[i] * xr[i]
                    i += 1
                }
                let c = s * s * s * dot / Float(D)
                for i in 0..<D { dr[i] += s * weight[i] * gr[i] - c * xr[i] }
            }
        } finish: { dw in
            if let dWeight { for i in 0..<D { dWeight[i] += dw[i] } }
        }
    }
}

extension RMSNorm {
    /// Forward on tensors: x (…, D) and w (D) give y (…, D) and the cache.
    public static func forward(_ x: Tensor, weight: Tensor, eps: Float = 1e-6) -> (Tensor, Cache) {
        let D = weight.count
        precondition(weight.rank == 1 && x.shape.last == D, "RMSNorm.forward: x \(x.shape), weight \(weight.shape)")
        let N = x.count / D
        var y = Tensor.zeros(x.shape)
        var rstd = [Float](repeating: 0, count: N)
        if N == 0 { return (y, Cache(rstd: rstd)) }
        x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                y.withUnsafeMutableBufferPointer { py in
                    rstd.withUnsafeMutableBufferPointer { ps in
                        forward(y: py.baseAddress!, rstd: ps.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, rows: N, dim: D, eps: eps)
                    }
                }
            }
        }
        return (y, Cache(rstd: rstd))
    }

    /// Backward on tensors: accumulates into dx (…, D) and dWeight (D).
    public static func backward(
        dy: Tensor, x: Tensor, weight: Tensor, cache: Cache, dx: inout Tensor, dWeight: inout Tensor,
        threads: Int? = nil
    ) {
        let D = weight.count, N = x.count / max(1, D)
        precondition(dy.shape == x.shape && dx.shape == x.shape && dWeight.shape == weight.shape && cache.rstd.count == N,
            "RMSNorm.backward: dy \(dy.shape) dx \(dx.shape) x \(x.shape) dw \(dWeight.shape) w \(weight.shape) rstd \(cache.rstd.count)")
        if N == 0 { return }
        dy.withUnsafeBufferPointer { pg in
            x.withUnsafeBufferPointer { px in
                weight.withUnsafeBufferPointer { pw in
                    cache.rstd.withUnsafeBufferPointer { ps in
                        dx.withUnsafeMutableBufferPointer { pdx in
                            dWeight.withUnsafeMutableBufferPointer { pdw in
                                backward(dx: pdx.baseAddress!, dWeight: pdw.baseAddress!, dy: pg.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, rstd: ps.baseAddress!, rows: N, dim: D, threads: threads)
                            }
                        }
                    }
                }
            }
        }
    }
}
