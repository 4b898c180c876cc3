// AttentionOverMemoryTests: `Attention.overMemory` (wide queries over memory rows that serve as
// both keys and values, in one online-softmax pass) against the Double twin of `Attention`.
import Testing
import TestSupport
@testable import Tensor

struct AttentionOverMemoryTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var batch, queries, keys, width: Int
        var testDescription: String { "B \(batch) Tq \(queries) Tk \(keys) D \(width)" }
        var size: Attention.Size { .init(batch: batch, heads: 1, queryLength: queries, keyLength: keys, headDim: width) }
    }

    /// The twin's problem with the values equal to the keys.
    func problem(_ s: Shape, seed: UInt64) -> Problem {
        let pb = Problem(s.size, bias: true, keyMask: true, causal: false, scale: 0.5, dropout: 0, seed: seed)
        return Problem(size: s.size, q: pb.q, k: pb.k, v: pb.k, bias: pb.bias, keyMask: pb.keyMask, causal: false, scale: pb.scale)
    }

    /// `withLogits: false` passes no logits buffer (a greedy step after the first); `logits`
    /// then comes back as NaN.
    func run(_ pb: Problem, _ s: Shape, threads: Int?, withLogits: Bool = true) -> (out: [Float], probs: [Float], logits: [Float]) {
        var out = [Float](repeating: .nan, count: s.batch * s.queries * s.width)
        var probs = [Float](repeating: .nan, count: s.batch * s.queries * s.keys), logits = probs
        var scratch = [Float](repeating: .nan, count: Attention.overMemoryScratchCount(batch: s.batch, queries: s.queries, keys: s.keys, width: s.width))
        pb.q.withUnsafeBufferPointer { q in pb.k.withUnsafeBufferPointer { x in
        pb.bias!.withUnsafeBufferPointer { bias in pb.keyMask!.withUnsafeBufferPointer { mask in logits.withUnsafeMutableBufferPointer { lg in
            Attention.overMemory(out: &out, probs: &probs, logits: withLogits ? lg.baseAddress! : nil, q: q.baseAddress!, memory: x.baseAddress!,
                                 bias: bias.baseAddress!, keyMask: mask.baseAddress!, scale: pb.scale, batch: s.batch,
                                 queries: s.queries, keys: s.keys, width: s.width, scratch: &scratch, threads: threads)
        } } } } }
        return (out, probs, logits)
    }

    /// Within the Float32 bound of the Double twin, on shapes past one key chunk with a ragged
    /// last chunk, query counts that fill four-query tiles and leave a remainder, odd key counts
    /// (a last lone key), widths with a tail past the 8- and 16-float lanes; the same to the bit
    /// on any thread count.
    @Test(arguments: [
        Shape(batch: 2, queries: 5, keys: 700, width: 40),
        Shape(batch: 3, queries: 8, keys: 301, width: 21),
        Shape(batch: 2, queries: 4, keys: 513, width: 64),
        Shape(batch: 1, queries: 1, keys: 1, width: 1),
        Shape(batch: 1, queries: 3, keys: 2, width: 7),
    ])
    func matchesNaive(_ s: Shape) {
        let pb = problem(s, seed: 41)
        let (naive, bound) = pb.naive(dOut: [Float](repeating: 0, count: s.size.queryCount), dropMask: nil)
        let one = run(pb, s, threads: 1)
        for (key, got) in [("out", one.out), ("probs", one.probs), ("logits", one.logits)] {
            let r = compareReduction("overMemory \(key)", got, naive[key]!, magnitude: bound[key]!, terms: 1)
            #expect(r.ok, "\(s.testDescription) \(r)")
        }
        for threads in [2, 3, nil] {
            let got = run(pb, s, threads: threads)
            #expect(got.out == one.out && got.probs == one.probs && got.logits == one.logits,
                    "overMemory differs between 1 and \(threads.map(String.init) ?? "the global") threads")
        }
    }

    /// Without a logits buffer (every greedy step after the first) the same bits as with one, on
    /// masks of FiD's shape (each passage's padding a run at its end), with holes, a masked first
    /// key, a chunk all masked and an item all masked; masked keys' rows of NaN touch nothing.
    @Test(arguments: [
        Shape(batch: 2, queries: 8, keys: 700, width: 40),
        Shape(batch: 3, queries: 5, keys: 301, width: 21),
    ])
    func withoutLogitsTheSameBits(_ s: Shape) {
        var pb = problem(s, seed: 47)
        var mask = [Float](repeating: 1, count: s.batch * s.keys)
        for b in 0..<s.batch {
            for j in 0..<s.keys {
                let inPassage = j % 100
                // Passages of 100 keys, the last (13 + 7·b + j / 100) % 40 of each padding.
                if inPassage >= 100 - (13 + 7 * b + j / 100) % 40 { mask[b * s.keys + j] = 0 }
            }
            mask[b * s.keys] = 0  // a masked first key
            mask[b * s.keys + 50] = 0  // a hole
        }
        for j in 256..<min(512, s.keys) { mask[j] = 0 }  // item 0: a whole chunk masked
        if s.batch > 2 { for j in 0..<s.keys { mask[2 * s.keys + j] = 0 } }  // item 2: every key masked
        pb.keyMask = Tensor(shape: pb.keyMask!.shape, data: mask)
        let scored = run(pb, s, threads: 1)
        for threads in [1, 2] {
            let plain = run(pb, s, threads: threads, withLogits: false)
            let outDiff = differing(plain.out, scored.out), probsDiff = differing(plain.probs, scored.probs)
            #expect(outDiff == 0, "\(s.testDescription), \(threads) threads: \(outDiff) context values differ from a call with logits")
            #expect(probsDiff == 0, "\(s.testDescription), \(threads) threads: \(probsDiff) probabilities differ from a call with logits")
        }
        var x = pb.k.data
        for j in 0..<(s.batch * s.keys) where mask[j] == 0 {
            for d in 0..<s.width { x[j * s.width + d] = .nan }
        }
        pb.k = Tensor(shape: pb.k.shape, data: x)
        let nanRows = run(pb, s, threads: 1, withLogits: false)
        let reached = differing(nanRows.out, scored.out) + differing(nanRows.probs, scored.probs)
        #expect(reached == 0, "\(s.testDescription): masked keys' NaN rows changed \(reached) values")
    }

    /// The kernels this CPU runs: Swift's everywhere, AVX-512's on Zen 4.
    static var kernels: [Attention.OverMemoryKernel] {
        let k = Attention.OverMemoryKernel.allCases.filter(\.isSupported)
        if !k.contains(.avx512) { print("⚠︎ AttentionOverMemoryTests: this CPU has no AVX-512; only the Swift kernels are checked here") }
        return k
    }

    /// Every scoring kernel gives the bits of its scalar twin: per product, 8 lanes (lane l takes
    /// d ≡ l mod 8 below D's last multiple of 8) of fused multiply-adds from 0, the lanes summed
    /// first to last, D's tail by plain multiply and add, then the scale; keys outside lo..<hi
    /// untouched. Shapes cover every remainder of the query tiles (4, 8), the key tiles (2, 4)
    /// and the lanes.
    @Test(arguments: kernels)
    func scoreKernelMatchesItsTwinToTheBit(_ kernel: Attention.OverMemoryKernel) {
        var rng = RNG(seed: 59)
        for (Tk, lo, hi, D) in [(1, 0, 1, 8), (9, 2, 9, 5), (40, 0, 40, 48), (300, 3, 258, 512), (23, 1, 22, 530), (17, 0, 17, 79), (64, 13, 64, 16)] {
            for Tq in [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 17] {
                let q = rng.normalArray(Tq * D), x = rng.normalArray(Tk * D)
                let scale: Float = 0.37
                var got = [Float](repeating: .nan, count: Tq * Tk)
                Attention.scoreChunk(&got, q: q, memory: x, scale: scale, queries: Tq, keys: Tk, width: D, from: lo, to: hi, kernel: kernel)
                var want = [Float](repeating: .nan, count: Tq * Tk)
                let full = D & ~7
                for i in 0..<Tq {
                    for j in lo..<hi {
                        var lanes = [Float](repeating: 0, count: 8)
                        for d in 0..<full { lanes[d % 8] = lanes[d % 8].addingProduct(q[i * D + d], x[j * D + d]) }
                        var s = lanes[0]
                        for l in 1..<8 { s += lanes[l] }
                        for d in full..<D { s += q[i * D + d] * x[j * D + d] }
                        want[i * Tk + j] = scale * s
                    }
                }
                let diff = differing(got, want)
                #expect(diff == 0, "\(kernel), Tq \(Tq), keys \(lo)..<\(hi) of \(Tk), D \(D): \(diff) of \(Tq * Tk) scores differ from the twin")
            }
        }
    }

    /// Every context kernel gives the bits of its scalar twin: per element, fused multiply-adds
    /// over the live keys in order from 0 on D's multiples of 16, plain ones past them. Shapes
    /// cover every remainder of the query tiles (4 and 8) and of D's vectors (16 and 32), no
    /// keys, and rows out of order.
    @Test(arguments: kernels)
    func contextKernelMatchesItsTwinToTheBit(_ kernel: Attention.OverMemoryKernel) {
        var rng = RNG(seed: 53)
        for (n, D) in [(0, 48), (1, 16), (7, 5), (37, 48), (256, 512), (19, 530), (33, 96), (5, 79)] {
            for Tq in [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 17] {
                let keys = n + 3
                let x = rng.normalArray(keys * D)
                let w = rng.uniformArray(n * Tq, 0, 1)
                // Live keys out of order, one skipped, as a masked chunk packs them.
                let rows = (0..<n).map { k in ((k * 7 + 2) % keys) * D }
                var got = [Float](repeating: .nan, count: Tq * D)
                Attention.contextChunk(&got, weights: w, rows: rows, count: n, memory: x, queries: Tq, width: D, kernel: kernel)
                var want = [Float](repeating: 0, count: Tq * D)
                for i in 0..<Tq {
                    for e in 0..<D {
                        var s: Float = 0
                        for k in 0..<n {
                            let (a, b) = (w[k * Tq + i], x[rows[k] + e])
                            s = e < D & ~15 ? s.addingProduct(a, b) : s + a * b
                        }
                        want[i * D + e] = s
                    }
                }
                let diff = differing(got, want)
                #expect(diff == 0, "\(kernel), \(n) keys, Tq \(Tq), D \(D): \(diff) of \(Tq * D) values differ from the twin")
            }
        }
    }

    /// Entries whose bits differ.
    func differing(_ a: [Float], _ b: [Float]) -> Int {
        zip(a, b).filter { $0.bitPattern != $1.bitPattern }.count + abs(a.count - b.count)
    }

    /// Masked keys add nothing whatever their rows hold (infinities included); an item with every
    /// key masked gets zero probabilities and a zero context, as `Softmax` gives, where its
    /// neighbour is untouched; NaN logits give a NaN context.
    @Test func maskedKeysAndNaN() {
        let s = Shape(batch: 2, queries: 5, keys: 600, width: 24)
        var pb = problem(s, seed: 43)
        var mask = pb.keyMask!.data
        for j in 0..<s.keys { mask[j] = 0 }  // item 0: every key masked
        mask[s.keys + 3] = 0
        pb.keyMask = Tensor(shape: pb.keyMask!.shape, data: mask)
        let clean = run(pb, s, threads: 1)
        var x = pb.k.data
        for d in 0..<s.width { x[(s.keys + 3) * s.width + d] = d % 2 == 0 ? .infinity : -.infinity }
        pb.k = Tensor(shape: pb.k.shape, data: x)
        pb.v = pb.k
        let dirty = run(pb, s, threads: 1)
        let item = s.queries * s.width
        #expect(Array(dirty.out[item...]) == Array(clean.out[item...]), "a masked key's infinite row reached item 1's context")
        let zeroContext = dirty.out[..<item].allSatisfy { $0 == 0 }, zeroProbs = dirty.probs[..<(s.queries * s.keys)].allSatisfy { $0 == 0 }
        #expect(zeroContext, "an item without keys must get a zero context")
        #expect(zeroProbs, "an item without keys must get zero probabilities")
        var q = pb.q.data
        q[item] = .nan  // item 1, query 0
        pb.q = Tensor(shape: pb.q.shape, data: q)
        let nan = run(pb, s, threads: 1)
        let nanContext = nan.out[item..<(item + s.width)].allSatisfy(\.isNaN), othersClean = nan.out[(item + s.width)...].allSatisfy { !$0.isNaN }
        #expect(nanContext, "NaN logits must give a NaN context")
        #expect(othersClean, "one query's NaN reached another query")
    }
}
