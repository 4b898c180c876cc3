// SoftmaxTests: masked row softmax against a Double twin (within its running Float32 error bound),
// finite differences, PyTorch; masked rows give zeros.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Plain loops in Double: p = softmax(x + mask) per row (all −∞ rows give zeros), and dx, each
/// with its Float32 error bound in units of u (running error analysis; pass to
/// `compareReduction` with `terms: 1`):
/// - z = x + mask rounds once: E_z = |z| (0 without a mask).
/// - p_j = exp(z_j − m)/Σ_k exp(z_k − m) has relative bound
///   E_z[j] + Σ_k p_k·E_z[k] + |z_j − m| + Σ_k p_k·|z_k − m| + C + 12: the inputs' errors (a
///   shift common to the row cancels, hence the p-weighted mean), the rounding of z − m inside
///   exp, the C-term sum, and ≤ 8 ulps of `VectorMath.exp` with the division.
/// - dx_j = p_j·(g_j − Σ_k g_k·p_k) on the kernel's own p: its bound through both factors, the
///   dot's C roundings, and one rounding per element-wise step.
private func naiveSoftmax(x: [Float], mask: [Float]?, maskRowStride: Int, dy: [Float], N: Int, C: Int)
    -> (p: [Float], dx: [Float], pBound: [Double], dxBound: [Double])
{
    var p = [Float](repeating: 0, count: N * C), dx = p
    var pBound = [Double](repeating: 0, count: N * C), dxBound = pBound
    for n in 0..<N {
        let z = (0..<C).map { Double(x[n * C + $0]) + Double(mask?[n * maskRowStride + $0] ?? 0) }
        let m = z.max()!
        if m == -.infinity { continue }
        let e = z.map { exp($0 - m) }
        let s = e.reduce(0, +)
        let pr = e.map { $0 / s }
        let Ez = z.map { mask == nil || $0 == -.infinity ? 0 : abs($0) }
        var spread = 0.0
        for j in 0..<C where z[j] > -.infinity { spread += pr[j] * (Ez[j] + abs(z[j] - m)) }
        let Ep = (0..<C).map { j in z[j] == -.infinity ? 0 : pr[j] * (Ez[j] + abs(z[j] - m) + spread + Double(C + 12)) }
        let g = (0..<C).map { Double(dy[n * C + $0]) }
        let dot = (0..<C).reduce(0.0) { $0 + pr[$1] * g[$1] }
        let Edot = (0..<C).reduce(0.0) { $0 + abs(g[$1]) * Ep[$1] + Double(C) * abs(g[$1] * pr[$1]) }
        for j in 0..<C {
            p[n * C + j] = Float(pr[j])
            pBound[n * C + j] = Ep[j]
            dx[n * C + j] = Float(pr[j] * (g[j] - dot))
            dxBound[n * C + j] = Ep[j] * abs(g[j] - dot) + pr[j] * (Edot + abs(g[j]) + abs(dot)) + abs(pr[j] * (g[j] - dot))
        }
    }
    return (p, dx, pBound, dxBound)
}

@Suite struct SoftmaxTests {
    // (300, 64) spans several parallel row chunks.
    @Test(arguments: [(1, 1), (3, 5), (7, 17), (40, 33), (5, 1000), (300, 64)])
    func matchesNaive(shape: (Int, Int)) {
        let (N, C) = shape
        var rng = RNG(seed: UInt64(N * 7 + C))
        let x = rng.normalArray(N * C, std: 3), dy = rng.normalArray(N * C)
        // Per-row mask: some −∞, one finite large negative, and (when N > 2) a fully masked row 1.
        var mask = (0..<(N * C)).map { _ in rng.nextFloat() < 0.2 ? -Float.infinity : 0 }
        if N > 2 { for j in 0..<C { mask[C + j] = -.infinity } }
        mask[0] = -1e4
        let row = (0..<C).map { $0 % 3 == 1 ? -Float.infinity : 0 }  // broadcast mask
        for (m, stride) in [(nil as [Float]?, 0), (mask, C), (row, 0)] {
            let naive = naiveSoftmax(x: x, mask: m, maskRowStride: stride, dy: dy, N: N, C: C)
            var p = [Float](repeating: .nan, count: N * C), dx = rng.normalArray(N * C)
            let start = dx
            x.withUnsafeBufferPointer { px in
                p.withUnsafeMutableBufferPointer { pp in
                    if let m {
                        m.withUnsafeBufferPointer { Softmax.forward(p: pp.baseAddress!, x: px.baseAddress!, mask: $0.baseAddress!, maskRowStride: stride, rows: N, cols: C) }
                    } else {
                        Softmax.forward(p: pp.baseAddress!, x: px.baseAddress!, rows: N, cols: C)
                    }
                }
            }
            dy.withUnsafeBufferPointer { pg in
                p.withUnsafeBufferPointer { pp in
                    dx.withUnsafeMutableBufferPointer { Softmax.backward(dx: $0.baseAddress!, dy: pg.baseAddress!, p: pp.baseAddress!, rows: N, cols: C) }
                }
            }
            let r1 = compareReduction("p \(shape) stride \(stride) masked \(m != nil)", p, naive.p, magnitude: naive.pBound, terms: 1)
            // Accumulated into start: one more rounding, of the sum.
            let (ex, _) = accumulated(naive.dx, naive.dxBound, start)
            let r2 = compareReduction("dx \(shape)", dx, ex, magnitude: zip(naive.dxBound, ex).map { $0 + abs(Double($1)) }, terms: 1)
            #expect(r1.ok, "\(r1)")
            #expect(r2.ok, "\(r2)")
            #expect(!p.contains { $0.isNaN } && !dx.contains { $0.isNaN })
        }
    }

    @Test func fullyMaskedRowIsZeros() {
        let x = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        let mask = Tensor(shape: [2, 3], data: [-.infinity, -.infinity, -.infinity, 0, -.infinity, 0])
        let p = Softmax.forward(x, mask: mask)
        #expect(Array(p.data[0..<3]) == [0, 0, 0])
        #expect(p.data[4] == 0 && abs(p.data[3] + p.data[5] - 1) < 1e-6)
        var dx = Tensor.zeros([2, 3])
        Softmax.backward(dy: Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6]), p: p, dx: &dx)
        #expect(Array(dx.data[0..<3]) == [0, 0, 0] && dx.data[4] == 0)
    }

    @Test func nanRowsStayNaN() {
        // One NaN among 20 (in a SIMD16 block), and a row of NaN only: both rows NaN, never zeros.
        var data = (0..<40).map { Float($0 % 5) }
        data[3] = .nan
        for j in 20..<40 { data[j] = .nan }
        let p = Softmax.forward(Tensor(shape: [2, 20], data: data))
        #expect(p.data.allSatisfy { $0.isNaN })
        // Without a mask: a row of −∞ between two ordinary rows (the next row's maximum is taken
        // inside the previous row's pass) gives zeros, and its neighbours still sum to 1.
        var y = (0..<60).map { Float($0 % 7) * 0.3 }
        for j in 20..<40 { y[j] = -.infinity }
        let q = Softmax.forward(Tensor(shape: [3, 20], data: y))
        #expect(q.data[20..<40].allSatisfy { $0 == 0 })
        for r in [0, 2] { #expect(abs(q.data[(r * 20)..<(r * 20 + 20)].reduce(0, +) - 1) < 1e-6) }
    }

    @Test func gradientMatchesFiniteDifferences() {
        let (N, C) = (4, 9)
        var rng = RNG(seed: 12)
        let x = rng.normalArray(N * C), dy = rng.normalArray(N * C)
        let mask = Tensor(shape: [N, C], data: (0..<(N * C)).map { $0 % 5 == 2 ? -.infinity : 0 })
        let p = Softmax.forward(Tensor(shape: [N, C], data: x), mask: mask)
        var dx = Tensor.zeros([N, C])
        Softmax.backward(dy: Tensor(shape: [N, C], data: dy), p: p, dx: &dx)
        let r = gradCheck("softmax", input: x, analytic: dx.data) {
            dotDouble(Softmax.forward(Tensor(shape: [N, C], data: $0), mask: mask).data, dy)
        }
        print(r)
        #expect(r.ok, "\(r)")
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("softmax.json", in: fixtures)
        let x = try f.tensor("x")
        let p = Softmax.forward(x, mask: try f.tensor("mask"))
        var dx = Tensor.zeros(x.shape)
        Softmax.backward(dy: try f.tensor("dy"), p: p, dx: &dx)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let C = x.shape.last!, N = x.count / C
        let mask = try f.tensor("mask")
        try #require(mask.count == x.count, "softmax.json: the mask is expected per element")
        let naive = naiveSoftmax(x: x.data, mask: mask.data, maskRowStride: C, dy: try f.tensor("dy").data, N: N, C: C)
        for r in [
            compareReduction("softmax p", p, try f.tensor("p"), magnitude: naive.pBound, terms: 1, reference: .float32),
            compareReduction("softmax dx", dx, try f.tensor("dx"), magnitude: naive.dxBound, terms: 1, reference: .float32),
        ] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
