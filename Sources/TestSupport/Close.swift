// Close: element-wise comparison of tensors with a readable report, after llm.c's check_tensor.
import Tensor

/// The outcome of comparing two arrays element by element.
public struct CloseReport: CustomStringConvertible, Sendable {
    public let name: String
    public let count: Int
    public let maxAbsDiff: Double
    public let maxRelDiff: Double
    /// Up to five `(index, actual, expected)` triples that failed the tolerance.
    public let firstMismatches: [(Int, Float, Float)]
    public let shapeProblem: String?

    public var ok: Bool { shapeProblem == nil && firstMismatches.isEmpty }

    public var description: String {
        if let shapeProblem { return "\(name): \(shapeProblem)" }
        var s = "\(name): \(count) values, max abs diff \(maxAbsDiff), max rel diff \(maxRelDiff)"
        s += ok ? " — OK" : " — NOT OK"
        for (i, a, e) in firstMismatches { s += "\n  [\(i)] got \(a), expected \(e)" }
        return s
    }
}

/// Compares `actual` with `expected`: each element must satisfy
/// `|a − e| ≤ atol + rtol·|e|`. NaN matches only NaN.
public func compare(
    _ name: String, _ actual: [Float], _ expected: [Float], rtol: Double = 1e-5, atol: Double = 1e-6
) -> CloseReport {
    guard actual.count == expected.count else {
        return CloseReport(
            name: name, count: 0, maxAbsDiff: .nan, maxRelDiff: .nan, firstMismatches: [],
            shapeProblem: "count \(actual.count), expected \(expected.count)")
    }
    var maxAbs = 0.0
    var maxRel = 0.0
    var bad: [(Int, Float, Float)] = []
    for i in 0..<actual.count {
        let a = Double(actual[i])
        let e = Double(expected[i])
        if a.isNaN || e.isNaN {
            if a.isNaN != e.isNaN, bad.count < 5 { bad.append((i, actual[i], expected[i])) }
            continue
        }
        let d = abs(a - e)
        maxAbs = max(maxAbs, d)
        maxRel = max(maxRel, d / max(abs(e), 1e-30))
        if d > atol + rtol * abs(e), bad.count < 5 { bad.append((i, actual[i], expected[i])) }
    }
    return CloseReport(
        name: name, count: actual.count, maxAbsDiff: maxAbs, maxRelDiff: maxRel,
        firstMismatches: bad, shapeProblem: nil)
}

/// Compares two tensors: shape first, then the elements as `compare` does.
public func compare(
    _ name: String, _ actual: Tensor, _ expected: Tensor, rtol: Double = 1e-5, atol: Double = 1e-6
) -> CloseReport {
    guard actual.shape == expected.shape else {
        return CloseReport(
            name: name, count: 0, maxAbsDiff: .nan, maxRelDiff: .nan, firstMismatches: [],
            shapeProblem: "shape \(actual.shape), expected \(expected.shape)")
    }
    return compare(name, actual.data, expected.data, rtol: rtol, atol: atol)
}
