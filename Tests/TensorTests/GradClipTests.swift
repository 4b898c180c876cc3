// GradClipTests: global gradient-norm clipping as torch.nn.utils.clip_grad_norm_.
import Testing
import TestSupport
@testable import Tensor

@Suite struct GradClipTests {
    static func naiveNorm(_ g: [Float]) -> Double { g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    @Test func normMatchesNaiveAcrossChunks() {
        var rng = RNG(seed: 51)
        // Three fixed chunks plus a scalar tail.
        let g = rng.normalArray(2 * GradClip.chunk + 1_000 + 5)
        let n = GradClip.norm(g)
        let want = Self.naiveNorm(g)
        #expect(abs(Double(n) - want) <= 1e-6 * want, "norm \(n) vs \(want)")
        #expect(GradClip.norm([]) == 0)
    }

    @Test func normDoesNotDependOnThreadCount() {
        var rng = RNG(seed: 52)
        let g = rng.normalArray(5 * GradClip.chunk + 3)
        // Per-call thread counts: the global setting stays untouched while other suites run.
        let one = GradClip.norm(g, threads: 1)
        #expect(GradClip.norm(g, threads: 4) == one)
        #expect(GradClip.norm(g) == one)
    }

    @Test func clipsAboveTheLimit() {
        var rng = RNG(seed: 53)
        var g = rng.normalArray(1_000)
        let g0 = g
        let n = GradClip.clip(&g, maxNorm: 2)
        #expect(Double(n) > 2)
        let coef = Float(2) / (n + 1e-6)
        let r = compare("clipped", g, g0.map { $0 * coef }, rtol: 1e-6)
        #expect(r.ok, "\(r)")
        #expect(abs(Self.naiveNorm(g) - 2) < 1e-5)
    }

    @Test func leavesGradientsBelowTheLimitUnchanged() {
        var rng = RNG(seed: 54)
        var g = rng.normalArray(100, std: 0.01)
        let g0 = g
        let n = GradClip.clip(&g, maxNorm: 1)
        #expect(Double(n) < 1)
        #expect(g == g0)
        // Also exactly at the limit: the 1e-6 makes the coefficient just under 1, as in torch.
        var z = [Float](repeating: 0, count: 8)
        #expect(GradClip.clip(&z, maxNorm: 1) == 0 && z.allSatisfy { $0 == 0 })
    }

    @Test func nonFiniteNormPropagatesLikeTorch() {
        var g: [Float] = [1, .nan, 2]
        let n = GradClip.clip(&g, maxNorm: 1)
        #expect(n.isNaN)
        #expect(g.allSatisfy { $0.isNaN })
    }
}
