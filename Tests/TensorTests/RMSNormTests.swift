// RMSNormTests: T5's RMSNorm against a naive Double twin (within the derived Float32 bound),
// finite differences, PyTorch, and bit-identical gradients on any thread count.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Plain loops in Double: y, dx, dw (not accumulated), and each output's magnitude and rounding
/// count for `reductionBound` (running error analysis of the Float32 kernel):
/// - r = 1/√(Σx²/D + eps): Σx² has only positive terms, so its relative error is ≤ D·u; the
///   square root halves it and /D, +eps, √ and 1/ add one rounding each: ≤ (D/2 + 4)·u.
/// - y = w·(x·r): relative error ≤ (D/2 + 6)·u; counted as D + 8 roundings of |y|.
/// - dx = r·w·g − x·r³·(Σ w·g·x)/D: the dot's D roundings over Σ|w·g·x|, r³'s 3·(D/2 + 4), and
///   a handful of element-wise steps: counted as 3·D + 16 roundings of |r·w·g| + |x|·r³·Σ|w·g·x|/D.
/// - dw = Σ_n g·x·r: N roundings of the sum plus r's D/2 + 4 and two products per term:
///   N + D + 8 roundings of Σ|g·x·r|.
private struct NaiveRMSNorm {
    var y: [Float], dx: [Float], dw: [Float]
    var yMag: [Double], dxMag: [Double], dwMag: [Double]
    var yTerms: Int, dxTerms: Int, dwTerms: Int
}

private func naiveRMSNorm(x: [Float], w: [Float], dy: [Float], N: Int, D: Int, eps: Double) -> NaiveRMSNorm {
    var y = [Float](repeating: 0, count: N * D), dx = y
    var yMag = [Double](repeating: 0, count: N * D), dxMag = yMag
    var dw = [Double](repeating: 0, count: D), dwMag = dw
    for n in 0..<N {
        var ss = 0.0
        for i in 0..<D { ss += Double(x[n * D + i]) * Double(x[n * D + i]) }
        let r = 1 / (ss / Double(D) + eps).squareRoot()
        var dot = 0.0, absDot = 0.0
        for i in 0..<D {
            let t = Double(w[i]) * Double(dy[n * D + i]) * Double(x[n * D + i])
            dot += t
            absDot += abs(t)
        }
        for i in 0..<D {
            let xi = Double(x[n * D + i]), gi = Double(dy[n * D + i]), wi = Double(w[i])
            y[n * D + i] = Float(wi * xi * r)
            yMag[n * D + i] = abs(wi * xi * r)
            dx[n * D + i] = Float(r * wi * gi - xi * r * r * r * dot / Double(D))
            dxMag[n * D + i] = abs(r * wi * gi) + abs(xi) * r * r * r * absDot / Double(D)
            dw[i] += gi * xi * r
            dwMag[i] += abs(gi * xi * r)
        }
    }
    return NaiveRMSNorm(
        y: y, dx: dx, dw: dw.map { Float($0) }, yMag: yMag, dxMag: dxMag, dwMag: dwMag,
        yTerms: D + 8, dxTerms: 3 * D + 16, dwTerms: N + D + 8)
}

@Suite struct RMSNormTests {
    @Test(arguments: [(1, 1), (3, 7), (5, 17), (9, 100), (33, 512)])
    func matchesNaive(shape: (Int, Int)) {
        let (N, D) = shape
        var rng = RNG(seed: UInt64(N * 31 + D))
        let x = Tensor(shape: [N, D], data: rng.normalArray(N * D, mean: 0.3, std: 2))
        let w = Tensor(shape: [D], data: rng.normalArray(D, mean: 1))
        let dy = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let naive = naiveRMSNorm(x: x.data, w: w.data, dy: dy.data, N: N, D: D, eps: 1e-6)
        let (y, cache) = RMSNorm.forward(x, weight: w)
        let r0 = compareReduction("y \(shape)", y.data, naive.y, magnitude: naive.yMag, terms: naive.yTerms)
        #expect(r0.ok, "\(r0)")
        let sx = rng.normalArray(N * D), sw = rng.normalArray(D)
        var dx = Tensor(shape: [N, D], data: sx), dw = Tensor(shape: [D], data: sw)
        RMSNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw)
        let (ex, mx) = accumulated(naive.dx, naive.dxMag, sx)
        let (ew, mw) = accumulated(naive.dw, naive.dwMag, sw)
        let r1 = compareReduction("dx \(shape)", dx.data, ex, magnitude: mx, terms: naive.dxTerms + 1)
        let r2 = compareReduction("dw \(shape)", dw.data, ew, magnitude: mw, terms: naive.dwTerms + 1)
        #expect(r1.ok, "\(r1)")
        #expect(r2.ok, "\(r2)")
    }

    /// dw sums over rows in fixed chunks, so it must be the same to the bit on any thread count
    /// (a resumed run on another machine reproduces an uninterrupted one).
    @Test(arguments: [(1000, 64), (5000, 96), (7, 3)])
    func backwardDoesNotDependOnThreadCount(shape: (Int, Int)) {
        let (N, D) = shape
        var rng = RNG(seed: UInt64(N + D))
        let x = Tensor(shape: [N, D], data: rng.normalArray(N * D, mean: 0.3, std: 2))
        let w = Tensor(shape: [D], data: rng.normalArray(D, mean: 1))
        let dy = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let (_, cache) = RMSNorm.forward(x, weight: w)
        var results: [(dx: [Float], dw: [Float])] = []
        for threads in [1, 2, 3, 4, nil] {
            var dx = Tensor.zeros([N, D]), dw = Tensor.zeros([D])
            RMSNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw, threads: threads)
            results.append((dx.data, dw.data))
        }
        for (k, r) in results.enumerated().dropFirst() {
            #expect(r.dw == results[0].dw, "dw differs between 1 and \([2, 3, 4, -1][k - 1]) threads (-1: the global setting)")
            #expect(r.dx == results[0].dx, "dx differs between 1 and \([2, 3, 4, -1][k - 1]) threads")
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let (N, D) = (3, 19)
        var rng = RNG(seed: 5)
        let x = rng.normalArray(N * D, mean: 0.5), w = rng.normalArray(D, mean: 1)
        let dy = rng.normalArray(N * D)
        func loss(_ x: [Float], _ w: [Float]) -> Double {
            dotDouble(RMSNorm.forward(Tensor(shape: [N, D], data: x), weight: Tensor(shape: [D], data: w)).0.data, dy)
        }
        let xt = Tensor(shape: [N, D], data: x), wt = Tensor(shape: [D], data: w)
        let (_, cache) = RMSNorm.forward(xt, weight: wt)
        var dx = Tensor.zeros([N, D]), dw = Tensor.zeros([D])
        RMSNorm.backward(dy: Tensor(shape: [N, D], data: dy), x: xt, weight: wt, cache: cache, dx: &dx, dWeight: &dw)
        for r in [
            gradCheck("rmsnorm dx", input: x, analytic: dx.data, eps: 1e-2) { loss($0, w) },
            gradCheck("rmsnorm dw", input: w, analytic: dw.data, eps: 1e-2) { loss(x, $0) },
        ] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("norms.json", in: fixtures)
        let x = try f.tensor("rms_x"), w = try f.tensor("rms_w")
        let (y, cache) = RMSNorm.forward(x, weight: w, eps: Float(try f.number("rms_eps")))
        var dx = Tensor.zeros(x.shape), dw = Tensor.zeros(w.shape)
        RMSNorm.backward(dy: try f.tensor("rms_dy"), x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let D = w.count, N = x.count / D
        let naive = naiveRMSNorm(x: x.data, w: w.data, dy: try f.tensor("rms_dy").data, N: N, D: D, eps: try f.number("rms_eps"))
        for r in [
            compareReduction("rms y", y, try f.tensor("rms_y"), magnitude: naive.yMag, terms: naive.yTerms, reference: .float32),
            compareReduction("rms dx", dx, try f.tensor("rms_dx"), magnitude: naive.dxMag, terms: naive.dxTerms, reference: .float32),
            compareReduction("rms dw", dw, try f.tensor("rms_dw"), magnitude: naive.dwMag, terms: naive.dwTerms, reference: .float32),
        ] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
