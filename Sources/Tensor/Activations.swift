// Activations: ReLU, GELU (exact erf and tanh approximation), and T5 v1.1's gated GELU.

/// Elements per parallel chunk for elementwise kernels: large enough to amortise a thread hop.
@usableFromInline let elementwiseGrain = 16384

/// `relu(x) = max(x, 0)` (T5 v1.0's `DenseReluDense`). Out may alias x.
public enum ReLU {
    /// Forward: out (n) = max(x, 0).
    public static func forward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { out[i] = x[i] > 0 ? x[i] : 0 }
        }
    }

    /// Backward: dx += dy where x > 0 (the derivative at 0 is taken as 0, as PyTorch does).
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r where x[i] > 0 { dx[i] += dy[i] }
        }
    }

    /// Backward through a dropout applied after the ReLU, writing: out (n) = dy·mask where
    /// x > 0, else 0 (no mask: dy where x > 0). One pass where a zero fill, the mask product and
    /// `backward` take three. Out may alias dy.
    public static func backward(
        out: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, dropoutMask: UnsafePointer<Float>?,
        x: UnsafePointer<Float>, count: Int
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            if let m = dropoutMask {
                for i in r { out[i] = x[i] > 0 ? dy[i] * m[i] : 0 }
            } else {
                for i in r { out[i] = x[i] > 0 ? dy[i] : 0 }
            }
        }
    }
}

/// GELU, exact (`0.5·x·(1 + erf(x/√2))`, BERT's `gelu`) or with the tanh approximation
/// (`0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, Hugging Face's `gelu_new`, T5 v1.1).
///
/// Evaluated on SIMD16 lanes with `VectorMath.exp` (libm's erfcf and expf per element ran at
/// ~1 GB/s). Both forms avoid the cancellation in `1 + erf(·)` and `1 + tanh(·)` for negative x:
/// 0.5·(1 + erf(z)) = 0.5·erfc(−z), and 0.5·(1 + tanh(u)) = σ(2u) = 1/(1 + e^(−2u)).
public enum GELU {
    /// Which formula; the names follow PyTorch's `F.gelu(approximate:)`.
    public enum Approximation: String, Sendable, Codable {
        /// The erf form.
        case none
        /// The tanh form (`gelu_new`, `gelu_pytorch_tanh`).
        case tanh
    }

    @usableFromInline static let sqrtHalf: Float = 0.70710678118654752
    @usableFromInline static let sqrt2OverPi: Float = 0.79788456080286536
    @usableFromInline static let invSqrt2Pi: Float = 0.39894228040143268
    @usableFromInline static let cubic: Float = 0.044715

    /// Φ(x) = 0.5·erfc(−x/√2), the standard normal CDF. erfc(z) for z ≥ 0 is Numerical Recipes'
    /// `erfcc` (Chebyshev fit, fractional error < 1.2e-7 everywhere, tails included); for
    /// z < 0 it is 2 − erfc(−z).
    @inlinable @inline(__always)
    static func normalCDF(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let z = x.replacing(with: -x, where: x .< 0) * sqrtHalf  // |x|/√2
        let t = 1 / (1 + 0.5 * z)
        var p = SIMD16<Float>(repeating: 0.170_872_77)
        p = p * t - 0.822_152_23
        p = p * t + 1.488_515_87
        p = p * t - 1.135_203_98
        p = p * t + 0.278_868_07
        p = p * t - 0.186_288_06
        p = p * t + 0.096_784_18
        p = p * t + 0.374_091_96
        p = p * t + 1.000_023_68
        p = p * t - 1.265_512_23
        let half = 0.5 * t * VectorMath.exp(p - z * z)  // 0.5·erfc(|x|/√2)
        return half.replacing(with: 1 - half, where: x .> 0)
    }

    /// gelu(x) on 16 lanes.
    @inlinable @inline(__always)
    public static func value(_ x: SIMD16<Float>, _ approximate: Approximation) -> SIMD16<Float> {
        switch approximate {
        case .none: return x * normalCDF(x)
        case .tanh: return x / (1 + VectorMath.exp(-2 * sqrt2OverPi * (x + cubic * x * x * x)))
        }
    }

    /// gelu′(x) on 16 lanes.
    ///
    /// The tanh form in sigmoid terms: with s = σ(2u), 1 − tanh²(u) = 4·s·(1 − s) and
    /// 1 − s = e^(−2u)/(1 + e^(−2u)), so no term is a difference of nearly equal numbers.
    @inlinable @inline(__always)
    public static func derivative(_ x: SIMD16<Float>, _ approximate: Approximation) -> SIMD16<Float> {
        switch approximate {
        case .none:
            return normalCDF(x) + x * invSqrt2Pi * VectorMath.exp(-0.5 * x * x)
        case .tanh:
            let x2 = x * x
            // VectorMath.exp saturates instead of overflowing, so s and e·s stay finite.
            let e = VectorMath.exp(-2 * sqrt2OverPi * (x + cubic * x2 * x))
            let s = 1 / (1 + e)
            return s + 2 * x * s * (e * s) * sqrt2OverPi * (1 + 3 * cubic * x2)
        }
    }

    /// gelu(x) for one value (the same arithmetic as the kernels).
    public static func value(_ x: Float, _ approximate: Approximation) -> Float {
        value(SIMD16(repeating: x), approximate)[0]
    }

    /// gelu′(x) for one value (the same arithmetic as the kernels).
    public static func derivative(_ x: Float, _ approximate: Approximation) -> Float {
        derivative(SIMD16(repeating: x), approximate)[0]
    }

    /// Forward: out (n) = gelu(x). Out may alias x.
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int,
        approximate: Approximation = .none
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            // Whole blocks, then one partial: one inlined copy of `value` in the hot loop.
            var i = r.lowerBound
            switch approximate {
            case .none:
                while i + 16 <= r.upperBound {
                    Reduce.store(value(Reduce.load(x + i), .none), out + i)
                    i += 16
                }
            case .tanh:
                while i + 16 <= r.upperBound {
                    Reduce.store(value(Reduce.load(x + i), .tanh), out + i)
                    i += 16
                }
            }
            if i < r.upperBound {
                let n = r.upperBound - i
                Reduce.store(value(Reduce.load(x + i, count: n), approximate), out + i, count: n)
            }
        }
    }

    /// Backward: dx += dy · gelu′(x).
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        count: Int, approximate: Approximation = .none
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            var i = r.lowerBound
            while i < r.upperBound {
                let n = min(16, r.upperBound - i)
                let g = Reduce.load(dy + i, count: n) * derivative(Reduce.load(x + i, count: n), approximate)
                Reduce.store(Reduce.load(dx + i, count: n) + g, dx + i, count: n)
                i += 16
            }
        }
    }
}

/// T5 v1.1's gated feed-forward gate: `out = gelu_new(gate) · linear`, where gate = x·Wi0ᵀ and
/// linear = x·Wi1ᵀ are the two input projections (`T5DenseGatedActDense`).
public enum GatedGELU {
    /// Forward: out (n) = gelu(gate) · linear. Out may alias either input.
    public static func forward(
        out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, linear: UnsafePointer<Float>,
        count: Int, approximate: GELU.Approximation = .tanh
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            var i = r.lowerBound
            while i < r.upperBound {
                let n = min(16, r.upperBound - i)
                let y = GELU.value(Reduce.load(gate + i, count: n), approximate) * Reduce.load(linear + i, count: n)
                Reduce.store(y, out + i, count: n)
                i += 16
            }
        }
    }

    /// Backward: dGate += dy · linear · gelu′(gate), dLinear += dy · gelu(gate).
    public static func backward(
        dGate: UnsafeMutablePointer<Float>, dLinear: UnsafeMutablePointer<Float>,
        dy: UnsafePointer<Float>, gate: UnsafePointer<Float>, linear: UnsafePointer<Float>,
        count: Int, approximate: GELU.Approximation = .tanh
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            var i = r.lowerBound
            while i < r.upperBound {
                let n = min(16, r.upperBound - i)
                let g = Reduce.load(gate + i, count: n), d = Reduce.load(dy + i, count: n)
                let dg = d * Reduce.load(linear + i, count: n) * GELU.derivative(g, approximate)
                let dl = d * GELU.value(g, approximate)
                Reduce.store(Reduce.load(dGate + i, count: n) + dg, dGate + i, count: n)
                Reduce.store(Reduce.load(dLinear + i, count: n) + dl, dLinear + i, count: n)
                i += 16
            }
        }
    }
}

extension Tensor {
    /// Applies `f(out, x, count)` to a copy of this tensor's shape: the tensor form of the
    /// elementwise kernels, e.g. `x.map { GELU.forward(out: $0, x: $1, count: $2) }`.
    public func mapElements(
        _ f: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void
    ) -> Tensor {
        var out = Tensor.zeros(shape)
        if count == 0 { return out }
        withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { po in f(po.baseAddress!, px.baseAddress!, count) }
        }
        return out
    }
}
