// GradCheck: finite-difference checks of analytic gradients, after ggml's test-backend-ops.

/// The outcome of a finite-difference gradient check.
public struct GradCheckReport: CustomStringConvertible, Sendable {
    public let name: String
    public let count: Int
    /// Largest `|analytic − numeric| / max(|analytic|, |numeric|, floor)` over checked elements.
    public let maxRelError: Double
    /// Up to five `(index, analytic, numeric)` triples past the tolerance.
    public let firstMismatches: [(Int, Double, Double)]
    public let tolerance: Double

    public var ok: Bool { firstMismatches.isEmpty }

    public var description: String {
        var s = "gradcheck \(name): \(count) elements, max rel error \(maxRelError) (tol \(tolerance))"
        s += ok ? " — OK" : " — NOT OK"
        for (i, a, n) in firstMismatches { s += "\n  [\(i)] analytic \(a), numeric \(n)" }
        return s
    }
}

/// Checks `analytic` against the 4-point central difference of `loss` at `input`.
///
/// - Parameters:
///   - input: the point where the gradient was taken.
///   - analytic: the gradient under test, same count as `input`.
///   - eps: the step; Float32 kernels want about 1e-2 to 1e-3 of the inputs' scale.
///   - tolerance: allowed relative error, with `floor` guarding near-zero gradients.
///   - skip: indices not to check (kinks such as ReLU at 0).
///   - loss: a scalar function of the input, accumulated in Double by the caller.
public func gradCheck(
    _ name: String, input: [Float], analytic: [Float], eps: Float = 1e-2,
    tolerance: Double = 1e-2, floor: Double = 1e-3, skip: Set<Int> = [],
    loss: ([Float]) -> Double
) -> GradCheckReport {
    precondition(input.count == analytic.count, "gradCheck \(name): \(input.count) inputs, \(analytic.count) gradients")
    var x = input
    var maxErr = 0.0
    var bad: [(Int, Double, Double)] = []
    for i in 0..<x.count where !skip.contains(i) {
        let x0 = x[i]
        func f(_ d: Float) -> Double {
            x[i] = x0 + d
            return loss(x)
        }
        // (−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)) / 12h; h is the step actually representable.
        let h = Double((x0 + eps) - x0)
        let numeric = (-f(2 * eps) + 8 * f(eps) - 8 * f(-eps) + f(-2 * eps)) / (12 * h)
        x[i] = x0
        let a = Double(analytic[i])
        let err = abs(a - numeric) / max(abs(a), abs(numeric), floor)
        maxErr = max(maxErr, err)
        if err > tolerance, bad.count < 5 { bad.append((i, a, numeric)) }
    }
    return GradCheckReport(
        name: name, count: input.count - skip.count, maxRelError: maxErr, firstMismatches: bad,
        tolerance: tolerance)
}
