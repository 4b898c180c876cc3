// AttentionTests: multi-head attention against a Double twin (within its running Float32 error
// bound), finite differences, PyTorch, thread-count independence, and a benchmark.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// One attention problem: inputs and options, with the kernel and the Double twin run on it.
struct Problem {
    var size: Attention.Size
    var q, k, v: Tensor
    var bias: Tensor?
    var keyMask: Tensor?
    var causal: Bool
    var scale: Float
    var dropout: Float
    var seed: UInt64

    /// A problem on given tensors (PyTorch's fixture), without dropout.
    init(size: Attention.Size, q: Tensor, k: Tensor, v: Tensor, bias: Tensor?, keyMask: Tensor?, causal: Bool, scale: Float) {
        self.size = size
        self.q = q
        self.k = k
        self.v = v
        self.bias = bias
        self.keyMask = keyMask
        self.causal = causal
        self.scale = scale
        self.dropout = 0
        self.seed = 0
    }

    init(_ s: Attention.Size, bias: Bool, keyMask: Bool, causal: Bool, scale: Float, dropout: Float, seed: UInt64) {
        var rng = RNG(seed: seed)
        size = s
        let HD = s.heads * s.headDim
        q = Tensor(shape: [s.batch, s.queryLength, HD], data: rng.normalArray(s.queryCount))
        k = Tensor(shape: [s.batch, s.keyLength, HD], data: rng.normalArray(s.keyCount))
        v = Tensor(shape: [s.batch, s.keyLength, HD], data: rng.normalArray(s.keyCount))
        self.bias = bias ? Tensor(shape: [s.heads, s.queryLength, s.keyLength], data: rng.normalArray(s.biasCount)) : nil
        // Mask about a quarter of the keys, and always key 0 of the last item (with causal, its
        // query 0 then sees nothing).
        self.keyMask = keyMask
            ? Tensor(shape: [s.batch, s.keyLength], data: (0..<(s.batch * s.keyLength)).map { i in
                i == (s.batch - 1) * s.keyLength ? 0 : (rng.nextFloat() < 0.25 ? 0 : 1)
            }) : nil
        self.causal = causal
        self.scale = scale
        self.dropout = dropout
        self.seed = seed
    }

    func forward(q: Tensor? = nil, k: Tensor? = nil, v: Tensor? = nil, bias: Tensor? = nil) -> (out: Tensor, cache: Attention.Cache, logits: Tensor?) {
        var rng = RNG(seed: seed &+ 1)  // the same dropout mask on every call
        return Attention.forward(
            q: q ?? self.q, k: k ?? self.k, v: v ?? self.v, heads: size.heads, scale: scale,
            bias: bias ?? self.bias, keyMask: keyMask, causal: causal, dropout: dropout, rng: &rng,
            returnLogits: true)
    }

    /// Plain loops in Double: out, logits, probs and every gradient for upstream dOut, given the
    /// dropout mask the kernel drew (so the twin checks everything but the random draw itself).
    ///
    /// Alongside each value, its Float32 error bound in units of u (running error analysis,
    /// Higham §3.3), under the same key in `bounds`: a reduction of K terms adds K·Σ|terms|, an element-wise
    /// step its operands' bounds plus one rounding of its result, and the softmax
    /// p_j = exp(z_j − m)/Σ_k exp(z_k − m) has relative bound
    /// E_z[j] + Σ_k p_k·E_z[k] + |z_j − m| + Σ_k p_k·|z_k − m| + Tk + 12
    /// (the logits' errors, the rounding of z − m, the sum's Tk, and the exp's ≤ 8 ulps).
    /// Pass these to `compareReduction` with `terms: 1`.
    func naive(dOut: [Float], dropMask: [Float]?) -> (values: [String: [Float]], bounds: [String: [Double]]) {
        let (B, H, Tq, Tk, Dh) = (size.batch, size.heads, size.queryLength, size.keyLength, size.headDim)
        let HD = H * Dh
        var out = [Double](repeating: 0, count: size.queryCount), dq = out
        var dk = [Double](repeating: 0, count: size.keyCount), dv = dk
        var logits = [Double](repeating: 0, count: size.probsCount), probs = logits
        var dbias = [Double](repeating: 0, count: size.biasCount)
        var eOut = out, eDq = out, eDk = dk, eDv = dk, eLogits = logits, eProbs = logits, eDbias = dbias
        func Q(_ b: Int, _ i: Int, _ h: Int, _ d: Int) -> Double { Double(q.data[(b * Tq + i) * HD + h * Dh + d]) }
        func K(_ b: Int, _ j: Int, _ h: Int, _ d: Int) -> Double { Double(k.data[(b * Tk + j) * HD + h * Dh + d]) }
        func V(_ b: Int, _ j: Int, _ h: Int, _ d: Int) -> Double { Double(v.data[(b * Tk + j) * HD + h * Dh + d]) }
        for b in 0..<B {
            for h in 0..<H {
                for i in 0..<Tq {
                    let base = ((b * H + h) * Tq + i) * Tk
                    var z = [Double](repeating: -.infinity, count: Tk)
                    var El = [Double](repeating: 0, count: Tk)
                    for j in 0..<Tk {
                        var s = 0.0, sa = 0.0
                        for d in 0..<Dh {
                            s += Q(b, i, h, d) * K(b, j, h, d)
                            sa += abs(Q(b, i, h, d) * K(b, j, h, d))
                        }
                        let bj = Double(bias?.data[(h * Tq + i) * Tk + j] ?? 0)
                        s = Double(scale) * s + bj
                        El[j] = Double(Dh + 2) * (abs(Double(scale)) * sa + abs(bj))
                        logits[base + j] = s
                        eLogits[base + j] = El[j]
                        let visible = (keyMask?.data[b * Tk + j] ?? 1) != 0 && (!causal || j <= i + Tk - Tq)
                        if visible { z[j] = s }
                    }
                    let m = z.max()!
                    var p = [Double](repeating: 0, count: Tk)
                    if m > -.infinity {
                        let e = z.map { exp($0 - m) }
                        let sum = e.reduce(0, +)
                        p = e.map { $0 / sum }
                    }
                    var Ep = [Double](repeating: 0, count: Tk)
                    if m > -.infinity {
                        var spread = 0.0  // Σ_k p_k·(E_z[k] + |z_k − m|)
                        for j in 0..<Tk where z[j] > -.infinity { spread += p[j] * (El[j] + abs(z[j] - m)) }
                        for j in 0..<Tk where z[j] > -.infinity { Ep[j] = p[j] * (El[j] + abs(z[j] - m) + spread + Double(Tk + 12)) }
                    }
                    let M = (0..<Tk).map { Double(dropMask?[base + $0] ?? 1) }
                    // Pd = p·M: p's bound scaled, plus one rounding.
                    let Epd = (0..<Tk).map { M[$0] * Ep[$0] + p[$0] * M[$0] }
                    for j in 0..<Tk {
                        probs[base + j] = p[j]
                        eProbs[base + j] = Ep[j]
                    }
                    for d in 0..<Dh {
                        var s = 0.0, e = 0.0
                        for j in 0..<Tk {
                            s += p[j] * M[j] * V(b, j, h, d)
                            e += Epd[j] * abs(V(b, j, h, d)) + Double(Tk) * abs(p[j] * M[j] * V(b, j, h, d))
                        }
                        out[(b * Tq + i) * HD + h * Dh + d] = s
                        eOut[(b * Tq + i) * HD + h * Dh + d] = e
                    }
                    // Backward for this query row.
                    let g = (0..<Dh).map { Double(dOut[(b * Tq + i) * HD + h * Dh + $0]) }
                    var dP = [Double](repeating: 0, count: Tk), EdP = dP
                    for j in 0..<Tk {
                        var s = 0.0, sa = 0.0
                        for d in 0..<Dh {
                            s += g[d] * V(b, j, h, d)
                            sa += abs(g[d] * V(b, j, h, d))
                        }
                        dP[j] = s * M[j]
                        EdP[j] = Double(Dh + 1) * sa * M[j]
                        for d in 0..<Dh {
                            let e = (b * Tk + j) * HD + h * Dh + d
                            dv[e] += p[j] * M[j] * g[d]
                            eDv[e] += Epd[j] * abs(g[d]) + Double(Tq) * abs(p[j] * M[j] * g[d])
                        }
                    }
                    let dot = (0..<Tk).reduce(0.0) { $0 + dP[$1] * p[$1] }
                    // The kernel's dot uses its own p: both factors' bounds, plus Tk roundings.
                    let Edot = (0..<Tk).reduce(0.0) { $0 + EdP[$1] * p[$1] + abs(dP[$1]) * Ep[$1] + Double(Tk) * abs(dP[$1] * p[$1]) }
                    for j in 0..<Tk {
                        let dS = p[j] * (dP[j] - dot)
                        let EdS = Ep[j] * abs(dP[j] - dot) + p[j] * (EdP[j] + Edot + abs(dP[j]) + abs(dot)) + abs(dS)
                        dbias[(h * Tq + i) * Tk + j] += dS
                        eDbias[(h * Tq + i) * Tk + j] += EdS + Double(B) * abs(dS)
                        for d in 0..<Dh {
                            let eq = (b * Tq + i) * HD + h * Dh + d, ek = (b * Tk + j) * HD + h * Dh + d
                            dq[eq] += Double(scale) * dS * K(b, j, h, d)
                            dk[ek] += Double(scale) * dS * Q(b, i, h, d)
                            eDq[eq] += abs(Double(scale)) * (EdS * abs(K(b, j, h, d)) + Double(Tk + 1) * abs(dS * K(b, j, h, d)))
                            eDk[ek] += abs(Double(scale)) * (EdS * abs(Q(b, i, h, d)) + Double(Tq + 1) * abs(dS * Q(b, i, h, d)))
                        }
                    }
                }
            }
        }
        let f = { (a: [Double]) in a.map { Float($0) } }
        return (
            ["out": f(out), "logits": f(logits), "probs": f(probs), "dq": f(dq), "dk": f(dk), "dv": f(dv), "dbias": f(dbias)],
            ["out": eOut, "logits": eLogits, "probs": eProbs, "dq": eDq, "dk": eDk, "dv": eDv, "dbias": eDbias])
    }

    /// The kernel's gradients for upstream dOut.
    func backward(dOut: Tensor, cache: Attention.Cache, threads: Int? = nil) -> [String: [Float]] {
        var dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
        var dBias: Tensor? = Tensor.zeros([size.heads, size.queryLength, size.keyLength])
        Attention.backward(dOut: dOut, q: q, k: k, v: v, scale: scale, cache: cache, dq: &dq, dk: &dk, dv: &dv, dBias: &dBias, threads: threads)
        return ["dq": dq.data, "dk": dk.data, "dv": dv.data, "dbias": dBias!.data]
    }
}

@Suite(.serialized) struct AttentionTests {
    static let cases: [(Attention.Size, Bool, Bool, Bool, Float, Float)] = [
        // (size, bias, keyMask, causal, scale, dropout)
        (Attention.Size(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: 1), false, false, false, 1, 0),
        (Attention.Size(batch: 3, heads: 2, queryLength: 5, keyLength: 7, headDim: 3), true, true, false, 1, 0),
        (Attention.Size(batch: 2, heads: 3, queryLength: 6, keyLength: 6, headDim: 8), true, true, true, 0.35, 0),
        (Attention.Size(batch: 2, heads: 4, queryLength: 3, keyLength: 9, headDim: 5), true, true, true, 1, 0),
        (Attention.Size(batch: 3, heads: 4, queryLength: 17, keyLength: 33, headDim: 16), true, true, false, 0.25, 0.2),
        // More items than Attention.maxBiasGroups: dBias summed in groups of 2.
        (Attention.Size(batch: 11, heads: 2, queryLength: 4, keyLength: 6, headDim: 4), true, true, false, 1, 0.1),
        // One query, as a greedy decoding step: the products run as gemv (GemmTests covers its tiles).
        (Attention.Size(batch: 2, heads: 3, queryLength: 1, keyLength: 5000, headDim: 64), true, true, false, 0.5, 0),
    ]

    @Test(arguments: 0..<cases.count)
    func matchesNaive(index: Int) {
        let (s, bias, mask, causal, scale, dropout) = Self.cases[index]
        let pb = Problem(s, bias: bias, keyMask: mask, causal: causal, scale: scale, dropout: dropout, seed: UInt64(index + 1))
        let (out, cache, logits) = pb.forward()
        var rng = RNG(seed: 99)
        let dOut = Tensor(shape: out.shape, data: rng.normalArray(out.count))
        let (naive, bound) = pb.naive(dOut: dOut.data, dropMask: cache.dropoutMask?.data)
        var got = pb.backward(dOut: dOut, cache: cache)
        got["out"] = out.data
        got["logits"] = logits!.data
        got["probs"] = cache.probs.data
        var reports: [ReductionReport] = []
        for key in ["out", "logits", "probs", "dq", "dk", "dv", "dbias"] {
            reports.append(compareReduction(key, got[key]!, naive[key]!, magnitude: bound[key]!, terms: 1))
        }
        for r in reports { #expect(r.ok, "case \(index) \(r)") }
        #expect(!out.data.contains { $0.isNaN }, "NaN in out")
        if let m = cache.dropoutMask {
            #expect(m.data.allSatisfy { $0 == 0 || $0 == 1 / (1 - dropout) } && m.data.contains(0))
        }
    }

    @Test func queryWithNoVisibleKeyGetsZeros() {
        let s = Attention.Size(batch: 2, heads: 2, queryLength: 4, keyLength: 4, headDim: 3)
        let pb = Problem(s, bias: true, keyMask: true, causal: true, scale: 1, dropout: 0, seed: 5)
        let (out, cache, _) = pb.forward()
        // Item 1 has key 0 masked, so with causal its query 0 sees nothing.
        let HD = 6
        #expect(Array(out.data[(4 * HD)..<(5 * HD)]) == [Float](repeating: 0, count: HD))
        #expect(!out.data.contains { $0.isNaN } && !cache.probs.data.contains { $0.isNaN })
        let got = pb.backward(dOut: Tensor(shape: out.shape, repeating: 1), cache: cache)
        #expect(!got.values.contains { $0.contains { $0.isNaN } })
    }

    @Test func gradientsMatchFiniteDifferences() {
        let s = Attention.Size(batch: 2, heads: 2, queryLength: 3, keyLength: 4, headDim: 3)
        let pb = Problem(s, bias: true, keyMask: true, causal: false, scale: 0.7, dropout: 0.25, seed: 11)
        let (out, cache, _) = pb.forward()
        var rng = RNG(seed: 12)
        let dOut = Tensor(shape: out.shape, data: rng.normalArray(out.count))
        let got = pb.backward(dOut: dOut, cache: cache)
        // floor 1e-2: gradients here are O(1), and the Float32 loss (~5) carries ~1e-5 of
        // finite-difference noise, so elements below 1e-2 are checked to 1e-4 absolute.
        let reports = [
            gradCheck("attention dq", input: pb.q.data, analytic: got["dq"]!, floor: 1e-2) { dotDouble(pb.forward(q: Tensor(shape: pb.q.shape, data: $0)).out.data, dOut.data) },
            gradCheck("attention dk", input: pb.k.data, analytic: got["dk"]!, floor: 1e-2) { dotDouble(pb.forward(k: Tensor(shape: pb.k.shape, data: $0)).out.data, dOut.data) },
            gradCheck("attention dv", input: pb.v.data, analytic: got["dv"]!, floor: 1e-2) { dotDouble(pb.forward(v: Tensor(shape: pb.v.shape, data: $0)).out.data, dOut.data) },
            gradCheck("attention dbias", input: pb.bias!.data, analytic: got["dbias"]!, floor: 1e-2) { dotDouble(pb.forward(bias: Tensor(shape: pb.bias!.shape, data: $0)).out.data, dOut.data) },
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
        // Causal as well, without dropout.
        let pc = Problem(s.with(queryLength: 4), bias: true, keyMask: false, causal: true, scale: 1, dropout: 0, seed: 13)
        let (oc, cc, _) = pc.forward()
        let dc = Tensor(shape: oc.shape, data: rng.normalArray(oc.count))
        let gc = pc.backward(dOut: dc, cache: cc)
        // Every input of the causal pass too (keys past a query get no gradient from it).
        let causal = [
            gradCheck("attention causal dq", input: pc.q.data, analytic: gc["dq"]!) { dotDouble(pc.forward(q: Tensor(shape: pc.q.shape, data: $0)).out.data, dc.data) },
            gradCheck("attention causal dk", input: pc.k.data, analytic: gc["dk"]!, floor: 1e-2) { dotDouble(pc.forward(k: Tensor(shape: pc.k.shape, data: $0)).out.data, dc.data) },
            gradCheck("attention causal dv", input: pc.v.data, analytic: gc["dv"]!, floor: 1e-2) { dotDouble(pc.forward(v: Tensor(shape: pc.v.shape, data: $0)).out.data, dc.data) },
            gradCheck("attention causal dbias", input: pc.bias!.data, analytic: gc["dbias"]!, floor: 1e-2) {
                dotDouble(pc.forward(bias: Tensor(shape: pc.bias!.shape, data: $0)).out.data, dc.data)
            },
        ]
        for r in causal {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    @Test(arguments: ["cross", "self"])
    func matchesPyTorch(name: String) throws {
        let f = try Fixture("attention.json", in: fixtures)
        func t(_ key: String) throws -> Tensor { try f.tensor(name + "_" + key) }
        let q = try t("q"), k = try t("k"), v = try t("v"), bias = try t("bias")
        let heads = Int(try f.number(name + "_heads")), scale = Float(try f.number(name + "_scale"))
        var rng = RNG(seed: 0)
        let (out, cache, logits) = Attention.forward(
            q: q, k: k, v: v, heads: heads, scale: scale, bias: bias, keyMask: try t("keymask"),
            causal: name == "self", rng: &rng, returnLogits: true)
        var dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
        var dBias: Tensor? = Tensor.zeros(bias.shape)
        Attention.backward(dOut: try t("dout"), q: q, k: k, v: v, scale: scale, cache: cache, dq: &dq, dk: &dk, dv: &dv, dBias: &dBias)
        // PyTorch sums in its own order: each value within both sides' Float32 bounds (.float32),
        // from the Double twin run on the fixture's inputs.
        let size = cache.size
        let pb = Problem(
            size: size, q: q, k: k, v: v, bias: bias, keyMask: try t("keymask"), causal: name == "self",
            scale: scale)
        let (_, bound) = pb.naive(dOut: try t("dout").data, dropMask: nil)
        let reports = [
            compareReduction("\(name) out", out, try t("out"), magnitude: bound["out"]!, terms: 1, reference: .float32),
            compareReduction("\(name) logits", logits!, try t("logits"), magnitude: bound["logits"]!, terms: 1, reference: .float32),
            compareReduction("\(name) probs", cache.probs, try t("probs"), magnitude: bound["probs"]!, terms: 1, reference: .float32),
            compareReduction("\(name) dq", dq, try t("dq"), magnitude: bound["dq"]!, terms: 1, reference: .float32),
            compareReduction("\(name) dk", dk, try t("dk"), magnitude: bound["dk"]!, terms: 1, reference: .float32),
            compareReduction("\(name) dv", dv, try t("dv"), magnitude: bound["dv"]!, terms: 1, reference: .float32),
            compareReduction("\(name) dbias", dBias!, try t("dbias"), magnitude: bound["dbias"]!, terms: 1, reference: .float32),
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
    }

    /// Without a probabilities buffer (no backward follows) each head's block lives in a scratch:
    /// out and logits are the same bits as with one, dropout included, on every case.
    @Test(arguments: 0..<cases.count)
    func unkeptProbabilitiesGiveTheSameBits(index: Int) {
        let (s, bias, mask, causal, scale, dropout) = Self.cases[index]
        let pb = Problem(s, bias: bias, keyMask: mask, causal: causal, scale: scale, dropout: dropout, seed: UInt64(40 + index))
        func run(keep: Bool) -> (out: [Float], logits: [Float]) {
            var out = [Float](repeating: .nan, count: s.queryCount), logits = [Float](repeating: .nan, count: s.probsCount)
            var probs = [Float](repeating: 0, count: s.probsCount), dropMask = [Float](repeating: 0, count: s.probsCount)
            var rng = RNG(seed: 7)
            pb.q.withUnsafeBufferPointer { q in pb.k.withUnsafeBufferPointer { k in pb.v.withUnsafeBufferPointer { v in
                let bias = pb.bias?.data, keyMask = pb.keyMask?.data
                bias.withOptionalPointer { bias in keyMask.withOptionalPointer { keyMask in
                    probs.withUnsafeMutableBufferPointer { probs in dropMask.withUnsafeMutableBufferPointer { dm in
                        Attention.forward(
                            out: &out, probs: keep ? probs.baseAddress! : nil, dropoutMask: dropout > 0 ? dm.baseAddress! : nil,
                            logits: &logits, q: q.baseAddress!, k: k.baseAddress!, v: v.baseAddress!, bias: bias, keyMask: keyMask,
                            causal: causal, scale: scale, dropout: dropout, rng: &rng, size: s)
                    } }
                } }
            } } }
            return (out, logits)
        }
        let kept = run(keep: true), unkept = run(keep: false)
        #expect(kept.out.map(\.bitPattern) == unkept.out.map(\.bitPattern) && !kept.out.contains { $0.isNaN })
        #expect(kept.logits.map(\.bitPattern) == unkept.logits.map(\.bitPattern))
    }

    @Test func serialAndParallelPathsAgree() {
        let s = Attention.Size(batch: 3, heads: 4, queryLength: 9, keyLength: 13, headDim: 8)
        let pb = Problem(s, bias: true, keyMask: true, causal: true, scale: 0.5, dropout: 0.1, seed: 21)
        var rng = RNG(seed: 22)
        let dOut = Tensor(shape: pb.q.shape, data: rng.normalArray(pb.q.count))
        let saved = Attention.parallelOverHeads
        defer { Attention.parallelOverHeads = saved }
        var results: [[String: [Float]]] = []
        for parallel in [false, true] {
            Attention.parallelOverHeads = parallel
            let (out, cache, _) = pb.forward()
            var g = pb.backward(dOut: dOut, cache: cache)
            g["out"] = out.data
            results.append(g)
        }
        // Both are Float32 computations: each within the bound of the Double twin's, both ways.
        let (_, bound) = pb.naive(dOut: dOut.data, dropMask: pb.forward().cache.dropoutMask?.data)
        for key in results[0].keys.sorted() {
            let r = compareReduction("serial vs parallel \(key)", results[1][key]!, results[0][key]!, magnitude: bound[key]!, terms: 1, reference: .float32)
            #expect(r.ok, "\(r)")
        }
    }

    /// dBias sums over batch items that run on different threads: fixed item groups added in
    /// order make it, and every other gradient, the same to the bit on any thread count. Batch 5
    /// has one item per group; batch 19 groups of 3 (`Attention.maxBiasGroups` = 8). The
    /// 128×128×64 heads are past OpenBLAS's multithreading threshold: on one thread they must not
    /// run on the BLAS pool either (its sgemm rounds differently on different pool sizes).
    @Test(arguments: [(5, 11, 8), (19, 11, 8), (3, 128, 64)])
    func backwardDoesNotDependOnThreadCount(shape: (batch: Int, length: Int, headDim: Int)) {
        let s = Attention.Size(batch: shape.batch, heads: 2, queryLength: shape.length, keyLength: shape.length + 2, headDim: shape.headDim)
        let pb = Problem(s, bias: true, keyMask: true, causal: false, scale: 0.5, dropout: 0.1, seed: 23)
        var rng = RNG(seed: 24)
        let dOut = Tensor(shape: pb.q.shape, data: rng.normalArray(pb.q.count))
        let (_, cache, _) = pb.forward()
        let one = pb.backward(dOut: dOut, cache: cache, threads: 1)
        for threads in [2, 3, 4, nil] {
            let got = pb.backward(dOut: dOut, cache: cache, threads: threads)
            for key in one.keys.sorted() {
                #expect(got[key]! == one[key]!, "\(key) differs between 1 and \(threads.map(String.init) ?? "the global") threads")
            }
        }
    }

    /// `fewQueries` (a decoding step's one pass over all heads' keys and values) against the
    /// Double twin within its Float32 bound, on shapes past one key chunk with a ragged last
    /// chunk, beams as queries, and a head width that is not a multiple of 16; and the same to
    /// the bit on any thread count.
    @Test(arguments: [
        Attention.Size(batch: 2, heads: 3, queryLength: 1, keyLength: 700, headDim: 64),
        Attention.Size(batch: 3, heads: 2, queryLength: 4, keyLength: 300, headDim: 5),
        Attention.Size(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: 1),
    ])
    func fewQueriesMatchesNaive(size s: Attention.Size) {
        let pb = Problem(s, bias: true, keyMask: true, causal: false, scale: 0.5, dropout: 0, seed: 31)
        let (naive, bound) = pb.naive(dOut: [Float](repeating: 0, count: s.queryCount), dropMask: nil)
        func run(threads: Int?) -> (out: [Float], probs: [Float], logits: [Float]) {
            var out = [Float](repeating: .nan, count: s.queryCount)
            var probs = [Float](repeating: .nan, count: s.probsCount), logits = probs
            var scratch = [Float](repeating: .nan, count: Attention.fewQueriesScratchCount(s))
            pb.q.withUnsafeBufferPointer { q in pb.k.withUnsafeBufferPointer { k in pb.v.withUnsafeBufferPointer { v in
            pb.bias!.withUnsafeBufferPointer { bias in pb.keyMask!.withUnsafeBufferPointer { mask in
                Attention.fewQueries(
                    out: &out, probs: &probs, logits: &logits, q: q.baseAddress!, k: k.baseAddress!, v: v.baseAddress!,
                    bias: bias.baseAddress!, keyMask: mask.baseAddress!, scale: pb.scale, size: s, scratch: &scratch, threads: threads)
            } } } } }
            return (out, probs, logits)
        }
        let one = run(threads: 1)
        for (key, got) in [("out", one.out), ("probs", one.probs), ("logits", one.logits)] {
            let r = compareReduction("fewQueries \(key)", got, naive[key]!, magnitude: bound[key]!, terms: 1)
            #expect(r.ok, "\(s) \(r)")
        }
        for threads in [2, 3, nil] {
            let got = run(threads: threads)
            #expect(got.out == one.out && got.probs == one.probs && got.logits == one.logits,
                    "fewQueries differs between 1 and \(threads.map(String.init) ?? "the global") threads")
        }
    }
}

extension Attention.Size {
    fileprivate func with(queryLength: Int) -> Attention.Size {
        var s = self
        s.queryLength = queryLength
        s.keyLength = queryLength
        return s
    }
}

extension Optional where Wrapped == [Float] {
    /// The array's base address, or nil for nil.
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a = self else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
