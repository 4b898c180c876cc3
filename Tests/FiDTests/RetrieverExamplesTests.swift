// RetrieverExamplesTests: batches read and tokenised on demand equal those of the whole file
// loaded and tokenised at once (how train_retriever read its data before issue 11's index), and
// trimmed batches keep a masked model's numbers.
import Foundation
import Testing
import Models
import Tensor
import Tokenizers
@testable import FiD

@Suite struct RetrieverExamplesTests {
    /// A scratch folder with the synthetic model files and 9 examples of 6 scored passages, and
    /// their retriever examples at n_context P and lengths Lq, L.
    static func fixture(_ name: String, P: Int, Lq: Int, L: Int) throws -> (dir: String, tok: any Tokenizer, set: RetrieverExamples) {
        let dir = TestData.scratch(name)
        try SyntheticRetrieval.writeModelFiles(dir)
        try SyntheticRetrieval.write(SyntheticRetrieval.examples(9, seed: 4, passages: 6), to: dir + "/data.json")
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let set = try RetrieverExamples(path: dir + "/data.json", tokenizer: tok, nContext: P, questionMaxlength: Lq,
                                        passageMaxlength: L, threads: 2)
        return (dir, tok, set)
    }

    @Test func batchesEqualTheWholeFileTokenisedAtOnce() throws {
        let (P, Lq, L) = (4, 8, 12)
        let (dir, tok, set) = try Self.fixture("retriever-examples", P: P, Lq: Lq, L: L)
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

    /// Without `hasanswer` flags the example's `answers` are matched as DPR does (`retrieve`'s
    /// marks); with neither there is no recall to report.
    @Test func answersStandInForMissingFlags() throws {
        let dir = TestData.scratch("retriever-examples-answers")
        try SyntheticRetrieval.writeModelFiles(dir)
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let ctxs = #"[{"title": "a", "text": "The river Élan runs north.", "score": 1}, {"title": "Elan", "text": "A lake.", "score": 3}, "#
            + #"{"title": "b", "text": "elan, again", "score": 2, "hasanswer": false}]"#
        try TestData.write(#"[{"question": "q", "answers": ["Elan"], "ctxs": \#(ctxs)}]"#, to: dir + "/answers.json")
        let set = try RetrieverExamples(path: dir + "/answers.json", tokenizer: tok, nContext: 3, questionMaxlength: 8,
                                        passageMaxlength: 8, threads: 1)
        #expect(set.hasAnswerFlags)
        // Sorted by score: "A lake." (the title is not matched), the flag kept as given, then the
        // accented text (NFD, accents kept: "Élan" is not "Elan", as in DPR).
        #expect(try set.prepared([0]).hasAnswer == [[false, false, false]])
        try TestData.write(#"[{"question": "q", "answers": ["elan"], "ctxs": \#(ctxs)}]"#, to: dir + "/answers.json")
        let lower = try RetrieverExamples(path: dir + "/answers.json", tokenizer: tok, nContext: 3, questionMaxlength: 8,
                                          passageMaxlength: 8, threads: 1)
        #expect(try lower.prepared([0]).hasAnswer == [[false, false, false]])
        try TestData.write(#"[{"question": "q", "answers": ["runs north"], "ctxs": \#(ctxs)}]"#, to: dir + "/answers.json")
        let phrase = try RetrieverExamples(path: dir + "/answers.json", tokenizer: tok, nContext: 3, questionMaxlength: 8,
                                           passageMaxlength: 8, threads: 1)
        #expect(try phrase.prepared([0]).hasAnswer == [[false, false, true]])
        try TestData.write(#"[{"question": "q", "ctxs": \#(ctxs)}]"#, to: dir + "/answers.json")
        let none = try RetrieverExamples(path: dir + "/answers.json", tokenizer: tok, nContext: 3, questionMaxlength: 8,
                                         passageMaxlength: 8, threads: 1)
        #expect(!none.hasAnswerFlags)
        // One example of two without either: recall is still reported, that one counted a miss
        // (it dropped recall for the whole set).
        try TestData.write(#"[{"question": "q", "answers": ["runs north"], "ctxs": \#(ctxs)}, {"question": "r", "ctxs": \#(ctxs)}]"#,
                           to: dir + "/answers.json")
        let some = try RetrieverExamples(path: dir + "/answers.json", tokenizer: tok, nContext: 3, questionMaxlength: 8,
                                         passageMaxlength: 8, threads: 1)
        #expect(some.hasAnswerFlags && some.withoutAnswers == 1)
        #expect(try some.prepared([0, 1]).hasAnswer == [[false, false, true], [false, false, false]])
    }

    /// Questions without passages (the example's train.json, not a score job's output) are named
    /// as such, not as "lower n_context".
    @Test func questionsWithoutPassagesNameTheScoredFile() throws {
        let dir = TestData.scratch("retriever-examples-empty")
        try SyntheticRetrieval.writeModelFiles(dir)
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        for (ctxs, hint) in [("[]", "dataset_wscores.json"), (#"[{"title": "a", "text": "b", "score": 1}]"#, "lower n_context")] {
            try TestData.write(#"[{"question": "q", "answers": ["a"], "ctxs": \#(ctxs)}]"#, to: dir + "/q.json")
            do {
                let set = try RetrieverExamples(path: dir + "/q.json", tokenizer: tok, nContext: 2, questionMaxlength: 8,
                                                passageMaxlength: 8, threads: 1)
                _ = try set.prepared([0])
                Issue.record("accepted ctxs \(ctxs)")
            } catch {
                #expect("\(error)".contains("[0].ctxs: has") && "\(error)".contains("(hint: ") && "\(error)".contains(hint), "\(error)")
            }
        }
    }

    /// A retrieval's output (scores written as strings, as FiD's passage_retrieval.py and
    /// `retrieve` write them) is not a reader's scores: refused, pointing at dataset_wscores.json.
    /// The same scores as numbers are read. A string beside a number is a passage the reader did
    /// not score: with n_context 2 it would be distilled as the reader's, so it is refused too.
    @Test func retrievalScoresAreNotTakenForTheReaders() throws {
        let dir = TestData.scratch("retriever-examples-strings")
        try SyntheticRetrieval.writeModelFiles(dir)
        let tok = try TokenizerLoader.load(dir + "/vocab.txt")
        let refusals = [#"[0].ctxs[0].score: is a string ("12.5")"#, "dataset_wscores.json"]
        let partly = [#"[0].ctxs[0].score: a string"#, "the reader scored 1 of this example's 2 passages", "n_context 2"]
        // A score float32 cannot hold would make every gradient NaN with a finite loss.
        let huge = ["[0].ctxs[0].score: 1e+39 is beyond a 32-bit float's range", "(hint: "]
        for (a, b, refusal) in [(#""12.5""#, #""3.25""#, refusals), ("12.5", "3.25", nil), (#""12.5""#, "3.25", partly),
                                ("1e39", "3.25", huge), ("NaN", "3.25", ["[0].ctxs[0].score: nan is not a number"])] {
            try TestData.write(#"[{"question": "q", "answers": ["a"], "ctxs": [{"title": "t", "text": "a", "score": \#(a)}, {"title": "u", "text": "b", "score": \#(b)}]}]"#,
                               to: dir + "/q.json")
            do {
                let set = try RetrieverExamples(path: dir + "/q.json", tokenizer: tok, nContext: 2, questionMaxlength: 8, passageMaxlength: 8, threads: 1)
                #expect(try set.prepared([0]).batch.readerScores == [12.5, 3.25])
                #expect(refusal == nil, "took retrieval scores \(a), \(b) for the reader's")
            } catch {
                #expect(refusal?.allSatisfy { "\(error)".contains($0) } == true, "\(error)")
            }
        }
    }

    /// Trimming cuts each batch to its longest row; a model that masks both sides gives the same
    /// loss, scores and gradients (float32 sums over fewer zero terms), and one that does not
    /// mask gives other scores, which is why trimming follows the model's mask flags.
    @Test func trimmedBatchesKeepAMaskedModelsLossScoresAndGradients() throws {
        let (Lq, L) = (16, 32)
        let (dir, _, full) = try Self.fixture("retriever-examples-trim", P: 4, Lq: Lq, L: L)
        var cut = full
        cut.trimQuestions = true
        cut.trimPassages = true
        let ks = [5, 0, 8, 3]
        let b = try full.prepared(ks).batch, t = try cut.prepared(ks).batch
        let (lq, l) = (t.questionLength, t.passageLength)
        #expect(lq < Lq && l < L, "nothing trimmed: \(lq), \(l)")
        // The kept columns are the full batch's first ones; every cut column is padding, and the
        // last kept column holds some row's token.
        func columns<T>(_ a: [T], width: Int, keep: Int) -> [T] {
            stride(from: 0, to: a.count, by: width).flatMap { a[$0..<($0 + keep)] }
        }
        #expect(t.questionIds == columns(b.questionIds, width: Lq, keep: lq) && t.questionMask == columns(b.questionMask, width: Lq, keep: lq))
        #expect(t.passageIds == columns(b.passageIds, width: L, keep: l) && t.passageMask == columns(b.passageMask, width: L, keep: l))
        #expect(b.passageMask.reduce(0, +) == t.passageMask.reduce(0, +) && b.questionMask.reduce(0, +) == t.questionMask.reduce(0, +))
        #expect(stride(from: l - 1, to: t.passageMask.count, by: l).contains { t.passageMask[$0] == 1 })

        var config = try BertConfig.load(path: dir + "/config.json")
        for masked in [true, false] {
            config.applyQuestionMask = masked
            config.applyPassageMask = masked
            let model = BertRetriever(config: config)
            model.initialize(seed: 3)
            let g1 = ParameterSlab(layout: model.layout), g2 = ParameterSlab(layout: model.layout)
            let o1 = model.forward(b)
            model.backward(into: g1)
            let o2 = model.forward(t)
            model.backward(into: g2)
            let scoreGap = zip(o1.scores.data, o2.scores.data).map { abs($0 - $1) }.max()!
            let scale = o1.scores.data.map { abs($0) }.max()!
            if !masked {
                #expect(scoreGap > 1e-3 * scale, "unmasked padding should change the scores: gap \(scoreGap)")
                continue
            }
            // Rounding only: sums over ≤ 32 terms of float32 products, relative 1e-5 is ~10× that.
            #expect(scoreGap <= 1e-5 * scale, "scores: gap \(scoreGap), scale \(scale)")
            #expect(abs(o1.loss! - o2.loss!) <= 1e-5 * abs(o1.loss!), "loss \(o1.loss!) against \(o2.loss!)")
            for e in model.layout.entries {
                let a = g1.tensor(e.name).data, c = g2.tensor(e.name).data
                let gscale = a.map { abs($0) }.max()!, gap = zip(a, c).map { abs($0 - $1) }.max()!
                #expect(gap <= 1e-4 * gscale + 1e-12, "\(e.name): gradient gap \(gap), scale \(gscale)")
            }
        }
    }
}
