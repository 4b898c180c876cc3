// EmbedKind: the `embed` job (FiD's generate_passage_embeddings.py): one shard of a passages TSV embedded, resumable by blocks,
// the next block tokenised while the model embeds the current one.
import Foundation
import Jobs
import Models
import Retrieval
import Tensor

/// `embed` params, FiD's names (ref/fid-spec.md §1.5); `block_size` (rows per checkpoint) is ours.
public struct EmbedParams: JobParams {
    public var modelPath = ""
    /// A tokenizer file or folder, for retrievers that ship none (FiD's use bert-base-uncased's).
    public var tokenizer: String?
    public var passages = ""
    public var outputPath = "wikipedia_embeddings/passages"
    public var shardId = 0
    public var numShards = 1
    public var perGpuBatchSize = 32
    /// FiD ignores its flag and uses the model config's; ours overrides the config when given.
    public var passageMaxlength: Int?
    /// FiD's `--no_fp16`: false (FiD's default) embeds at half precision (bfloat16 products with
    /// float32 sums, where the CPU has AVX-512 BF16) and stores float16; true runs and stores float32.
    public var noFp16 = false
    public var blockSize = 8192

    enum CodingKeys: String, CodingKey, CaseIterable {
        case modelPath = "model_path", tokenizer, passages
        case outputPath = "output_path"
        case shardId = "shard_id"
        case numShards = "num_shards"
        case perGpuBatchSize = "per_gpu_batch_size"
        case passageMaxlength = "passage_maxlength"
        case noFp16 = "no_fp16"
        case blockSize = "block_size"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        modelPath = try c.decode(String.self, forKey: .modelPath)
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        passages = try c.decode(String.self, forKey: .passages)
        outputPath = try c.decode(.outputPath, default: "wikipedia_embeddings/passages")
        numShards = try c.require(try c.decode(.numShards, default: 1), .numShards, "an integer >= 1") { $0 >= 1 }
        shardId = try c.require(try c.decode(.shardId, default: 0), .shardId, "an integer in 0..<num_shards (\(numShards))") {
            $0 >= 0 && $0 < numShards
        }
        perGpuBatchSize = try c.require(try c.decode(.perGpuBatchSize, default: 32), .perGpuBatchSize, "an integer >= 1") { $0 >= 1 }
        passageMaxlength = try c.decodeInteger(.passageMaxlength)
        if let m = passageMaxlength, m < 2 {
            throw JobError.permanent("passage_maxlength \(m): expected an integer >= 2 (CLS and SEP)", field: "params.passage_maxlength")
        }
        noFp16 = try c.decode(.noFp16, default: false)
        blockSize = try c.require(try c.decode(.blockSize, default: 8192), .blockSize, "an integer >= 1") { $0 >= 1 }
    }

    public var outputPaths: [(field: String, path: String)] { [("output_path", outputPath)] }
    /// Shards of one `output_path` are written by their own jobs: only this shard's file is ours.
    public var exclusiveOutputs: [(field: String, path: String)] {
        let stem = EmbeddingShard.stem(prefix: outputPath, shard: shardId)
        return [".npy", ".ids", ".meta.json"].map { ("output_path", stem + $0) }
    }
    public var inputPaths: [(field: String, path: String)] {
        [("model_path", modelPath), ("passages", passages)] + (tokenizer.map { [("tokenizer", $0)] } ?? [])
    }

    /// At submit and before each run: the model folder holds a BERT config and weights, and `passage_maxlength` fits
    /// its position table.
    public func validateInputs(resolve: (String) -> String) throws {
        let folder = resolve(modelPath)
        try ScoreParams.checkModelFolder(folder, field: "params.model_path", architecture: "BERT") {
            let c = try BertConfig.load(path: $0)
            _ = try c.fitLength("passage_maxlength", passageMaxlength ?? c.passageMaxlength, isDefault: passageMaxlength == nil, configFile: $0)
        }
    }

    /// FiD's shard arithmetic: floor-sized shards, the last takes the remainder.
    public static func shardRange(total: Int, shard: Int, of shards: Int) -> Range<Int> {
        let size = total / shards
        let start = shard * size
        return start..<(shard == shards - 1 ? total : start + size)
    }
}

public struct EmbedOutput: Codable, Sendable {
    public var npy: String
    public var ids: String
    public var rows: Int
    public var dim: Int
    public var storage: String
    /// The products' precision in this run: `bfloat16` (half precision) or `float32`. Rows a
    /// resumed job kept from an earlier run were embedded at that run's (its log says).
    public var products: String
    public var firstPassage: Int
    public var passagesInFile: Int
    public var resumedFrom: Int
    public var seconds: Double
    public var passagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case npy, ids, rows, dim, storage, products, seconds
        case firstPassage = "first_passage"
        case passagesInFile = "passages_in_file"
        case resumedFrom = "resumed_from"
        case passagesPerSecond = "passages_per_s"
    }
}

/// `embed`: counts the passages (one streaming pass), takes FiD's shard of them, and embeds it
/// block by block. Each finished block is published into `out/` (it moves with the job on a
/// take-over) and recorded by a checkpoint, so a killed job resumes after its last finished block
/// and never embeds a row twice; the shard (`<output_path>_<shard:02d>.npy` + `.ids`) is assembled
/// from the blocks under temporary names and appears only complete.
public struct EmbedKind: JobKind {
    public init() {}
    public var name: String { "embed" }

    /// A checkpoint: rows done, which shard of which file they belong to, and the model folder
    /// that embedded them (nil in checkpoints written before these were recorded).
    struct Saved: Codable {
        var rows: Int
        var passages: String?
        var first: Int?
        var count: Int?
        var model: String?
        /// The passages file as the job found it: edited in place since, its earlier rows' vectors
        /// would embed the old texts under the new ones' ids.
        var file: SavedIndexSource.File?
        /// The model folder's files, by name: the paths above are one host's, and a host that
        /// mounts the shared storage elsewhere sees the same files (these stamps) under others.
        var modelFiles: [SavedIndexSource.File]?

        enum CodingKeys: String, CodingKey {
            case rows, passages, first, count, model, file
            case modelFiles = "model_files"
        }
    }

    /// The stamps of the files of `folder` the retriever loads (config, weights, tokenizer; not a
    /// checkpoint's optimizer or trainer state), by name: a `latest` that moved on names other files.
    static func modelStamps(_ folder: String) -> [SavedIndexSource.File] {
        ScoreKind.modelFiles(folder, tokenizerFiles: RetrieverModel.tokenizerFiles).compactMap {
            try? SavedIndexSource.File.stamp(folder + "/" + $0, as: $0)
        }
    }

    /// Whether two records name the same files unchanged (false when either is missing).
    static func sameFiles(_ a: [SavedIndexSource.File]?, _ b: [SavedIndexSource.File]?) -> Bool {
        guard let a, let b, !a.isEmpty, a.count == b.count else { return false }
        return zip(a, b).allSatisfy { $0.path == $1.path && $0.sameContents(as: $1) }
    }

    /// `ShardRecord.samples` of the shard's rows: read again from the file (a resumed job did not
    /// see its earlier blocks' texts), a cheap pass next to embedding them.
    static func sampleHashes(_ path: String, range: Range<Int>) throws -> [String: String] {
        let rows = Set(ShardRecord.sampleRows(range.count))
        let reader = try PassageReader(path: path)
        _ = try reader.skip(range.lowerBound)
        var out: [String: String] = [:]
        guard let last = rows.max() else { return out }
        for row in 0...last {
            guard let psg = try reader.next() else { break }
            if rows.contains(row) { out[psg.id] = ShardRecord.passageHash(title: psg.title, text: psg.text) }
        }
        return out
    }

    static func blockName(_ start: Int) -> String {
        let s = String(start)
        return "block-" + String(repeating: "0", count: max(0, 12 - s.count)) + s
    }

    /// Why the checkpoint after `step` rows cannot be resumed here (nil: it can): it records
    /// another file, shard or model folder (a `latest` that moved on between attempts: one shard
    /// would hold two retrievers' rows), or a block it counts is missing.
    static func cannotResume(step: Int, checkpoint: String, passages: String, range: Range<Int>, model: String, out: String,
                             file: SavedIndexSource.File? = nil, modelFiles: [SavedIndexSource.File]? = nil) -> String? {
        if let data = FileManager.default.contents(atPath: checkpoint + "/rows.json"),
           let saved = try? JSONDecoder().decode(Saved.self, from: data) {
            // Paths differ on a host that mounts the storage elsewhere; the files' stamps do not.
            if let then = saved.passages, then != passages, !(saved.file.flatMap { old in file.map { old.sameContents(as: $0) } } ?? false) {
                return "it embedded \(then), not \(passages)"
            }
            if let then = saved.file, let now = file, !then.sameContents(as: now) {
                return "\(passages) changed since its rows were embedded (\(then.bytes) bytes then, \(now.bytes) now; or its modification time or inode)"
            }
            if let earlier = saved.model, earlier != model, !sameFiles(saved.modelFiles, modelFiles) { return "its rows were embedded by \(earlier), this attempt reads \(model)" }
            if let first = saved.first, let count = saved.count, first != range.lowerBound || count != range.count {
                return "it embedded passages \(first)..<\(first + count), this shard is \(range.lowerBound)..<\(range.upperBound)"
            }
        }
        if step > range.count { return "it counts \(step) rows, this shard has \(range.count)" }
        var start = 0
        while start < step {
            let name = out + "/" + blockName(start)
            guard FileManager.default.fileExists(atPath: name + ".f32"), let ids = try? EmbeddingShard.readIDs(name + ".ids"), !ids.isEmpty else {
                return "its block \(blockName(start)) is gone (a finished shard's blocks are removed once joined)"
            }
            start += ids.count
        }
        return start == step ? nil : "its blocks hold \(start) rows, not \(step)"
    }

    public func run(_ p: EmbedParams, _ context: JobContext) throws -> EmbedOutput {
        let t0 = monotonicNow()
        let passagesPath = context.resolve(p.passages)
        let stem = EmbeddingShard.stem(prefix: try context.output(p.outputPath, field: "params.output_path"), shard: p.shardId)
        try FileManager.default.createDirectory(atPath: (stem as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let stamp = try? SavedIndexSource.File.stamp(passagesPath)  // before the file is read
        let total: Int
        // Counting, skipping to the shard and hashing samples each read the file (minutes at 21M
        // passages): logged and shown as phases, or status showed nothing, then 100 %, for them.
        context.log("embed: counting the passages of \(passagesPath) and checking that no id repeats")
        context.progress.phase("counting passages")
        let repeated: RepeatedID?
        do { (total, repeated) = try PassageReader.countFindingRepeatedID(path: passagesPath) } catch let e as RetrievalError {
            throw JobError.permanent(e.message, field: "params.passages", hint: e.hint)
        }
        if total == 0 { let e = PassageReader.noPassages(path: passagesPath); throw JobError.permanent(e.message, field: "params.passages", hint: e.hint) }
        // retrieve refuses shards that hold an id twice (it looks texts up by id): refused here,
        // before the shards are embedded, in every shard's job (each counts the whole file).
        if let r = repeated {
            throw JobError.permanent(
                "passage id \(r.id) appears twice in \(p.passages): in passages \(r.first + 1) and \(r.second + 1) (counted after the header)",
                field: "params.passages", hint: "DPR ids must be unique: renumber or drop the repeated rows, then embed again")
        }
        guard total >= p.numShards else {
            throw JobError.permanent(
                "num_shards \(p.numShards) exceeds the \(total) passages of \(p.passages): FiD's floor-sized shards would be empty",
                field: "params.num_shards", hint: "use at most \(total) shards")
        }
        let range = EmbedParams.shardRange(total: total, shard: p.shardId, of: p.numShards)
        context.log("embed: shard \(p.shardId) of \(p.numShards): passages \(range.lowerBound)..<\(range.upperBound) of \(total), threads \(context.threads)")
        var model: RetrieverModel, folder = context.resolve(p.modelPath)
        let modelFiles = Self.modelStamps(folder)  // before the files are read
        do { model = try RetrieverModel.load(folder: folder, tokenizer: p.tokenizer.map(context.resolve)) } catch {
            throw ScoreParams.loadError(error, folder: folder, tokenizer: p.tokenizer, prefix: "cannot load the retriever: ")
        }
        // FiD embeds with `.half()` unless --no_fp16. Here half precision is bfloat16 products
        // (float32 sums, norms and softmax), about twice float32's speed where the CPU has AVX-512
        // BF16; elsewhere float32 is the faster, and is used.
        model.halfPrecision = p.noFp16 ? nil : Gemm.BF16Kernel.fast
        context.log("embed: products in " + (model.halfPrecision != nil ? "bfloat16 with float32 sums (FiD's half precision; no_fp16 for float32)"
            : p.noFp16 ? "float32 (no_fp16)" : "float32 (this CPU has no AVX-512 BF16, which half precision needs to be faster)"))
        let fitted = try model.model.config.fitLength("passage_maxlength", p.passageMaxlength ?? model.model.config.passageMaxlength,
                                                      isDefault: p.passageMaxlength == nil, configFile: folder + "/config.json")
        if let note = fitted.note { context.log("embed: " + note) }
        let length = fitted.length
        try model.model.config.checkMemory(sequences: min(p.perGpuBatchSize, range.count), length: length,
                                           shape: "per_gpu_batch_size \(p.perGpuBatchSize)")
        let dim = model.model.embeddingWidth
        let ckpt = try context.checkpoints(keepLast: 2)
        var done = 0
        if let (step, dir) = ckpt.latest() {
            if let why = Self.cannotResume(step: step, checkpoint: dir, passages: passagesPath, range: range, model: folder, out: context.out,
                                           file: stamp, modelFiles: modelFiles) {
                // Another shard's or another file's rows, or blocks already joined into a shard
                // and removed: nothing here can be reused, and mixing it in would corrupt the shard.
                context.log("embed: not resuming the checkpoint after \(step) rows: \(why); embedding the shard from its start")
                try ckpt.discardSteps()
                for name in (try? FileManager.default.contentsOfDirectory(atPath: context.out)) ?? [] where name.hasPrefix("block-") {
                    try? FileManager.default.removeItem(atPath: context.out + "/" + name)
                }
            } else {
                done = step
                context.log("embed: resuming after \(done) rows (checkpoint)")
            }
        }
        let resumedFrom = done
        let n = range.count
        let reader = try PassageReader(path: passagesPath)
        if range.lowerBound + done > 0 {
            context.log("embed: skipping to passage \(range.lowerBound + done)")
            context.progress.phase("skipping to passage \(range.lowerBound + done)")
        }
        _ = try reader.skip(range.lowerBound + done)
        let started = monotonicNow()
        // The next block is read and tokenised (on all cores) by a producer thread while the
        // model embeds this one; one block waits ready at most. Blocks come out in file order,
        // so block names, checkpoints and resume are those of a serial loop.
        var ahead = done
        let prefetch = Prefetch<(rows: [Passage], ids: [[Int32]])>(depth: 1) {
            guard ahead < n else { return nil }
            let block = try reader.nextBlock(max: min(p.blockSize, n - ahead))
            guard !block.isEmpty else {
                throw JobError.permanent("\(p.passages) ended early at row \(range.lowerBound + ahead)", field: "params.passages")
            }
            // A shard's .ids file holds one id a line, so an id with a line break could not be read back.
            if let bad = block.firstIndex(where: { $0.id.unicodeScalars.contains { $0 == "\n" || $0 == "\r" } }) {
                throw JobError.permanent(
                    "\(p.passages): passage \(range.lowerBound + ahead + bad + 1) (after the header) has the id \(block[bad].id.debugDescription), which holds a line break; a shard's .ids file keeps one id a line",
                    field: "params.passages", hint: "give the passage an id without line breaks (DPR's ids are numbers or 'source:number')")
            }
            ahead += block.count
            return (block, model.tokenizePassages(titles: block.map(\.title), texts: block.map(\.text), maxLength: length))
        }
        defer { prefetch.stop() }
        while done < n {
            try context.checkCancelled()
            guard let item = try prefetch.next() else { break }
            let block = item.rows, base = done
            // A stop is taken after any batch (a block of 8192 passages is long on a CPU); the
            // block's batches so far are dropped, the finished blocks kept for the resume.
            let emb = try model.embedPassages(
                tokenized: item.ids, maxLength: length, batchSize: p.perGpuBatchSize,
                progress: { k in
                    context.progress.update(step: base + k, total: n)
                    try context.checkCancelled()
                })  // (rows, E)
            let name = Self.blockName(done)
            try context.publish(name + ".f32", emb.withUnsafeBytes { Data($0) })
            try context.publish(name + ".ids", Data(block.map { $0.id + "\n" }.joined().utf8))
            done += block.count
            let saved = Saved(rows: done, passages: passagesPath, first: range.lowerBound, count: n, model: folder, file: stamp,
                              modelFiles: modelFiles)
            try ckpt.save(step: done) { dir in try context.fs.write(dir + "/rows.json", try jsonEncoder().encode(saved), sync: false) }
            let rate = Double(done - resumedFrom) / max(1e-9, monotonicNow() - started)
            context.log("embed: \(done)/\(n) rows, \(String(format: "%.1f", rate)) passages/s")
        }
        prefetch.stop()
        let embedded = monotonicNow()  // the rate counts the embedding, not the assembly and hashing after it
        guard done == n else { throw JobError.permanent("\(p.passages) ended early at row \(range.lowerBound + done)", field: "params.passages") }
        // Assemble the shard from the blocks, in order.
        context.progress.phase("writing the shard")
        let writer = try ShardWriter(stem: stem, rows: n, dim: dim, storage: p.noFp16 ? .float32 : .float16, tag: context.token)
        var finished = false
        defer { if !finished { writer.discard() } }  // the blocks in out/ are what a retry resumes from
        var start = 0
        while start < n {
            let name = context.out + "/" + Self.blockName(start)
            let ids = try EmbeddingShard.readIDs(name + ".ids")
            let data = try Data(contentsOf: URL(fileURLWithPath: name + ".f32"))
            guard !ids.isEmpty, data.count == ids.count * dim * 4 else {
                throw JobError.transient("block \(name) holds \(data.count) bytes for \(ids.count) ids of width \(dim)", hint: context.startOver + ", embedding the shard again")
            }
            try data.withUnsafeBytes { raw in
                let rows = raw.bindMemory(to: Float.self)
                // A row float16 cannot hold (|x| > 65504 turns into inf) or that is not a number
                // would never be retrieved, silently: refused with the passage named.
                let limit: Float = p.noFp16 ? .greatestFiniteMagnitude : 65504
                if let bad = rows.firstIndex(where: { !($0.magnitude <= limit) }) {
                    throw JobError.permanent(
                        "passage \(ids[bad / dim]) embeds to \(rows[bad]) at dimension \(bad % dim), which "
                            + (rows[bad].isFinite ? "float16 storage cannot hold (largest 65504)" : "is not a finite number"),
                        field: "params.model_path",
                        hint: rows[bad].isFinite ? "set no_fp16 to store float32" : "the retriever's activations overflow; check its weights and passage_maxlength")
                }
                try writer.append(ids: ids, embeddings: rows.baseAddress!)
            }
            start += ids.count
        }
        context.log("embed: hashing sample passages for the shard's record")
        context.progress.phase("hashing sample passages")
        // Which retriever embedded the shard, for retrieve's check. Written before the shard
        // appears: a crash between leaves a record that disagrees with the old shard (refused,
        // naming this job to re-run), never a new shard without its record.
        try ShardRecord(modelPath: folder, passageMaxlength: length, probe: model.probe(maxLength: length),
                        samples: try Self.sampleHashes(passagesPath, range: range)).write(stem: stem)
        try writer.finish()
        finished = true
        start = 0
        while start < n {
            let name = context.out + "/" + Self.blockName(start)
            let count = (try? EmbeddingShard.readIDs(name + ".ids").count) ?? n
            try? FileManager.default.removeItem(atPath: name + ".f32")
            try? FileManager.default.removeItem(atPath: name + ".ids")
            start += max(count, 1)
        }
        let seconds = monotonicNow() - t0
        context.log("embed: wrote \(stem).npy (\(n) × \(dim), \(p.noFp16 ? "float32" : "float16"))")
        return EmbedOutput(
            npy: stem + ".npy", ids: stem + ".ids", rows: n, dim: dim, storage: p.noFp16 ? "float32" : "float16",
            products: model.halfPrecision != nil ? "bfloat16" : "float32", firstPassage: range.lowerBound, passagesInFile: total, resumedFrom: resumedFrom, seconds: seconds,
            passagesPerSecond: Double(n - resumedFrom) / max(1e-9, embedded - started))
    }
}
