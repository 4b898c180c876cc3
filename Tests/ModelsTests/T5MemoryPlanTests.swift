// T5MemoryPlanTests: the planned activation bytes equal the arena's after running the same
// passes, for each feed-forward, dropout, checkpointing and cross-bias variant.
import Testing
@testable import Models
@testable import Tensor

struct T5MemoryPlanTests {
    func batch(_ c: T5Config, _ p: T5PlannedPass) -> T5Batch {
        let ids = (0..<(p.questions * p.passages * p.length)).map { Int32(2 + $0 % (c.vocabSize - 2)) }
        let labels = (0..<(p.questions * p.target)).map { Int32(2 + $0 % (c.vocabSize - 2)) }
        return T5Batch(questions: p.questions, passages: p.passages, passageLength: p.length, inputIds: ids,
                       attentionMask: [Float](repeating: 1, count: ids.count),
                       decoderInputIds: T5Batch.shiftRight(labels, rows: p.questions, start: 0, pad: 0), labels: labels)
    }

    @Test(arguments: [T5Config.FeedForward.relu, .gatedGELU], [Float(0), 0.1])
    func planEqualsTheArenaAfterThePasses(ff: T5Config.FeedForward, dropout: Float) {
        var c = T5Config(vocabSize: 40, dModel: 16, dKV: 4, dFF: 24, numLayers: 3, numDecoderLayers: 2, numHeads: 2,
                         numBuckets: 8, maxDistance: 20, dropoutRate: dropout)
        c.feedForwardProj = ff
        let train = T5PlannedPass(.train, questions: 2, passages: 3, length: 7, target: 4)
        let evalBig = T5PlannedPass(.eval(scores: true), questions: 4, passages: 3, length: 9, target: 5)
        let encode = T5PlannedPass(.encode, questions: 5, passages: 2, length: 11, target: 1)
        let sequences: [[T5PlannedPass]] = [[train], [evalBig], [encode], [train, evalBig, train], [evalBig, encode, train]]
        for checkpoint in [false, true] {
            for crossBias in [false, true] {
                for passes in sequences {
                    let model = T5Model(config: c, crossAttentionBias: crossBias)
                    model.initialize(seed: 1)
                    model.useCheckpoint = checkpoint
                    let planned = model.plannedActivationBytes(passes)
                    for p in passes {
                        let b = batch(c, p)
                        switch p.mode {
                        case .train:
                            var rng = RNG(seed: 2)
                            _ = model.forward(b, training: true, rng: &rng)
                            model.backward(into: ParameterSlab(layout: model.layout))
                        case .eval(let scores):
                            _ = model.forward(b, scores: scores)
                        case .encode:
                            _ = model.encode(inputIds: b.inputIds, attentionMask: b.attentionMask, rows: p.questions * p.passages, L: p.length)
                        }
                    }
                    #expect(planned == Double(model.activationBytes),
                            "\(ff) dropout \(dropout) checkpoint \(checkpoint) crossBias \(crossBias) \(passes.map(\.mode)): planned \(planned), arena \(model.activationBytes)")
                }
            }
        }
    }
}
