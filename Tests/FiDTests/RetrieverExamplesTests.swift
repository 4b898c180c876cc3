// RetrieverExamplesTests: batches read and tokenised on demand equal those of the whole file
// loaded and tokenised at once (how train_retriever read its data before issue 11's index).
import Foundation
import Testing
import Models
import Tokenizers
@testable import FiD

@Suite struct RetrieverExamplesTests {
    @Test func batchesEqualTheWholeFileTokenisedAtOnce() throws {
        let dir = TestData.scratch("retriever-examples")
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(9, seed: 4, passages: 6), to: dir + "/data.json")
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let (P, Lq, L) = (4, 8, 12)
        let set = try RetrieverExamples(path: dir + "/data.json", tokenizer: tok, nContext: P, questionMaxlength: Lq,
                                        passageMaxlength: L, threads: 2)
        #expect(set.count == 9 && set.hasAnswerFlags)
        // The old way: every example loaded, its passages sorted by score (stable), all tokenised together.
        let all = try FiDData(path: dir + "/data.json").load()
        let kept = all.map { e in Array(e.ctxs.indices.sorted { e.ctxs[$0].score! > e.ctxs[$1].score! }.prefix(P)) }
        let q = tok.encodeBatch(all.map { RetrieverModel.questionText($0.question) }, maxLength: Lq, threads: 1)  // (9, Lq)
        let p = tok.encodeBatch(zip(all, kept).flatMap { e, ks in ks.map { RetrieverModel.passageText(title: e.ctxs[$0].title, text: e.ctxs[$0].text) } },
                                maxLength: L, threads: 1)  // (9·P, L)
        let ks = [5, 0, 8, 3]
        let prepared = try set.prepared(ks)
        let b = prepared.batch
        #expect(b.questions == 4 && b.passages == P && b.questionLength == Lq && b.passageLength == L)
        func rows<T>(_ a: [T], _ width: Int) -> [T] {
            var out: [T] = []
            for k in ks { out += a[(k * width)..<((k + 1) * width)] }
            return out
        }
        let qMask: [Float] = rows(q.mask, Lq).map(Float.init), pMask: [Float] = rows(p.mask, P * L).map(Float.init)
        #expect(b.questionIds == rows(q.ids, Lq) && b.questionMask == qMask)
        #expect(b.passageIds == rows(p.ids, P * L) && b.passageMask == pMask)
        #expect(b.readerScores == ks.flatMap { k in kept[k].map { Float(all[k].ctxs[$0].score!) } })
        #expect(prepared.originalRank == ks.map { kept[$0] })
        #expect(prepared.hasAnswer[0][0] && prepared.hasAnswer.allSatisfy { $0.filter { $0 }.count == 1 }, "the gold passage has the top score")
    }
}
