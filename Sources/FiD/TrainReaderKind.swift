// TrainReaderKind: the `train_reader` job kind (FiD's train_reader.py): load model, tokenizer and
// data, train through the shared Trainer, export to checkpoint_dir/name when asked (FiDLayout).
import Foundation
import Jobs
import Models
import Tensor
import Tokenizers

/// `train_reader`: `TrainReaderParams` → `TrainResult` (result.json). `fidq train-reader` runs
/// the same code through `fidq run`'s foreground path.
public struct TrainReaderKind: JobKind {
    public init() {}
    public var name: String { "train_reader" }

    public func run(_ p: TrainReaderParams, _ context: JobContext) throws -> TrainResult {
        let reader = try TrainReaderKind.load(p, context)
        reader.model.useCheckpoint = p.useCheckpoint
        context.log("train_reader '\(p.name)': \(reader.trainCount) training examples"
            + (reader.dev.map { ", \($0.count) dev examples" } ?? ", no eval_data")
            + "; T5 d_model \(reader.model.config.dModel), \(reader.model.config.numLayers)+\(reader.model.config.decoderLayers) layers, "
            + "\(reader.params.count) parameters; n_context \(p.nContext), text_maxlength \(p.textMaxlength), threads \(context.threads)")
        if let line = p.ignored.note("train_reader") { context.log(line) }
        context.log("train_reader params: " + (String(data: try jsonEncoder().encode(p), encoding: .utf8) ?? "")
            .replacingOccurrences(of: "\n", with: " "))
        let trainer = Trainer(config: p.trainer, model: reader, context: context, label: "train_reader")
        trainer.settings = try Trainer.settings(
            of: p, leaving: ["train_data", "eval_data", "model_path", "model_config", "tokenizer", "use_checkpoint", "name", "checkpoint_dir"],
            extra: reader.dataSettings.merging(Trainer.modelSettings(reader.model.config)) { a, _ in a }
                .merging(["tokenizer": reader.tokenizerPath.map(Trainer.fileHash) ?? .null]) { a, _ in a })
        let result = try trainer.run()
        if let dir = p.checkpointDir {
            try FiDLayout.exportCheckpoints(result, to: FiDLayout.runFolder(dir, p.name, context), kind: "train_reader", names: .reader,
                                           trainer: p.trainer, options: try FiDOptimizerFile.options(p, optim: p.trainer.optim), context)
        }
        return result
    }

    /// Model (from `model_path` or `model_config` + `tokenizer`), tokenizer and data, each error
    /// naming its field.
    static func load(_ p: TrainReaderParams, _ context: JobContext) throws -> ReaderTrainable {
        func field<T>(_ name: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as JobError { throw e } catch let e as CancellationError { throw e } catch {
                throw JobError.permanent("\(error)", field: "params." + name)
            }
        }
        let model: T5Model, tokenizer: any Tokenizer, tokenizerPath: String
        if let path = p.modelPath {
            let reader = try field("model_path") {
                try T5Reader.load(folder: context.resolve(path), tokenizer: p.tokenizer.map(context.resolve))
            }
            (model, tokenizer, tokenizerPath) = (reader.model, reader.tokenizer, reader.tokenizerPath)
        } else {
            let configPath = context.resolve(p.modelConfig!)
            let config = try field("model_config") { try T5Config.load(path: configPath) }
            tokenizerPath = try field("tokenizer") { try T5Reader.tokenizerFile(folder: "", tokenizer: context.resolve(p.tokenizer!)) }
            tokenizer = try field("tokenizer") {
                let t = try TokenizerLoader.load(tokenizerPath)
                try T5Reader.check(t, path: tokenizerPath, config: config, configPath: configPath)
                return t
            }
            model = T5Model(config: config)
            // A fresh model's weights follow the seed, as FiD's torch.manual_seed(seed) fixes them.
            model.initialize(seed: UInt64(p.trainer.seed))
        }
        let format = FiDFormat(nContext: p.nContext, textMaxLength: p.textMaxlength, answerMaxLength: p.answerMaxlength)
        // The attention bound at the training batch; evaluation batches are sized below, by the
        // plan, and shrink to fit (checked here at 8 they could not).
        try format.checkMemory(model.config, batchSize: p.trainer.batchSize)
        model.useCheckpoint = p.useCheckpoint  // the memory plan follows it
        let evalBatch = try Self.evalBatchSize(model, format, p, context)
        try context.checkCancelled()
        // Indexed, not loaded: each example is parsed here for the checks, then again when a batch
        // needs it. A check failure waits for the scan's end, so a malformed later element still
        // wins, as when the whole file was loaded first.
        var noTarget: Int? = nil
        var shortTrain = ShortContexts(nContext: p.nContext), shortDev = ShortContexts(nContext: p.nContext)
        var trainPrint = ExamplesFingerprint(), devPrint = ExamplesFingerprint()
        let train = try field("train_data") {
            try FiDData(path: context.resolve(p.trainData)).index(logging: ScanLog(context, label: "train_reader", field: "train_data")) { e in
                if noTarget == nil, e.target == nil && e.answers.isEmpty { noTarget = e.index }
                shortTrain.add(e)
                trainPrint.add(e)
            }
        }
        if let k = noTarget {
            throw JobError.permanent("\(context.resolve(p.trainData)) [\(k)]: no 'target' and no answer in 'answers' (training needs one)",
                                     field: "params.train_data")
        }
        var noAnswers: Int? = nil
        let dev = try p.evalData.map { path in
            try field("eval_data") {
                try FiDData(path: context.resolve(path)).index(logging: ScanLog(context, label: "train_reader", field: "eval_data")) { e in
                    if noAnswers == nil, e.answers.isEmpty { noAnswers = e.index }
                    shortDev.add(e)
                    devPrint.add(e)
                }
            }
        }
        if let k = noAnswers {
            throw JobError.permanent("\(context.resolve(p.evalData!)) [\(k)]: no answer in 'answers' (exact match compares with them)",
                                     field: "params.eval_data")
        }
        for line in [shortTrain.note("train_data"), shortDev.note("eval_data")].compactMap({ $0 }) { context.log("train_reader: " + line) }
        guard train.count >= p.trainer.batchSize else {
            throw JobError.permanent("train_data has \(train.count) examples, fewer than per_gpu_batch_size \(p.trainer.batchSize)",
                                     field: "params.per_gpu_batch_size", hint: "FiD drops the last partial batch: no batch would run")
        }
        let reader = ReaderTrainable(model: model, tokenizer: tokenizer, tokenizerPath: tokenizerPath, format: format, train: train,
                                     dev: dev, evalBatchSize: evalBatch, threads: context.threads)
        reader.dataSettings = ["train_data": trainPrint.value, "eval_data": dev == nil ? .null : devPrint.value]
        return reader
    }

    /// Evaluation batches of `evalBatchMinimum` questions (or `per_gpu_batch_size`, when larger),
    /// fewer when the run would not fit in memory with them (logged), down to
    /// `per_gpu_batch_size`; a run that does not fit even so is refused (`RunMemory`).
    static func evalBatchSize(_ model: T5Model, _ format: FiDFormat, _ p: TrainReaderParams, _ context: JobContext,
                              available: Int = AvailableMemory.bytes) throws -> Int {
        let batch = p.trainer.batchSize
        return try RunMemory.evaluationBatch(
            wanted: p.evalData == nil ? batch : max(batch, evalBatchMinimum), batch: batch, label: "train_reader", context: context,
            available: available, need: { RunMemory.training(model, format, batch: batch, evalBatch: $0) },
            refuse: {
                try $0.check("training batches of \(batch) questions (per_gpu_batch_size) × n_context \(format.nContext) passages of "
                                 + "text_maxlength \(format.textMaxLength) tokens, use_checkpoint \(p.useCheckpoint)", available: available, training: true)
            })
    }

    /// Evaluation batches hold at least this many questions.
    static let evalBatchMinimum = 8
}
