// RetrieverTrainable: FiD's retriever distillation (train_retriever.py, fid-spec §5) as a `Trainable`:
// one micro-batch's KL loss and backward, the whole-eval-set evaluation, saving.
import Foundation
import Models
import Tensor
import Tokenizers

/// What an evaluation of the retriever reports, over the whole eval set (FiD reports its last
/// batch's loss only).
public struct RetrieverEvaluation: Codable, Equatable, Sendable {
    /// Mean over examples of the KL loss (the configured reduction).
    public var loss: Double
    /// How often the retriever's top passage is the reader's top passage.
    public var top1Agreement: Double
    /// Answer recall at k (a `hasanswer` passage among the first k) of the retriever's ranking of
    /// each question's n_context passages, and of their original order in the file; nil when the
    /// data has neither `hasanswer` flags nor `answers` to match (DPR's has_answer).
    public var recall: [String: Double]?
    public var recallOriginal: [String: Double]?
    public var examples: Int

    enum CodingKeys: String, CodingKey {
        case loss, examples, recall
        case top1Agreement = "top1_agreement", recallOriginal = "recall_original_order"
    }
}

/// FiD's retriever under training.
public final class RetrieverTrainable: Trainable {
    public let model: BertRetriever
    public let tokenizerPath: String?
    let train: RetrieverExamples
    let dev: RetrieverExamples?
    let evalBatchSize: Int
    /// The last evaluation's figures.
    public private(set) var lastEvaluation: RetrieverEvaluation?
    /// Log lines of evaluations (the job's log).
    var log: (String) -> Void = { _ in }

    public var params: ParameterSlab { model.params }
    public var trainCount: Int { train.count }

    public init(model: BertRetriever, tokenizerPath: String?, train: RetrieverExamples, dev: RetrieverExamples?, evalBatchSize: Int) {
        self.model = model
        self.tokenizerPath = tokenizerPath
        self.train = train
        self.dev = dev
        self.evalBatchSize = evalBatchSize
    }

    public func trainStep(examples: [Int], grads: ParameterSlab, rng: inout RNG) throws -> TrainStepStats {
        let b = try train.batch(examples)
        let out = model.forward(b, training: true, rng: &rng)
        model.backward(into: grads)
        return TrainStepStats(loss: Double(out.loss ?? .nan), tokens: b.questionIds.count + b.passageIds.count)
    }

    /// The whole eval set in batches: mean loss, top-1 agreement with the reader, answer recall.
    /// The trainer's metric is −loss (FiD keeps `best_dev` at the lowest eval loss).
    public func evaluate(_ report: (Int, Int) throws -> Void) throws -> Double? {
        guard let dev else { return nil }
        let e = try evaluation(dev, report)
        lastEvaluation = e
        var line = "train_retriever: eval loss \(String(format: "%.5f", e.loss)) over \(e.examples) examples | top-1 agreement "
            + String(format: "%.2f", 100 * e.top1Agreement) + "%"
        if let r = e.recall, let o = e.recallOriginal {
            line += " | answer recall " + r.keys.sorted { Int($0)! < Int($1)! }.map {
                "@\($0) \(String(format: "%.1f", 100 * r[$0]!)) (original order \(String(format: "%.1f", 100 * o[$0]!)))"
            }.joined(separator: ", ")
        }
        log(line)
        return -e.loss
    }

    func evaluation(_ set: RetrieverExamples, _ report: (Int, Int) throws -> Void = { _, _ in }) throws -> RetrieverEvaluation {
        let n = set.count, P = set.P
        let ks = [1, 5, 20].filter { $0 <= P }
        var lossSum = 0.0, agree = 0
        var hits = [Int](repeating: 0, count: ks.count), hitsOriginal = [Int](repeating: 0, count: ks.count)
        var start = 0
        while start < n {
            let batch = Array(start..<min(n, start + evalBatchSize))
            let prepared = try set.prepared(batch)
            let out = model.forward(prepared.batch)
            lossSum += Double(out.loss!) * Double(batch.count)
            for row in batch.indices {
                let s = Array(out.scores.data[(row * P)..<((row + 1) * P)])
                // Ties go against the reader's order (a later passage first), so a collapsed
                // retriever scoring every passage alike earns no agreement and no recall.
                let ranking = s.indices.sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 > $1) }
                if ranking[0] == 0 { agree += 1 }
                if set.hasAnswerFlags {
                    let flags = prepared.hasAnswer[row], rank = prepared.originalRank[row]
                    let original = rank.indices.sorted { rank[$0] < rank[$1] }
                    for (i, top) in ks.enumerated() {
                        if ranking.prefix(top).contains(where: { flags[$0] }) { hits[i] += 1 }
                        if original.prefix(top).contains(where: { flags[$0] }) { hitsOriginal[i] += 1 }
                    }
                }
            }
            start += batch.count
            try report(start, n)
        }
        var recall: [String: Double]? = nil, recallOriginal: [String: Double]? = nil
        if set.hasAnswerFlags {
            recall = Dictionary(uniqueKeysWithValues: zip(ks.map(String.init), hits.map { Double($0) / Double(n) }))
            recallOriginal = Dictionary(uniqueKeysWithValues: zip(ks.map(String.init), hitsOriginal.map { Double($0) / Double(n) }))
        }
        return RetrieverEvaluation(loss: lossSum / Double(n), top1Agreement: Double(agree) / Double(n), recall: recall,
                                   recallOriginal: recallOriginal, examples: n)
    }

    /// The metric is −(eval loss): the log and `result.json` show the loss.
    public var devMetric: DevMetric { .evalLoss }

    public func saveModel(into dir: String) throws {
        try model.save(folder: dir, tokenizer: tokenizerPath)
    }
}
