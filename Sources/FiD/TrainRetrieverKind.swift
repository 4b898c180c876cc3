// TrainRetrieverKind: the `train_retriever` job kind (FiD's train_retriever.py): load the start model
// (or a fresh one), its tokenizer and the scored data, and distil through the shared Trainer.
import Foundation
import Jobs
import Models
import Tensor
import Tokenizers

/// What a `train_retriever` job returns (result.json): the trainer's figures and the last
/// whole-eval-set evaluation.
public struct TrainRetrieverResult: Codable, Sendable {
    public var training: TrainResult
    public var evaluation: RetrieverEvaluation?
}

/// `train_retriever`: `TrainRetrieverParams` → `TrainRetrieverResult`. `fidq train-retriever`
/// runs the same code through `fidq run`'s foreground path.
///
/// The retriever head follows the params (`indexing_dimension`, `no_projection`, the masks,
/// `extract_cls`), not FiD's unconditional 256-d projection (a bug, fid-spec §5.6): a start
/// folder without projection weights gets a fresh projection when one is asked for; one whose
/// projection has another size is refused naming the tensor and both shapes.
public struct TrainRetrieverKind: JobKind {
    public init() {}
    public var name: String { "train_retriever" }

    public func run(_ given: TrainRetrieverParams, _ context: JobContext) throws -> TrainRetrieverResult {
        // Lengths the start model's position table holds (its config read again by `load`,
        // which names a bad one).
        let configFile = given.modelPath.map { context.resolve($0) + "/config.json" } ?? context.resolve(given.modelConfig!)
        var p = given
        if let base = try? BertConfig.load(path: configFile) {
            p = try given.fittingLengths(base, configFile: configFile) { context.log($0) }
            // Each question is 1 + n_context rows. At the training batch: evaluation batches are
            // sized by the plan (`evalBatchSize`) and shrink to fit.
            let questions = p.trainer.batchSize
            try base.checkMemory(sequences: questions, perQuestion: 1 + Double(p.nContext), length: max(p.questionMaxlength, p.passageMaxlength),
                                 shape: "batches of per_gpu_batch_size \(questions) questions × (1 + n_context \(p.nContext)) rows")
        }
        let t = try TrainRetrieverKind.load(p, context)
        t.log = { context.log($0) }
        let c = t.model.config
        context.log("train_retriever '\(p.name)': \(t.trainCount) training examples"
            + (t.dev.map { ", \($0.count) eval examples" } ?? ", no eval_data")
            + "; BERT hidden \(c.hiddenSize), \(c.numHiddenLayers) layers, E \(c.embeddingWidth) (projection \(c.projection)), "
            + "\(t.params.count) parameters; n_context \(p.nContext), question/passage length \(p.questionMaxlength)/\(p.passageMaxlength), "
            + "threads \(context.threads)" + (t.dev.map { dev in
                !dev.hasAnswerFlags ? "; no answer recall: eval_data has neither hasanswer flags nor answers"
                    : dev.withoutAnswers > 0 ? "; \(dev.withoutAnswers) of \(dev.count) eval examples have passages without a hasanswer flag and no answers: answer recall counts those passages as misses"
                    : ""
            } ?? ""))
        if let line = p.ignored.note("train_retriever") { context.log(line) }
        let trainer = Trainer(config: p.trainer, model: t, context: context, label: "train_retriever")
        trainer.settings = try Trainer.settings(
            // dropout and indexing_dimension are written only when given; their effect is in model.*.
            of: p, leaving: ["train_data", "eval_data", "model_path", "model_config", "tokenizer", "name", "checkpoint_dir", "dropout", "indexing_dimension"],
            extra: Trainer.modelSettings(t.model.config).merging([
                "train_data": t.train.fingerprint.value, "eval_data": t.dev?.fingerprint.value ?? .null,
                "tokenizer": t.tokenizerPath.map(Trainer.fileHash) ?? .null,
            ]) { a, _ in a })
        let result = try trainer.run()
        // An attempt that resumed after the last step's eval (killed while exporting) did not
        // evaluate: the final model is evaluated for result.json, as an uninterrupted run was.
        if t.lastEvaluation == nil, t.dev != nil { _ = try t.evaluate { _, _ in } }
        if let dir = p.checkpointDir {
            try FiDLayout.exportCheckpoints(result, to: FiDLayout.runFolder(dir, p.name, context), kind: "train_retriever", names: .retriever,
                                           trainer: p.trainer, options: try FiDOptimizerFile.options(p, optim: p.trainer.optim), context)
        }
        return TrainRetrieverResult(training: result, evaluation: t.lastEvaluation)
    }

    /// Evaluation batches hold at least this many questions.
    static let evalBatchMinimum = 8

    /// The config the params ask for, on top of the start folder's (or model_config's, `fresh`)
    /// BERT fields.
    static func headConfig(_ base: BertConfig, _ p: TrainRetrieverParams, fresh: Bool, configFile: String) throws -> BertConfig {
        try p.checkHead(base, configFile: configFile)
        var c = base
        c.projection = !p.noProjection
        c.indexingDimension = p.noProjection ? c.hiddenSize : p.indexingDimension
        c.applyQuestionMask = !p.noQuestionMask
        c.applyPassageMask = !p.noPassageMask
        c.extractCLS = p.extractCLS
        c.questionMaxlength = p.questionMaxlength
        c.passageMaxlength = p.passageMaxlength
        // FiD's set_dropout runs on a fresh model only; a start folder keeps its config's rates.
        if let rate = p.dropout ?? (fresh ? TrainRetrieverParams.defaultDropout : nil) {
            c.hiddenDropoutProb = rate
            c.attentionProbsDropoutProb = rate
        }
        return c
    }

    static func load(_ p: TrainRetrieverParams, _ context: JobContext) throws -> RetrieverTrainable {
        func field<T>(_ name: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as JobError { throw e } catch let e as CancellationError { throw e } catch {
                throw JobError.permanent("\(error)", field: "params." + name)
            }
        }
        let model: BertRetriever, tokenizer: any Tokenizer, tokenizerPath: String
        if let path = p.modelPath {
            let folder = context.resolve(path)
            tokenizerPath = try field("tokenizer") { try RetrieverModel.tokenizerFile(folder: folder, tokenizer: p.tokenizer.map(context.resolve)) }
            tokenizer = try field("tokenizer") { try TokenizerLoader.load(tokenizerPath) }
            model = try field("model_path") {
                let base = try BertConfig.load(path: folder + "/config.json")
                return try BertRetriever.load(folder: folder, config: headConfig(base, p, fresh: false, configFile: folder + "/config.json"),
                                           seed: UInt64(p.trainer.seed))
            }
        } else {
            let configPath = context.resolve(p.modelConfig!)
            let base = try field("model_config") { try BertConfig.load(path: configPath) }
            tokenizerPath = try field("tokenizer") { try RetrieverModel.tokenizerFile(folder: "", tokenizer: context.resolve(p.tokenizer!)) }
            tokenizer = try field("tokenizer") { try TokenizerLoader.load(tokenizerPath) }
            model = BertRetriever(config: try headConfig(base, p, fresh: true, configFile: configPath))
            // A fresh model's weights follow the seed.
            model.initialize(seed: UInt64(p.trainer.seed))
        }
        guard tokenizer.vocabSize <= model.config.vocabSize else {
            throw JobError.permanent("the tokenizer \(tokenizerPath) has \(tokenizer.vocabSize) ids, the model's vocab_size is \(model.config.vocabSize)",
                                     field: "params.tokenizer", hint: "use the tokenizer the model was trained with")
        }
        model.temperature = p.temperature
        model.reduction = p.reduction
        model.inBatchNegatives = p.inBatchNegatives
        try context.checkCancelled()
        func examples(_ path: String, _ fieldName: String) throws -> RetrieverExamples {
            var set = try field(fieldName) {
                try RetrieverExamples(path: context.resolve(path), tokenizer: tokenizer, nContext: p.nContext,
                                      questionMaxlength: p.questionMaxlength, passageMaxlength: p.passageMaxlength, threads: context.threads,
                                      log: ScanLog(context, label: "train_retriever", field: fieldName))
            }
            // The loss divides each score by the temperature in float32: an overflow there makes
            // the reader's distribution NaN and every weight with it.
            if let big = set.largestScore, !(big.magnitude / p.temperature).isFinite {
                throw JobError.permanent("\(context.resolve(path)) \(big.location): the reader score \(big.magnitude) divided by temperature \(p.temperature) "
                                             + "is beyond a 32-bit float's range (about 3.4e38), in which the loss is computed",
                                         field: "params.temperature",
                                         hint: "a temperature near 1 (FiD's) keeps reader scores, averaged attention logits, far inside it")
            }
            // Padding a masked side only to each batch's longest row gives the same embeddings.
            set.trimQuestions = model.config.applyQuestionMask
            set.trimPassages = model.config.applyPassageMask
            if set.partlyScored > 0 {
                context.log("train_retriever: \(fieldName): in \(set.partlyScored) of \(set.count) examples the reader scored only some passages "
                            + "(its n_context was lower than the passages there; the others hold a retrieval's scores or none): only the reader's are ranked and distilled")
            }
            return set
        }
        let train = try examples(p.trainData, "train_data")
        let dev = try p.evalData.map { try examples($0, "eval_data") }
        guard train.count >= p.trainer.batchSize else {
            throw JobError.permanent("train_data has \(train.count) examples, fewer than per_gpu_batch_size \(p.trainer.batchSize)",
                                     field: "params.per_gpu_batch_size", hint: "FiD drops the last partial batch: no batch would run")
        }
        return RetrieverTrainable(model: model, tokenizerPath: tokenizerPath, train: train, dev: dev,
                                  evalBatchSize: try Self.evalBatchSize(model, p, context))
    }

    /// Evaluation batches of `evalBatchMinimum` questions (or `per_gpu_batch_size`, when larger),
    /// fewer when the run would not fit with them (logged); a run that does not fit even with
    /// `per_gpu_batch_size` is refused (`RunMemory`).
    static func evalBatchSize(_ model: BertRetriever, _ p: TrainRetrieverParams, _ context: JobContext,
                              available: Int = AvailableMemory.bytes) throws -> Int {
        let batch = p.trainer.batchSize
        return try RunMemory.evaluationBatch(
            wanted: p.evalData == nil ? batch : max(batch, evalBatchMinimum), batch: batch, label: "train_retriever", context: context,
            available: available, need: { RunMemory.retrieverTraining(model, p, batch: batch, evalBatch: $0) },
            refuse: {
                try $0.check("training batches of \(batch) questions (per_gpu_batch_size) × (1 + n_context \(p.nContext)) rows of up to "
                                 + "question_maxlength \(p.questionMaxlength) / passage_maxlength \(p.passageMaxlength) tokens",
                             available: available, training: true, lengths: "passage_maxlength", checkpointHint: false)
            })
    }
}
