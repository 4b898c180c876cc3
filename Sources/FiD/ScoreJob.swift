// ScoreJob: the `score` job kind (FiD's test_reader.py, fid-spec §3.7): answers, exact match and
// cross-attention passage scores over a data set, streamed batch by batch and resumable.
import Formats
import Foundation
import Jobs
import Models
import Tensor
import Tokenizers

/// What `score` returns (`result.json`) and publishes as `out/result.json` for `merge`.
public struct ScoreResult: Codable, Sendable, Equatable {
    /// Exact match in percent over the questions with answers (FiD's `EM xx.xx`); nil (`null`)
    /// when none has answers: unlabeled questions get predictions only.
    public var exactMatch: Double?
    /// Questions with answers (the mean's denominator), and how many of them matched.
    public var count: Int
    public var correct: Int
    /// Questions scored (with or without answers).
    public var examples: Int
    public var shardId: Int
    public var numShards: Int
    /// The files written into `out/`.
    public var outputs: [String]
    /// The model folder read (a `latest` file followed to its step) and the data file scored, so
    /// `merge` can refuse shards of another reader or data set. Absent in older results.
    public var model: String?
    public var evalData: String?
    /// The examples in the whole data file, every shard's, so `merge` can check each shard holds
    /// its share of one file. Absent in older results.
    public var dataExamples: Int?
    /// What the outputs depend on, without paths (`ScoreKind.runRecord`: the settings, each model
    /// file's and the data file's size, time and inode), so `merge` refuses shards of other runs
    /// even where hosts mount the files at other paths. Absent in older results.
    public var inputs: String?
    /// The kernels the batches were computed with (`KernelSwitch.summary`), one entry per set
    /// when attempts on different CPUs shared the work: their last bits differ. Absent in older
    /// results.
    public var kernels: [String]?

    enum CodingKeys: String, CodingKey {
        case exactMatch = "exact_match", count, correct, examples, shardId = "shard_id", numShards = "num_shards", outputs, model
        case evalData = "eval_data", dataExamples = "data_examples", inputs, kernels
    }

    public init(correct: Int, count: Int, examples: Int, shardId: Int, numShards: Int, outputs: [String],
                model: String? = nil, evalData: String? = nil, dataExamples: Int? = nil, inputs: String? = nil,
                kernels: [String]? = nil) {
        self.inputs = inputs
        self.kernels = kernels
        self.model = model
        self.evalData = evalData
        self.dataExamples = dataExamples
        self.correct = correct
        self.count = count
        self.examples = examples
        self.shardId = shardId
        self.numShards = numShards
        self.outputs = outputs
        exactMatch = count == 0 ? nil : 100 * Double(correct) / Double(count)
    }

    /// `exact_match` is written as `null`, not left out, when no question has answers.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(exactMatch, forKey: .exactMatch)
        try c.encode(count, forKey: .count)
        try c.encode(correct, forKey: .correct)
        try c.encode(examples, forKey: .examples)
        try c.encode(shardId, forKey: .shardId)
        try c.encode(numShards, forKey: .numShards)
        try c.encode(outputs, forKey: .outputs)
        try c.encodeIfPresent(model, forKey: .model)
        try c.encodeIfPresent(evalData, forKey: .evalData)
        try c.encodeIfPresent(dataExamples, forKey: .dataExamples)
        try c.encodeIfPresent(inputs, forKey: .inputs)
        try c.encodeIfPresent(kernels, forKey: .kernels)
    }

    /// FiD's log figure, or a note that there was nothing to compare with.
    var exactMatchText: String { exactMatch.map { String(format: "EM %.2f", $0) } ?? "no answers to compare with (predictions only)" }
}

/// The `score` kind. Each finished batch is committed as `out/parts/<batch>.jsonl` (its
/// predictions and, with `write_crossattention_scores`, its examples with new scores); a killed
/// attempt's successor skips the batches whose part exists. The final files are joined from the
/// parts in order, then the parts are removed.
public struct ScoreKind: JobKind {
    public init() {}
    public var name: String { "score" }

    static let partsFolder = "parts"
    /// Beside the parts: the kernels of each attempt that computed some, a line each.
    static let kernelsFile = partsFolder + "/kernels.txt"

    /// Adds this process's kernels to `kernelsFile` before its first batch, unless listed.
    static func recordKernels(_ context: JobContext) throws {
        var lines = try recordedKernels(context) ?? []
        guard !lines.contains(KernelSwitch.summary) else { return }
        lines.append(KernelSwitch.summary)
        try context.fs.writeAtomically(context.out + "/" + kernelsFile, Data(lines.map { $0 + "\n" }.joined().utf8), tag: context.token)
    }

    /// The kernels `recordKernels` listed, in the order attempts first used them; nil when none
    /// did (every batch from an older fidq).
    static func recordedKernels(_ context: JobContext) throws -> [String]? {
        let path = context.out + "/" + kernelsFile
        guard context.fs.exists(path) else { return nil }
        let text = String(decoding: try context.fs.read(path, limit: 1 << 20), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        return lines.isEmpty ? nil : lines
    }

    public func run(_ params: ScoreParams, _ context: JobContext) throws -> ScoreResult {
        let modelPath = context.resolve(params.modelPath), dataPath = context.resolve(params.evalData)
        let inputs = Self.inputsRecord(model: modelPath, data: dataPath)
        let recordPath = context.out + "/" + Self.inputsFile
        var recorded = (try? context.fs.read(recordPath, limit: 1 << 20)).flatMap { String(data: $0, encoding: .utf8) }
        if let old = recorded, old != inputs, old == Self.legacyInputsRecord(model: modelPath, data: dataPath) {
            // An earlier version's record (with this host's paths) of the same inputs: kept, in today's words.
            try context.fs.writeAtomically(recordPath, Data(inputs.utf8), tag: context.token)
            recorded = inputs
        }
        if var done = try? JSONDecoder().decode(ScoreResult.self, from: context.fs.read(context.out + "/result.json", limit: 1 << 20)) {
            // A result without a record is an older fidq's: trusted as before.
            if recorded == nil || recorded == inputs {
                context.log("score: already finished (out/result.json): \(done.exactMatchText) over \(done.count)")
                // An older fidq's result lacks the inputs merge compares; the record says they are these.
                if done.inputs == nil, recorded != nil {
                    done.inputs = Self.runRecord(model: modelPath, data: dataPath, params: params, tokenizer: params.tokenizer.map(context.resolve))
                    try context.publish("result.json", try jsonEncoder().encode(done))
                }
                // A kill after result.json was published may have cut the steps after it short.
                try finish(done, params, context)
                return done
            }
            context.log("score: discarding the earlier result: " + Self.inputsChange(from: recorded, to: inputs))
            try context.fs.unlink(context.out + "/result.json")
        }
        let reader: T5Reader
        do {
            reader = try T5Reader.load(folder: modelPath, tokenizer: params.tokenizer.map(context.resolve))
        } catch {
            throw ScoreParams.loadError(error, folder: modelPath, tokenizer: params.tokenizer)
        }
        let model = reader.model, config = model.config
        let format = FiDFormat(nContext: params.nContext, textMaxLength: params.textMaxlength, answerMaxLength: params.answerMaxlength)
        try format.checkMemory(config, batchSize: params.perGpuBatchSize, generationLength: ScoreParams.maxLength)
        try Self.checkDecodingMemory(config, params)
        let memory = RunMemory.scoring(model, params)
        context.log("score: " + memory.note())
        try memory.check(
            "batches of \(params.perGpuBatchSize) questions (per_gpu_batch_size) × n_context \(params.nContext) passages of "
                + "text_maxlength \(params.textMaxlength) tokens, num_beams \(params.numBeams)", training: false)
        let collator = FiDCollator(format: format, tokenizer: reader.tokenizer, startId: Int32(config.decoderStartTokenId),
                                   eosId: Int32(config.eosTokenId), threads: context.threads)
        let data = FiDData(path: dataPath)
        let total: Int
        do { total = try data.count() } catch let e as FormatError { throw JobError.permanent(e.description, field: "params.eval_data") }
        let shardTotal = total > params.shardId ? (total - params.shardId + params.numShards - 1) / params.numShards : 0
        let B = params.perGpuBatchSize
        let batches = (shardTotal + B - 1) / B
        let finished = try Self.finishedParts(context, inputs: inputs, recorded: recorded)
        context.log("score: \(modelPath) (\(config.numLayers)+\(config.decoderLayers) layers, d \(config.dModel)), \(dataPath): "
                    + "\(shardTotal) of \(total) questions (shard \(params.shardId)/\(params.numShards)), \(batches) batches of \(B), "
                    + "P \(params.nContext), L \(params.textMaxlength), \(params.numBeams == 1 ? "greedy" : "\(params.numBeams) beams"), "
                    + "\(context.threads) thread\(context.threads == 1 ? "" : "s")" + (finished.isEmpty ? "" : "; \(finished.count) batches done by an earlier attempt"))
        if let line = params.ignored.note("score") { context.log(line) }
        var pending: [FiDExample] = []
        var short = ShortContexts(nContext: params.nContext)
        var batchIndex = 0, done = 0, correct = 0, withAnswers = 0
        let start = monotonicNow()
        var computed = 0
        func flush() throws {
            defer {
                pending.removeAll(keepingCapacity: true)
                batchIndex += 1
            }
            if finished.contains(batchIndex) {
                done += pending.count
                return
            }
            try context.checkCancelled()
            if computed == 0 { try Self.recordKernels(context) }
            let lines = try Self.scoreBatch(pending, collator: collator, reader: reader, params: params)
            try context.writeOutput(Self.partName(batchIndex)) { file in
                var buffer: [UInt8] = []
                for line in lines {
                    PyJSON.appendCompact(line, to: &buffer)
                    buffer.append(10)
                }
                try buffer.withUnsafeBytes { try file.write($0) }
            }
            done += pending.count
            computed += pending.count
            context.progress.update(step: done, total: shardTotal)
            if (batchIndex + 1) % params.evalPrintFreq == 0 || batchIndex + 1 == batches {
                let rate = Double(computed) / max(monotonicNow() - start, 1e-9)
                context.log("score: batch \(batchIndex + 1)/\(batches), \(done)/\(shardTotal) questions, \(String(format: "%.2f", rate)) questions/s")
            }
        }
        do {
            try data.forEach(shard: params.shardId, of: params.numShards) { ex in
                short.add(ex)
                pending.append(ex)
                if pending.count == B { try flush() }
            }
            if !pending.isEmpty { try flush() }
        } catch let e as FormatError {
            throw JobError.permanent(e.description, field: "params.eval_data")  // the description holds the hint
        }
        if let line = short.note("eval_data") { context.log("score: " + line) }
        // Join the parts in batch order into the final files.
        var outputs = ["predictions.jsonl"]
        let predictions = try context.openOutput("predictions.jsonl")
        let results = params.writeResults ? try context.openOutput("final_output.txt") : nil
        let wscores = params.writeCrossattentionScores ? try context.openOutput("dataset_wscores.json") : nil
        if results != nil { outputs.append("final_output.txt") }
        if wscores != nil { outputs.append("dataset_wscores.json") }
        var examples = 0
        var wbuf: [UInt8] = [UInt8(ascii: "[")]
        for b in 0..<batchIndex {
            let stream = try JSONStream(path: context.out + "/" + Self.partName(b))
            var pbuf: [UInt8] = [], rbuf: [UInt8] = []
            try stream.forEachLine { line in
                guard let p = line.value["p"] else { throw JobError.transient("\(stream.file): line \(line.line) has no prediction") }
                PyJSON.appendCompact(p, to: &pbuf)
                pbuf.append(10)
                if case .bool(let em)? = p["exact_match"] {
                    withAnswers += 1
                    if em { correct += 1 }
                }
                if results != nil {
                    rbuf += Array("\(Self.idText(p["id"]))\t\(p["prediction"]?.stringValue ?? "")\n".utf8)
                }
                if wscores != nil, let d = line.value["d"] {
                    wbuf += examples == 0 ? [10, 32, 32, 32, 32] : [44, 10, 32, 32, 32, 32]
                    PyJSON.appendIndented(d, level: 1, to: &wbuf)
                }
                examples += 1
            }
            try pbuf.withUnsafeBytes { try predictions.write($0) }
            try rbuf.withUnsafeBytes { try results?.write($0) }
            if wbuf.count > 1 << 20, let w = wscores {
                try wbuf.withUnsafeBytes { try w.write($0) }
                wbuf.removeAll(keepingCapacity: true)
            }
        }
        wbuf += examples == 0 ? [93] : [10, 93]
        if let w = wscores { try wbuf.withUnsafeBytes { try w.write($0) } }
        try predictions.commit()
        try results?.commit()
        try wscores?.commit()
        let result = ScoreResult(correct: correct, count: withAnswers, examples: examples, shardId: params.shardId,
                                 numShards: params.numShards, outputs: outputs + ["result.json"], model: modelPath, evalData: dataPath,
                                 dataExamples: total, inputs: Self.runRecord(model: modelPath, data: dataPath, params: params,
                                                                             tokenizer: params.tokenizer.map(context.resolve)),
                                 kernels: try Self.recordedKernels(context))
        try context.publish("result.json", try jsonEncoder().encode(result))
        try finish(result, params, context)
        context.log("score: \(result.exactMatchText), Total number of example \(withAnswers)")
        return result
    }

    /// What follows result.json, done again by an attempt that finds it: the parts removed, and
    /// the outputs copied to `checkpoint_dir/name/` (each copy replaces the last).
    func finish(_ result: ScoreResult, _ params: ScoreParams, _ context: JobContext) throws {
        try? context.fs.removeTree(context.out + "/" + Self.partsFolder)
        if let dir = params.checkpointDir { try Self.copyToFiDLayout(result, checkpointDir: dir, name: params.name, context, kind: "score") }
    }

    /// `final_output.txt` and `dataset_wscores.json` (those written) copied to `checkpoint_dir/name/`,
    /// where FiD's test_reader.py writes them.
    static func copyToFiDLayout(_ result: ScoreResult, checkpointDir dir: String, name: String, _ context: JobContext, kind: String) throws {
        let run = try FiDLayout.runFolder(dir, name, context)
        let copied = ["final_output.txt", "dataset_wscores.json"].filter(result.outputs.contains)
        for f in copied { try FiDLayout.copy(context.out + "/" + f, to: run + "/" + f, tag: context.token) }
        context.log("\(kind): copied \(copied.isEmpty ? "nothing (no write_results or write_crossattention_scores)" : copied.joined(separator: " and ")) to \(run)")
    }

    static func partName(_ batch: Int) -> String { partsFolder + "/" + String(format: "%08d.jsonl", batch) }

    /// `out/`'s record of what its parts and result.json were computed from (`inputsRecord`).
    static let inputsFile = ".score-inputs.txt"

    /// What a score's parts and result depend on beyond its params: the model folder's files the
    /// reader loads (`modelFiles`: not a checkpoint's optimizer or trainer state, which a resumed
    /// training run may bring up to date; a `latest` link followed, so one that moved on to
    /// another step counts as another model) and the data file, by name, size, time and inode, without paths:
    /// a take-over on a host that mounts the shared storage elsewhere keeps the batches done.
    static func inputsRecord(model: String, data: String) -> String {
        let real = realPath(model)
        var lines = modelFiles(real).map { "model file " + stamp(real + "/" + $0, as: $0 + ":") }
        lines.append("data: " + stamp(data, as: "a file of"))
        return lines.joined(separator: "\n") + "\n"
    }

    /// `inputsRecord` as versions before 2026-12 wrote it, with the model folder's real path and
    /// each file's: their runs' parts and results are kept where the paths still read the same.
    static func legacyInputsRecord(model: String, data: String) -> String {
        let real = realPath(model)
        var lines = ["model " + real]
        for name in recordedModelFiles(real) { lines.append("model file " + stamp(real + "/" + name, as: real + "/" + name)) }
        lines.append("data " + stamp(data, as: data))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The model folder's weight, config and text files, sorted (those `legacyInputsRecord` stamps).
    static func recordedModelFiles(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted().filter { name in
            !name.hasPrefix(".") && [".safetensors", ".bin", ".json", ".model", ".txt"].contains(where: name.hasSuffix)
        }
    }

    /// What a shard's outputs depend on, for `merge` to compare across shards: the settings that
    /// shape them, then the tokenizer, model files (by name in the folder) and data file, each by
    /// size, modification time and inode, without its path (hosts may mount the files elsewhere).
    static func runRecord(model: String, data: String, params p: ScoreParams, tokenizer: String?) -> String {
        let real = realPath(model)
        var lines = ["settings: n_context \(p.nContext), text_maxlength \(p.textMaxlength), answer_maxlength \(p.answerMaxlength), "
                     + "num_beams \(p.numBeams)"]
        if let tokenizer {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: tokenizer, isDirectory: &isFolder), isFolder.boolValue {
                for name in modelFiles(tokenizer) { lines.append("tokenizer file " + stamp(tokenizer + "/" + name, as: name + ":")) }
            } else {
                lines.append("tokenizer: " + stamp(tokenizer, as: "a file of"))
            }
        } else {
            lines.append("tokenizer: the model folder's")
        }
        for name in modelFiles(real) { lines.append("model file " + stamp(real + "/" + name, as: name + ":")) }
        lines.append("data: " + stamp(data, as: "a file of"))
        return lines.joined(separator: "\n")
    }

    /// `path`'s size, time and inode, after `label`.
    static func stamp(_ path: String, as label: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "\(label) (missing)" }
        return "\(label) \(st.st_size) bytes, modified \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec), inode \(st.st_ino)"
    }

    static func realPath(_ path: String) -> String {
        realpath(path, nil).map { p in defer { free(p) }; return String(cString: p) } ?? path
    }

    /// The files of a model folder the reader loads (config, weights and their shards, tokenizer),
    /// sorted: not a checkpoint's optimizer or trainer state, nor notes beside them, whose change
    /// changes no output.
    static func modelFiles(_ folder: String, tokenizerFiles: [String] = T5Reader.tokenizerFiles) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted().filter { n in
            n == "config.json" || tokenizerFiles.contains(n) || n == "tokenizer.model"
                || ((n.hasPrefix("model") || n.hasPrefix("pytorch_model")) && [".safetensors", ".bin", ".index.json"].contains(where: n.hasSuffix))
        }
    }

    /// The first line that differs, for the log.
    static func inputsChange(from old: String?, to new: String) -> String {
        guard let old else { return "no record of the model and data they were computed from" }
        let a = old.split(separator: "\n"), b = new.split(separator: "\n")
        for i in 0..<max(a.count, b.count) where i >= a.count || i >= b.count || a[i] != b[i] {
            let was = i < a.count ? String(a[i]) : "nothing", now = i < b.count ? String(b[i]) : "nothing"
            return "the model or data changed (was: \(was); now: \(now))"
        }
        return "the model or data changed"
    }

    /// The batches an earlier attempt committed from the same inputs (temporary `.…part` files are
    /// not parts). Parts of another model (a `latest` that moved on while training went on between
    /// attempts) or of a data file changed since are discarded: mixed into the result, they would
    /// score some questions with one checkpoint and some with another, or answer questions the
    /// file no longer holds.
    static func finishedParts(_ context: JobContext, inputs: String, recorded: String?) throws -> Set<Int> {
        let dir = context.out + "/" + partsFolder, record = context.out + "/" + inputsFile
        if context.fs.exists(dir), recorded != inputs {
            context.log("score: discarding the earlier attempt's batches: " + inputsChange(from: recorded, to: inputs))
            try context.fs.removeTree(dir)
        }
        if recorded != inputs { try context.fs.writeAtomically(record, Data(inputs.utf8), tag: context.token) }
        if !context.fs.exists(dir) {
            try context.fs.makeDirectories(dir)
            return []
        }
        var out = Set<Int>()
        for name in try context.fs.list(dir) where name.hasSuffix(".jsonl") && !name.hasPrefix(".") {
            if let n = Int(name.dropLast(6)) { out.insert(n) }
        }
        return out
    }

    static func idText(_ id: JSONNode?) -> String {
        switch id {
        case .string(let s)?: return s
        case .integer(let n)?: return String(n)
        case .number(let t)?: return t
        case let other?: return PyJSON.compact(other)
        case nil: return ""
        }
    }

    /// Refuses a beam count whose decoding state (`T5Stepper.bytes`: a cache row per beam) exceeds
    /// the memory this process may use, before the allocation would stop the process.
    static func checkDecodingMemory(_ c: T5Config, _ p: ScoreParams, available: Int = AvailableMemory.bytes) throws {
        let need = T5Stepper.bytes(c, questions: p.perGpuBatchSize, passages: p.nContext, passageLength: p.textMaxlength,
                                   beams: p.numBeams, maxLength: ScoreParams.maxLength)
        guard need > Double(available) else { return }
        let gib = AvailableMemory.gib
        throw JobError.permanent(
            "num_beams \(p.numBeams) over batches of \(p.perGpuBatchSize) questions × n_context \(p.nContext) passages of "
                + "text_maxlength \(p.textMaxlength) tokens needs at least \(gib(need)) GiB to decode, more than the "
                + "\(gib(Double(available))) GiB this process may use",
            field: "params.num_beams", hint: "FiD decodes greedily (num_beams 1); a few beams are usual, or lower per_gpu_batch_size")
    }

    /// Generates the answers (and passage scores) of one batch: one part line per example,
    /// `{"p": prediction record, "d": example with scores}`.
    static func scoreBatch(_ examples: [FiDExample], collator: FiDCollator, reader: T5Reader, params: ScoreParams) throws -> [JSONNode] {
        let fb = collator.collate(examples)
        let b = fb.batch, model = reader.model, c = model.config
        let stepper = T5Stepper(model: model, questions: b.questions, passages: b.passages, passageLength: b.passageLength,
                                inputIds: b.inputIds, attentionMask: b.attentionMask, beams: params.numBeams, maxLength: ScoreParams.maxLength)
        stepper.recordScores = params.writeCrossattentionScores
        var s = stepper
        let start = Int32(c.decoderStartTokenId), eos = Int32(c.eosTokenId)
        let answers: [[Int32]]
        do {
            if params.numBeams == 1 {
                answers = try Generation.greedy(&s, questions: b.questions, start: start, eos: eos, maxLength: ScoreParams.maxLength)
            } else {
                answers = try Generation.beamSearch(&s, questions: b.questions, numBeams: params.numBeams, start: start, eos: eos,
                                                    pad: Int32(c.padTokenId), maxLength: ScoreParams.maxLength)
            }
        } catch let e as T5DecodingError where e.nonFinite {
            throw JobError.permanent("questions \(examples.map { String($0.index) }.joined(separator: ", ")): \(e.description)",
                                     field: "params.model_path", hint: "check what wrote the model: a run that diverged, or a conversion that overflowed")
        }
        let scores = stepper.scores  // (B, P)
        var lines: [JSONNode] = []
        for (i, ex) in examples.enumerated() {
            let text = FiDAnswer.text(reader.tokenizer, answers[i])
            let em: JSONNode = ex.answers.isEmpty ? .null : .bool(ExactMatch.score(text, ex.answers))
            let p: JSONNode = .object([
                ("id", ex.id), ("index", .integer(ex.index)), ("question", .string(ex.question)), ("prediction", .string(text)),
                ("answers", .array(ex.answers.map(JSONNode.string))), ("exact_match", em),
            ])
            var pairs: [(String, JSONNode)] = [("p", p)]
            if let scores {
                let read = fb.passages[i].count
                let row = (0..<read).map { Double(scores.data[i * b.passages + $0]) }
                if let j = row.firstIndex(where: { !$0.isFinite }) {
                    // NaN is not JSON: dataset_wscores.json would hold it, and train_retriever refuse it.
                    throw JobError.permanent("the cross-attention score of passage \(j) of question \(ex.index) is \(row[j])",
                                             field: "params.model_path", hint: "the reader's weights overflow float32 here; check what wrote them")
                }
                pairs.append(("d", ex.json(passages: FiDFormat.ordered(ex.ctxs), scores: row)))
            }
            lines.append(.object(pairs))
        }
        return lines
    }
}
