// ActivationsTests: ReLU, GELU (erf, tanh) and gated GELU against Double twins, finite differences, PyTorch.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// gelu and gelu′ in Double, straight from the formulas (erfc and σ forms, so the tails for
/// very negative x keep their relative precision).
private func naiveGELU(_ x: Double, _ a: GELU.Approximation) -> (Double, Double) {
    switch a {
    case .none:
        let cdf = 0.5 * erfc(-x / 2.0.squareRoot())
        return (x * cdf, cdf + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot())
    case .tanh:
        // 0.5·(1 + tanh(u)) = σ(2u), written so the Double twin has no cancellation either.
        let c = (2 / Double.pi).squareRoot()
        let e = exp(-2 * c * (x + 0.044715 * x * x * x))
        let s = 1 / (1 + e), oneMinusS = e / (1 + e)
        return (x * s, s + 2 * x * s * oneMinusS * c * (1 + 3 * 0.044715 * x * x))
    }
}

private func apply(_ x: [Float], _ f: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void) -> [Float] {
    Tensor(shape: [x.count], data: x).mapElements(f).data
}

private func gradient(
    _ x: [Float], _ dy: [Float], _ f: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void
) -> [Float] {
    var dx = [Float](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer { px in
        dy.withUnsafeBufferPointer { pg in
            dx.withUnsafeMutableBufferPointer { pd in f(pd.baseAddress!, pg.baseAddress!, px.baseAddress!, x.count) }
        }
    }
    return dx
}

@Suite struct ActivationsTests {
    // 40_001 elements: more than one parallel chunk, and not a multiple of any vector width.
    static let count = 40_001

    @Test(arguments: [GELU.Approximation.none, .tanh])
    func geluMatchesNaive(approximate: GELU.Approximation) {
        var rng = RNG(seed: 1)
        let x = rng.uniformArray(Self.count, -8, 8), dy = rng.normalArray(Self.count)
        let y = apply(x) { GELU.forward(out: $0, x: $1, count: $2, approximate: approximate) }
        let dx = gradient(x, dy) { GELU.backward(dx: $0, dy: $1, x: $2, count: $3, approximate: approximate) }
        let naive = x.map { naiveGELU(Double($0), approximate) }
        let r1 = compare("gelu \(approximate)", y, naive.map { Float($0.0) })
        let r2 = compare("gelu′ \(approximate)", dx, zip(naive, dy).map { Float($0.1 * Double($1)) })
        print(r1, r2, separator: "\n")
        #expect(r1.ok, "\(r1)")
        #expect(r2.ok, "\(r2)")
    }

    /// T5 v1.1's gated gate against its Double twin: out = gelu(g)·l, dGate += dy·l·gelu′(g),
    /// dLinear += dy·gelu(g) (accumulated onto what the buffers held).
    @Test(arguments: [GELU.Approximation.none, .tanh])
    func gatedGELUMatchesNaive(approximate: GELU.Approximation) {
        var rng = RNG(seed: 5)
        let n = Self.count
        let g = rng.uniformArray(n, -8, 8), l = rng.normalArray(n), dy = rng.normalArray(n)
        let g0 = rng.normalArray(n), l0 = rng.normalArray(n)
        var out = [Float](repeating: 0, count: n), dg = g0, dl = l0
        g.withUnsafeBufferPointer { pg in
            l.withUnsafeBufferPointer { pl in
                dy.withUnsafeBufferPointer { py in
                    out.withUnsafeMutableBufferPointer { GatedGELU.forward(out: $0.baseAddress!, gate: pg.baseAddress!, linear: pl.baseAddress!, count: n, approximate: approximate) }
                    dg.withUnsafeMutableBufferPointer { pdg in
                        dl.withUnsafeMutableBufferPointer { pdl in
                            GatedGELU.backward(dGate: pdg.baseAddress!, dLinear: pdl.baseAddress!, dy: py.baseAddress!, gate: pg.baseAddress!,
                                               linear: pl.baseAddress!, count: n, approximate: approximate)
                        }
                    }
                }
            }
        }
        let naive = g.map { naiveGELU(Double($0), approximate) }
        let wantOut = (0..<n).map { Float(naive[$0].0 * Double(l[$0])) }
        let wantDG = (0..<n).map { Float(Double(g0[$0]) + Double(dy[$0]) * Double(l[$0]) * naive[$0].1) }
        let wantDL = (0..<n).map { Float(Double(l0[$0]) + Double(dy[$0]) * naive[$0].0) }
        for r in [compare("gated out \(approximate)", out, wantOut), compare("dGate \(approximate)", dg, wantDG),
                  compare("dLinear \(approximate)", dl, wantDL)] {
            #expect(r.ok, "\(r)")
        }
    }

    @Test func reluMatchesNaive() {
        var rng = RNG(seed: 2)
        let x = rng.uniformArray(Self.count, -1, 1), dy = rng.normalArray(Self.count)
        let y = apply(x) { ReLU.forward(out: $0, x: $1, count: $2) }
        #expect(y == x.map { max($0, 0) })
        var dx = rng.normalArray(Self.count)
        let start = dx
        x.withUnsafeBufferPointer { px in
            dy.withUnsafeBufferPointer { pg in
                dx.withUnsafeMutableBufferPointer { ReLU.backward(dx: $0.baseAddress!, dy: pg.baseAddress!, x: px.baseAddress!, count: Self.count) }
            }
        }
        #expect(dx == (0..<Self.count).map { x[$0] > 0 ? start[$0] + dy[$0] : start[$0] })
    }

    /// The fused backward through ReLU and a dropout after it writes dy·mask where x > 0 and 0
    /// elsewhere (over stale values in out), with and without a mask.
    @Test func reluMaskedBackwardMatchesNaive() {
        var rng = RNG(seed: 4)
        let x = rng.uniformArray(Self.count, -1, 1), dy = rng.normalArray(Self.count)
        let mask = (0..<Self.count).map { _ in rng.nextFloat() < 0.1 ? Float(0) : 1 / 0.9 }
        for useMask in [true, false] {
            var out = rng.normalArray(Self.count)
            x.withUnsafeBufferPointer { px in dy.withUnsafeBufferPointer { pg in mask.withUnsafeBufferPointer { pm in
                out.withUnsafeMutableBufferPointer {
                    ReLU.backward(out: $0.baseAddress!, dy: pg.baseAddress!, dropoutMask: useMask ? pm.baseAddress! : nil,
                                  x: px.baseAddress!, count: Self.count)
                }
            } } }
            #expect(out == (0..<Self.count).map { x[$0] > 0 ? dy[$0] * (useMask ? mask[$0] : 1) : 0 }, "mask \(useMask)")
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        var rng = RNG(seed: 3)
        // Keep ReLU inputs off its kink at 0 by more than the finite-difference reach (2·eps).
        let x = rng.uniformArray(64, -4, 4).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        let dy = rng.normalArray(64)
        let gate = rng.uniformArray(64, -4, 4), lin = rng.normalArray(64)
        var reports: [GradCheckReport] = []
        for a in [GELU.Approximation.none, .tanh] {
            let dx = gradient(x, dy) { GELU.backward(dx: $0, dy: $1, x: $2, count: $3, approximate: a) }
            reports.append(gradCheck("gelu \(a)", input: x, analytic: dx, eps: 1e-2) { x in
                dotDouble(apply(x) { GELU.forward(out: $0, x: $1, count: $2, approximate: a) }, dy)
            })
        }
        let kinks = Set(x.indices.filter { abs(x[$0]) < 0.02 })
        let drelu = gradient(x, dy) { ReLU.backward(dx: $0, dy: $1, x: $2, count: $3) }
        reports.append(gradCheck("relu", input: x, analytic: drelu, skip: kinks) { x in
            dotDouble(apply(x) { ReLU.forward(out: $0, x: $1, count: $2) }, dy)
        })
        let (dGate, dLin) = gatedBackward(gate, lin, dy)
        reports.append(gradCheck("gated gate", input: gate, analytic: dGate) { dotDouble(gatedForward($0, lin), dy) })
        reports.append(gradCheck("gated linear", input: lin, analytic: dLin) { dotDouble(gatedForward(gate, $0), dy) })
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    @Test func matchesPyTorch() throws {
        let f = try Fixture("activations.json", in: fixtures)
        let x = try f.tensor("x").data
        var reports: [CloseReport] = []
        let kernels: [(String, (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void,
                       (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void)] = [
            ("relu", { ReLU.forward(out: $0, x: $1, count: $2) }, { ReLU.backward(dx: $0, dy: $1, x: $2, count: $3) }),
            ("gelu", { GELU.forward(out: $0, x: $1, count: $2) }, { GELU.backward(dx: $0, dy: $1, x: $2, count: $3) }),
            ("gelu_tanh", { GELU.forward(out: $0, x: $1, count: $2, approximate: .tanh) }, { GELU.backward(dx: $0, dy: $1, x: $2, count: $3, approximate: .tanh) }),
            ("gelu_new", { GELU.forward(out: $0, x: $1, count: $2, approximate: .tanh) }, { GELU.backward(dx: $0, dy: $1, x: $2, count: $3, approximate: .tanh) }),
        ]
        for (name, fwd, bwd) in kernels {
            reports.append(compare(name, apply(x, fwd), try f.tensor(name).data))
            reports.append(compare(name + " dx", gradient(x, try f.tensor(name + "_dy").data, bwd), try f.tensor(name + "_dx").data))
        }
        let gate = try f.tensor("gate").data, lin = try f.tensor("lin").data
        let (dGate, dLin) = gatedBackward(gate, lin, try f.tensor("gated_dy").data)
        reports.append(compare("gated", gatedForward(gate, lin), try f.tensor("gated").data))
        reports.append(compare("gated dgate", dGate, try f.tensor("gated_dgate").data))
        reports.append(compare("gated dlin", dLin, try f.tensor("gated_dlin").data))
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    private func gatedForward(_ gate: [Float], _ lin: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: gate.count)
        gate.withUnsafeBufferPointer { pg in
            lin.withUnsafeBufferPointer { pl in
                out.withUnsafeMutableBufferPointer { GatedGELU.forward(out: $0.baseAddress!, gate: pg.baseAddress!, linear: pl.baseAddress!, count: gate.count) }
            }
        }
        return out
    }

    private func gatedBackward(_ gate: [Float], _ lin: [Float], _ dy: [Float]) -> ([Float], [Float]) {
        var dGate = [Float](repeating: 0, count: gate.count), dLin = dGate
        gate.withUnsafeBufferPointer { pg in
            lin.withUnsafeBufferPointer { pl in
                dy.withUnsafeBufferPointer { py in
                    dGate.withUnsafeMutableBufferPointer { dg in
                        dLin.withUnsafeMutableBufferPointer { dl in
                            GatedGELU.backward(dGate: dg.baseAddress!, dLinear: dl.baseAddress!, dy: py.baseAddress!, gate: pg.baseAddress!, linear: pl.baseAddress!, count: gate.count)
                        }
                    }
                }
            }
        }
        return (dGate, dLin)
    }
}
