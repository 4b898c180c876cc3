// BertMemoryPlanTests: the retriever's planned activation bytes equal its arena's after running
// the same passes, with and without dropout and projection.
import Testing
@testable import Models
@testable import Tensor

struct BertMemoryPlanTests {
    func batch(_ p: BertPlannedPass, vocab: Int) -> RetrieverBatch {
        let B = p.questions, P = p.passages, Lq = p.questionLength, L = p.passageLength
        return RetrieverBatch(questions: B, passages: P, questionLength: Lq, passageLength: L,
                              questionIds: (0..<(B * Lq)).map { Int32(1 + $0 % (vocab - 1)) }, questionMask: [Float](repeating: 1, count: B * Lq),
                              passageIds: (0..<(B * P * L)).map { Int32(1 + $0 % (vocab - 1)) }, passageMask: [Float](repeating: 1, count: B * P * L),
                              readerScores: (0..<(B * P)).map { Float($0 % 3) })
    }

    @Test(arguments: [false, true], [Float(0), 0.1])
    func planEqualsTheArenaAfterThePasses(projection: Bool, dropout: Float) {
        var c = BertConfig(vocabSize: 30, hiddenSize: 16, layers: 2, heads: 2, intermediateSize: 24, maxPositions: 32,
                           projection: projection, indexingDimension: projection ? 8 : nil)
        c.hiddenDropoutProb = dropout
        c.attentionProbsDropoutProb = dropout
        let train = BertPlannedPass(.train, questions: 2, passages: 3, questionLength: 5, passageLength: 9)
        let eval = BertPlannedPass(.eval, questions: 4, passages: 3, questionLength: 6, passageLength: 7)
        let embed = BertPlannedPass(.embed, questions: 7, questionLength: 11)
        for passes in [[train], [eval], [embed], [train, eval, train], [embed, eval, train]] {
            let model = BertRetriever(config: c)
            model.initialize(seed: 1)
            let planned = model.plannedActivationBytes(passes)
            for p in passes {
                switch p.mode {
                case .train:
                    var rng = RNG(seed: 2)
                    _ = model.forward(batch(p, vocab: c.vocabSize), training: true, rng: &rng)
                    model.backward(into: ParameterSlab(layout: model.layout))
                case .eval:
                    _ = model.forward(batch(p, vocab: c.vocabSize))
                case .embed:
                    let ids = (0..<(p.questions * p.questionLength)).map { Int32(1 + $0 % (c.vocabSize - 1)) }
                    let mask = [Float](repeating: 1, count: ids.count)
                    _ = ids.withUnsafeBufferPointer { i in
                        mask.withUnsafeBufferPointer { m in
                            model.embed(ids: i.baseAddress!, mask: m.baseAddress!, n: p.questions, L: p.questionLength, applyMask: true)
                        }
                    }
                }
            }
            #expect(planned == Double(model.activationBytes),
                    "projection \(projection) dropout \(dropout) \(passes.map(\.mode)): planned \(planned), arena \(model.activationBytes)")
        }
    }
}
