// GradClipTests: global gradient-norm clipping as torch.nn.utils.clip_grad_norm_.
import Testing
import TestSupport
@testable import Tensor

@Suite struct GradClipTests {
    static func naiveNorm(_ g: [Float]) -> Double { g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    /// The roundings along the kernel's longest chain: each of a chunk's 16 SIMD lanes sums
    /// chunk/16 squares in Float, the lanes are added (≤ 15), the chunks in Double, then √. Σg²
    /// has positive terms only, so its relative error is ≤ that count times u, and the square root
    /// halves it: compare the norm with magnitude ‖g‖/2 (plus one rounding for √ itself).
    static let normTerms = GradClip.chunk / 16 + 16 + 2

    @Test func normMatchesNaiveAcrossChunks() {
        var rng = RNG(seed: 51)
        // Three fixed chunks plus a scalar tail.
        let g = rng.normalArray(2 * GradClip.chunk + 1_000 + 5)
        let n = GradClip.norm(g)
        let want = Self.naiveNorm(g)
        let r = compareReduction("norm", [n], [Float(want)], magnitude: [want / 2], terms: Self.normTerms)
        #expect(r.ok, "\(r)")
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
        // After clipping the norm is 2·‖g‖/(norm + 1e-6): the kernel norm's relative error (as in
        // normMatchesNaiveAcrossChunks), the 1e-6, and the rounding of each scaled element.
        let after = Self.naiveNorm(g)
        let shift = 2 * 1e-6 / Double(n)
        let ra = compareReduction("norm after clipping", [Float(after - shift)], [2], magnitude: [1], terms: Self.normTerms + 2)
        #expect(ra.ok, "\(ra)")
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
