// AttentionRaggedTests: attention over items packed without their trailing padding is the padded
// batch, trailing keys masked, at each item's kept rows (against the Double twin of the padded
// batch, within its Float32 bound), with and without dropout; its gradients are the same bits on
// any thread count.
import Testing
import TestSupport
@testable import Tensor

struct AttentionRaggedTests {
    /// Items of 9, 4, 0, 1 and 7 kept rows of L = 9; item 4 also has a masked key inside (a hole).
    static let lengths = [9, 4, 0, 1, 7], L = 9, hole = (item: 4, key: 2)

    /// The padded problem: item b's keys from lengths[b] on masked, and the hole.
    static func padded(dropout: Float) -> Problem {
        let s = Attention.Size(batch: lengths.count, heads: 3, queryLength: L, keyLength: L, headDim: 5)
        var pb = Problem(s, bias: true, keyMask: false, causal: false, scale: 0.6, dropout: dropout, seed: 41)
        var mask = [Float](repeating: 0, count: s.batch * L)
        for (b, n) in lengths.enumerated() { for j in 0..<n { mask[b * L + j] = 1 } }
        mask[hole.item * L + hole.key] = 0
        pb.keyMask = Tensor(shape: [s.batch, L], data: mask)
        return pb
    }

    /// The kept rows of a padded (B·L, width) array, packed.
    static func pack<T>(_ a: [T], width: Int) -> [T] {
        lengths.enumerated().flatMap { b, n in a[(b * L * width)..<((b * L + n) * width)] }
    }

    /// Item b's (H, n, n) blocks of a padded (B, H, L, L) array, packed as the ragged layout has them.
    static func packBlocks<T>(_ a: [T], heads H: Int) -> [T] {
        var out: [T] = []
        for (b, n) in lengths.enumerated() {
            for h in 0..<H {
                for i in 0..<n {
                    let start: Int = ((b * H + h) * L + i) * L
                    out.append(contentsOf: a[start..<(start + n)])
                }
            }
        }
        return out
    }

    /// Forward and backward on the packed rows: out, probs, logits, the dropout mask and the gradients.
    static func ragged(_ pb: Problem, dOut: [Float], threads: Int? = nil) -> [String: [Float]] {
        let s = pb.size, HD = s.heads * s.headDim
        let r = Attention.Ragged(lengths: lengths, heads: s.heads)
        let q = pack(pb.q.data, width: HD), k = pack(pb.k.data, width: HD), v = pack(pb.v.data, width: HD)
        let keyMask = pack(pb.keyMask!.data, width: 1)
        var out = [Float](repeating: .nan, count: r.rows * HD)
        var probs = [Float](repeating: .nan, count: r.probsCount), logits = probs, dropMask = probs
        var rng = RNG(seed: 7)
        Attention.forward(
            out: &out, probs: &probs, dropoutMask: &dropMask, logits: &logits, q: q, k: k, v: v, bias: pb.bias!.data,
            keyMask: keyMask, causal: false, scale: pb.scale, dropout: pb.dropout, rng: &rng, size: s, ragged: r)
        var dq = [Float](repeating: 0, count: r.rows * HD), dk = dq, dv = dq
        var dBias = [Float](repeating: 0, count: s.biasCount)
        Attention.backward(
            dq: &dq, dk: &dk, dv: &dv, dBias: &dBias, dOut: dOut, q: q, k: k, v: v, probs: probs,
            dropoutMask: pb.dropout > 0 ? dropMask : nil, scale: pb.scale, size: s, ragged: r, threads: threads)
        return ["out": out, "probs": probs, "logits": logits, "mask": dropMask, "dq": dq, "dk": dk, "dv": dv, "dbias": dBias]
    }

    @Test(arguments: [Float(0), 0.3])
    func isThePaddedBatchAtItsKeptRows(dropout: Float) {
        let pb = Self.padded(dropout: dropout)
        let s = pb.size, H = s.heads, HD = H * s.headDim, L = Self.L
        #expect(Attention.Ragged(lengths: Self.lengths, heads: H).rows == 21)
        // Upstream gradient on kept rows only: nothing flows from a padded row (the model's case).
        var rng = RNG(seed: 43)
        var dOutPadded = [Float](repeating: 0, count: s.queryCount)
        for (b, n) in Self.lengths.enumerated() { for e in (b * L * HD)..<((b * L + n) * HD) { dOutPadded[e] = rng.normal() } }
        let got = Self.ragged(pb, dOut: Self.pack(dOutPadded, width: HD))
        // The twin reads the kernel's dropout draws, placed in the padded layout (1 outside the blocks).
        var dropMask: [Float]? = nil
        if dropout > 0 {
            var m = [Float](repeating: 1, count: s.probsCount)
            var at = 0
            for (b, n) in Self.lengths.enumerated() {
                for h in 0..<H { for i in 0..<n { for j in 0..<n {
                    m[((b * H + h) * L + i) * L + j] = got["mask"]![at]
                    at += 1
                } } }
            }
            #expect(got["mask"]!.contains(0) && got["mask"]!.allSatisfy { $0 == 0 || $0 == 1 / (1 - dropout) })
            dropMask = m
        }
        let (naive, bound) = pb.naive(dOut: dOutPadded, dropMask: dropMask)
        let byRow = ["out", "dq", "dk", "dv"], byBlock = ["probs", "logits"]
        for key in byRow + byBlock + ["dbias"] {
            let expected = byRow.contains(key) ? Self.pack(naive[key]!, width: HD)
                : byBlock.contains(key) ? Self.packBlocks(naive[key]!, heads: H) : naive[key]!
            let magnitude = byRow.contains(key) ? Self.pack(bound[key]!, width: HD)
                : byBlock.contains(key) ? Self.packBlocks(bound[key]!, heads: H) : bound[key]!
            let r = compareReduction("ragged \(key)", got[key]!, expected, magnitude: magnitude, terms: 1)
            #expect(r.ok, "dropout \(dropout) \(r)")
        }
        // The hole is masked: item 4's key 2 weighs nothing.
        let r = Attention.Ragged(lengths: Self.lengths, heads: H), n = Self.lengths[Self.hole.item]
        for h in 0..<H { for i in 0..<n { #expect(got["probs"]![r.probsOffsets[Self.hole.item] + (h * n + i) * n + Self.hole.key] == 0) } }
    }

    @Test func gradientsAreTheSameBitsOnAnyThreadCount() {
        let pb = Self.padded(dropout: 0.2)
        let rows = Attention.Ragged(lengths: Self.lengths, heads: pb.size.heads).rows
        var rng = RNG(seed: 47)
        let dOut = rng.normalArray(rows * pb.size.heads * pb.size.headDim)
        let one = Self.ragged(pb, dOut: dOut, threads: 1)
        for threads in [2, 3, nil] {
            let got = Self.ragged(pb, dOut: dOut, threads: threads)
            for key in ["dq", "dk", "dv", "dbias"] {
                #expect(got[key]! == one[key]!, "\(key) differs between 1 and \(threads.map(String.init) ?? "the global") threads")
            }
        }
    }
}
