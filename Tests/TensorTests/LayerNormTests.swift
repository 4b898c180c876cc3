// LayerNormTests: BERT's LayerNorm against a naive Double twin, finite differences, and PyTorch.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Plain loops in Double: y, dx, dw, db (not accumulated).
private func naiveLayerNorm(x: [Float], w: [Float], b: [Float], dy: [Float], N: Int, D: Int, eps: Double)
    -> (y: [Float], dx: [Float], dw: [Float], db: [Float])
{
    var y = [Float](repeating: 0, count: N * D), dx = y
    var dw = [Double](repeating: 0, count: D), db = dw
    for n in 0..<N {
        let row = (0..<D).map { Double(x[n * D + $0]) }
        let m = row.reduce(0, +) / Double(D)
        let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(D)
        let r = 1 / (v + eps).squareRoot()
        let xh = row.map { ($0 - m) * r }
        let g = (0..<D).map { Double(dy[n * D + $0]) * Double(w[$0]) }
        let a = g.reduce(0, +) / Double(D)
        let c = zip(g, xh).map { $0 * $1 }.reduce(0, +) / Double(D)
        for i in 0..<D {
            y[n * D + i] = Float(xh[i] * Double(w[i]) + Double(b[i]))
            dx[n * D + i] = Float(r * (g[i] - a - xh[i] * c))
            dw[i] += Double(dy[n * D + i]) * xh[i]
            db[i] += Double(dy[n * D + i])
        }
    }
    return (y, dx, dw.map { Float($0) }, db.map { Float($0) })
}

@Suite struct LayerNormTests {
    @Test(arguments: [(1, 1), (3, 7), (5, 17), (9, 100), (33, 768)])
    func matchesNaive(shape: (Int, Int)) {
        let (N, D) = shape
        var rng = RNG(seed: UInt64(N * 17 + D))
        let x = Tensor(shape: [N, D], data: rng.normalArray(N * D, mean: 2, std: 3))
        let w = Tensor(shape: [D], data: rng.normalArray(D, mean: 1))
        let b = Tensor(shape: [D], data: rng.normalArray(D))
        let dy = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let naive = naiveLayerNorm(x: x.data, w: w.data, b: b.data, dy: dy.data, N: N, D: D, eps: 1e-12)
        let (y, cache) = LayerNorm.forward(x, weight: w, bias: b, eps: 1e-12)
        let r0 = compare("y \(shape)", y.data, naive.y, atol: 1e-5)
        #expect(r0.ok, "\(r0)")
        let sx = rng.normalArray(N * D), sw = rng.normalArray(D), sb = rng.normalArray(D)
        var dx = Tensor(shape: [N, D], data: sx), dw = Tensor(shape: [D], data: sw), db = Tensor(shape: [D], data: sb)
        LayerNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw, dBias: &db)
        // D == 1 normalises to 0 exactly: dx is 0 up to rounding, so only atol is meaningful there.
        for r in [
            compare("dx \(shape)", dx.data, zip(naive.dx, sx).map { $0 + $1 }, atol: 1e-5),
            compare("dw \(shape)", dw.data, zip(naive.dw, sw).map { $0 + $1 }, atol: 1e-4),
            compare("db \(shape)", db.data, zip(naive.db, sb).map { $0 + $1 }, atol: 1e-4),
        ] { #expect(r.ok, "\(r)") }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let (N, D) = (3, 19)
        var rng = RNG(seed: 6)
        let x = rng.normalArray(N * D, mean: 1), w = rng.normalArray(D, mean: 1), b = rng.normalArray(D)
        let dy = rng.normalArray(N * D)
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            dotDouble(LayerNorm.forward(Tensor(shape: [N, D], data: x), weight: Tensor(shape: [D], data: w), bias: Tensor(shape: [D], data: b), eps: 1e-5).0.data, dy)
        }
        let xt = Tensor(shape: [N, D], data: x), wt = Tensor(shape: [D], data: w)
        let (_, cache) = LayerNorm.forward(xt, weight: wt, bias: Tensor(shape: [D], data: b), eps: 1e-5)
        var dx = Tensor.zeros([N, D]), dw = Tensor.zeros([D]), db = Tensor.zeros([D])
        LayerNorm.backward(dy: Tensor(shape: [N, D], data: dy), x: xt, weight: wt, cache: cache, dx: &dx, dWeight: &dw, dBias: &db)
        for r in [
            gradCheck("layernorm dx", input: x, analytic: dx.data) { loss($0, w, b) },
            gradCheck("layernorm dw", input: w, analytic: dw.data) { loss(x, $0, b) },
            gradCheck("layernorm db", input: b, analytic: db.data) { loss(x, w, $0) },
        ] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("norms.json", in: fixtures)
        let x = try f.tensor("ln_x"), w = try f.tensor("ln_w"), b = try f.tensor("ln_b")
        let (y, cache) = LayerNorm.forward(x, weight: w, bias: b, eps: Float(try f.number("ln_eps")))
        var dx = Tensor.zeros(x.shape), dw = Tensor.zeros(w.shape), db = Tensor.zeros(b.shape)
        LayerNorm.backward(dy: try f.tensor("ln_dy"), x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw, dBias: &db)
        for r in [compare("ln y", y, try f.tensor("ln_y")), compare("ln dx", dx, try f.tensor("ln_dx")),
                  compare("ln dw", dw, try f.tensor("ln_dw")), compare("ln db", db, try f.tensor("ln_db"))] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
