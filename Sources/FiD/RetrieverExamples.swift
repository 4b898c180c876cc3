// RetrieverExamples: FiD examples with reader scores as the retriever's training data: each
// question's top n_context passages by reader score (FiD's Dataset sort), tokenised once with FiD's
// texts, and the answer flags and original ranks the evaluation reports recall with.
import Foundation
import Formats
import Models
import Tensor
import Tokenizers

/// Tokenised retriever examples (fid-spec §5.5): question ids (Lq), P passages of L ids, the
/// reader's scores, sorted by reader score descending (FiD's stable sort), so passage 0 is the
/// reader's top passage.
public struct RetrieverExamples {
    public let path: String
    public let examples: [FiDExample]
    /// P, Lq, L.
    public let P: Int, Lq: Int, L: Int
    /// Per example: (Lq) ids and mask.
    let qIds: [[Int32]], qMask: [[Float]]
    /// Per example: (P·L) ids and mask.
    let pIds: [[Int32]], pMask: [[Float]]
    /// Per example: (P) reader scores in the sorted order.
    let scores: [[Float]]
    /// Per example: (P) each kept passage's position in the file's `ctxs` (the original retrieval's rank).
    let originalRank: [[Int]]
    /// Per example: (P) the data's `hasanswer` flags (nil when the file has none).
    let hasAnswer: [[Bool]]?

    /// Reads and tokenises `path`.
    ///
    /// - Throws: `FormatError` naming the file, the example (`[k]`) and the field: a passage
    ///   without the reader's `score`, fewer than `nContext` passages; the data reader's errors.
    public init(path: String, tokenizer: any Tokenizer, nContext: Int, questionMaxlength: Int, passageMaxlength: Int,
                threads: Int) throws {
        self.path = path
        let examples = try FiDData(path: path).load()
        var qTexts: [String] = [], pTexts: [String] = []
        var scores: [[Float]] = [], ranks: [[Int]] = [], flags: [[Bool]] = []
        var allFlags = true
        for e in examples {
            let at = "[\(e.index)]"
            guard e.ctxs.count >= nContext else {
                throw FormatError(file: path, location: at + ".ctxs",
                                  "has \(e.ctxs.count) passages, fewer than n_context \(nContext)",
                                  hint: "lower n_context, or drop examples with fewer passages")
            }
            for (j, c) in e.ctxs.enumerated() where c.score == nil {
                throw FormatError(file: path, location: at + ".ctxs[\(j)].score",
                                  "missing: train_retriever learns from the reader's score of every passage",
                                  hint: "use the dataset_wscores.json a score job writes (write_crossattention_scores)")
            }
            // FiD's Dataset: ctxs sorted by float(score) descending (stable), first n_context kept.
            let order = e.ctxs.indices.sorted { e.ctxs[$0].score! > e.ctxs[$1].score! || (e.ctxs[$0].score! == e.ctxs[$1].score! && $0 < $1) }
            let kept = Array(order.prefix(nContext))
            qTexts.append(RetrieverModel.questionText(e.question))
            for j in kept { pTexts.append(RetrieverModel.passageText(title: e.ctxs[j].title, text: e.ctxs[j].text)) }
            scores.append(kept.map { Float(e.ctxs[$0].score!) })
            ranks.append(kept)
            let f = kept.map { j -> Bool? in
                if case .bool(let b)? = e.ctxs[j].raw["hasanswer"] { return b }
                if case .bool(let b)? = e.ctxs[j].raw["has_answer"] { return b }
                return nil
            }
            if f.contains(where: { $0 == nil }) { allFlags = false }
            flags.append(f.map { $0 ?? false })
        }
        let q = tokenizer.encodeBatch(qTexts, maxLength: questionMaxlength, threads: threads)
        let p = tokenizer.encodeBatch(pTexts, maxLength: passageMaxlength, threads: threads)
        let n = examples.count, Lq = questionMaxlength, L = passageMaxlength
        qIds = (0..<n).map { Array(q.ids[($0 * Lq)..<(($0 + 1) * Lq)]) }
        qMask = (0..<n).map { q.mask[($0 * Lq)..<(($0 + 1) * Lq)].map(Float.init) }
        let per = nContext * L
        pIds = (0..<n).map { Array(p.ids[($0 * per)..<(($0 + 1) * per)]) }
        pMask = (0..<n).map { p.mask[($0 * per)..<(($0 + 1) * per)].map(Float.init) }
        self.examples = examples
        self.scores = scores
        originalRank = ranks
        hasAnswer = allFlags ? flags : nil
        P = nContext
        self.Lq = Lq
        self.L = L
    }

    /// The batch of examples `ks`.
    public func batch(_ ks: [Int]) -> RetrieverBatch {
        RetrieverBatch(questions: ks.count, passages: P, questionLength: Lq, passageLength: L,
                       questionIds: ks.flatMap { qIds[$0] }, questionMask: ks.flatMap { qMask[$0] },
                       passageIds: ks.flatMap { pIds[$0] }, passageMask: ks.flatMap { pMask[$0] },
                       readerScores: ks.flatMap { scores[$0] })
    }
}
