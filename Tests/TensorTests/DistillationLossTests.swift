// DistillationLossTests: FiD-KD's KL loss against PyTorch's KLDivLoss, the naive twin (within the
// running Float32 error bound) and finite differences.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// The Float32 error bounds, in units of u, of the kernel's loss and gradient (running error
/// analysis, as `crossEntropyBounds`; pass to `compareReduction` with `terms: 1`). Per row, for
/// scores x with maximum m and ls = log Σ exp(x − m): E_ls = N + 8 + Σ softmax·|x − m| + 3·|ls|,
/// and log-probability j is off by E_j = |x_j − m| + |x_j − m − ls| + E_ls. gold and q add ≤ 8
/// ulps of exp; the loss terms gold·(log gold − log q) carry both; the gradient
/// scale·(q·Σgold − gold) adds Σgold's N-term sum and a few roundings.
func distillationBounds(retriever s: Tensor, reader r: Tensor) -> (loss: Double, grad: [Double]) {
    let B = s.shape[0], N = s.shape[1]
    func logSoftmax(_ x: [Double]) -> (logp: [Double], bound: [Double]) {
        let m = x.max()!
        let z = x.reduce(0) { $0 + exp($1 - m) }
        let ls = log(z)
        let spread = x.reduce(0) { $0 + exp($1 - m) / z * abs($1 - m) }
        let Els = Double(N + 8) + spread + 3 * abs(ls)
        return (x.map { $0 - m - ls }, x.map { abs($0 - m) + abs($0 - m - ls) + Els })
    }
    let scale = 1 / Double(B * N)
    var loss = 0.0, lossBound = 0.0
    var grad = [Double](repeating: 0, count: B * N)
    for b in 0..<B {
        let (lq, Eq) = logSoftmax((0..<N).map { Double(s.data[b * N + $0]) })
        let (lg, Eg) = logSoftmax((0..<N).map { Double(r.data[b * N + $0]) })
        let gold = lg.map { exp($0) }, q = lq.map { exp($0) }
        let Egold = (0..<N).map { gold[$0] * (Eg[$0] + 8) }
        let sumGoldBound = Egold.reduce(0, +) + Double(N) * gold.reduce(0, +)
        for i in 0..<N {
            loss += gold[i] * (lg[i] - lq[i]) * scale
            lossBound += (Egold[i] * abs(lg[i] - lq[i]) + gold[i] * (Eg[i] + Eq[i] + 2)) * scale
            let Eqi = q[i] * (Eq[i] + 8)
            let g = scale * (q[i] - gold[i])
            grad[b * N + i] = scale * (Eqi + q[i] * sumGoldBound + Egold[i] + 3 * (q[i] + gold[i])) + 2 * abs(g)
        }
    }
    return (lossBound + abs(loss), grad)
}

@Suite struct DistillationLossTests {
    static func lossAndGrad(_ s: Tensor, _ r: Tensor) -> (Float, Tensor) {
        let (loss, cache) = DistillationLoss.forward(retrieverScores: s, readerScores: r)
        var d = Tensor.zeros(s.shape)
        DistillationLoss.backward(dLoss: 1, cache: cache, dRetrieverScores: &d)
        return (loss, d)
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("losses.json", in: fixtures)
        let s = try f.tensor("kl.retriever"), r = try f.tensor("kl.reader")
        let (loss, d) = Self.lossAndGrad(s, r)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let bound = distillationBounds(retriever: s, reader: r)
        let rl = compareReduction("kl loss", [loss], try f.tensor("kl.loss").data, magnitude: [bound.loss], terms: 1, reference: .float32)
        #expect(rl.ok, "\(rl)")
        let rg = compareReduction("kl dretriever", d, try f.tensor("kl.dretriever"), magnitude: bound.grad, terms: 1, reference: .float32)
        #expect(rg.ok, "\(rg)")
    }

    @Test func matchesNaiveTwin() {
        var rng = RNG(seed: 21)
        let (B, N) = (5, 20)
        let s = Tensor(shape: [B, N], data: rng.normalArray(B * N, std: 4))
        let r = Tensor(shape: [B, N], data: rng.normalArray(B * N, std: 2))
        let (loss, d) = Self.lossAndGrad(s, r)
        let (nl, nd) = DistillationLoss.naive(retrieverScores: s, readerScores: r)
        let bound = distillationBounds(retriever: s, reader: r)
        let rl = compareReduction("kl loss vs naive", [loss], [Float(nl)], magnitude: [bound.loss], terms: 1)
        #expect(rl.ok, "\(rl)")
        let rep = compareReduction("kl grad vs naive", d.data, nd.map { Float($0) }, magnitude: bound.grad, terms: 1)
        #expect(rep.ok, "\(rep)")
    }

    @Test func gradientMatchesFiniteDifferences() {
        var rng = RNG(seed: 22)
        let (B, N) = (3, 7)
        let x = rng.normalArray(B * N, std: 2)
        let r = Tensor(shape: [B, N], data: rng.normalArray(B * N))
        let (_, d) = Self.lossAndGrad(Tensor(shape: [B, N], data: x), r)
        let rep = gradCheck("kl distillation", input: x, analytic: d.data, eps: 1e-2, floor: 1e-4) { x in
            Double(DistillationLoss.forward(retrieverScores: Tensor(shape: [B, N], data: x), readerScores: r).loss)
        }
        #expect(rep.ok, "\(rep)")
    }

    @Test func equalDistributionsGiveZero() {
        let s = Tensor(shape: [2, 3], data: [1, 2, 3, -1, 0, 5])
        // Softmax is shift-invariant: reader scores shifted per row give the same distribution.
        let r = Tensor(shape: [2, 3], data: [11, 12, 13, 99, 100, 105])
        let (loss, d) = Self.lossAndGrad(s, r)
        #expect(abs(loss) < 1e-6, "loss \(loss)")
        #expect(d.data.allSatisfy { abs($0) < 1e-7 }, "\(d.data)")
    }

    @Test func extremeScoresStayFinite() {
        // A reader score far below the rest makes its gold probability underflow to 0 (xlogy → 0).
        let s = Tensor(shape: [1, 3], data: [300, -300, 0])
        let r = Tensor(shape: [1, 3], data: [0, -1000, 1])
        let (loss, d) = Self.lossAndGrad(s, r)
        #expect(loss.isFinite && loss > 0)
        #expect(d.data.allSatisfy { $0.isFinite })
    }

    @Test func anOverflowedReaderScoreMakesTheLossNaN() {
        // A reader score divided by a tiny temperature overflows to inf: the gold distribution is
        // NaN, and so must the loss be (PyTorch's KLDivLoss gives NaN), or training would go on
        // with NaN gradients under a loss of 0.
        let s = Tensor(shape: [2, 3], data: [1, 2, 3, -1, 0, 5])
        let r = Tensor(shape: [2, 3], data: [1, .infinity, 0, 1, 2, 3])
        let (loss, _) = Self.lossAndGrad(s, r)
        #expect(loss.isNaN, "loss \(loss)")
    }
}
