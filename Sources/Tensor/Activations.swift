// Activations: ReLU, GELU (exact erf and tanh approximation), and T5 v1.1's gated GELU.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
}

/// GELU, exact (`0.5·x·(1 + erf(x/√2))`, BERT's `gelu`) or with the tanh approximation
/// (`0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, Hugging Face's `gelu_new`, T5 v1.1).
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

    /// gelu(x) for one value.
    ///
    /// Written without the cancellation in `1 + erf(·)` and `1 + tanh(·)` for negative x:
    /// 0.5·(1 + erf(z)) = 0.5·erfc(−z), and 0.5·(1 + tanh(u)) = σ(2u) = 1/(1 + e^(−2u)).
    @inlinable @inline(__always)
    public static func value(_ x: Float, _ approximate: Approximation) -> Float {
        switch approximate {
        case .none: return x * (0.5 * erfc(-x * sqrtHalf))
        case .tanh: return x / (1 + exp(-2 * sqrt2OverPi * (x + cubic * x * x * x)))
        }
    }

    /// gelu′(x) for one value.
    ///
    /// The tanh form in sigmoid terms: with s = σ(2u), 1 − tanh²(u) = 4·s·(1 − s) and
    /// 1 − s = e^(−2u)/(1 + e^(−2u)), so no term is a difference of nearly equal numbers.
    @inlinable @inline(__always)
    public static func derivative(_ x: Float, _ approximate: Approximation) -> Float {
        switch approximate {
        case .none:
            return 0.5 * erfc(-x * sqrtHalf) + x * invSqrt2Pi * exp(-0.5 * x * x)
        case .tanh:
            let x2 = x * x
            let e = exp(-2 * sqrt2OverPi * (x + cubic * x2 * x))
            // e overflows to +inf for very negative x: then s = 0 and the product term is 0.
            if e == .infinity { return 0 }
            let s = 1 / (1 + e), sc = e * s
            return s + 2 * x * s * sc * sqrt2OverPi * (1 + 3 * cubic * x2)
        }
    }

    /// Forward: out (n) = gelu(x). Out may alias x.
    public static func forward(
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int,
        approximate: Approximation = .none
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            switch approximate {
            case .none: for i in r { out[i] = value(x[i], .none) }
            case .tanh: for i in r { out[i] = value(x[i], .tanh) }
            }
        }
    }

    /// Backward: dx += dy · gelu′(x).
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        count: Int, approximate: Approximation = .none
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            switch approximate {
            case .none: for i in r { dx[i] += dy[i] * derivative(x[i], .none) }
            case .tanh: for i in r { dx[i] += dy[i] * derivative(x[i], .tanh) }
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
            for i in r { out[i] = GELU.value(gate[i], approximate) * linear[i] }
        }
    }

    /// Backward: dGate += dy · linear · gelu′(gate), dLinear += dy · gelu(gate).
    public static func backward(
        dGate: UnsafeMutablePointer<Float>, dLinear: UnsafeMutablePointer<Float>,
        dy: UnsafePointer<Float>, gate: UnsafePointer<Float>, linear: UnsafePointer<Float>,
        count: Int, approximate: GELU.Approximation = .tanh
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r {
                dGate[i] += dy[i] * linear[i] * GELU.derivative(gate[i], approximate)
                dLinear[i] += dy[i] * GELU.value(gate[i], approximate)
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
