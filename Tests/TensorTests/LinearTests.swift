// LinearTests: Linear against a naive Double twin, finite differences, and PyTorch golden values,
// within the Float32 bound derived from the operands (TestSupport's reductionBound).
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Σ a·b in Double: the scalar loss of every gradient check (a random upstream gradient).
func dotDouble(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var s = 0.0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// The plain-loop twin of Linear, in Double: y = x·Wᵀ + b and the three gradients (not
/// accumulated), each with its magnitude (Σ of the terms' absolute values) for `reductionBound`.
private struct NaiveLinear {
    var y: [Float], dx: [Float], dw: [Float], db: [Float]
    var yMag: [Double], dxMag: [Double], dwMag: [Double], dbMag: [Double]
}

private func naiveLinear(x: [Float], w: [Float], b: [Float]?, dy: [Float], N: Int, I: Int, O: Int) -> NaiveLinear {
    var r = NaiveLinear(
        y: .init(repeating: 0, count: N * O), dx: .init(repeating: 0, count: N * I),
        dw: .init(repeating: 0, count: O * I), db: .init(repeating: 0, count: O),
        yMag: .init(repeating: 0, count: N * O), dxMag: .init(repeating: 0, count: N * I),
        dwMag: .init(repeating: 0, count: O * I), dbMag: .init(repeating: 0, count: O))
    for n in 0..<N {
        for o in 0..<O {
            var s = Double(b?[o] ?? 0), m = abs(s)
            for i in 0..<I {
                let t = Double(x[n * I + i]) * Double(w[o * I + i])
                s += t
                m += abs(t)
            }
            r.y[n * O + o] = Float(s)
            r.yMag[n * O + o] = m
        }
        for i in 0..<I {
            var s = 0.0, m = 0.0
            for o in 0..<O {
                let t = Double(dy[n * O + o]) * Double(w[o * I + i])
                s += t
                m += abs(t)
            }
            r.dx[n * I + i] = Float(s)
            r.dxMag[n * I + i] = m
        }
    }
    for o in 0..<O {
        var sb = 0.0, mb = 0.0
        for n in 0..<N {
            sb += Double(dy[n * O + o])
            mb += abs(Double(dy[n * O + o]))
        }
        r.db[o] = Float(sb)
        r.dbMag[o] = mb
        for i in 0..<I {
            var s = 0.0, m = 0.0
            for n in 0..<N {
                let t = Double(dy[n * O + o]) * Double(x[n * I + i])
                s += t
                m += abs(t)
            }
            r.dw[o * I + i] = Float(s)
            r.dwMag[o * I + i] = m
        }
    }
    return r
}

@Suite struct LinearTests {
    // (N, In, Out); (4100, 3, 48) makes the bias column sums run on several threads.
    @Test(arguments: [(1, 1, 1), (3, 5, 7), (7, 3, 5), (17, 33, 9), (65, 31, 129), (4100, 3, 48)])
    func matchesNaive(shape: (Int, Int, Int)) {
        let (N, I, O) = shape
        var rng = RNG(seed: UInt64(N * 1000 + I * 10 + O))
        let x = Tensor(shape: [N, I], data: rng.normalArray(N * I))
        let w = Tensor(shape: [O, I], data: rng.normalArray(O * I))
        let b = Tensor(shape: [O], data: rng.normalArray(O))
        let dy = Tensor(shape: [N, O], data: rng.normalArray(N * O))
        for withBias in [true, false] {
            let naive = naiveLinear(x: x.data, w: w.data, b: withBias ? b.data : nil, dy: dy.data, N: N, I: I, O: O)
            let y = Linear.forward(x, weight: w, bias: withBias ? b : nil)
            // Every output is a reduction: y over In (+ bias), dx over Out, dW and db over the N
            // rows, each plus one term for the start value it accumulates into.
            let ry = compareReduction("y \(shape) bias=\(withBias)", y.data, naive.y, magnitude: naive.yMag, terms: I + 1)
            #expect(ry.ok, "\(ry)")
            // Gradients start non-zero: backward must add, not overwrite.
            let start = rng.normalArray(N * I + O * I + O)
            var dx = Tensor(shape: [N, I], data: Array(start[0..<(N * I)]))
            var dw = Tensor(shape: [O, I], data: Array(start[(N * I)..<(N * I + O * I)]))
            var db: Tensor? = withBias ? Tensor(shape: [O], data: Array(start[(N * I + O * I)...])) : nil
            Linear.backward(dy: dy, x: x, weight: w, dx: &dx, dWeight: &dw, dBias: &db)
            let (ex, mx) = accumulated(naive.dx, naive.dxMag, start[0..<(N * I)])
            let (ew, mw) = accumulated(naive.dw, naive.dwMag, start[(N * I)..<(N * I + O * I)])
            let r1 = compareReduction("dx \(shape)", dx.data, ex, magnitude: mx, terms: O + 1)
            let r2 = compareReduction("dw \(shape)", dw.data, ew, magnitude: mw, terms: N + 1)
            #expect(r1.ok, "\(r1)")
            #expect(r2.ok, "\(r2)")
            if let db {
                let (eb, mb) = accumulated(naive.db, naive.dbMag, start[(N * I + O * I)...])
                let r3 = compareReduction("db \(shape)", db.data, eb, magnitude: mb, terms: N + 1)
                #expect(r3.ok, "\(r3)")
            }
        }
    }

    /// With a residual r the product adds it in place of a pass of its own: y = r + b + x·Wᵀ
    /// (also without a bias, and with r aliasing y), within the bound of an (In + 2)-term sum.
    @Test(arguments: [(3, 5, 7), (65, 31, 129), (300, 40, 17)])
    func residualJoinsTheProduct(shape: (Int, Int, Int)) {
        let (N, I, O) = shape
        var rng = RNG(seed: UInt64(7 * N + I + O))
        let x = rng.normalArray(N * I), w = rng.normalArray(O * I), b = rng.normalArray(O)
        let r = rng.uniformArray(N * O, -40, 40)  // large against x·Wᵀ: a dropped residual cannot pass
        for withBias in [true, false] {
            let naive = naiveLinear(x: x, w: w, b: withBias ? b : nil, dy: [Float](repeating: 0, count: N * O), N: N, I: I, O: O)
            let want = (0..<(N * O)).map { Double(naive.y[$0]) + Double(r[$0]) }
            let mag = (0..<(N * O)).map { naive.yMag[$0] + abs(Double(r[$0])) }
            for aliased in [false, true] {
                var y = aliased ? r : [Float](repeating: .nan, count: N * O)
                x.withUnsafeBufferPointer { px in
                    w.withUnsafeBufferPointer { pw in
                        b.withUnsafeBufferPointer { pb in
                            r.withUnsafeBufferPointer { pr in
                                y.withUnsafeMutableBufferPointer { py in
                                    Linear.forward(y: py.baseAddress!, x: px.baseAddress!, weight: pw.baseAddress!,
                                                   bias: withBias ? pb.baseAddress! : nil,
                                                   residual: aliased ? UnsafePointer(py.baseAddress!) : pr.baseAddress!,
                                                   rows: N, inFeatures: I, outFeatures: O)
                                }
                            }
                        }
                    }
                }
                let c = compareReduction("y \(shape) bias=\(withBias) aliased=\(aliased)", y, want.map { Float($0) }, magnitude: mag,
                                         terms: I + 2)
                #expect(c.ok, "\(c)")
            }
        }
    }

    /// y, dx, dW and db are the same to the bit on any thread count: `Gemm` runs fixed tiles and
    /// the bias sums fixed column blocks (a resumed run may use another thread count).
    @Test(arguments: [(4100, 3, 48), (2000, 96, 130)])
    func resultsDoNotDependOnThreadCount(shape: (Int, Int, Int)) {
        let (N, I, O) = shape
        var rng = RNG(seed: UInt64(N + I + O))
        let x = Tensor(shape: [N, I], data: rng.normalArray(N * I))
        let w = Tensor(shape: [O, I], data: rng.normalArray(O * I))
        let b = Tensor(shape: [O], data: rng.normalArray(O))
        let dy = Tensor(shape: [N, O], data: rng.normalArray(N * O))
        var results: [[[Float]]] = []
        for threads in [1, 2, 3, 4, nil] {
            let y = Linear.forward(x, weight: w, bias: b, threads: threads)
            var dx = Tensor.zeros([N, I]), dw = Tensor.zeros([O, I])
            var db: Tensor? = Tensor.zeros([O])
            Linear.backward(dy: dy, x: x, weight: w, dx: &dx, dWeight: &dw, dBias: &db, threads: threads)
            results.append([y.data, dx.data, dw.data, db!.data])
        }
        for (k, r) in results.enumerated().dropFirst() {
            for (g, name) in ["y", "dx", "dw", "db"].enumerated() {
                #expect(r[g] == results[0][g], "\(name) \(shape) differs between 1 and \([2, 3, 4, -1][k - 1]) threads (-1: the global setting)")
            }
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let (N, I, O) = (4, 6, 5)
        var rng = RNG(seed: 3)
        let x = rng.normalArray(N * I), w = rng.normalArray(O * I), b = rng.normalArray(O)
        let dy = Tensor(shape: [N, O], data: rng.normalArray(N * O))
        func loss(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            dotDouble(Linear.forward(Tensor(shape: [N, I], data: x), weight: Tensor(shape: [O, I], data: w), bias: Tensor(shape: [O], data: b)).data, dy.data)
        }
        var dx = Tensor.zeros([N, I]), dw = Tensor.zeros([O, I])
        var db: Tensor? = Tensor.zeros([O])
        Linear.backward(dy: dy, x: Tensor(shape: [N, I], data: x), weight: Tensor(shape: [O, I], data: w), dx: &dx, dWeight: &dw, dBias: &db)
        let reports = [
            gradCheck("linear dx", input: x, analytic: dx.data) { loss($0, w, b) },
            gradCheck("linear dW", input: w, analytic: dw.data) { loss(x, $0, b) },
            gradCheck("linear db", input: b, analytic: db!.data) { loss(x, w, $0) },
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("linear.json", in: fixtures)
        let x = try f.tensor("x"), w = try f.tensor("w"), b = try f.tensor("b"), dy = try f.tensor("dy")
        var dx = Tensor.zeros(x.shape), dw = Tensor.zeros(w.shape)
        var db: Tensor? = Tensor.zeros(b.shape)
        Linear.backward(dy: dy, x: x, weight: w, dx: &dx, dWeight: &dw, dBias: &db)
        // PyTorch sums in its own order: both sides carry the Float32 error (.float32 reference).
        let I = w.shape[1], O = w.shape[0], N = x.count / I
        let naive = naiveLinear(x: x.data, w: w.data, b: b.data, dy: dy.data, N: N, I: I, O: O)
        let plain = naiveLinear(x: x.data, w: w.data, b: nil, dy: dy.data, N: N, I: I, O: O)
        let reports = [
            compareReduction("y", Linear.forward(x, weight: w, bias: b), try f.tensor("y"), magnitude: naive.yMag, terms: I + 1, reference: .float32),
            compareReduction("y no bias", Linear.forward(x, weight: w), try f.tensor("y_nobias"), magnitude: plain.yMag, terms: I, reference: .float32),
            compareReduction("dx", dx, try f.tensor("dx"), magnitude: naive.dxMag, terms: O, reference: .float32),
            compareReduction("dw", dw, try f.tensor("dw"), magnitude: naive.dwMag, terms: N, reference: .float32),
            compareReduction("db", db!, try f.tensor("db"), magnitude: naive.dbMag, terms: N, reference: .float32),
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
