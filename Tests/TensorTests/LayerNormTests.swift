// LayerNormTests: BERT's LayerNorm against a naive Double twin (within the derived Float32
// bound), finite differences, PyTorch, and bit-identical gradients on any thread count.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Plain loops in Double: y, dx, dw, db (not accumulated), and each output's magnitude and
/// rounding count for `reductionBound` (running error analysis of the Float32 kernel):
/// - mean: D roundings over Σ|x|/D, so x − mean is off by ≤ (D + 2)·u·(|x| + mean|x|).
/// - r = 1/√(var + eps): var sums positive terms, and the mean's error cancels to first order
///   (Σ(x − mean) = 0), so r's relative error is ≤ (D/2 + 4)·u.
/// - x̂ = (x − mean)·r is then off by ≤ (1.5·D + 8)·u·X with X = (|x| + mean|x|)·r.
/// - y = x̂·w + b: 2·D + 8 roundings of |w|·X + |b|.
/// - dx = r·(g − Σg/D − x̂·Σ(g·x̂)/D), g = dy·w: the sums' D, x̂'s error twice (in x̂ and in
///   Σ g·x̂) and r's: 5·D + 16 roundings of r·(|g| + Σ|g|/D + X·Σ(|g|·X)/D).
/// - dw = Σ_n dy·x̂: N + 2·D + 8 roundings of Σ|dy|·X. db = Σ_n dy: N roundings of Σ|dy|.
private struct NaiveLayerNorm {
    var y: [Float], dx: [Float], dw: [Float], db: [Float]
    var yMag: [Double], dxMag: [Double], dwMag: [Double], dbMag: [Double]
    var yTerms: Int, dxTerms: Int, dwTerms: Int, dbTerms: Int
}

private func naiveLayerNorm(x: [Float], w: [Float], b: [Float], dy: [Float], N: Int, D: Int, eps: Double) -> NaiveLayerNorm {
    var y = [Float](repeating: 0, count: N * D), dx = y
    var yMag = [Double](repeating: 0, count: N * D), dxMag = yMag
    var dw = [Double](repeating: 0, count: D), db = dw, dwMag = dw, dbMag = dw
    for n in 0..<N {
        let row = (0..<D).map { Double(x[n * D + $0]) }
        let m = row.reduce(0, +) / Double(D)
        let meanAbs = row.reduce(0) { $0 + abs($1) } / Double(D)
        let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(D)
        let r = 1 / (v + eps).squareRoot()
        let xh = row.map { ($0 - m) * r }
        let X = row.map { (abs($0) + meanAbs) * r }
        let g = (0..<D).map { Double(dy[n * D + $0]) * Double(w[$0]) }
        let a = g.reduce(0, +) / Double(D)
        let c = zip(g, xh).map { $0 * $1 }.reduce(0, +) / Double(D)
        let aAbs = g.reduce(0) { $0 + abs($1) } / Double(D)
        let cAbs = zip(g, X).map { abs($0) * $1 }.reduce(0, +) / Double(D)
        for i in 0..<D {
            let gi = Double(dy[n * D + i])
            y[n * D + i] = Float(xh[i] * Double(w[i]) + Double(b[i]))
            yMag[n * D + i] = abs(Double(w[i])) * X[i] + abs(Double(b[i]))
            dx[n * D + i] = Float(r * (g[i] - a - xh[i] * c))
            dxMag[n * D + i] = r * (abs(g[i]) + aAbs + X[i] * cAbs)
            dw[i] += gi * xh[i]
            dwMag[i] += abs(gi) * X[i]
            db[i] += gi
            dbMag[i] += abs(gi)
        }
    }
    return NaiveLayerNorm(
        y: y, dx: dx, dw: dw.map { Float($0) }, db: db.map { Float($0) },
        yMag: yMag, dxMag: dxMag, dwMag: dwMag, dbMag: dbMag,
        yTerms: 2 * D + 8, dxTerms: 5 * D + 16, dwTerms: N + 2 * D + 8, dbTerms: N)
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
        let r0 = compareReduction("y \(shape)", y.data, naive.y, magnitude: naive.yMag, terms: naive.yTerms)
        #expect(r0.ok, "\(r0)")
        let sx = rng.normalArray(N * D), sw = rng.normalArray(D), sb = rng.normalArray(D)
        var dx = Tensor(shape: [N, D], data: sx), dw = Tensor(shape: [D], data: sw), db = Tensor(shape: [D], data: sb)
        LayerNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw, dBias: &db)
        // D == 1 normalises to 0 exactly: x̂'s magnitude X (|x| + mean|x|)·r is what bounds dx there.
        let (ex, mx) = accumulated(naive.dx, naive.dxMag, sx)
        let (ew, mw) = accumulated(naive.dw, naive.dwMag, sw)
        let (eb, mb) = accumulated(naive.db, naive.dbMag, sb)
        for r in [
            compareReduction("dx \(shape)", dx.data, ex, magnitude: mx, terms: naive.dxTerms + 1),
            compareReduction("dw \(shape)", dw.data, ew, magnitude: mw, terms: naive.dwTerms + 1),
            compareReduction("db \(shape)", db.data, eb, magnitude: mb, terms: naive.dbTerms + 1),
        ] { #expect(r.ok, "\(r)") }
    }

    /// dw and db sum over rows in fixed chunks, so they must be the same to the bit on any
    /// thread count (a resumed run on another machine reproduces an uninterrupted one).
    @Test(arguments: [(1000, 64), (5000, 96), (7, 3)])
    func backwardDoesNotDependOnThreadCount(shape: (Int, Int)) {
        let (N, D) = shape
        var rng = RNG(seed: UInt64(N * 3 + D))
        let x = Tensor(shape: [N, D], data: rng.normalArray(N * D, mean: 2, std: 3))
        let w = Tensor(shape: [D], data: rng.normalArray(D, mean: 1))
        let b = Tensor(shape: [D], data: rng.normalArray(D))
        let dy = Tensor(shape: [N, D], data: rng.normalArray(N * D))
        let (_, cache) = LayerNorm.forward(x, weight: w, bias: b, eps: 1e-12)
        var results: [[[Float]]] = []
        for threads in [1, 2, 3, 4, nil] {
            var dx = Tensor.zeros([N, D]), dw = Tensor.zeros([D]), db = Tensor.zeros([D])
            LayerNorm.backward(dy: dy, x: x, weight: w, cache: cache, dx: &dx, dWeight: &dw, dBias: &db, threads: threads)
            results.append([dx.data, dw.data, db.data])
        }
        for (k, r) in results.enumerated().dropFirst() {
            for (g, name) in ["dx", "dw", "db"].enumerated() {
                #expect(r[g] == results[0][g], "\(name) differs between 1 and \([2, 3, 4, -1][k - 1]) threads (-1: the global setting)")
            }
        }
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
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let D = w.count, N = x.count / D
        let naive = naiveLayerNorm(x: x.data, w: w.data, b: b.data, dy: try f.tensor("ln_dy").data, N: N, D: D, eps: try f.number("ln_eps"))
        for r in [
            compareReduction("ln y", y, try f.tensor("ln_y"), magnitude: naive.yMag, terms: naive.yTerms, reference: .float32),
            compareReduction("ln dx", dx, try f.tensor("ln_dx"), magnitude: naive.dxMag, terms: naive.dxTerms, reference: .float32),
            compareReduction("ln dw", dw, try f.tensor("ln_dw"), magnitude: naive.dwMag, terms: naive.dwTerms, reference: .float32),
            compareReduction("ln db", db, try f.tensor("ln_db"), magnitude: naive.dbMag, terms: naive.dbTerms, reference: .float32),
        ] {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
