// FastExpTests: the SIMD16 exp against Double exp over the whole Float range.
import Foundation
import Testing
@testable import Tensor

@Suite struct FastExpTests {
    @Test func accurateOverTheNormalRange() {
        var worst = 0.0
        var worstX: Float = 0
        var x: Float = -87.3
        while x < 88.7 {
            let lanes = SIMD16<Float>((0..<16).map { x + Float($0) * 0.00071 })
            let got = FastExp.exp(lanes)
            for i in 0..<16 {
                let want = Foundation.exp(Double(lanes[i]))
                let rel = abs(Double(got[i]) - want) / want
                if rel > worst { worst = rel; worstX = lanes[i] }
            }
            x += 0.0113
        }
        // Float's ulp is 2^-23 ≈ 1.19e-7 relative; allow 3 ulp.
        #expect(worst < 3.6e-7, "worst relative error \(worst) at x = \(worstX)")
    }

    @Test func edges() {
        let x = SIMD16<Float>(
            0, 1, -1, -87.33, -103, -1e9, -.infinity, 88.7, 88.8, 1e9, .infinity, -100, 1e-8, -1e-8, 0.5, -0.5)
        let y = FastExp.exp(x)
        #expect(y[0] == 1)
        #expect(y[5] == 0 && y[6] == 0)  // masked logits: exactly 0, never NaN
        #expect(y[4] >= 0 && y[4] < 1e-44)
        #expect(abs(Double(y[11]) - Foundation.exp(-100.0)) <= 1.5e-45 && y[11] > 0)  // subnormal results survive
        #expect(abs(Double(y[3]) / Foundation.exp(Double(x[3])) - 1) < 3.6e-7)
        #expect(abs(Double(y[7]) / Foundation.exp(Double(x[7])) - 1) < 3.6e-7)
        #expect(y[8] == .infinity && y[9] == .infinity && y[10] == .infinity)
        #expect(abs(y[12] - 1) < 2e-7 && abs(y[13] - 1) < 2e-7)
    }
}
