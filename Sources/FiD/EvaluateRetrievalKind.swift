// EvaluateRetrievalKind: the `evaluate_retrieval` job (FiD's evaluate_retrieved_passages.py): answer recall@k of the passages a FiD data file already holds.
import Formats
import Foundation
import Jobs
import Retrieval
import Tensor

/// `evaluate_retrieval` params: FiD's `data`, plus `n_docs` (count only each question's first
/// `n_docs` passages) and `sort_by_score` (rank each question's passages by their `score` first,
/// e.g. the reader's cross-attention scores `score` writes, which keep the retrieval order).
public struct EvaluateRetrievalParams: JobParams {
    public var data = ""
    public var nDocs: Int?
    public var sortByScore = false
    /// FiD's options given that change nothing here (logged).
    public var ignored = FiDIgnoredOptions()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data
        case nDocs = "n_docs"
        case sortByScore = "sort_by_score"
        case validationWorkers = "validation_workers"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        data = try c.decode(String.self, forKey: .data)
        nDocs = try c.decodeInteger(.nDocs)
        if let n = nDocs { _ = try c.require(n, .nDocs, "an integer >= 1") { $0 >= 1 } }
        sortByScore = try c.decode(.sortByScore, default: false)
        ignored = FiDIgnoredOptions(c, [(.validationWorkers, "answer matching runs on the job's threads")])
    }

    /// The params as a descriptor carries them (the options without effect left out).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(data, forKey: .data)
        try c.encodeIfPresent(nDocs, forKey: .nDocs)
        try c.encode(sortByScore, forKey: .sortByScore)
    }

    public var inputPaths: [(field: String, path: String)] { [("data", data)] }

    /// At submit: the file is FiD data.
    public func validateInputs(resolve: (String) -> String) throws {
        try ScoreParams.checkFirstExample(resolve(data), field: "params.data", needAnswers: false, passages: .textOrNull)
    }
}

public struct EvaluateRetrievalOutput: Codable, Sendable {
    public var data: String
    public var questions: Int
    /// The longest passage list counted (after `n_docs`).
    public var nDocs: Int
    public var sortByScore: Bool
    /// Answer recall (DPR's has_answer on each passage's text) at 1, 5, 20, 100 and the lists' own
    /// depth, as `retrieve` reports it.
    public var recall: [String: Double]
    /// FiD's and DPR's list: the fraction of questions answered within the top k, k = 1…n_docs.
    public var topKAccuracy: [Double]
    /// Questions given fewer passages than `n_docs`, and the shortest list; absent when none is.
    public var shortQuestions: Int?
    public var fewestDocs: Int?
    /// Questions without answers (DPR counts them, as misses).
    public var questionsWithoutAnswers: Int
    /// Passages carrying a `hasanswer` (fidq, FiD) or `has_answer` (DPR) flag, and how many of those
    /// flags differ from DPR's has_answer recomputed here.
    public var storedFlags: Int
    public var storedFlagsDisagreeing: Int
    /// With `sort_by_score`: passages the reader did not score, counted after those it did (in file
    /// order), in questions it scored only partly; absent when none.
    public var unrankedPassages: Int?
    public var note: String?
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case data, questions, recall, note, seconds
        case nDocs = "n_docs"
        case sortByScore = "sort_by_score"
        case topKAccuracy = "top_k_accuracy"
        case shortQuestions = "short_questions"
        case fewestDocs = "fewest_docs"
        case questionsWithoutAnswers = "questions_without_answers"
        case storedFlags = "stored_flags"
        case storedFlagsDisagreeing = "stored_flags_disagreeing"
        case unrankedPassages = "unranked_passages"
    }
}

/// `evaluate_retrieval`: streams the data file and counts, per question, the rank of the first
/// passage whose text holds an answer (DPR's `has_answer`, as `retrieve` marks passages), in
/// blocks of questions matched on every thread. The file is read, never written.
public struct EvaluateRetrievalKind: JobKind {
    public init() {}
    public var name: String { "evaluate_retrieval" }

    /// A question's passages as counted: ranked by `score` (FiD's order: descending, stable) when
    /// asked, then the first `n_docs`. Where the reader scored only some passages (numbers; the
    /// others keep a retrieval's string scores or none: score read fewer than the file holds),
    /// those are ranked and the others follow in file order, as a re-ranker leaves what it did not read.
    /// - Returns: the passages and how many followed unranked.
    /// - Throws: an example none of whose passages can be ranked (no score, or nan), naming it.
    static func counted(_ ex: FiDExample, _ p: EvaluateRetrievalParams, file: String) throws -> (passages: [FiDPassage], unranked: Int) {
        var ctxs = ex.ctxs, unranked = 0
        if p.sortByScore {
            if let read = FiDPassage.readerScoredWhenMixed(ctxs) {
                unranked = ctxs.count - read.count
            } else if let j = ctxs.firstIndex(where: { $0.score?.isNaN ?? true }) {
                throw JobError.permanent("\(file): example \(ex.idText), passage \(j) has \(ctxs[j].score == nil ? "no score" : "the score nan") to rank by",
                                         field: "params.data",
                                         hint: "drop sort_by_score to count the passages in file order, or score them first (score's write_crossattention_scores)")
            }
            ctxs = FiDFormat.ordered(ctxs)
        }
        if let n = p.nDocs, ctxs.count > n { ctxs.removeLast(ctxs.count - n) }
        return (ctxs, unranked)
    }

    public func run(_ p: EvaluateRetrievalParams, _ context: JobContext) throws -> EvaluateRetrievalOutput {
        let t0 = monotonicNow()
        if let line = p.ignored.note("evaluate_retrieval") { context.log(line) }
        let file = context.resolve(p.data)
        var recall = RecallAtK()
        var lengths: [Int] = []
        var withoutAnswers = 0, stored = 0, disagreeing = 0, partly = 0, unranked = 0
        var firstDisagreement: String?
        var shortest: (length: Int, question: String)?
        var block: [FiDExample] = []
        let blockSize = 512
        // Counted by structure first (a small part of the matching's time), so progress has a total and an ETA.
        let total: Int
        // FiD's evaluation reads a passage's text alone, a null one as holding no answer.
        var data = FiDData(path: file)
        data.passages = .textOrNull
        do { total = try data.count() } catch let e as FormatError { throw JobError.permanent(e.description, field: "params.data") }
        /// Matches one block on every thread, then counts it in file order.
        func flush() throws {
            try context.checkCancelled()
            let counted = try block.map { try Self.counted($0, p, file: file) }
            let ranked = counted.map(\.passages)
            var flags = [[Bool]](repeating: [], count: block.count)
            flags.withUnsafeMutableBufferPointer { out in
                parallelFor(block.count) { range in
                    for i in range {
                        let answers = block[i].answers.map(AnswerMatch.normalizedTokens)
                        out[i] = ranked[i].map { !$0.textMissing && AnswerMatch.hasAnswer(answerTokens: answers, words: AnswerMatch.normalizedTokens($0.text)) }
                    }
                }
            }
            for (i, ex) in block.enumerated() {
                recall.add(flags[i])
                lengths.append(flags[i].count)
                if shortest == nil || flags[i].count < shortest!.length { shortest = (flags[i].count, ex.idText) }
                if ex.answers.isEmpty { withoutAnswers += 1 }
                if counted[i].unranked > 0 { (partly, unranked) = (partly + 1, unranked + counted[i].unranked) }
                for (j, passage) in ranked[i].enumerated() {
                    guard let flag = passage.storedAnswerFlag else { continue }
                    stored += 1
                    if flag != flags[i][j] {
                        disagreeing += 1
                        if firstDisagreement == nil {
                            firstDisagreement = "example \(ex.idText), passage \(j)\(p.sortByScore ? " by score" : ""): stored \(flag), recomputed \(flags[i][j])"
                        }
                    }
                }
            }
            context.progress.update(step: recall.questions, total: total)
            block.removeAll(keepingCapacity: true)
        }
        do {
            try data.forEach { ex in
                block.append(ex)
                if block.count == blockSize { try flush() }
            }
            try flush()
        } catch let e as FormatError {
            throw JobError.permanent(e.description, field: "params.data")  // the description holds the hint
        }
        let depth = lengths.max() ?? 0
        guard depth > 0 else {
            throw JobError.permanent("\(file): none of its \(recall.questions) questions has passages (ctxs) to evaluate", field: "params.data",
                                     hint: "retrieve passages for these questions first (a retrieve job writes them)")
        }
        var notes: [String] = []
        let full = p.nDocs.map { min($0, depth) } ?? depth
        let short = lengths.filter { $0 < full }.count
        if short > 0, let shortest {
            notes.append("\(short) of \(recall.questions) questions have fewer than \(full) passages (fewest \(shortest.length), question \(shortest.question)); "
                         + "recall@k counts the passages they have")
        }
        if partly > 0 {
            notes.append("in \(partly) of \(recall.questions) questions the reader scored only some passages (score's n_context was lower): "
                         + "those are ranked by score, and the \(unranked) others (a retrieval's scores or none) follow them in file order")
        }
        if withoutAnswers > 0 {
            notes.append("\(withoutAnswers) of \(recall.questions) questions have no answers: counted as misses, as DPR counts them")
        }
        if let firstDisagreement {
            notes.append("\(disagreeing) of \(stored) stored hasanswer flags differ from DPR's has_answer recomputed on the text (first: \(firstDisagreement)); "
                         + "recall counts the recomputed ones")
        }
        for n in notes { context.log("evaluate_retrieval: " + n) }
        var r: [String: Double] = [:]
        let depths = RetrieveKind.recallDepths(returned: depth)
        for at in depths { r[String(at)] = recall.recall(at: at) }
        let accuracy = (1...depth).map { recall.recall(at: $0) }
        context.log("evaluate_retrieval: \(recall.questions) questions, \(depth) passage\(depth == 1 ? "" : "s") deep\(p.sortByScore ? ", ranked by score" : ""): "
                    + depths.map { "recall@\($0) \(r[String($0)]!)" }.joined(separator: ", "))
        // FiD's own log lines, so its users find what they grep for.
        context.log("Validation results: top k documents hits \(recall.hits)")
        return EvaluateRetrievalOutput(
            data: file, questions: recall.questions, nDocs: depth, sortByScore: p.sortByScore, recall: r, topKAccuracy: accuracy,
            shortQuestions: short > 0 ? short : nil, fewestDocs: short > 0 ? shortest?.length : nil, questionsWithoutAnswers: withoutAnswers,
            storedFlags: stored, storedFlagsDisagreeing: disagreeing, unrankedPassages: unranked > 0 ? unranked : nil, note: notes.isEmpty ? nil : notes.joined(separator: "; "),
            seconds: monotonicNow() - t0)
    }
}
