// T5BenchTests: timings of a t5-small-shaped reader (FIDQ_BENCH=1 only; never in ops/test's
// default run): forward, train step, greedy decoding per token, activation memory.
import Foundation
import Testing
@testable import Models
@testable import Tensor

struct T5BenchTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIDQ_BENCH"] == "1"))
    func t5SmallShape() throws {
        let c = T5Config(vocabSize: 32128, dModel: 512, dKV: 64, dFF: 2048, numLayers: 6, numDecoderLayers: 6, numHeads: 8)
        let model = T5Model(config: c)
        model.initialize(seed: 1)
        let grads = ParameterSlab(layout: model.layout)
        var opt = AdamW(count: model.layout.count)
        let P = Int(ProcessInfo.processInfo.environment["FIDQ_BENCH_P"] ?? "10")!, L = 200, T = 20
        var rng = RNG(seed: 2)
        let ids = (0..<(P * L)).map { _ in Int32(2 + rng.next() % 32000) }
        let labels = (0..<T).map { _ in Int32(2 + rng.next() % 32000) }
        let batch = T5Batch(questions: 1, passages: P, passageLength: L, inputIds: ids, attentionMask: [Float](repeating: 1, count: ids.count),
                            decoderInputIds: T5Batch.shiftRight(labels, rows: 1, start: 0, pad: 0), labels: labels)
        func time(_ body: () throws -> Void) rethrows -> Double {
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = Date()
                try body()
                best = min(best, Date().timeIntervalSince(t0))
            }
            return best
        }
        let genOnly = ProcessInfo.processInfo.environment["FIDQ_BENCH_GEN_ONLY"] == "1"
        let fwd = genOnly ? 0 : time { _ = model.forward(batch) }
        for ck in genOnly ? [] : [false, true] {
            model.useCheckpoint = ck
            let step = time {
                var r = RNG(seed: 3)
                _ = model.forward(batch, training: true, rng: &r)
                grads.zero()
                model.backward(into: grads)
                opt.update(params: model.params.buffer, grads: UnsafeBufferPointer(grads.buffer), lr: 1e-4)
            }
            print("T5BENCH P=\(P) threads=\(Threads.count) checkpoint=\(ck): train step \(step * 1000) ms, activations \(model.activationBytes >> 20) MiB")
        }
        var setup = Double.infinity, steps = Double.infinity
        for _ in 0..<3 {
            let t0 = Date()
            let s = T5Stepper(model: model, questions: 1, passages: P, passageLength: L, inputIds: ids, attentionMask: batch.attentionMask, maxLength: T)
            let t1 = Date()
            var logits = [Float](repeating: 0, count: c.vocabSize)
            var tok: [Int32] = [0]
            for _ in 0..<T {
                try tok.withUnsafeBufferPointer { try s.step($0, logits: &logits) }
                var best = 0
                for v in 1..<c.vocabSize where logits[v] > logits[best] { best = v }
                tok = [Int32(best)]
            }
            setup = min(setup, t1.timeIntervalSince(t0))
            steps = min(steps, Date().timeIntervalSince(t1))
        }
        print("T5BENCH P=\(P) threads=\(Threads.count): forward \(fwd * 1000) ms; greedy: encoder + cross K/V \(setup * 1000) ms, per token \(steps / Double(T) * 1000) ms")
    }
}
