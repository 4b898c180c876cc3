// RetrieverExamples: FiD examples with reader scores as the retriever's training data: each
// question's top n_context passages by reader score (FiD's Dataset sort), tokenised per batch with
// FiD's texts, and the answer flags and original ranks the evaluation reports recall with.
import Foundation
import Formats
import Models
import Retrieval
import Tensor
import Tokenizers

/// Retriever examples (fid-spec §5.5), indexed in the data file and tokenised a batch at a time:
/// question ids (Lq), P passages of L ids, the reader's scores, sorted by reader score descending
/// (FiD's stable sort), so passage 0 is the reader's top passage.
public struct RetrieverExamples {
    public let path: String
    /// The file's examples, each parsed when a batch needs it (issue 11: never the whole file).
    public let data: IndexedFiDData
    /// P, Lq, L.
    public let P: Int, Lq: Int, L: Int
    /// Whether any example has `hasanswer` flags or `answers` to match (answer recall needs them);
    /// a passage with neither counts as a miss (as `evaluate_retrieval` counts it).
    public let hasAnswerFlags: Bool
    /// Examples with a kept passage without a flag and no `answers`: those passages are misses.
    public let withoutAnswers: Int
    /// Examples whose passages past the reader's (a retrieval's scores, or none) were left out.
    public let partlyScored: Int
    /// The kept score farthest from 0 and where it is (`[k].ctxs[j].score`): divided by the
    /// temperature, it must stay a float32.
    public let largestScore: (magnitude: Float, location: String)?
    /// What the file holds, for the settings a training checkpoint records.
    public let fingerprint: ExamplesFingerprint
    let tokenizer: any Tokenizer
    let threads: Int?
    /// Pad each batch's questions (passages) to its longest row rather than to Lq (L), as
    /// `RetrieverModel.embed` does. Exact only for a model that masks that side
    /// (`apply_question_mask` / `apply_passage_mask`): FiD pads to the maximum length, and unmasked
    /// padding tokens change the embeddings. It saves what the maximum overshoots the batch's rows.
    public var trimQuestions = false, trimPassages = false

    /// One example as the retriever sees it.
    struct Prepared {
        var question: String
        /// (P) passage texts, scores, positions in the file's `ctxs` (the original retrieval's rank), flags.
        var passages: [String], scores: [Float], originalRank: [Int], hasAnswer: [Bool?]
    }

    /// A batch with what the evaluation reports recall with.
    struct PreparedBatch {
        var batch: RetrieverBatch
        /// Per example: (P) original ranks and `hasanswer` flags (false where missing).
        var originalRank: [[Int]], hasAnswer: [[Bool]]
    }

    /// Indexes `path`, checking every example as it is scanned.
    ///
    /// - Throws: `FormatError` naming the file, the example (`[k]`) and the field: a passage
    ///   without the reader's `score`, fewer than `nContext` passages; the data reader's errors.
    public init(path: String, tokenizer: any Tokenizer, nContext: Int, questionMaxlength: Int, passageMaxlength: Int,
                threads: Int) throws {
        try self.init(path: path, tokenizer: tokenizer, nContext: nContext, questionMaxlength: questionMaxlength,
                      passageMaxlength: passageMaxlength, threads: threads, log: nil)
    }

    /// `init`, the scan reported by `log` (a job's).
    init(path: String, tokenizer: any Tokenizer, nContext: Int, questionMaxlength: Int, passageMaxlength: Int,
         threads: Int, log: ScanLog?) throws {
        self.path = path
        // The first bad example is thrown after the scan, so the file's JSON errors come first, as
        // when the whole file was loaded before the checks.
        var failure: Error? = nil
        var withFlags = 0, without = 0
        var partly = 0
        var largest: (magnitude: Float, location: String)? = nil
        var print = ExamplesFingerprint()
        let check: (FiDExample) throws -> Void = { e in
            print.add(e)
            guard failure == nil else { return }
            if FiDPassage.readerScoredWhenMixed(e.ctxs) != nil { partly += 1 }
            do {
                // Answers stand in for missing flags; matched per batch, not in this scan.
                let prepared = try Self.prepare(e, path: path, nContext: nContext, matchAnswers: false)
                if prepared.hasAnswer.contains(where: { $0 == nil }) && e.answers.isEmpty { without += 1 } else { withFlags += 1 }
                for (s, j) in zip(prepared.scores, prepared.originalRank) where abs(s) > (largest?.magnitude ?? -1) {
                    largest = (abs(s), "[\(e.index)].ctxs[\(j)].score")
                }
            } catch { failure = error }
        }
        let file = FiDData(path: path)
        data = try log.map { try file.index(logging: $0, check: check) } ?? file.index(check: check)
        if let failure { throw failure }
        hasAnswerFlags = withFlags > 0
        withoutAnswers = without
        partlyScored = partly
        largestScore = largest
        fingerprint = print
        self.tokenizer = tokenizer
        self.threads = threads
        P = nContext
        Lq = questionMaxlength
        L = passageMaxlength
    }

    /// Examples indexed.
    public var count: Int { data.count }

    static func prepare(_ e: FiDExample, path: String, nContext: Int, matchAnswers: Bool = true) throws -> Prepared {
        let at = "[\(e.index)]"
        guard e.ctxs.count >= nContext else {
            throw FormatError(file: path, location: at + ".ctxs",
                              "has \(e.ctxs.count) passages, fewer than n_context \(nContext)",
                              hint: e.ctxs.isEmpty
                                  ? "train_retriever reads each question's passages with the reader's scores: the dataset_wscores.json a score job writes"
                                  : "lower n_context, or drop examples with fewer passages")
        }
        // A score job that read fewer passages than the file holds (n_context 10 of 20) scored
        // only those: the rest keep the retrieval's scores, another scale, which FiD's sort would
        // mix in. Only the reader's are ranked (`FiDFormat.orderedIndices` puts them first) and distilled.
        if let read = FiDPassage.readerScoredWhenMixed(e.ctxs) {
            guard read.count >= nContext else {
                let j = e.ctxs.indices.first { !e.ctxs[$0].hasReaderScore }!
                throw FormatError(file: path, location: at + ".ctxs[\(j)].score",
                                  (e.ctxs[j].raw["score"] == nil ? "missing" : "a string, as a retrieval writes its own scores")
                                      + ": the reader scored \(read.count) of this example's \(e.ctxs.count) passages, fewer than n_context \(nContext)",
                                  hint: "score this data with n_context \(e.ctxs.count) (score's n_context sets how many passages it reads and scores), "
                                      + "or lower n_context to \(read.count)")
            }
        } else {
            for (j, c) in e.ctxs.enumerated() where c.score == nil {
                throw FormatError(file: path, location: at + ".ctxs[\(j)].score",
                                  "missing: train_retriever learns from the reader's score of every passage",
                                  hint: "use the dataset_wscores.json a score job writes (write_crossattention_scores)")
            }
            // Scores written as strings are a retrieval's own (FiD's passage_retrieval.py and `retrieve`
            // write str(score); a reader's scores are numbers): distilling them would teach the
            // retriever its own ranking back, which FiD does without a word.
            if !e.ctxs.isEmpty, e.ctxs.allSatisfy({ if case .string? = $0.raw["score"] { return true } else { return false } }) {
                throw FormatError(file: path, location: at + ".ctxs[0].score",
                                  "is a string (\(e.ctxs[0].raw["score"].map { PyJSON.compact($0) } ?? "")), as a retrieval writes its own scores, "
                                      + "and train_retriever distils the reader's",
                                  hint: "use the dataset_wscores.json a score job writes (write_crossattention_scores); to distil these "
                                      + "retrieval scores on purpose, write them as numbers")
            }
        }
        // FiD's Dataset: ctxs sorted by float(score) descending (stable), first n_context kept.
        let kept = Array(FiDFormat.orderedIndices(e.ctxs).prefix(nContext))
        // The loss runs in float32: a score it cannot hold would turn every gradient to NaN while
        // the loss stays finite.
        for j in kept where !Float(e.ctxs[j].score!).isFinite {
            throw FormatError(file: path, location: at + ".ctxs[\(j)].score",
                              e.ctxs[j].score!.isNaN ? "nan is not a number: the loss cannot use it"
                                  : "\(e.ctxs[j].score!) is beyond a 32-bit float's range (about ±3.4e38), in which the loss is computed",
                              hint: "a reader's scores are averaged attention logits, far inside it: check what wrote this file")
        }
        return Self.prepared(e, kept: kept, matchAnswers: matchAnswers)
    }

    /// The example with the passages `kept` (positions in `ctxs`, best first).
    static func prepared(_ e: FiDExample, kept: [Int], matchAnswers: Bool) -> Prepared {
        // The data's flags (FiD's and DPR's retrieval outputs write them); else DPR's has_answer
        // of the example's answers in the passage text, as `retrieve` sets them.
        let answerTokens = e.answers.isEmpty || !matchAnswers ? nil : e.answers.map(AnswerMatch.normalizedTokens)
        let flags = kept.map { j -> Bool? in
            if let b = e.ctxs[j].storedAnswerFlag { return b }
            return answerTokens.map { AnswerMatch.hasAnswer(answerTokens: $0, words: AnswerMatch.normalizedTokens(e.ctxs[j].text)) }
        }
        return Prepared(question: RetrieverModel.questionText(e.question),
                        passages: kept.map { RetrieverModel.passageText(title: e.ctxs[$0].title, text: e.ctxs[$0].text) },
                        scores: kept.map { Float(e.ctxs[$0].score!) }, originalRank: kept, hasAnswer: flags)
    }

    /// The batch of examples `ks`, read and tokenised now.
    public func batch(_ ks: [Int]) throws -> RetrieverBatch { try prepared(ks).batch }

    func prepared(_ ks: [Int]) throws -> PreparedBatch {
        let exs = try ks.map { try Self.prepare(data.example(at: $0), path: path, nContext: P) }
        let q = tokenizer.encodeBatch(exs.map(\.question), maxLength: Lq, padToMaxLength: !trimQuestions,
                                      threads: threads)                                              // (B, lq ≤ Lq)
        let p = tokenizer.encodeBatch(exs.flatMap(\.passages), maxLength: L, padToMaxLength: !trimPassages,
                                      threads: threads)                                              // (B·P, l ≤ L)
        let batch = RetrieverBatch(questions: ks.count, passages: P, questionLength: q.length, passageLength: p.length,
                                   questionIds: q.ids, questionMask: q.mask.map(Float.init),
                                   passageIds: p.ids, passageMask: p.mask.map(Float.init),
                                   readerScores: exs.flatMap(\.scores))
        return PreparedBatch(batch: batch, originalRank: exs.map(\.originalRank), hasAnswer: exs.map { $0.hasAnswer.map { $0 ?? false } })
    }
}
