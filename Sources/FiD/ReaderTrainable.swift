// ReaderTrainable: the FiD reader (T5Model + tokenizer + data) as a `Trainable`: one micro-batch's
// forward and backward with FiD's targets, greedy-decoding exact match on the dev set, saving.
import Foundation
import Jobs
import Models
import Tensor
import Tokenizers

/// FiD's reader under training (fid-spec §2.3–§2.4, §3.4, §8.2).
public final class ReaderTrainable: Trainable {
    public let model: T5Model
    public let collator: FiDCollator
    /// The tokenizer file copied into every saved folder (nil: none).
    public let tokenizerPath: String?
    /// Read by position when a batch needs them (an `IndexedFiDData` in a job; arrays in tests).
    public let train: any FiDExampleSource
    public let dev: (any FiDExampleSource)?
    /// Questions per eval batch.
    public let evalBatchSize: Int
    /// What the data files hold (`ExamplesFingerprint`s under `train_data` and `eval_data`), for
    /// the settings a checkpoint records.
    public var dataSettings: [String: JSONValue] = [:]

    public var params: ParameterSlab { model.params }
    public var trainCount: Int { train.count }

    public init(model: T5Model, tokenizer: any Tokenizer, tokenizerPath: String?, format: FiDFormat, train: any FiDExampleSource,
                dev: (any FiDExampleSource)?, evalBatchSize: Int, threads: Int?) {
        self.model = model
        let c = model.config
        collator = FiDCollator(format: format, tokenizer: tokenizer, startId: Int32(c.decoderStartTokenId),
                               eosId: Int32(c.eosTokenId), threads: threads)
        self.tokenizerPath = tokenizerPath
        self.train = train
        self.dev = dev
        self.evalBatchSize = evalBatchSize
    }

    /// The training batch of `examples`: each target drawn as FiD's Dataset does (`target`, else
    /// a random answer from `rng`, anew each time the example is read).
    public func batch(examples: [Int], rng: inout RNG) throws -> T5Batch {
        let exs = try examples.map { try train.example(at: $0) }
        // Loading checked that each training example has a target or answers.
        let targets = exs.map { FiDFormat.target($0, rng: &rng)! }
        return collator.collate(exs, targets: targets).batch
    }

    public func trainStep(examples: [Int], grads: ParameterSlab, rng: inout RNG) throws -> TrainStepStats {
        let b = try batch(examples: examples, rng: &rng)
        let out = model.forward(b, training: true, rng: &rng)
        model.backward(into: grads)
        return TrainStepStats(loss: Double(out.loss ?? .nan), tokens: b.inputIds.count + b.decoderInputIds.count)
    }

    /// Greedy answers (FiD's `generate`, fid-spec §3.4): at most `answer_maxlength` tokens, or
    /// FiD's `max_length=50` (49 tokens) when answers are not truncated.
    public func predict(_ examples: [FiDExample]) throws -> [String] {
        let b = collator.collate(examples).batch
        let c = model.config
        let A = collator.format.answerMaxLength
        let maxLength = A > 0 ? A + 1 : 50
        var stepper = T5Stepper(model: model, questions: b.questions, passages: b.passages, passageLength: b.passageLength,
                                inputIds: b.inputIds, attentionMask: b.attentionMask, maxLength: maxLength)
        let out = try Generation.greedy(&stepper, questions: b.questions, start: Int32(c.decoderStartTokenId),
                                        eos: Int32(c.eosTokenId), maxLength: maxLength)
        return out.map { FiDAnswer.text(collator.tokenizer, $0).trimmingCharacters(in: .whitespaces) }
    }

    /// Exact match over the whole dev set, in batches of `evalBatchSize`; NaN when the model
    /// computes NaN or ±inf (a decoding error would be retried as transient).
    public func evaluate(_ report: (Int, Int) throws -> Void) throws -> Double? {
        guard let dev else { return nil }
        var hits = 0, done = 0
        while done < dev.count {
            let exs = try (done..<min(dev.count, done + evalBatchSize)).map { try dev.example(at: $0) }
            let predictions: [String]
            do { predictions = try predict(exs) } catch let e as T5DecodingError where e.nonFinite {
                return .nan  // the weights overflow float32: the Trainer stops, permanently, with lr's hint
            }
            for (e, p) in zip(exs, predictions) where ExactMatch.score(p, e.answers) { hits += 1 }
            done += exs.count
            try report(done, dev.count)
        }
        return Double(hits) / Double(dev.count)
    }

    /// FiD's cross-attention passage scores (fid-spec §3.5: first decoding step, eval mode).  // (B, P)
    public func passageScores(_ examples: [FiDExample]) -> Tensor {
        var rng = RNG(seed: 0)  // unused: no dropout in eval
        return model.forward(collator.collate(examples).batch, training: false, rng: &rng, scores: true).scores!
    }

    public func saveModel(into dir: String) throws {
        try T5Saver.write(model, into: dir, tokenizer: tokenizerPath)
    }
}
