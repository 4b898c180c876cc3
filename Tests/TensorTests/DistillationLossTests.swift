// DistillationLossTests: FiD-KD's KL loss against PyTorch's KLDivLoss, the naive twin and finite differences.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

@Suite struct DistillationLossTests {
    static func lossAndGrad(_ s: Tensor, _ r: Tensor) -> (Float, Tensor) {
        let (loss, cache) = DistillationLoss.forward(retrieverScores: s, readerScores: r)
        var d = Tensor.zeros(s.shape)
        DistillationLoss.backward(dLoss: 1, cache: cache, dRetrieverScores: &d)
        return (loss, d)
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("losses.json", in: fixtures)
        let (loss, d) = Self.lossAndGrad(try f.tensor("kl.retriever"), try f.tensor("kl.reader"))
        let rl = compare("kl loss", [loss], try f.tensor("kl.loss").data, rtol: 1e-5)
        #expect(rl.ok, "\(rl)")
        let rg = compare("kl dretriever", d, try f.tensor("kl.dretriever"), rtol: 1e-5, atol: 1e-8)
        #expect(rg.ok, "\(rg)")
    }

    @Test func matchesNaiveTwin() {
        var rng = RNG(seed: 21)
        let (B, N) = (5, 20)
        let s = Tensor(shape: [B, N], data: rng.normalArray(B * N, std: 4))
        let r = Tensor(shape: [B, N], data: rng.normalArray(B * N, std: 2))
        let (loss, d) = Self.lossAndGrad(s, r)
        let (nl, nd) = DistillationLoss.naive(retrieverScores: s, readerScores: r)
        #expect(abs(Double(loss) - nl) <= 1e-5 * abs(nl), "loss \(loss) vs naive \(nl)")
        let rep = compare("kl grad vs naive", d.data, nd.map { Float($0) }, rtol: 1e-4, atol: 1e-8)
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
}
