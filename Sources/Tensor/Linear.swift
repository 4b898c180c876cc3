// Linear: y = x·Wᵀ + b with W stored (out, in) as Hugging Face does, forward and backward.

/// A fully connected layer over rows: `y = x · Wᵀ + b`.
///
/// Layout: x is (N, In) row-major, W is (Out, In) (PyTorch's `nn.Linear.weight`), b is (Out),
/// y is (N, Out). N is any flattening of the leading axes (e.g. B·P·L tokens). Every product
/// goes through `Gemm.gemm`; backward accumulates into its gradient buffers.
public enum Linear {
    /// Forward: writes y (N, Out) = x (N, In) · Wᵀ + b; `bias` nil means no bias.
    ///
    /// - Parameters:
    ///   - y: output (N, Out), overwritten; must not alias x.
    ///   - x: input (N, In).
    ///   - weight: W (Out, In).
    ///   - bias: b (Out), or nil.
    ///   - rows: N.
    ///   - inFeatures: In.
    ///   - outFeatures: Out.
    ///   - residual: r (N, Out) or nil: added to y in the same product (`y = r + b + x·Wᵀ`), a
    ///     residual connection without a pass of its own; may alias y (y then starts as r).
    ///   - threads: overrides `Threads.count` for this call (the result does not depend on it).
    public static func forward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil, rows: Int, inFeatures: Int, outFeatures: Int,
        threads: Int? = nil
    ) {
        let N = rows, I = inFeatures, O = outFeatures
        precondition(N >= 0 && I >= 1 && O >= 1, "Linear.forward: rows=\(N) in=\(I) out=\(O)")
        if N == 0 { return }
        seed(y: y, bias: bias, residual: residual, rows: N, outFeatures: O, threads: threads)
        // y (N, O) = x (N, I) · W (O, I)ᵀ
        Gemm.gemm(
            transB: true, m: N, n: O, k: I, a: x, lda: I, b: weight, ldb: I,
            beta: bias == nil && residual == nil ? 0 : 1, c: y, ldc: O, threads: threads)
    }

    /// Forward at half precision: y (N, Out) = x (N, In) · Wᵀ + b (+ residual) with W packed once
    /// (`Gemm.BF16Weights`) and x rounded to bfloat16 as the product reads it; sums in float32.
    /// Arguments as `forward`'s.
    public static func forward(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weights: Gemm.BF16Weights, kernel: Gemm.BF16Kernel,
        bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>? = nil, rows: Int, threads: Int? = nil
    ) {
        let N = rows, O = weights.outFeatures
        precondition(N >= 0, "Linear.forward: rows=\(N)")
        if N == 0 { return }
        seed(y: y, bias: bias, residual: residual, rows: N, outFeatures: O, threads: threads)
        Gemm.gemmBF16(kernel: kernel, m: N, x: x, ldx: weights.inFeatures, weights: weights, c: y, ldc: O,
                      accumulate: bias != nil || residual != nil, threads: threads)
    }

    /// Seeds every row of y with b (and r) for a product that accumulates on top (beta = 1): the
    /// bias costs one write pass instead of a separate read-modify-write after the product.
    private static func seed(y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?, rows N: Int,
                             outFeatures O: Int, threads: Int?) {
        if let residual {
            parallelFor(N, grain: max(1, 16384 / O), threads: threads) { r in
                for n in r {
                    let yr = y + n * O, rr = residual + n * O
                    if let bias {
                        Elementwise.addRow(out: yr, rr, bias, count: O)
                    } else if yr != UnsafeMutablePointer(mutating: rr) {
                        yr.update(from: rr, count: O)
                    }
                }
            }
        } else if let bias {
            parallelFor(N, grain: max(1, 16384 / O), threads: threads) { r in
                for n in r { (y + n * O).update(from: bias, count: O) }
            }
        }
    }

    /// Backward: dx += dy·W, dW += dyᵀ·x, db += Σ_rows dy. Pass nil for gradients not wanted.
    ///
    /// - Parameters:
    ///   - dx: (N, In), accumulated.
    ///   - dWeight: (Out, In), accumulated.
    ///   - dBias: (Out), accumulated.
    ///   - dy: upstream gradient (N, Out).
    ///   - x: the forward input (N, In).
    ///   - weight: W (Out, In).
    ///   - threads: overrides `Threads.count` for this call; every gradient is the same to the
    ///     bit on any thread count (`Gemm`'s fixed tiles, `sumRows`' fixed column blocks).
    public static func backward(
        dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?,
        dBias: UnsafeMutablePointer<Float>?, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, rows: Int, inFeatures: Int, outFeatures: Int, threads: Int? = nil
    ) {
        let N = rows, I = inFeatures, O = outFeatures
        precondition(N >= 0 && I >= 1 && O >= 1, "Linear.backward: rows=\(N) in=\(I) out=\(O)")
        if N == 0 { return }
        // The three gradients are independent: side by side when both products are one tile
        // (they would leave all cores but one idle), else one after the other (tiles spread).
        let apart = Gemm.isOneTile(m: N, n: I, k: O) && Gemm.isOneTile(m: O, n: I, k: N)
        concurrently(3, threads: apart ? threads : 1) { part in
            switch part {
            case 0:
                // dW (O, I) += dy (N, O)ᵀ · x (N, I)
                if let dWeight {
                    Gemm.gemm(
                        transA: true, m: O, n: I, k: N, a: dy, lda: O, b: x, ldb: I, beta: 1, c: dWeight,
                        ldc: I, threads: threads)
                }
            case 1:
                // dx (N, I) += dy (N, O) · W (O, I)
                if let dx { Gemm.gemm(m: N, n: I, k: O, a: dy, lda: O, b: weight, ldb: I, beta: 1, c: dx, ldc: I, threads: threads) }
            default:
                if let dBias { sumRows(into: dBias, dy, rows: N, cols: O, threads: threads) }
            }
        }
    }

    /// out[j] += Σ_n x[n, j]: column sums of an (N, C) matrix, split over blocks of 16 columns so
    /// threads never share an output element and the result does not depend on the thread count.
    /// Sums run in Double: N is the token count (thousands), and a Float running sum over that
    /// many rows drifts by ~1e-5 relative.
    @inlinable
    static func sumRows(
        into out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows N: Int, cols C: Int, threads: Int? = nil
    ) {
        let blocks = (C + 15) / 16
        parallelFor(blocks, grain: max(1, 4096 / max(1, N)), threads: threads) { r in
            for b in r {
                let lo = b * 16, width = min(16, C - lo)
                var acc = SIMD16<Double>()
                for n in 0..<N { acc += SIMD16<Double>(Reduce.load(x + n * C + lo, count: width)) }
                for j in 0..<width { out[lo + j] += Float(acc[j]) }
            }
        }
    }
}

extension Linear {
    /// Forward on tensors: x (…, In) with W (Out, In) and optional b (Out) gives (…, Out).
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, threads: Int? = nil) -> Tensor {
        let (N, I, O) = checkShapes("forward", x, weight, bias)
        var y = Tensor.zeros(Array(x.shape.dropLast()) + [O])
        if N == 0 { return y }
        x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                y.withUnsafeMutableBufferPointer { py in
                    guard let b = bias else {
                        forward(
                            y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!, bias: nil,
                            rows: N, inFeatures: I, outFeatures: O, threads: threads)
                        return
                    }
                    b.withUnsafeBufferPointer { pb in
                        forward(
                            y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!,
                            bias: pb.baseAddress!, rows: N, inFeatures: I, outFeatures: O, threads: threads)
                    }
                }
            }
        }
        return y
    }

    /// Backward on tensors: accumulates into `dx` (…, In), `dWeight` (Out, In) and, when given,
    /// `dBias` (Out).
    public static func backward(
        dy: Tensor, x: Tensor, weight: Tensor, dx: inout Tensor, dWeight: inout Tensor,
        dBias: inout Tensor?, threads: Int? = nil
    ) {
        let (N, I, O) = checkShapes("backward", x, weight, dBias)
        precondition(dy.shape == Array(x.shape.dropLast()) + [O], "Linear.backward: dy \(dy.shape) for x \(x.shape), out \(O)")
        precondition(dx.shape == x.shape && dWeight.shape == weight.shape, "Linear.backward: dx \(dx.shape) dW \(dWeight.shape) for x \(x.shape) W \(weight.shape)")
        if N == 0 { return }
        var db = dBias ?? Tensor.zeros([1])
        let wantBias = dBias != nil
        dy.withUnsafeBufferPointer { pdy in
            x.withUnsafeBufferPointer { px in
                weight.withUnsafeBufferPointer { pw in
                    dx.withUnsafeMutableBufferPointer { pdx in
                        dWeight.withUnsafeMutableBufferPointer { pdw in
                            db.withUnsafeMutableBufferPointer { pdb in
                                backward(
                                    dx: pdx.baseAddress, dWeight: pdw.baseAddress,
                                    dBias: wantBias ? pdb.baseAddress : nil, dy: pdy.baseAddress!,
                                    x: px.baseAddress!, weight: pw.baseAddress!, rows: N,
                                    inFeatures: I, outFeatures: O, threads: threads)
                            }
                        }
                    }
                }
            }
        }
        if wantBias { dBias = db }
    }

    private static func checkShapes(_ what: String, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?)
        -> (Int, Int, Int)
    {
        precondition(weight.rank == 2 && x.rank >= 1, "Linear.\(what): x \(x.shape), W \(weight.shape)")
        let O = weight.shape[0], I = weight.shape[1]
        precondition(x.shape.last == I, "Linear.\(what): x \(x.shape) last axis ≠ W in-features \(I) (W \(weight.shape))")
        if let bias { precondition(bias.shape == [O], "Linear.\(what): bias \(bias.shape), expected [\(O)]") }
        return (x.count / I, I, O)
    }
}
