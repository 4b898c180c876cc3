// LayerNorm: BERT's layer norm (mean and variance, weight and bias), forward and backward.

/// `y = (x − mean) / sqrt(var + eps) · w + b` over the last axis, with the biased variance as
/// PyTorch's `nn.LayerNorm` computes it. BERT's eps is its config's `layer_norm_eps` (1e-12).
///
/// Layout: x and y (N, D), w and b (D), mean and rstd (N) kept for backward.
public enum LayerNorm {
    /// What backward needs from forward.
    public struct Cache: Sendable {
        /// Row means (N).
        public var mean: [Float]
        /// 1/sqrt(var + eps) per row (N).
        public var rstd: [Float]
        public init(mean: [Float], rstd: [Float]) {
            self.mean = mean
            self.rstd = rstd
        }
    }

    /// Forward: y (N, D), writing mean and rstd (N). y may alias x.
    public static func forward(
        y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
        rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float
    ) {
        let N = rows, D = dim
        precondition(N >= 0 && D >= 1, "LayerNorm.forward: rows=\(N) dim=\(D)")
        parallelFor(N, grain: max(1, 8192 / D)) { r in
            for n in r {
                let xr = x + n * D, yr = y + n * D
                // Two passes (mean, then squared deviations): no cancellation for large means.
                let m = Reduce.sum(xr, D) / Float(D)
                let s = 1 / (Reduce.sumSquaredDeviations(xr, D, around: m) / Float(D) + eps).squareRoot()
                mean[n] = m
                rstd[n] = s
                for i in 0..<D { yr[i] = (xr[i] - m) * s * weight[i] + bias[i] }
            }
        }
    }

    /// Backward: with x̂ = (x − mean)·rstd and g = dy·w,
    /// dx += rstd·(g − mean(g) − x̂·mean(g·x̂)), dw += Σ_rows dy·x̂, db += Σ_rows dy.
    ///
    /// - Parameters:
    ///   - dx: (N, D), accumulated; nil to skip.
    ///   - dWeight, dBias: (D), accumulated; nil to skip.
    ///   - dy: (N, D); x: the forward input (N, D); mean, rstd: from forward (N).
    ///   - threads: overrides `Threads.count` for this call. dw and db are the same to the bit on
    ///     any thread count: rows go in fixed chunks whose partials are added in order.
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
        dBias: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
        rows: Int, dim: Int, threads: Int? = nil
    ) {
        let N = rows, D = dim
        precondition(N >= 0 && D >= 1, "LayerNorm.backward: rows=\(N) dim=\(D)")
        // One pass over rows: dx row by row, dw and db into per-chunk partials (dw in the first
        // D floats, db in the next D) summed in chunk order.
        Reduce.rowChunksWithPartials(rows: N, grain: max(1, 8192 / D), width: 2 * D, threads: threads) { rows, partial in
            let pw = partial, pb = partial + D
            for n in rows {
                let xr = x + n * D, gr = dy + n * D
                let m = mean[n], s = rstd[n]
                // Σ g and Σ g·x̂ (g = dy·w, x̂ = (x − mean)·rstd) with SIMD16 lanes; dw, db on the way.
                var accG = SIMD16<Float>(), accGX = SIMD16<Float>()
                let vm = SIMD16<Float>(repeating: m), vs = SIMD16<Float>(repeating: s)
                var i = 0
                while i + 16 <= D {
                    let d = Reduce.load(gr + i), xh = (Reduce.load(xr + i) - vm) * vs
                    let g = d * Reduce.load(weight + i)
                    accG += g
                    accGX = accGX.addingProduct(g, xh)
                    Reduce.store(Reduce.load(pw + i).addingProduct(d, xh), pw + i)
                    Reduce.store(Reduce.load(pb + i) + d, pb + i)
                    i += 16
                }
                var sg = accG.sum(), sgx = accGX.sum()
                while i < D {
                    let xh = (xr[i] - m) * s
                    let g = gr[i] * weight[i]
                    sg += g
                    sgx += g * xh
                    pw[i] += gr[i] * xh
                    pb[i] += gr[i]
                    i += 1
                }
                guard let dx else { continue }
                let dr = dx + n * D
                let a = sg / Float(D), b = sgx / Float(D)
                for i in 0..<D {
                    let xh = (xr[i] - m) * s
                    dr[i] += s * (gr[i] * weight[i] - a - xh * b)
                }
            }
        } finish: { partial in
            if let dWeight { for i in 0..<D { dWeight[i] += partial[i] } }
            if let dBias { for i in 0..<D { dBias[i] += partial[D + i] } }
        }
    }
}

extension LayerNorm {
    /// Forward on tensors: x (…, D), w and b (D) give y (…, D) and the cache.
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> (Tensor, Cache) {
        let D = weight.count
        precondition(weight.rank == 1 && bias.shape == weight.shape && x.shape.last == D,
            "LayerNorm.forward: x \(x.shape), weight \(weight.shape), bias \(bias.shape)")
        let N = x.count / D
        var y = Tensor.zeros(x.shape)
        var mean = [Float](repeating: 0, count: N), rstd = mean
        if N == 0 { return (y, Cache(mean: mean, rstd: rstd)) }
        x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                bias.withUnsafeBufferPointer { pb in
                    y.withUnsafeMutableBufferPointer { py in
                        mean.withUnsafeMutableBufferPointer { pm in
                            rstd.withUnsafeMutableBufferPointer { ps in
                                forward(y: py.baseAddress!, mean: pm.baseAddress!, rstd: ps.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, bias: pb.baseAddress!, rows: N, dim: D, eps: eps)
                            }
                        }
                    }
                }
            }
        }
        return (y, Cache(mean: mean, rstd: rstd))
    }

    /// Backward on tensors: accumulates into dx (…, D), dWeight and dBias (D).
    public static func backward(
        dy: Tensor, x: Tensor, weight: Tensor, cache: Cache, dx: inout Tensor, dWeight: inout Tensor,
        dBias: inout Tensor, threads: Int? = nil
    ) {
        let D = weight.count, N = x.count / max(1, D)
        precondition(dy.shape == x.shape && dx.shape == x.shape && dWeight.shape == weight.shape && dBias.shape == weight.shape && cache.rstd.count == N && cache.mean.count == N,
            "LayerNorm.backward: dy \(dy.shape) dx \(dx.shape) x \(x.shape) dw \(dWeight.shape) db \(dBias.shape) w \(weight.shape) cache \(cache.mean.count)/\(cache.rstd.count)")
        if N == 0 { return }
        dy.withUnsafeBufferPointer { pg in
            x.withUnsafeBufferPointer { px in
                weight.withUnsafeBufferPointer { pw in
                    cache.mean.withUnsafeBufferPointer { pm in
                        cache.rstd.withUnsafeBufferPointer { ps in
                            dx.withUnsafeMutableBufferPointer { pdx in
                                dWeight.withUnsafeMutableBufferPointer { pdw in
                                    dBias.withUnsafeMutableBufferPointer { pdb in
                                        backward(dx: pdx.baseAddress!, dWeight: pdw.baseAddress!, dBias: pdb.baseAddress!, dy: pg.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, mean: pm.baseAddress!, rstd: ps.baseAddress!, rows: N, dim: D, threads: threads)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
