// MaskedMeanPoolTests: masked mean pooling against FiD's PyTorch code, the naive twin (within the
// derived Float32 bound) and finite differences.
import Foundation
import Testing
import TestSupport
@testable import Tensor

fileprivate let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Per output element: Σ_l |x| / count over the unmasked tokens (the magnitude of an L-term sum
/// scaled by 1/count) for `compareReduction` with `terms: L + 2` (the sum, 1/count, the product).
func poolMagnitude(x: Tensor, mask: Tensor) -> [Double] {
    let B = x.shape[0], L = x.shape[1], D = x.shape[2]
    var out = [Double](repeating: 0, count: B * D)
    for b in 0..<B {
        let n = (0..<L).filter { mask.data[b * L + $0] != 0 }.count
        for d in 0..<D where n > 0 {
            for l in 0..<L where mask.data[b * L + l] != 0 { out[b * D + d] += abs(Double(x.data[(b * L + l) * D + d])) / Double(n) }
        }
    }
    return out
}

@Suite struct MaskedMeanPoolTests {
    @Test func matchesPyTorch() throws {
        let f = try Fixture("losses.json", in: fixtures)
        let x = try f.tensor("pool.x"), mask = try f.tensor("pool.mask")
        let out = MaskedMeanPool.forward(x: x, mask: mask)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let L = x.shape[1]
        let ro = compareReduction("pool out", out, try f.tensor("pool.out"), magnitude: poolMagnitude(x: x, mask: mask), terms: L + 2, reference: .float32)
        #expect(ro.ok, "\(ro)")
        var dx = Tensor.zeros(x.shape)
        let dOut = try f.tensor("pool.dout")
        MaskedMeanPool.backward(dOut: dOut, mask: mask, dX: &dx)
        // dx = dOut[b]/count (a division each side; ours multiplies by 1/count): 3 roundings of it.
        let want = try f.tensor("pool.dx")
        let rg = compareReduction("pool dx", dx, want, magnitude: want.data.map { abs(Double($0)) }, terms: 3, reference: .float32)
        #expect(rg.ok, "\(rg)")
    }

    static func randomCase(seed: UInt64) -> (Tensor, Tensor, Int, Int, Int) {
        var rng = RNG(seed: seed)
        let (B, L, D) = (4, 6, 5)
        let x = Tensor(shape: [B, L, D], data: rng.normalArray(B * L * D))
        // Row 2 is all padding; the others have holes.
        let m: [Float] = [1, 1, 0, 1, 0, 0,  1, 1, 1, 1, 1, 1,  0, 0, 0, 0, 0, 0,  0, 1, 0, 0, 0, 1]
        return (x, Tensor(shape: [B, L], data: m), B, L, D)
    }

    @Test func matchesNaiveTwinAndEmptyRowIsZero() {
        let (x, mask, _, _, D) = Self.randomCase(seed: 31)
        let out = MaskedMeanPool.forward(x: x, mask: mask)
        let r = compareReduction("pool vs naive", out.data, MaskedMeanPool.naive(x: x, mask: mask).map { Float($0) }, magnitude: poolMagnitude(x: x, mask: mask), terms: x.shape[1] + 2)
        #expect(r.ok, "\(r)")
        #expect(out.data[(2 * D)..<(3 * D)].allSatisfy { $0 == 0 })
        #expect(out.data.allSatisfy { !$0.isNaN })
    }

    @Test func gradientMatchesFiniteDifferences() {
        let (x, mask, B, L, D) = Self.randomCase(seed: 32)
        var rng = RNG(seed: 33)
        let w = rng.normalArray(B * D)  // objective: Σ w·out
        var dx = Tensor.zeros(x.shape)
        MaskedMeanPool.backward(dOut: Tensor(shape: [B, D], data: w), mask: mask, dX: &dx)
        let rep = gradCheck("masked mean pool", input: x.data, analytic: dx.data, eps: 1e-2) { xs in
            let o = MaskedMeanPool.forward(x: Tensor(shape: [B, L, D], data: xs), mask: mask)
            return zip(o.data, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        #expect(rep.ok, "\(rep)")
        // Padding tokens and the empty row get nothing.
        for b in 0..<B { for l in 0..<L where mask.data[b * L + l] == 0 {
            #expect(dx.data[((b * L + l) * D)..<((b * L + l + 1) * D)].allSatisfy { $0 == 0 })
        } }
        // The naive twin in Double: dx[b, l] = mask[b, l] · dOut[b] / count[b] (3 roundings each side).
        var twin = [Float](repeating: 0, count: B * L * D)
        for b in 0..<B {
            let count = (0..<L).reduce(0.0) { $0 + Double(mask.data[b * L + $1]) }
            for l in 0..<L where mask.data[b * L + l] != 0 {
                for d in 0..<D { twin[(b * L + l) * D + d] = Float(Double(w[b * D + d]) / count) }
            }
        }
        let rt = compareReduction("pool dx vs naive", dx.data, twin, magnitude: twin.map { abs(Double($0)) }, terms: 3)
        #expect(rt.ok, "\(rt)")
    }
}
