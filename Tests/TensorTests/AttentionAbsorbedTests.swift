// AttentionAbsorbedTests: the cross-attention that never forms keys or values, against a Double
// twin (within its running Float32 error bound), finite differences, and thread counts.
import Foundation
import Testing
import TestSupport
@testable import Tensor

/// One absorbed cross-attention problem: q (B, Tq, H·Dh), memory (B, Tk, D), key and value
/// weights (H·Dh, D), optional bias (H, Tq, Tk) and key mask (B, Tk).
private struct AbsorbedProblem {
    var size: Attention.Size
    var D: Int
    var q, x, wk, wv: [Float]
    var bias: [Float]?
    var keyMask: [Float]?
    var scale: Float
    var dropout: Float
    var seed: UInt64

    init(_ s: Attention.Size, width D: Int, bias: Bool, keyMask: Bool, scale: Float, dropout: Float, seed: UInt64) {
        var rng = RNG(seed: seed)
        size = s
        self.D = D
        let I = s.heads * s.headDim
        q = rng.normalArray(s.queryCount)
        x = rng.normalArray(s.batch * s.keyLength * D)
        wk = rng.normalArray(I * D, std: 1 / Float(D).squareRoot())
        wv = rng.normalArray(I * D, std: 1 / Float(D).squareRoot())
        self.bias = bias ? rng.normalArray(s.biasCount) : nil
        // About a quarter of the keys masked; every key of the last item when there are two or more.
        self.keyMask = keyMask
            ? (0..<(s.batch * s.keyLength)).map { i in
                s.batch > 1 && i >= (s.batch - 1) * s.keyLength ? 0 : (rng.nextFloat() < 0.25 ? 0 : 1)
            } : nil
        self.scale = scale
        self.dropout = dropout
        self.seed = seed
    }

    struct Forward {
        var out, folded, weighted, probs, logits: [Float]
        var mask: [Float]?
    }

    func forward(q: [Float]? = nil, x: [Float]? = nil, wk: [Float]? = nil, wv: [Float]? = nil, bias: [Float]? = nil,
                 threads: Int? = nil) -> Forward {
        let s = size, HTD = s.batch * s.heads * s.queryLength * D
        var f = Forward(out: .init(repeating: 0, count: s.queryCount), folded: .init(repeating: 0, count: HTD),
                        weighted: .init(repeating: 0, count: HTD), probs: .init(repeating: 0, count: s.probsCount),
                        logits: .init(repeating: 0, count: s.probsCount), mask: dropout > 0 ? .init(repeating: 0, count: s.probsCount) : nil)
        var scratch = [Float](repeating: .nan, count: max(1, Attention.absorbedForwardScratchCount(s, dropout: dropout)))
        var mask = f.mask ?? [0]
        var rng = RNG(seed: seed &+ 1)  // the same dropout mask on every call
        let (qv, xv, wkv, wvv, bv) = (q ?? self.q, x ?? self.x, wk ?? self.wk, wv ?? self.wv, bias ?? self.bias)
        let km = keyMask
        f.out.withUnsafeMutableBufferPointer { out in
            f.folded.withUnsafeMutableBufferPointer { fo in
                f.weighted.withUnsafeMutableBufferPointer { we in
                    f.probs.withUnsafeMutableBufferPointer { pr in
                        f.logits.withUnsafeMutableBufferPointer { lg in
                            mask.withUnsafeMutableBufferPointer { mk in
                                scratch.withUnsafeMutableBufferPointer { sc in
                                    Attention.absorbedForward(
                                        out: out.baseAddress!, folded: fo.baseAddress!, weighted: we.baseAddress!, probs: pr.baseAddress!,
                                        dropoutMask: dropout > 0 ? mk.baseAddress! : nil, logits: lg.baseAddress!, q: qv, memory: xv,
                                        keyWeight: wkv, valueWeight: wvv, bias: bv, keyMask: km, scale: scale, dropout: dropout,
                                        rng: &rng, size: s, width: D, scratch: sc.baseAddress!, threads: threads)
                                }
                            }
                        }
                    }
                }
            }
        }
        if f.mask != nil { f.mask = mask }
        return f
    }

    func backward(dOut: [Float], _ f: Forward, threads: Int? = nil) -> [String: [Float]] {
        let s = size, I = s.heads * s.headDim
        var dq = [Float](repeating: 0, count: s.queryCount), dx = [Float](repeating: 0, count: x.count)
        var dwk = [Float](repeating: 0, count: I * D), dwv = dwk, dbias = [Float](repeating: 0, count: s.biasCount)
        var scratch = [Float](repeating: .nan, count: Attention.absorbedBackwardScratchCount(s, width: D))
        dq.withUnsafeMutableBufferPointer { dq in
            dx.withUnsafeMutableBufferPointer { dx in
                dwk.withUnsafeMutableBufferPointer { dwk in
                    dwv.withUnsafeMutableBufferPointer { dwv in
                        dbias.withUnsafeMutableBufferPointer { db in
                            scratch.withUnsafeMutableBufferPointer { sc in
                                Attention.absorbedBackward(
                                    dq: dq.baseAddress!, dMemory: dx.baseAddress!, dKeyWeight: dwk.baseAddress!, dValueWeight: dwv.baseAddress!,
                                    dBias: db.baseAddress!, dOut: dOut, q: q, memory: x, keyWeight: wk, valueWeight: wv, folded: f.folded,
                                    weighted: f.weighted, probs: f.probs, dropoutMask: f.mask, scale: scale, size: s, width: D,
                                    scratch: sc.baseAddress!, threads: threads)
                            }
                        }
                    }
                }
            }
        }
        return ["dq": dq, "dx": dx, "dwk": dwk, "dwv": dwv, "dbias": dbias]
    }

    /// Plain loops in Double over the function the kernel computes (attention with k = x·Wkᵀ and
    /// v = x·Wvᵀ, in the absorbed order), given the kernel's dropout mask; alongside each value
    /// its Float32 error bound in units of u, by running error analysis as `Problem.naive` derives
    /// it (a reduction of K terms adds K·Σ|terms|, each operand's own bound carries through).
    /// Pass these to `compareReduction` with `terms: 1`.
    func naive(dOut: [Float], dropMask: [Float]?) -> (values: [String: [Float]], bounds: [String: [Double]]) {
        let (B, H, Tq, Tk, Dh) = (size.batch, size.heads, size.queryLength, size.keyLength, size.headDim)
        let HD = H * Dh, sc = Double(scale), asc = abs(sc)
        var out = [Double](repeating: 0, count: size.queryCount), dq = out, eOut = out, eDq = out
        var dx = [Double](repeating: 0, count: x.count), eDx = dx
        var dwk = [Double](repeating: 0, count: HD * D), dwv = dwk, eDwk = dwk, eDwv = dwk
        var logits = [Double](repeating: 0, count: size.probsCount), probs = logits, eLogits = logits, eProbs = logits
        var dbias = [Double](repeating: 0, count: size.biasCount), eDbias = dbias
        func X(_ b: Int, _ j: Int, _ e: Int) -> Double { Double(x[(b * Tk + j) * D + e]) }
        for b in 0..<B {
            for h in 0..<H {
                for i in 0..<Tq {
                    let base = ((b * H + h) * Tq + i) * Tk
                    let qd = (0..<Dh).map { Double(q[(b * Tq + i) * HD + h * Dh + $0]) }
                    func Wk(_ d: Int, _ e: Int) -> Double { Double(wk[(h * Dh + d) * D + e]) }
                    func Wv(_ d: Int, _ e: Int) -> Double { Double(wv[(h * Dh + d) * D + e]) }
                    // Folded query F (D) and its bound.
                    var F = [Double](repeating: 0, count: D), EF = F
                    for e in 0..<D {
                        for d in 0..<Dh {
                            F[e] += qd[d] * Wk(d, e)
                            EF[e] += Double(Dh + 1) * abs(qd[d] * Wk(d, e))
                        }
                    }
                    var z = [Double](repeating: -.infinity, count: Tk), El = [Double](repeating: 0, count: Tk)
                    for j in 0..<Tk {
                        var s = 0.0, sa = 0.0, se = 0.0
                        for e in 0..<D {
                            s += F[e] * X(b, j, e)
                            sa += abs(F[e] * X(b, j, e))
                            se += EF[e] * abs(X(b, j, e))
                        }
                        let bj = Double(bias?[(h * Tq + i) * Tk + j] ?? 0)
                        s = sc * s + bj
                        El[j] = asc * se + Double(D + 2) * (asc * sa + abs(bj))
                        logits[base + j] = s
                        eLogits[base + j] = El[j]
                        if (keyMask?[b * Tk + j] ?? 1) != 0 { z[j] = s }
                    }
                    let m = z.max()!
                    var p = [Double](repeating: 0, count: Tk), Ep = p
                    if m > -.infinity {
                        let ex = z.map { exp($0 - m) }
                        let sum = ex.reduce(0, +)
                        p = ex.map { $0 / sum }
                        var spread = 0.0
                        for j in 0..<Tk where z[j] > -.infinity { spread += p[j] * (El[j] + abs(z[j] - m)) }
                        for j in 0..<Tk where z[j] > -.infinity { Ep[j] = p[j] * (El[j] + abs(z[j] - m) + spread + Double(Tk + 12)) }
                    }
                    let M = (0..<Tk).map { Double(dropMask?[base + $0] ?? 1) }
                    let pd = (0..<Tk).map { p[$0] * M[$0] }
                    let Epd = (0..<Tk).map { M[$0] * Ep[$0] + pd[$0] }
                    for j in 0..<Tk {
                        probs[base + j] = p[j]
                        eProbs[base + j] = Ep[j]
                    }
                    // Weighted memory U (D), then out.
                    var U = [Double](repeating: 0, count: D), EU = U
                    for e in 0..<D {
                        for j in 0..<Tk {
                            U[e] += pd[j] * X(b, j, e)
                            EU[e] += Epd[j] * abs(X(b, j, e)) + Double(Tk + 1) * abs(pd[j] * X(b, j, e))
                        }
                    }
                    for d in 0..<Dh {
                        var s = 0.0, e2 = 0.0
                        for e in 0..<D {
                            s += Wv(d, e) * U[e]
                            e2 += abs(Wv(d, e)) * EU[e] + Double(D + 1) * abs(Wv(d, e) * U[e])
                        }
                        out[(b * Tq + i) * HD + h * Dh + d] = s
                        eOut[(b * Tq + i) * HD + h * Dh + d] = e2
                    }
                    // Backward for this query row.
                    let g = (0..<Dh).map { Double(dOut[(b * Tq + i) * HD + h * Dh + $0]) }
                    var G = [Double](repeating: 0, count: D), EG = G
                    for e in 0..<D {
                        for d in 0..<Dh {
                            G[e] += g[d] * Wv(d, e)
                            EG[e] += Double(Dh + 1) * abs(g[d] * Wv(d, e))
                            let w = (h * Dh + d) * D + e
                            dwv[w] += g[d] * U[e]
                            eDwv[w] += abs(g[d]) * EU[e] + Double(B * Tq + 1) * abs(g[d] * U[e])
                        }
                    }
                    var dP = [Double](repeating: 0, count: Tk), EdP = dP
                    for j in 0..<Tk {
                        var s = 0.0, sa = 0.0, se = 0.0
                        for e in 0..<D {
                            s += G[e] * X(b, j, e)
                            sa += abs(G[e] * X(b, j, e))
                            se += EG[e] * abs(X(b, j, e))
                        }
                        dP[j] = s * M[j]
                        EdP[j] = (se + Double(D + 2) * sa) * M[j]
                    }
                    let dot = (0..<Tk).reduce(0.0) { $0 + dP[$1] * p[$1] }
                    let Edot = (0..<Tk).reduce(0.0) { $0 + EdP[$1] * p[$1] + abs(dP[$1]) * Ep[$1] + Double(Tk) * abs(dP[$1] * p[$1]) }
                    var dS = [Double](repeating: 0, count: Tk), EdS = dS
                    for j in 0..<Tk {
                        dS[j] = p[j] * (dP[j] - dot)
                        EdS[j] = Ep[j] * abs(dP[j] - dot) + p[j] * (EdP[j] + Edot + abs(dP[j]) + abs(dot)) + abs(dS[j])
                        dbias[(h * Tq + i) * Tk + j] += dS[j]
                        eDbias[(h * Tq + i) * Tk + j] += EdS[j] + Double(B) * abs(dS[j])
                    }
                    // ∂F, then dq and dWk; dx from both paths.
                    var dF = [Double](repeating: 0, count: D), EdF = dF
                    for e in 0..<D {
                        for j in 0..<Tk {
                            dF[e] += sc * dS[j] * X(b, j, e)
                            EdF[e] += asc * (EdS[j] * abs(X(b, j, e)) + Double(Tk + 2) * abs(dS[j] * X(b, j, e)))
                        }
                    }
                    for j in 0..<Tk {
                        for e in 0..<D {
                            let t1 = pd[j] * G[e], t2 = sc * dS[j] * F[e], k = (b * Tk + j) * D + e
                            dx[k] += t1 + t2
                            eDx[k] += Epd[j] * abs(G[e]) + pd[j] * EG[e] + asc * (EdS[j] * abs(F[e]) + abs(dS[j]) * EF[e])
                                + Double(2 * H * Tq + 2) * (abs(t1) + abs(t2))
                        }
                    }
                    for d in 0..<Dh {
                        var s = 0.0, e2 = 0.0
                        for e in 0..<D {
                            s += dF[e] * Wk(d, e)
                            e2 += EdF[e] * abs(Wk(d, e)) + Double(D + 2) * abs(dF[e] * Wk(d, e))
                            let w = (h * Dh + d) * D + e
                            dwk[w] += qd[d] * dF[e]
                            eDwk[w] += abs(qd[d]) * EdF[e] + Double(B * Tq + 1) * abs(qd[d] * dF[e])
                        }
                        dq[(b * Tq + i) * HD + h * Dh + d] = s
                        eDq[(b * Tq + i) * HD + h * Dh + d] = e2
                    }
                }
            }
        }
        let f = { (a: [Double]) in a.map { Float($0) } }
        return (
            ["out": f(out), "logits": f(logits), "probs": f(probs), "dq": f(dq), "dx": f(dx), "dwk": f(dwk), "dwv": f(dwv), "dbias": f(dbias)],
            ["out": eOut, "logits": eLogits, "probs": eProbs, "dq": eDq, "dx": eDx, "dwk": eDwk, "dwv": eDwv, "dbias": eDbias])
    }
}

@Suite struct AttentionAbsorbedTests {
    static let cases: [(Attention.Size, Int, Bool, Bool, Float, Float)] = [
        // (size, width D, bias, keyMask, scale, dropout)
        (Attention.Size(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: 1), 1, false, false, 1, 0),
        (Attention.Size(batch: 2, heads: 3, queryLength: 4, keyLength: 9, headDim: 2), 7, true, true, 1, 0),
        (Attention.Size(batch: 3, heads: 2, queryLength: 5, keyLength: 40, headDim: 4), 16, true, true, 0.5, 0.2),
        // A FiD-like memory: few queries, many keys wider than one head.
        (Attention.Size(batch: 1, heads: 4, queryLength: 3, keyLength: 600, headDim: 8), 32, true, true, 1, 0.1),
        (Attention.Size(batch: 2, heads: 2, queryLength: 1, keyLength: 33, headDim: 8), 24, false, true, 1, 0),
    ]

    @Test(arguments: 0..<cases.count)
    func matchesNaive(index: Int) {
        let (s, D, bias, mask, scale, dropout) = Self.cases[index]
        let pb = AbsorbedProblem(s, width: D, bias: bias, keyMask: mask, scale: scale, dropout: dropout, seed: UInt64(31 + index))
        let f = pb.forward()
        var rng = RNG(seed: 77)
        let dOut = rng.normalArray(f.out.count)
        let (naive, bound) = pb.naive(dOut: dOut, dropMask: f.mask)
        var got = pb.backward(dOut: dOut, f)
        got["out"] = f.out
        got["logits"] = f.logits
        got["probs"] = f.probs
        for key in ["out", "logits", "probs", "dq", "dx", "dwk", "dwv", "dbias"] {
            let r = compareReduction(key, got[key]!, naive[key]!, magnitude: bound[key]!, terms: 1)
            #expect(r.ok, "case \(index) \(r)")
        }
        #expect(!f.out.contains { $0.isNaN }, "NaN in out")
        if let m = f.mask { #expect(m.allSatisfy { $0 == 0 || $0 == 1 / (1 - dropout) } && m.contains(0)) }
        if s.batch > 1 && mask {
            // The last item sees no key: zeros out, and no gradient flows into its memory rows.
            let last = (s.batch - 1) * s.queryLength * s.heads * s.headDim
            #expect(f.out[last...].allSatisfy { $0 == 0 })
            #expect(got["dx"]![((s.batch - 1) * s.keyLength * D)...].allSatisfy { $0 == 0 })
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let s = Attention.Size(batch: 2, heads: 2, queryLength: 3, keyLength: 5, headDim: 2)
        let pb = AbsorbedProblem(s, width: 3, bias: true, keyMask: false, scale: 0.7, dropout: 0.25, seed: 41)
        let f = pb.forward()
        var rng = RNG(seed: 42)
        let dOut = rng.normalArray(f.out.count)
        let got = pb.backward(dOut: dOut, f)
        func loss(_ r: AbsorbedProblem.Forward) -> Double { dotDouble(r.out, dOut) }
        // floor 1e-2 as in AttentionTests: O(1) gradients, ~1e-5 of Float32 finite-difference noise.
        let reports = [
            gradCheck("absorbed dq", input: pb.q, analytic: got["dq"]!, floor: 1e-2) { loss(pb.forward(q: $0)) },
            gradCheck("absorbed dx", input: pb.x, analytic: got["dx"]!, floor: 1e-2) { loss(pb.forward(x: $0)) },
            gradCheck("absorbed dwk", input: pb.wk, analytic: got["dwk"]!, floor: 1e-2) { loss(pb.forward(wk: $0)) },
            gradCheck("absorbed dwv", input: pb.wv, analytic: got["dwv"]!, floor: 1e-2) { loss(pb.forward(wv: $0)) },
            gradCheck("absorbed dbias", input: pb.bias!, analytic: got["dbias"]!, floor: 1e-2) { loss(pb.forward(bias: $0)) },
        ]
        for r in reports { #expect(r.ok, "\(r)") }
    }

    /// Every output and gradient is the same to the bit on any thread count (the products'
    /// tiles follow from the shape; rows and heads write disjoint outputs; items add in order).
    @Test func resultsDoNotDependOnThreadCount() {
        let s = Attention.Size(batch: 3, heads: 4, queryLength: 6, keyLength: 700, headDim: 16)
        let pb = AbsorbedProblem(s, width: 64, bias: true, keyMask: true, scale: 1, dropout: 0.1, seed: 43)
        var rng = RNG(seed: 44)
        let dOut = rng.normalArray(s.queryCount)
        let f1 = pb.forward(threads: 1)
        let one = pb.backward(dOut: dOut, f1, threads: 1)
        for threads in [2, 3, nil] {
            let f = pb.forward(threads: threads)
            #expect(f.out == f1.out && f.probs == f1.probs && f.folded == f1.folded && f.weighted == f1.weighted,
                    "forward differs between 1 and \(threads.map(String.init) ?? "the global") threads")
            let got = pb.backward(dOut: dOut, f, threads: threads)
            for key in one.keys.sorted() {
                #expect(got[key]! == one[key]!, "\(key) differs between 1 and \(threads.map(String.init) ?? "the global") threads")
            }
        }
    }
}
