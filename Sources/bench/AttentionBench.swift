// AttentionBench: `bench attention`, the two ways `Attention` runs its (batch, head) loop on FiD
// shapes: serial heads with multi-threaded products, or heads in parallel with one thread each.
import Foundation
import Tensor

/// Forward and backward of one attention call per shape, the two strategies interleaved on the
/// same buffers, so `serial/parallel` (> 1: parallel faster) is a paired ratio as in `bench gemm`.
/// It is the measurement behind `Attention.parallelOverHeads`'s default.
enum AttentionBench {
    static let shapes: [(label: String, size: Attention.Size)] = [
        ("T5-base encoder 8×250", Attention.Size(batch: 8, heads: 12, queryLength: 250, keyLength: 250, headDim: 64)),
        ("T5-base cross 20×(20·250)", Attention.Size(batch: 1, heads: 12, queryLength: 20, keyLength: 5000, headDim: 64)),
        ("BERT-base 16×200", Attention.Size(batch: 16, heads: 12, queryLength: 200, keyLength: 200, headDim: 64)),
    ]

    static func run(_ settings: TimingSettings) throws {
        print("## attention: Attention.forward/backward, heads serial (products threaded) vs heads in parallel")
        print("(products on one thread each); bias and key mask on, no dropout. ms per call (median);")
        print("serial/parallel = paired speed ratio (> 1: parallel faster, the default).")
        let saved = Attention.parallelOverHeads
        defer { Attention.parallelOverHeads = saved }
        for threads in settings.threads {
            Threads.set(threads)
            print()
            print("### \(threads) thread\(threads == 1 ? "" : "s")")
            let table = Table(["shape", "pass", "serial ms", "parallel ms", "serial/parallel", "spread"], widths: [26])
            for (label, s) in shapes {
                let buffers = Buffers(s)
                defer { buffers.deallocate() }
                buffers.forward()  // probs for the backward samples
                for pass in ["forward", "backward"] {
                    let body = pass == "forward" ? buffers.forward : buffers.backward
                    try Machine.waitForQuiet(settings)
                    let stats = try Timing.interleaved(
                        [false, true].map { parallel in
                            Contender(name: parallel ? "parallel" : "serial") {
                                Attention.parallelOverHeads = parallel
                                return Timing.sample(minTime: settings.minTime, body)
                            }
                        }, settings)
                    table.add([
                        label, pass, fixed(stats[0].median * 1e3, 2), fixed(stats[1].median * 1e3, 2),
                        ratio(stats[1].speedup(over: stats[0])), percent(max(stats[0].spread, stats[1].spread)),
                    ])
                }
            }
        }
    }

    /// The operands and outputs of one shape, random in [-1, 1), every key visible.
    final class Buffers {
        let s: Attention.Size
        let q, k, v, out, dq, dk, dv, dOut: UnsafeMutableBufferPointer<Float>
        let bias, dBias, keyMask, probs: UnsafeMutableBufferPointer<Float>

        init(_ s: Attention.Size) {
            self.s = s
            var rng = RNG(seed: 11)
            func random(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
                let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
                for i in b.indices { b[i] = rng.uniform(-1, 1) }
                return b
            }
            func filled(_ n: Int, _ x: Float) -> UnsafeMutableBufferPointer<Float> {
                let b = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
                b.initialize(repeating: x)
                return b
            }
            q = random(s.queryCount)  // (B, Tq, H·Dh)
            k = random(s.keyCount)  // (B, Tk, H·Dh)
            v = random(s.keyCount)  // (B, Tk, H·Dh)
            dOut = random(s.queryCount)  // (B, Tq, H·Dh)
            bias = random(s.biasCount)  // (H, Tq, Tk)
            keyMask = filled(s.batch * s.keyLength, 1)  // (B, Tk)
            out = filled(s.queryCount, 0)  // (B, Tq, H·Dh)
            probs = filled(s.probsCount, 0)  // (B, H, Tq, Tk)
            dq = filled(s.queryCount, 0)  // (B, Tq, H·Dh)
            dk = filled(s.keyCount, 0)  // (B, Tk, H·Dh)
            dv = filled(s.keyCount, 0)  // (B, Tk, H·Dh)
            dBias = filled(s.biasCount, 0)  // (H, Tq, Tk)
        }

        func forward() {
            var rng = RNG(seed: 1)
            Attention.forward(
                out: out.baseAddress!, probs: probs.baseAddress!, dropoutMask: nil, logits: nil,
                q: q.baseAddress!, k: k.baseAddress!, v: v.baseAddress!, bias: bias.baseAddress!,
                keyMask: keyMask.baseAddress!, causal: false, scale: 1, dropout: 0, rng: &rng, size: s)
        }

        /// Accumulates into the gradients on every call; their values do not matter here.
        func backward() {
            Attention.backward(
                dq: dq.baseAddress!, dk: dk.baseAddress!, dv: dv.baseAddress!, dBias: dBias.baseAddress!,
                dOut: dOut.baseAddress!, q: q.baseAddress!, k: k.baseAddress!, v: v.baseAddress!,
                probs: probs.baseAddress!, dropoutMask: nil, scale: 1, size: s)
        }

        func deallocate() {
            [q, k, v, out, dq, dk, dv, dOut, bias, dBias, keyMask, probs].forEach { $0.deallocate() }
        }
    }
}
