// CrossEntropyTests: token cross-entropy against PyTorch, its naive twin (within the running Float32
// error bound) and finite differences.
import Foundation
import Testing
import TestSupport
@testable import Tensor


fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The Float32 error bounds, in units of u, of the kernel's loss and gradient (running error
/// analysis; pass to `compareReduction` with `terms: 1`). Per counted row, with m the row maximum,
/// ls = log Σ_j exp(x_j − m) and q = softmax(row):
/// - Σ exp: each exp's argument x − m rounds once (relative error |x − m|·u after exp) and exp
///   adds ≤ 8 ulps; the V-term sum adds V. log turns that relative error into an absolute one and
///   adds ≤ 3 ulps of |ls|: E_ls = V + 8 + Σ_j q_j·|x_j − m| + 3·|ls|.
/// - loss row = (m − x_t) + ls, summed over rows in Double and divided by the count:
///   Σ_rows (|m − x_t| + E_ls) / count, plus the final rounding of |loss|.
/// - gradient = scale·exp((x_j − m) − ls) − [j = t]·scale, scale = 1/count (rounded):
///   scale·q_j·(|x_j − m| + |x_j − m − ls| + E_ls + 10) plus two roundings of the result.
func crossEntropyBounds(logits: Tensor, targets: [Int32]) -> (loss: Double, grad: [Double]) {
    let N = logits.shape[0], V = logits.shape[1]
    let count = targets.filter { $0 != CrossEntropy.ignoreIndex }.count
    var grad = [Double](repeating: 0, count: N * V)
    guard count > 0 else { return (0, grad) }
    let scale = 1 / Double(count)
    var loss = 0.0, lossBound = 0.0
    for i in 0..<N where targets[i] != CrossEntropy.ignoreIndex {
        let row = (0..<V).map { Double(logits.data[i * V + $0]) }
        let m = row.max()!
        let z = row.reduce(0) { $0 + exp($1 - m) }
        let ls = log(z)
        let q = row.map { exp($0 - m) / z }
        let spread = (0..<V).reduce(0.0) { $0 + q[$1] * abs(row[$1] - m) }
        let Els = Double(V + 8) + spread + 3 * abs(ls)
        let t = Int(targets[i])
        loss += (m - row[t] + ls) * scale
        lossBound += (abs(m - row[t]) + Els) * scale
        for j in 0..<V {
            let g = scale * (q[j] - (j == t ? 1 : 0))
            grad[i * V + j] = scale * q[j] * (abs(row[j] - m) + abs(row[j] - m - ls) + Els + 10) + 2 * abs(g)
        }
    }
    return (lossBound + abs(loss), grad)
}

@Suite struct CrossEntropyTests {
    /// Runs forward and backward (dLoss 1) on fresh gradient storage.
    static func lossAndGrad(_ logits: Tensor, _ targets: [Int32]) -> (Float, Tensor) {
        let (loss, cache) = CrossEntropy.forward(logits: logits, targets: targets)
        var d = Tensor.zeros(logits.shape)
        CrossEntropy.backward(dLoss: 1, logits: logits, targets: targets, cache: cache, dLogits: &d)
        return (loss, d)
    }

    @Test(arguments: ["ce", "ce_big"])
    func matchesPyTorch(name: String) throws {
        let f = try Fixture("losses.json", in: fixtures)
        let logits = try f.tensor("\(name).logits")
        let targets = try f.tensor("\(name).targets").data.map { Int32($0) }
        #expect(targets.contains(CrossEntropy.ignoreIndex))
        let (loss, d) = Self.lossAndGrad(logits, targets)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let bound = crossEntropyBounds(logits: logits, targets: targets)
        let rl = compareReduction("\(name) loss", [loss], try f.tensor("\(name).loss").data, magnitude: [bound.loss], terms: 1, reference: .float32)
        #expect(rl.ok, "\(rl)")
        let rg = compareReduction("\(name) dlogits", d, try f.tensor("\(name).dlogits"), magnitude: bound.grad, terms: 1, reference: .float32)
        #expect(rg.ok, "\(rg)")
    }

    @Test func matchesNaiveTwin() {
        var rng = RNG(seed: 3)
        // V = 37 exercises both the SIMD16 lanes and the scalar tail of the row maximum.
        let (N, V) = (11, 37)
        let logits = Tensor(shape: [N, V], data: rng.normalArray(N * V, std: 3))
        var targets = (0..<N).map { _ in Int32(rng.next() % UInt64(V)) }
        targets[4] = CrossEntropy.ignoreIndex
        targets[7] = CrossEntropy.ignoreIndex
        let (loss, d) = Self.lossAndGrad(logits, targets)
        let (nl, nd) = CrossEntropy.naive(logits: logits, targets: targets)
        let bound = crossEntropyBounds(logits: logits, targets: targets)
        let rl = compareReduction("loss vs naive", [loss], [Float(nl)], magnitude: [bound.loss], terms: 1)
        #expect(rl.ok, "\(rl)")
        let r = compareReduction("dlogits vs naive", d.data, nd.map { Float($0) }, magnitude: bound.grad, terms: 1)
        #expect(r.ok, "\(r)")
        // Ignored rows get no gradient at all.
        #expect(d.data[(4 * V)..<(5 * V)].allSatisfy { $0 == 0 })
    }

    @Test func gradientMatchesFiniteDifferences() {
        var rng = RNG(seed: 5)
        // Few counted rows keep the gradients well above Float32 noise in the loss differences.
        let (N, V) = (3, 19)
        let x = rng.normalArray(N * V, std: 2)
        let targets: [Int32] = [3, -100, 18]
        let (_, d) = Self.lossAndGrad(Tensor(shape: [N, V], data: x), targets)
        // The fast forward rounds its loss to Float, which is noise at this step size; difference
        // the Double twin instead (matchesNaiveTwin pins the fast forward to it).
        let r = gradCheck("cross-entropy", input: x, analytic: d.data, eps: 1e-2, floor: 1e-4) { x in
            CrossEntropy.naive(logits: Tensor(shape: [N, V], data: x), targets: targets).loss
        }
        #expect(r.ok, "\(r)")
        let rf = gradCheck("cross-entropy (Float forward)", input: x, analytic: d.data, eps: 2e-2, tolerance: 3e-2) { x in
            Double(CrossEntropy.forward(logits: Tensor(shape: [N, V], data: x), targets: targets).loss)
        }
        #expect(rf.ok, "\(rf)")
    }

    @Test func backwardAccumulatesAndScales() {
        var rng = RNG(seed: 9)
        let logits = Tensor(shape: [3, 6], data: rng.normalArray(18))
        let targets: [Int32] = [1, 2, 5]
        let (_, d1) = Self.lossAndGrad(logits, targets)
        let (_, cache) = CrossEntropy.forward(logits: logits, targets: targets)
        var d = Tensor(shape: [3, 6], repeating: 1)
        CrossEntropy.backward(dLoss: 2, logits: logits, targets: targets, cache: cache, dLogits: &d)
        // 2·grad is exact; the one rounding of 1 + 2·grad each side is all that may differ.
        let r = compareReduction("1 + 2·grad", d.data, d1.data.map { 1 + 2 * $0 }, magnitude: d1.data.map { 1 + 2 * abs(Double($0)) }, terms: 1)
        #expect(r.ok, "\(r)")
    }

    @Test func allIgnoredIsZeroNotNaN() {
        let logits = Tensor(shape: [4, 5], data: (0..<20).map { Float($0) })
        let targets = [Int32](repeating: CrossEntropy.ignoreIndex, count: 4)
        let (loss, d) = Self.lossAndGrad(logits, targets)
        #expect(loss == 0)
        #expect(d.data.allSatisfy { $0 == 0 })
        // And with no rows at all.
        let (l0, d0) = Self.lossAndGrad(Tensor.zeros([0, 5]), [])
        #expect(l0 == 0 && d0.count == 0)
    }

    @Test(arguments: [3, 35])  // a NaN in a SIMD16 block, and one in the scalar tail
    func nanLogitGivesNaNLoss(at j: Int) {
        var rng = RNG(seed: 13)
        var logits = Tensor(shape: [2, 37], data: rng.normalArray(74))
        logits.data[37 + j] = .nan
        let (loss, _) = CrossEntropy.forward(logits: logits, targets: [0, 1])
        #expect(loss.isNaN)
        let (kl, _) = DistillationLoss.forward(retrieverScores: logits, readerScores: Tensor.zeros([2, 37]))
        #expect(kl.isNaN)
    }

    @Test func hugeLogitsStayFinite() {
        // exp(1e4) overflows Float; the max-subtracted log-sum-exp must not.
        let logits = Tensor(shape: [2, 3], data: [1e4, 1e4 - 1, -1e4, -3e4, -3e4 + 2, -3e4 + 1])
        let targets: [Int32] = [1, 0]
        let (loss, d) = Self.lossAndGrad(logits, targets)
        let (nl, nd) = CrossEntropy.naive(logits: logits, targets: targets)
        let bound = crossEntropyBounds(logits: logits, targets: targets)
        #expect(loss.isFinite)
        let rl = compareReduction("huge logits loss", [loss], [Float(nl)], magnitude: [bound.loss], terms: 1)
        #expect(rl.ok, "\(rl)")
        let r = compareReduction("huge logits grad", d.data, nd.map { Float($0) }, magnitude: bound.grad, terms: 1)
        #expect(r.ok, "\(r)")
    }
}
