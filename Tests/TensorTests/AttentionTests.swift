// AttentionTests: multi-head attention against a Double twin, finite differences, PyTorch, and a benchmark.
import Foundation
import Testing
import TestSupport
@testable import Tensor

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// One attention problem: inputs and options, with the kernel and the Double twin run on it.
private struct Problem {
    var size: Attention.Size
    var q, k, v: Tensor
    var bias: Tensor?
    var keyMask: Tensor?
    var causal: Bool
    var scale: Float
    var dropout: Float
    var seed: UInt64

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
    func naive(dOut: [Float], dropMask: [Float]?) -> [String: [Float]] {
        let (B, H, Tq, Tk, Dh) = (size.batch, size.heads, size.queryLength, size.keyLength, size.headDim)
        let HD = H * Dh
        var out = [Double](repeating: 0, count: size.queryCount), dq = out
        var dk = [Double](repeating: 0, count: size.keyCount), dv = dk
        var logits = [Double](repeating: 0, count: size.probsCount), probs = logits
        var dbias = [Double](repeating: 0, count: size.biasCount)
        func Q(_ b: Int, _ i: Int, _ h: Int, _ d: Int) -> Double { Double(q.data[(b * Tq + i) * HD + h * Dh + d]) }
        func K(_ b: Int, _ j: Int, _ h: Int, _ d: Int) -> Double { Double(k.data[(b * Tk + j) * HD + h * Dh + d]) }
        func V(_ b: Int, _ j: Int, _ h: Int, _ d: Int) -> Double { Double(v.data[(b * Tk + j) * HD + h * Dh + d]) }
        for b in 0..<B {
            for h in 0..<H {
                for i in 0..<Tq {
                    let base = ((b * H + h) * Tq + i) * Tk
                    var z = [Double](repeating: -.infinity, count: Tk)
                    for j in 0..<Tk {
                        var s = 0.0
                        for d in 0..<Dh { s += Q(b, i, h, d) * K(b, j, h, d) }
                        s = Double(scale) * s + Double(bias?.data[(h * Tq + i) * Tk + j] ?? 0)
                        logits[base + j] = s
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
                    let M = (0..<Tk).map { Double(dropMask?[base + $0] ?? 1) }
                    for j in 0..<Tk { probs[base + j] = p[j] }
                    for d in 0..<Dh {
                        var s = 0.0
                        for j in 0..<Tk { s += p[j] * M[j] * V(b, j, h, d) }
                        out[(b * Tq + i) * HD + h * Dh + d] = s
                    }
                    // Backward for this query row.
                    let g = (0..<Dh).map { Double(dOut[(b * Tq + i) * HD + h * Dh + $0]) }
                    var dP = [Double](repeating: 0, count: Tk)
                    for j in 0..<Tk {
                        var s = 0.0
                        for d in 0..<Dh { s += g[d] * V(b, j, h, d) }
                        dP[j] = s * M[j]
                        for d in 0..<Dh { dv[(b * Tk + j) * HD + h * Dh + d] += p[j] * M[j] * g[d] }
                    }
                    let dot = (0..<Tk).reduce(0.0) { $0 + dP[$1] * p[$1] }
                    for j in 0..<Tk {
                        let dS = p[j] * (dP[j] - dot)
                        dbias[(h * Tq + i) * Tk + j] += dS
                        for d in 0..<Dh {
                            dq[(b * Tq + i) * HD + h * Dh + d] += Double(scale) * dS * K(b, j, h, d)
                            dk[(b * Tk + j) * HD + h * Dh + d] += Double(scale) * dS * Q(b, i, h, d)
                        }
                    }
                }
            }
        }
        let f = { (a: [Double]) in a.map { Float($0) } }
        return ["out": f(out), "logits": f(logits), "probs": f(probs), "dq": f(dq), "dk": f(dk), "dv": f(dv), "dbias": f(dbias)]
    }

    /// The kernel's gradients for upstream dOut.
    func backward(dOut: Tensor, cache: Attention.Cache) -> [String: [Float]] {
        var dq = Tensor.zeros(q.shape), dk = Tensor.zeros(k.shape), dv = Tensor.zeros(v.shape)
        var dBias: Tensor? = Tensor.zeros([size.heads, size.queryLength, size.keyLength])
        Attention.backward(dOut: dOut, q: q, k: k, v: v, scale: scale, cache: cache, dq: &dq, dk: &dk, dv: &dv, dBias: &dBias)
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
    ]

    @Test(arguments: 0..<cases.count)
    func matchesNaive(index: Int) {
        let (s, bias, mask, causal, scale, dropout) = Self.cases[index]
        let pb = Problem(s, bias: bias, keyMask: mask, causal: causal, scale: scale, dropout: dropout, seed: UInt64(index + 1))
        let (out, cache, logits) = pb.forward()
        var rng = RNG(seed: 99)
        let dOut = Tensor(shape: out.shape, data: rng.normalArray(out.count))
        let naive = pb.naive(dOut: dOut.data, dropMask: cache.dropoutMask?.data)
        let got = pb.backward(dOut: dOut, cache: cache)
        var reports = [
            compare("out", out.data, naive["out"]!, atol: 1e-5),
            compare("logits", logits!.data, naive["logits"]!, atol: 1e-5),
            compare("probs", cache.probs.data, naive["probs"]!, atol: 1e-6),
        ]
        for key in ["dq", "dk", "dv", "dbias"] { reports.append(compare(key, got[key]!, naive[key]!, atol: 1e-5)) }
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
        let r = gradCheck("attention causal dq", input: pc.q.data, analytic: gc["dq"]!) { dotDouble(pc.forward(q: Tensor(shape: pc.q.shape, data: $0)).out.data, dc.data) }
        print(r)
        #expect(r.ok, "\(r)")
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
        // Gradients: atol 2e-6 instead of 1e-6. dq is a sum over keys of dS·k terms of size ~1 that
        // cancel, so Float32 rounding leaves ~1e-6 absolute error on small elements: element 96 of
        // cross dq is −0.0049958 in Float64, and PyTorch's own Float32 autograd gives −0.0049947,
        // bit-identical to ours (checked with torch 2.13.0). Values stay at rtol 1e-5.
        let reports = [
            compare("\(name) out", out, try t("out")), compare("\(name) logits", logits!, try t("logits")),
            compare("\(name) probs", cache.probs, try t("probs")), compare("\(name) dq", dq, try t("dq"), atol: 2e-6),
            compare("\(name) dk", dk, try t("dk"), atol: 2e-6), compare("\(name) dv", dv, try t("dv"), atol: 2e-6),
            compare("\(name) dbias", dBias!, try t("dbias"), atol: 2e-6),
        ]
        for r in reports {
            print(r)
            #expect(r.ok, "\(r)")
        }
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
        for key in results[0].keys.sorted() {
            let r = compare("serial vs parallel \(key)", results[1][key]!, results[0][key]!, atol: 1e-6)
            #expect(r.ok, "\(r)")
        }
    }

    /// Timing of the two (batch, head) strategies on FiD shapes; run with FIDQ_BENCH=1.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIDQ_BENCH"] != nil))
    func benchmarkStrategies() {
        let shapes = [
            ("T5-base encoder, 8 passages × 250 tokens", Attention.Size(batch: 8, heads: 12, queryLength: 250, keyLength: 250, headDim: 64)),
            ("T5-base decoder cross, 20 × 20·250 memory", Attention.Size(batch: 1, heads: 12, queryLength: 20, keyLength: 5000, headDim: 64)),
            ("BERT-base, 16 × 200 tokens", Attention.Size(batch: 16, heads: 12, queryLength: 200, keyLength: 200, headDim: 64)),
        ]
        let saved = Attention.parallelOverHeads
        defer { Attention.parallelOverHeads = saved }
        for (name, s) in shapes {
            let pb = Problem(s, bias: true, keyMask: true, causal: false, scale: 1, dropout: 0, seed: 1)
            let dOut = Tensor(shape: pb.q.shape, repeating: 0.01)
            for parallel in [false, true] {
                Attention.parallelOverHeads = parallel
                var best = (Double.infinity, Double.infinity)
                for _ in 0..<5 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let (_, cache, _) = pb.forward()
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    _ = pb.backward(dOut: dOut, cache: cache)
                    let t2 = DispatchTime.now().uptimeNanoseconds
                    best = (min(best.0, Double(t1 - t0) / 1e6), min(best.1, Double(t2 - t1) / 1e6))
                }
                print("attention bench \(name), \(Threads.count) threads, \(parallel ? "parallel over heads, BLAS 1 thread" : "serial heads, BLAS threaded"): forward \(String(format: "%.1f", best.0)) ms, backward \(String(format: "%.1f", best.1)) ms")
            }
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
