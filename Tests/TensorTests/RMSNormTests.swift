// RMSNormTests: T5's RMSNorm against a naive Double twin, finite differences, and PyTorch.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Plain loops in Double: y, dx, dw (not accumulated).
private func naiveRMSNorm(x: [Float], w: [Float], dy: [Float], N: Int, D: Int, eps: Double)
    -> (y: [Float], dx: [Float], dw: [Float])
{
    var y = [Float](repeating: 0, count: N * D), dx = y
    var dw = [Double](repeating: 0, count: D)
    for n in 0..<N {
        var ss = 0.0
        for i in 0..<D { ss += Double(x[n * D + i]) * Double(x[n * D + i]) }
        let r = 1 / (ss / Double(D) + eps).squareRoot()
        var dot = 0.0
        for i in 0..<D { dot += Double(w[i]) * Double(dy[n * D + i]) * Double(x[n * D + i]) }
        for i in 0..<D {
            let xi = Double(x[n * D + i]), gi = Double(dy[n * D + i])
            y[n * D + i] = Float(Double(w[i]) * xi * r)
            dx[n * D + i] = Float(r * Double(w[i]) * gi - xi * r * r * r * dot / Double(D))
            dw[i] += gi * xi * r
        }
    }
    return (y, dx, dw.map { Float($0) })
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
        let r0 = compare("y \(shape)", y.data, naive.y, atol: 1e-5)
        #expect(r0.ok, "\(r0)")
        let sx = rng.normalArray(N * D), sw = rng.normalArray(D)
        var dx = Tensor(shape: [N, D], data: sx), dw = Tensor(shape: [D], data: sw)
        RMSNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw)
        let r1 = compare("dx \(shape)", dx.data, zip(naive.dx, sx).map { $0 + $1 }, atol: 1e-5)
        let r2 = compare("dw \(shape)", dw.data, zip(naive.dw, sw).map { $0 + $1 }, atol: 1e-4)
        #expect(r1.ok, "\(r1)")
        #expect(r2.ok, "\(r2)")
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
        for r in [compare("rms y", y, try f.tensor("rms_y")), compare("rms dx", dx, try f.tensor("rms_dx")),
                  compare("rms dw", dw, try f.tensor("rms_dw"))] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
