// CrossEntropyTests: token cross-entropy against PyTorch, its naive twin and finite differences.
import Foundation
import Testing
import TestSupport
@testable import Tensor


fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

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
        let rl = compare("\(name) loss", [loss], try f.tensor("\(name).loss").data, rtol: 1e-5)
        #expect(rl.ok, "\(rl)")
        let rg = compare("\(name) dlogits", d, try f.tensor("\(name).dlogits"), rtol: 1e-5, atol: 1e-7)
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
        #expect(abs(Double(loss) - nl) <= 1e-6 * abs(nl), "loss \(loss) vs naive \(nl)")
        let r = compare("dlogits vs naive", d.data, nd.map { Float($0) }, rtol: 1e-5, atol: 1e-7)
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
        let r = compare("1 + 2·grad", d.data, d1.data.map { 1 + 2 * $0 }, rtol: 1e-6)
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
        #expect(loss.isFinite && abs(Double(loss) - nl) < 1e-5, "loss \(loss) vs \(nl)")
        let r = compare("huge logits grad", d.data, nd.map { Float($0) }, rtol: 1e-5, atol: 1e-7)
        #expect(r.ok, "\(r)")
    }
}
