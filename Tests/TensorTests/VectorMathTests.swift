// VectorMathTests: the SIMD16 exp against Double exp over Float's whole useful range.
import Foundation
import Testing
@testable import Tensor

@Suite struct VectorMathTests {
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
        let edge = VectorMath.exp(SIMD16<Float>(-.infinity, -1000, -88, 0, 1, -1, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        #expect(edge[0] == 0 && edge[1] == 0 && edge[2] == 0 && edge[3] == 1)
        #expect(abs(edge[4] - 2.7182817) < 1e-6 && edge[6].isFinite)
    }
}
