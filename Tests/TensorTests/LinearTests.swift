// LinearTests: Linear against a naive Double twin, finite differences, and PyTorch golden values.
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

/// The plain-loop twin of Linear, in Double: y = x·Wᵀ + b and the three gradients (not accumulated).
private func naiveLinear(x: [Float], w: [Float], b: [Float]?, dy: [Float], N: Int, I: Int, O: Int)
    -> (y: [Float], dx: [Float], dw: [Float], db: [Float])
{
    var y = [Float](repeating: 0, count: N * O), dx = [Float](repeating: 0, count: N * I)
    var dw = [Float](repeating: 0, count: O * I), db = [Float](repeating: 0, count: O)
    for n in 0..<N {
        for o in 0..<O {
            var s = Double(b?[o] ?? 0)
            for i in 0..<I { s += Double(x[n * I + i]) * Double(w[o * I + i]) }
            y[n * O + o] = Float(s)
        }
        for i in 0..<I {
            var s = 0.0
            for o in 0..<O { s += Double(dy[n * O + o]) * Double(w[o * I + i]) }
            dx[n * I + i] = Float(s)
        }
    }
    for o in 0..<O {
        var sb = 0.0
        for n in 0..<N { sb += Double(dy[n * O + o]) }
        db[o] = Float(sb)
        for i in 0..<I {
            var s = 0.0
            for n in 0..<N { s += Double(dy[n * O + o]) * Double(x[n * I + i]) }
            dw[o * I + i] = Float(s)
        }
    }
    return (y, dx, dw, db)
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
            #expect(compare("y \(shape) bias=\(withBias)", y.data, naive.y, atol: 1e-5).ok)
            // Gradients start non-zero: backward must add, not overwrite.
            let start = rng.normalArray(N * I + O * I + O)
            var dx = Tensor(shape: [N, I], data: Array(start[0..<(N * I)]))
            var dw = Tensor(shape: [O, I], data: Array(start[(N * I)..<(N * I + O * I)]))
            var db: Tensor? = withBias ? Tensor(shape: [O], data: Array(start[(N * I + O * I)...])) : nil
            Linear.backward(dy: dy, x: x, weight: w, dx: &dx, dWeight: &dw, dBias: &db)
            let r1 = compare("dx \(shape)", dx.data, zip(naive.dx, start[0..<(N * I)]).map { $0 + $1 }, atol: 1e-5)
            let r2 = compare("dw \(shape)", dw.data, zip(naive.dw, start[(N * I)..<(N * I + O * I)]).map { $0 + $1 }, atol: 1e-5)
            #expect(r1.ok, "\(r1)")
            #expect(r2.ok, "\(r2)")
            if let db {
                let r3 = compare("db \(shape)", db.data, zip(naive.db, start[(N * I + O * I)...]).map { $0 + $1 }, atol: 1e-5)
                #expect(r3.ok, "\(r3)")
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
        let reports = [
            compare("y", Linear.forward(x, weight: w, bias: b), try f.tensor("y")),
            compare("y no bias", Linear.forward(x, weight: w), try f.tensor("y_nobias")),
            compare("dx", dx, try f.tensor("dx")),
            compare("dw", dw, try f.tensor("dw")),
            compare("db", db!, try f.tensor("db")),
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }
}
