// VectorMathTests: the one SIMD16 exp against Double exp over Float's whole useful range, and its edges.
import Foundation
import Testing
@testable import Tensor

@Suite struct VectorMathTests {
    /// Lanes 1e-3 apart, stepping 0.0173: every part of the reduction range is hit many times.
    @Test func expMatchesDouble() {
        var worst = 0.0
        var worstX: Float = 0
        var x: Float = -87.3
        while x < 88.35 {
            var v = SIMD16<Float>()
            for l in 0..<16 { v[l] = min(x + Float(l) * 1e-3, 88.37) }
            let e = VectorMath.exp(v)
            for l in 0..<16 {
                let ref = Foundation.exp(Double(v[l]))
                let rel = abs(Double(e[l]) - ref) / ref
                if rel > worst { (worst, worstX) = (rel, v[l]) }
            }
            x += 0.0173
        }
        print("VectorMath.exp: max rel error \(worst) at x = \(worstX)")
        #expect(worst < 3e-7, "max rel error \(worst) at \(worstX)")
    }

    /// A second sweep on another lattice (lanes 0.00071 apart, stepping 0.0113), as the losses'
    /// exp was tested: 3 ulp (3.6e-7) over the normal range.
    @Test func accurateOverTheNormalRange() {
        var worst = 0.0
        var worstX: Float = 0
        var x: Float = -87.3
        while x < 88.36 {
            let lanes = SIMD16<Float>((0..<16).map { min(x + Float($0) * 0.00071, VectorMath.expHigh) })
            let got = VectorMath.exp(lanes)
            for i in 0..<16 {
                let want = Foundation.exp(Double(lanes[i]))
                let rel = abs(Double(got[i]) - want) / want
                if rel > worst { worst = rel; worstX = lanes[i] }
            }
            x += 0.0113
        }
        #expect(worst < 3.6e-7, "worst relative error \(worst) at x = \(worstX)")
    }

    @Test func edges() {
        let edge = VectorMath.exp(SIMD16<Float>(-.infinity, -1000, -88, 0, 1, -1, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        #expect(edge[0] == 0 && edge[1] == 0 && edge[2] == 0 && edge[3] == 1)
        #expect(abs(edge[4] - 2.7182817) < 1e-6 && edge[6].isFinite)

        let x = SIMD16<Float>(
            0, 1, -1, -87.33, -103, -1e9, -.infinity, 88.37, 88.8, 1e9, .infinity, -100, 1e-8, -1e-8, 0.5, -0.5)
        let y = VectorMath.exp(x)
        #expect(y[0] == 1)
        #expect(y[5] == 0 && y[6] == 0)  // masked logits: exactly 0, never NaN
        #expect(y[4] >= 0 && y[4] < 1e-44)
        #expect(y[11] == 0)  // below the normal range: flushed to 0, not subnormal
        #expect(abs(Double(y[3]) / Foundation.exp(Double(x[3])) - 1) < 3.6e-7)
        #expect(abs(Double(y[7]) / Foundation.exp(Double(x[7])) - 1) < 3.6e-7)
        // Above the range it saturates (finite, monotone), so GELU's e/(1 + e) never sees ∞.
        let top = VectorMath.exp(SIMD16(repeating: VectorMath.expHigh))[0]
        #expect(y[8] == top && y[9] == top && y[10] == top && top.isFinite && top > 2e38)
        #expect(abs(y[12] - 1) < 2e-7 && abs(y[13] - 1) < 2e-7)
        #expect(abs(Double(y[14]) / Foundation.exp(0.5) - 1) < 3.6e-7 && abs(Double(y[15]) / Foundation.exp(-0.5) - 1) < 3.6e-7)
    }

    @Test func nanPropagates() {
        var x = SIMD16<Float>(repeating: 0)
        x[3] = .nan
        let y = VectorMath.exp(x)
        #expect(y[3].isNaN)
        #expect(y[0] == 1 && y[4] == 1)
    }
}
