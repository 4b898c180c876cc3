// T5ModelTests: the whole model's backward against finite differences, checkpointing's
// bit-identical gradients, and a learning check on a synthetic copy task.
import Foundation
import Testing
import TestSupport
@testable import Models
@testable import Tensor

/// A tiny random model and a FiD batch (B=2, P=2, L=4, T=3) with padding and an ignored label.
func tinyModel(_ ff: T5Config.FeedForward, tied: Bool, crossBias: Bool = false, seed: UInt64 = 9) -> (T5Model, T5Batch) {
    var c = T5Config(vocabSize: 13, dModel: 8, dKV: 4, dFF: 12, numLayers: 2, numDecoderLayers: 2, numHeads: 2,
                     numBuckets: 8, maxDistance: 20, dropoutRate: 0.1, feedForwardProj: ff, tieWordEmbeddings: tied)
    c.layerNormEpsilon = 1e-6
    let m = T5Model(config: c, crossAttentionBias: crossBias)
    m.initialize(seed: seed)
    // Spread the embedding so logits are not all alike.
    let ids: [Int32] = [5, 6, 7, 1, 8, 9, 0, 0, 3, 4, 5, 6, 10, 0, 0, 0]
    let mask: [Float] = ids.map { $0 == 0 ? 0 : 1 }
    let labels: [Int32] = [4, 9, 1, 7, 1, -100]
    let batch = T5Batch(questions: 2, passages: 2, passageLength: 4, inputIds: ids, attentionMask: mask,
                        decoderInputIds: T5Batch.shiftRight(labels, rows: 2, start: 0, pad: 0), labels: labels)
    return (m, batch)
}

struct T5ModelTests {
    // Smooth (gated-GELU) models only: finite differences across ReLU kinks are meaningless; the
    // ReLU path's gradients are pinned by the transformers fixtures (T5FixtureTests).
    @Test(arguments: [(T5Config.FeedForward.gatedGELU, false, false), (.gatedGELU, true, true)], crossPlans)
    func backwardMatchesFiniteDifferences(_ variant: (T5Config.FeedForward, Bool, Bool), _ plan: T5CrossAttentionPlan) {
        let (ff, tied, crossBias) = variant
        let (model, batch) = tinyModel(ff, tied: tied, crossBias: crossBias)
        model.crossAttentionPlan = plan
        let grads = ParameterSlab(layout: model.layout)
        _ = model.forward(batch)
        model.backward(into: grads)
        var rng = RNG(seed: 11)
        for e in model.layout.entries {
            // A few elements of every parameter: the first, the last and two random ones.
            let picks = Array(Set([0, e.count - 1, Int(rng.next() % UInt64(e.count)), Int(rng.next() % UInt64(e.count))])).sorted()
            let p = model.params[e.name]
            let analytic = picks.map { grads[e.name][$0] }
            let input = picks.map { p[$0] }
            let report = gradCheck("\(e.name)", input: input, analytic: analytic, eps: 1e-2, tolerance: 2e-2, floor: 5e-3) { x in
                for (i, k) in picks.enumerated() { p[k] = x[i] }
                defer { for (i, k) in picks.enumerated() { p[k] = input[i] } }
                return Double(model.forward(batch).loss!)
            }
            #expect(report.ok, "\(report)")
        }
    }

    @Test func checkpointingGivesBitIdenticalGradients() {
        for ff in [T5Config.FeedForward.relu, .gatedGELU] {
            let (model, batch) = tinyModel(ff, tied: ff == .relu)
            var results: [[Float]] = []
            for ck in [false, true] {
                model.useCheckpoint = ck
                let grads = ParameterSlab(layout: model.layout)
                var rng = RNG(seed: 21)
                let out = model.forward(batch, training: true, rng: &rng)
                model.backward(into: grads)
                results.append(Array(grads.buffer) + [out.loss!])
            }
            #expect(results[0] == results[1])
            // Dropout was on: the training loss differs from eval's.
            model.useCheckpoint = false
            #expect(model.forward(batch).loss! != results[0].last!)
        }
    }

    @Test func scoresAreTheMeanFirstStepCrossLogitsOverRealTokens() {
        let (model, batch) = tinyModel(.relu, tied: true)
        let out = model.forward(batch, scores: true)
        let s = out.scores!
        #expect(s.shape == [2, 2])
        // Independent recomputation from the per-layer logits with a naive loop in Double.
        let H = 2, P = 2, L = 4, T = 3, M = P * L
        for b in 0..<2 {
            for p in 0..<P {
                var sum = 0.0, n = 0
                for l in 0..<2 {
                    let lg = model.arena.take("d\(l).ca.logits", 2 * H * T * M)
                    for h in 0..<H {
                        for t in 0..<L where batch.attentionMask[(b * P + p) * L + t] != 0 {
                            sum += Double(lg[((b * H + h) * T) * M + p * L + t])
                            n += 1
                        }
                    }
                }
                #expect(abs(Double(s.data[b * P + p]) - sum / Double(n)) < 1e-5)
            }
        }
    }

    /// Trains a tiny T5 from scratch on a synthetic copy task (answer = the passage's 5 tokens, then eos).
    static func trainCopy(steps: Int, dropout: Float, checkpoint: Bool) -> (losses: [Float], params: [Float]) {
        let c = T5Config(vocabSize: 16, dModel: 32, dKV: 8, dFF: 64, numLayers: 2, numDecoderLayers: 2, numHeads: 4,
                         numBuckets: 8, maxDistance: 20, dropoutRate: dropout, feedForwardProj: .relu, tieWordEmbeddings: true)
        let model = T5Model(config: c)
        model.initialize(seed: 1)
        model.useCheckpoint = checkpoint
        let grads = ParameterSlab(layout: model.layout)
        var opt = AdamW(count: model.layout.count, weightDecay: 0)
        var data = RNG(seed: 2)
        let B = 8, L = 5
        var losses: [Float] = []
        for step in 0..<steps {
            var ids: [Int32] = [], labels: [Int32] = []
            for _ in 0..<B {
                let row = (0..<L).map { _ in Int32(2 + data.next() % 14) }
                ids += row
                labels += row + [1]
            }
            let batch = T5Batch(questions: B, passages: 1, passageLength: L, inputIds: ids, attentionMask: [Float](repeating: 1, count: B * L),
                                decoderInputIds: T5Batch.shiftRight(labels, rows: B, start: 0, pad: 0), labels: labels)
            var rng = RNG(seed: UInt64(step))
            let out = model.forward(batch, training: true, rng: &rng)
            grads.zero()
            model.backward(into: grads)
            opt.update(params: model.params.buffer, grads: UnsafeBufferPointer(grads.buffer), lr: 3e-3)
            losses.append(out.loss!)
        }
        return (losses, Array(model.params.buffer))
    }

    /// The loss falls far below its start (≈ ln 16 → under a tenth of it in 1500 steps, about a second).
    @Test func learnsACopyTask() {
        let losses = Self.trainCopy(steps: 1500, dropout: 0, checkpoint: false).losses
        let end = losses.suffix(20).reduce(0, +) / 20
        #expect(end < 0.1 * losses[0], "loss \(losses[0]) → \(end)")
    }

    /// With dropout on, a checkpointed run ends with exactly the weights of a plain one.
    @Test func checkpointedTrainingGivesTheSameWeights() {
        let plain = Self.trainCopy(steps: 20, dropout: 0.1, checkpoint: false)
        let ck = Self.trainCopy(steps: 20, dropout: 0.1, checkpoint: true)
        #expect(plain.losses == ck.losses)
        #expect(plain.params == ck.params)
    }

    /// The two plans of the decoder's cross-attention compute one function with the same dropout
    /// draws: a training step's loss and every gradient agree to rounding, and the shape picks
    /// the absorbed plan for short answers over a long memory, the other for long ones.
    @Test func crossAttentionPlansAgree() {
        let (model, batch) = tinyModel(.gatedGELU, tied: false, crossBias: true)
        var results: [(loss: Float, grads: ParameterSlab)] = []
        for plan in crossPlans {
            model.crossAttentionPlan = plan
            let grads = ParameterSlab(layout: model.layout)
            var rng = RNG(seed: 5)
            let out = model.forward(batch, training: true, rng: &rng)
            model.backward(into: grads)
            results.append((out.loss!, grads))
        }
        #expect(abs(results[0].loss - results[1].loss) <= 1e-5 * abs(results[0].loss), "losses \(results.map(\.loss))")
        for e in model.layout.entries {
            let r = gradientReport("grad.\(e.name)", results[1].grads.tensor(e.name), results[0].grads.tensor(e.name))
            #expect(r.ok, "\(r)")
        }
        // t5-small's widths (D 512, 8 heads of 64) over 25 passages of 200 tokens.
        model.crossAttentionPlan = nil
        let small = T5Model(config: T5Config(vocabSize: 8, dModel: 512, dKV: 64, dFF: 8, numLayers: 1, numDecoderLayers: 1, numHeads: 8,
                                             numBuckets: 8, maxDistance: 20, dropoutRate: 0.1, feedForwardProj: .relu, tieWordEmbeddings: true))
        #expect(small.crossPlan(T: 20, M: 5000) == .absorbed && small.crossPlan(T: 72, M: 5000) == .absorbed)
        #expect(small.crossPlan(T: 73, M: 5000) == .cachedKeys && small.crossPlan(T: 60, M: 200) == .cachedKeys)
    }

    /// Gradients do not depend on the thread count (fixed reduction orders in every kernel).
    @Test(arguments: crossPlans)
    func gradientsAreThreadCountIndependent(_ plan: T5CrossAttentionPlan) {
        let (model, batch) = tinyModel(.gatedGELU, tied: false, crossBias: true)
        model.crossAttentionPlan = plan
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            // Held, so a concurrent suite's count change cannot make every pass run alike.
            Threads.exclusively(threads) {
                let grads = ParameterSlab(layout: model.layout)
                var rng = RNG(seed: 5)
                _ = model.forward(batch, training: true, rng: &rng)
                model.backward(into: grads)
                #expect(Threads.count == threads)
                results.append(Array(grads.buffer))
            }
        }
        // Every gradient, the encoder's relative bias (summed over B·P attention items) included,
        // is the same to the bit on any thread count: resumed training reproduces a plain run.
        for k in 1..<3 {
            let differing = model.layout.entries.filter { e in results[k][e.range] != results[0][e.range] }.map(\.name)
            #expect(differing.isEmpty, "threads \([1, 2, 3][k]) vs 1 differ in \(differing)")
        }
    }

    /// Checkpointing keeps one encoder block's internals instead of one per block.
    @Test func checkpointingHoldsLessActivationMemory() {
        let c = T5Config(vocabSize: 64, dModel: 32, dKV: 8, dFF: 64, numLayers: 6, numDecoderLayers: 2, numHeads: 4,
                         numBuckets: 8, maxDistance: 20, dropoutRate: 0.1)
        var bytes: [Int] = []
        for ck in [false, true] {
            let model = T5Model(config: c)
            model.initialize(seed: 3)
            model.useCheckpoint = ck
            let B = 2, P = 4, L = 24, T = 6
            let ids = (0..<(B * P * L)).map { Int32(2 + $0 % 60) }
            let labels = (0..<(B * T)).map { Int32(2 + $0 % 60) }
            let batch = T5Batch(questions: B, passages: P, passageLength: L, inputIds: ids,
                                attentionMask: [Float](repeating: 1, count: ids.count),
                                decoderInputIds: T5Batch.shiftRight(labels, rows: B, start: 0, pad: 0), labels: labels)
            var rng = RNG(seed: 1)
            _ = model.forward(batch, training: true, rng: &rng)
            model.backward(into: ParameterSlab(layout: model.layout))
            bytes.append(model.activationBytes)
        }
        print("T5 activation arena, 6 encoder blocks, B·P·L = 192: plain \(bytes[0]) B, use_checkpoint \(bytes[1]) B")
        #expect(bytes[1] < bytes[0] * 6 / 10, "plain \(bytes[0]) B, checkpointed \(bytes[1]) B")
    }

    /// Eval (score, evaluation) keeps one encoder block's internals whatever the depth: only
    /// each block's input (N, D) is kept per block. It kept every block's, most of a score
    /// job's memory. (Its backward, which recomputes, is in the finite-difference checks.)
    @Test func evalHoldsOneEncoderBlocksBuffers() {
        let B = 2, P = 3, L = 10, T = 4
        func evalBytes(layers: Int) -> Int {
            let c = T5Config(vocabSize: 64, dModel: 16, dKV: 4, dFF: 32, numLayers: layers, numDecoderLayers: 1, numHeads: 4,
                             numBuckets: 8, maxDistance: 20, dropoutRate: 0.1)
            let model = T5Model(config: c)
            model.initialize(seed: 3)
            let ids = (0..<(B * P * L)).map { Int32(2 + $0 % 60) }
            let labels = (0..<(B * T)).map { Int32(2 + $0 % 60) }
            _ = model.forward(T5Batch(questions: B, passages: P, passageLength: L, inputIds: ids,
                                      attentionMask: [Float](repeating: 1, count: ids.count),
                                      decoderInputIds: T5Batch.shiftRight(labels, rows: B, start: 0, pad: 0), labels: labels), scores: true)
            return model.activationBytes
        }
        // Three more blocks: three more saved inputs (N·D floats each), nothing else.
        #expect(evalBytes(layers: 4) - evalBytes(layers: 1) == 3 * B * P * L * 16 * 4)
    }

    @Test func validateRefusesIdsOutsideTheVocabulary() throws {
        let (model, batch) = tinyModel(.relu, tied: true)
        try model.validate(batch)
        var ids = batch.inputIds
        ids[5] = 13
        let bad = T5Batch(questions: 2, passages: 2, passageLength: 4, inputIds: ids, attentionMask: batch.attentionMask,
                          decoderInputIds: batch.decoderInputIds, labels: batch.labels)
        do {
            try model.validate(bad, source: "job.json")
            Issue.record("accepted id 13 with vocabulary 13")
        } catch {
            #expect("\(error)".contains("job.json") && "\(error)".contains("input_ids[5] is 13") && "\(error)".contains("0..<13"))
        }
        var labels = batch.labels!
        labels[0] = -7
        let badLabels = T5Batch(questions: 2, passages: 2, passageLength: 4, inputIds: batch.inputIds, attentionMask: batch.attentionMask,
                                decoderInputIds: batch.decoderInputIds, labels: labels)
        #expect(throws: ModelLoadError.self) { try model.validate(badLabels) }
    }
}
