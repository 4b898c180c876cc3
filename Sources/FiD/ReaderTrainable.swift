// ReaderTrainable: the FiD reader (T5Model + tokenizer + data) as a `Trainable`: one micro-batch's
// forward and backward with FiD's targets, greedy-decoding exact match on the dev set, saving.
import Foundation
import Models
import Tensor
import Tokenizers

/// FiD's reader under training (fid-spec §2.3–§2.4, §3.4, §8.2).
public final class ReaderTrainable: Trainable {
    public let model: T5Model
    public let tokenizer: any Tokenizer
    /// The tokenizer file copied into every saved folder (nil: none).
    public let tokenizerPath: String?
    let train: EncodedExamples
    let dev: EncodedExamples?
    /// Target tokens with `</s>` (-1: as long as the batch's longest).
    public let answerMaxlength: Int
    /// Questions per eval batch.
    public let evalBatchSize: Int

    public var params: ParameterSlab { model.params }
    public var trainCount: Int { train.examples.count }

    /// - Parameters:
    ///   - train, dev: examples with their file paths (for errors).
    public init(model: T5Model, tokenizer: any Tokenizer, tokenizerPath: String?, train: [ReaderExample], trainPath: String,
                dev: [ReaderExample]?, devPath: String?, nContext: Int, textMaxlength: Int, answerMaxlength: Int,
                evalBatchSize: Int, threads: Int) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizerPath = tokenizerPath
        self.answerMaxlength = answerMaxlength
        self.evalBatchSize = evalBatchSize
        self.train = try EncodedExamples(train, path: trainPath, tokenizer: tokenizer, nContext: nContext,
                                         textMaxlength: textMaxlength, threads: threads)
        self.dev = try dev.map {
            try EncodedExamples($0, path: devPath ?? "eval_data", tokenizer: tokenizer, nContext: nContext,
                                textMaxlength: textMaxlength, threads: threads)
        }
    }

    /// Ids of each target with `</s>` (FiD: `target + " </s>"`, or a random answer per fetch),
    /// truncated to `answer_maxlength` (which can cut the `</s>`, as in FiD), as labels
    /// padded with −100 to `answer_maxlength` or the longest.  // (B, T)
    func labels(_ targets: [String]) -> [Int32] {
        let eos = Int32(model.config.eosTokenId)
        var rows = targets.map { tokenizer.encode($0, addSpecialTokens: false) + [eos] }
        if answerMaxlength > 0 { rows = rows.map { Array($0.prefix(answerMaxlength)) } }
        let T = answerMaxlength > 0 ? answerMaxlength : rows.map(\.count).max()!
        var out = [Int32](repeating: CrossEntropy.ignoreIndex, count: rows.count * T)
        for (b, r) in rows.enumerated() { for (t, id) in r.enumerated() { out[b * T + t] = id } }
        return out
    }

    /// The encoder half of a batch of examples of `set`.  // ids, mask (B·P, L)
    func encoderInputs(_ set: EncodedExamples, _ examples: [Int]) -> (ids: [Int32], mask: [Float]) {
        var ids: [Int32] = [], mask: [Float] = []
        ids.reserveCapacity(examples.count * set.P * set.L)
        mask.reserveCapacity(examples.count * set.P * set.L)
        for k in examples {
            ids += set.ids[k]
            mask += set.mask[k]
        }
        return (ids, mask)
    }

    /// The training batch of `examples`: targets drawn as FiD's Dataset does (`target`, else a
    /// uniformly random answer from `rng`).
    public func batch(examples: [Int], rng: inout RNG) -> T5Batch {
        let targets = examples.map { k -> String in
            let e = train.examples[k]
            if let t = e.target { return t }
            return e.answers[Int(rng.next() % UInt64(e.answers.count))]
        }
        let y = labels(targets)
        let (ids, mask) = encoderInputs(train, examples)
        let c = model.config
        return T5Batch(
            questions: examples.count, passages: train.P, passageLength: train.L, inputIds: ids, attentionMask: mask,
            decoderInputIds: T5Batch.shiftRight(y, rows: examples.count, start: Int32(c.decoderStartTokenId), pad: Int32(c.padTokenId)),
            labels: y)
    }

    public func trainStep(examples: [Int], grads: ParameterSlab, rng: inout RNG) throws -> TrainStepStats {
        let b = batch(examples: examples, rng: &rng)
        let out = model.forward(b, training: true, rng: &rng)
        model.backward(into: grads)
        return TrainStepStats(loss: Double(out.loss ?? .nan), tokens: b.inputIds.count + b.labels!.count)
    }

    /// Greedy answers for dev examples (FiD's `generate`, fid-spec §3.4): at most
    /// `answer_maxlength` tokens, or FiD's `max_length=50` (49 tokens) without truncation.
    public func predict(_ examples: [Int]) throws -> [String] {
        guard let dev else { return [] }
        let (ids, mask) = encoderInputs(dev, examples)
        let c = model.config
        let maxLength = answerMaxlength > 0 ? answerMaxlength + 1 : 50
        var stepper = T5Stepper(model: model, questions: examples.count, passages: dev.P, passageLength: dev.L,
                                inputIds: ids, attentionMask: mask, maxLength: maxLength)
        let out = try Generation.greedy(&stepper, questions: examples.count, start: Int32(c.decoderStartTokenId),
                                        eos: Int32(c.eosTokenId), maxLength: maxLength)
        return out.map { tokenizer.decode($0, skipSpecialTokens: true).trimmingCharacters(in: .whitespaces) }
    }

    /// Exact match over the whole dev set, in batches of `evalBatchSize`.
    public func evaluate(_ report: (Int, Int) throws -> Void) throws -> Double? {
        guard let dev else { return nil }
        let n = dev.examples.count
        var hits = 0
        var start = 0
        while start < n {
            let ks = Array(start..<min(n, start + evalBatchSize))
            for (k, p) in zip(ks, try predict(ks)) where ReaderExamples.exactMatch(p, dev.examples[k].answers) { hits += 1 }
            start += ks.count
            try report(start, n)
        }
        return Double(hits) / Double(n)
    }

    /// FiD's cross-attention passage scores of dev examples (eval mode).  // (B, P)
    public func passageScores(_ examples: [Int]) -> Tensor {
        let (ids, mask) = encoderInputs(dev!, examples)
        // One decoder position (the start token) is what FiD's score uses at step 0.
        let b = T5Batch(questions: examples.count, passages: dev!.P, passageLength: dev!.L, inputIds: ids, attentionMask: mask,
                        decoderInputIds: [Int32](repeating: Int32(model.config.decoderStartTokenId), count: examples.count))
        var rng = RNG(seed: 0)
        return model.forward(b, training: false, rng: &rng, scores: true).scores!
    }

    public func saveModel(into dir: String) throws {
        try T5Saver.write(model, into: dir, tokenizer: tokenizerPath)
    }
}
