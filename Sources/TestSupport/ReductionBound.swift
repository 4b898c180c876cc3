// ReductionBound: the error bound of a Float32 reduction, derived from its operands, and the
// element-wise comparison that uses it.
//
// Why: a Float32 sum of K terms is only as accurate as its summation order allows, and every
// BLAS kernel (OpenBLAS picks one per CPU: Haswell, Zen, SkylakeX, Cooperlake…) and every thread
// split sums in its own order. A fixed `atol` passes by the luck of one order. The classic bound
// (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1, eq. 3.5) holds for EVERY order,
// with or without FMA:
//
//     |fl(Σ_k t_k) − Σ_k t_k|  ≤  γ_K · Σ_k |t_k|,    γ_K = K·u / (1 − K·u),   u = 2⁻²⁴
//
// where for a dot product t_k = a_k·b_k and the rounding of each product is counted in K. So
// the bound needs, per output element, K and the magnitude M = Σ|t_k|, which a Double reference
// computes alongside the value at no extra cost (e.g. `Gemm.gemmNaive(magnitude:)`).
//
// For a composite kernel (a norm, a softmax) K is the longest chain of roundings an error can
// travel through (the reductions' lengths plus a few element-wise steps) and M the same formula
// evaluated on absolute values: first-order running error analysis (Higham §3.3). Each test
// that does this derives its K and M next to the reference.
import Tensor

/// The unit roundoff of Float32, 2⁻²⁴ (half the gap between 1 and the next Float).
public let float32UnitRoundoff: Double = 0x1p-24

/// What the kernel's result is compared with.
public enum ReductionReference: Sendable {
    /// An exact (Double) reference rounded once to Float: only the kernel's own error counts.
    case exact
    /// Another Float32 computation with its own summation order (PyTorch's golden values): each
    /// side may be off by the bound in opposite directions, so the bound doubles.
    case float32
}

/// The worst-case bound on `|computed − reference|` for a Float32 reduction of `terms` roundings
/// over operands whose absolute contributions sum to `magnitude`:
/// `safety · terms · u · magnitude` (×2 against a `.float32` reference), plus a few subnormal
/// quanta so an all-zero reduction is not held to exactly 0 when terms underflow.
///
/// `safety` defaults to 2 and must be ≥ 1. The factor 2 covers, together: γ_K's denominator
/// 1/(1 − K·u) (≤ 2 while K·u ≤ ½, i.e. K ≤ 8·10⁶); the reference's own rounding to Float
/// (u·|result| ≤ u·M, one more term); and, for composite kernels, the first-order truncation of
/// the running error analysis. It is still a worst case, not a probabilistic `√K` estimate, so a
/// test that uses it never relies on the luck of a summation order.
public func reductionBound(
    terms: Int, magnitude: Double, reference: ReductionReference = .exact, safety: Double = 2
) -> Double {
    precondition(terms >= 0 && safety >= 1, "reductionBound: terms \(terms), safety \(safety)")
    precondition(Double(terms) * float32UnitRoundoff <= 0.5, "reductionBound: \(terms) terms is past where γ_K is finite")
    let sides: Double = reference == .exact ? 1 : 2
    let floor = 4 * Double(terms + 1) * Double(Float.leastNonzeroMagnitude)
    return sides * (safety * Double(terms) * float32UnitRoundoff * magnitude + floor)
}

/// The outcome of comparing a reduction's result with its reference under `reductionBound`.
public struct ReductionReport: CustomStringConvertible, Sendable {
    public let name: String
    public let count: Int
    /// Elements over their bound.
    public let failures: Int
    /// The element with the largest `|actual − expected| / bound`:
    /// `(index, actual, expected, bound, ratio)`; nil when there are no elements.
    public let worst: (index: Int, actual: Float, expected: Float, bound: Double, ratio: Double)?
    /// Up to five failing `(index, actual, expected, bound)`.
    public let firstMismatches: [(Int, Float, Float, Double)]
    public let shapeProblem: String?

    public var ok: Bool { shapeProblem == nil && failures == 0 }

    public var description: String {
        if let shapeProblem { return "\(name): \(shapeProblem)" }
        var s = "\(name): \(count) values"
        if let w = worst {
            s += ", worst [\(w.index)] got \(w.actual), expected \(w.expected), |diff| \(abs(Double(w.actual) - Double(w.expected)))"
            s += " vs bound \(w.bound) (\(String(format: "%.3g", w.ratio)) of it)"
        }
        s += ok ? " — OK" : " — NOT OK, \(failures) over the bound"
        for (i, a, e, b) in firstMismatches { s += "\n  [\(i)] got \(a), expected \(e), bound \(b)" }
        return s
    }
}

/// Compares each `actual[i]` with `expected[i]` against
/// `reductionBound(terms: terms[i], magnitude: magnitude[i], reference:)`.
/// NaN matches only NaN; an infinity only the same infinity.
public func compareReduction(
    _ name: String, _ actual: [Float], _ expected: [Float], magnitude: [Double], terms: [Int],
    reference: ReductionReference = .exact, safety: Double = 2
) -> ReductionReport {
    guard actual.count == expected.count, magnitude.count == expected.count, terms.count == expected.count else {
        return ReductionReport(
            name: name, count: 0, failures: 0, worst: nil, firstMismatches: [],
            shapeProblem: "count \(actual.count), expected \(expected.count) (magnitudes \(magnitude.count), terms \(terms.count))")
    }
    var failures = 0
    var worst: (index: Int, actual: Float, expected: Float, bound: Double, ratio: Double)?
    var bad: [(Int, Float, Float, Double)] = []
    for i in 0..<actual.count {
        let a = actual[i], e = expected[i]
        let bound = reductionBound(terms: terms[i], magnitude: magnitude[i], reference: reference, safety: safety)
        let ratio: Double
        if a.isNaN || e.isNaN || a.isInfinite || e.isInfinite {
            ratio = (a.isNaN && e.isNaN) || a == e ? 0 : .infinity
        } else {
            ratio = abs(Double(a) - Double(e)) / bound
        }
        if worst == nil || ratio > worst!.ratio { worst = (i, a, e, bound, ratio) }
        if !(ratio <= 1) {
            failures += 1
            if bad.count < 5 { bad.append((i, a, e, bound)) }
        }
    }
    return ReductionReport(
        name: name, count: actual.count, failures: failures, worst: worst, firstMismatches: bad,
        shapeProblem: nil)
}

/// `compareReduction` with one term count for every element.
public func compareReduction(
    _ name: String, _ actual: [Float], _ expected: [Float], magnitude: [Double], terms: Int,
    reference: ReductionReference = .exact, safety: Double = 2
) -> ReductionReport {
    compareReduction(
        name, actual, expected, magnitude: magnitude, terms: [Int](repeating: terms, count: expected.count),
        reference: reference, safety: safety)
}

/// `compareReduction` on tensors: the shapes must match too.
public func compareReduction(
    _ name: String, _ actual: Tensor, _ expected: Tensor, magnitude: [Double], terms: Int,
    reference: ReductionReference = .exact, safety: Double = 2
) -> ReductionReport {
    guard actual.shape == expected.shape else {
        return ReductionReport(
            name: name, count: 0, failures: 0, worst: nil, firstMismatches: [],
            shapeProblem: "shape \(actual.shape), expected \(expected.shape)")
    }
    return compareReduction(name, actual.data, expected.data, magnitude: magnitude, terms: terms, reference: reference, safety: safety)
}

/// Σ|a_k·b_k| in Double: the magnitude of a dot product.
public func absDot(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "absDot: \(a.count) and \(b.count) values")
    var s = 0.0
    for i in 0..<a.count { s += abs(Double(a[i]) * Double(b[i])) }
    return s
}

/// A reference for a kernel that accumulates into a non-zero buffer: `reference + start` in
/// Double rounded once, and the magnitude grown by |start| (the start value is one more term of
/// the reduction, so count one more term too).
public func accumulated<S: Sequence>(_ reference: [Float], _ magnitude: [Double], _ start: S) -> ([Float], [Double])
where S.Element == Float {
    let s = Array(start)
    precondition(s.count == reference.count && magnitude.count == reference.count, "accumulated: \(reference.count) values, \(magnitude.count) magnitudes, \(s.count) starts")
    return (zip(reference, s).map { Float(Double($0) + Double($1)) }, zip(magnitude, s).map { $0 + abs(Double($1)) })
}
