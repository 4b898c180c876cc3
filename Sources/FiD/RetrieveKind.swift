// RetrieveKind: the `retrieve` job (FiD's passage_retrieval.py): questions embedded (or BM25), shards searched, FiD JSON with ctxs and recall@k.
import Formats
import Foundation
import Jobs
import Models
import Retrieval
import Tensor

/// `retrieve` params, FiD's names (ref/fid-spec.md §1.6) plus `method` (`dense`, `bm25`), `index`
/// (`flat`, `sq8`, `pq`), `bm25_index` and `rerank` (sq8 candidates per result).
public struct RetrieveParams: JobParams {
    public static var defaultNotes: [String: String] { ["index": "flat; pq when n_subquantizers > 0 (FiD's IndexPQ)"] }
    public var modelPath: String?
    public var tokenizer: String?
    public var passages = ""
    public var passagesEmbeddings: String?
    public var bm25Index: String?
    public var data = ""
    public var outputPath = "retrieved.json"
    public var nDocs = 100
    public var questionMaxlength = Self.defaultQuestionMaxlength
    /// FiD's default (lowered to a smaller model's position table).
    static let defaultQuestionMaxlength = 40
    public var perGpuBatchSize = 64
    public var index = "flat"
    public var nSubquantizers = 0
    public var nBits = 8
    public var saveOrLoadIndex = false
    public var method = "dense"
    public var rerank = 4
    /// FiD's passage_retrieval.py options that change nothing here.
    public var ignored = FiDIgnoredOptions()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case modelPath = "model_path", tokenizer, passages, data, index, method, rerank
        case passagesEmbeddings = "passages_embeddings"
        case bm25Index = "bm25_index"
        case outputPath = "output_path"
        case nDocs = "n_docs"
        case questionMaxlength = "question_maxlength"
        case perGpuBatchSize = "per_gpu_batch_size"
        case nSubquantizers = "n_subquantizers"
        case nBits = "n_bits"
        case saveOrLoadIndex = "save_or_load_index"
        case noFP16 = "no_fp16", validationWorkers = "validation_workers", indexingBatchSize = "indexing_batch_size"
        case passageMaxlength = "passage_maxlength"
    }

    /// The params as a descriptor carries them (the options without effect left out).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(modelPath, forKey: .modelPath)
        try c.encodeIfPresent(tokenizer, forKey: .tokenizer)
        try c.encode(passages, forKey: .passages)
        try c.encodeIfPresent(passagesEmbeddings, forKey: .passagesEmbeddings)
        try c.encodeIfPresent(bm25Index, forKey: .bm25Index)
        try c.encode(data, forKey: .data)
        try c.encode(outputPath, forKey: .outputPath)
        try c.encode(nDocs, forKey: .nDocs)
        try c.encode(questionMaxlength, forKey: .questionMaxlength)
        try c.encode(perGpuBatchSize, forKey: .perGpuBatchSize)
        try c.encode(index, forKey: .index)
        try c.encode(nSubquantizers, forKey: .nSubquantizers)
        try c.encode(nBits, forKey: .nBits)
        try c.encode(saveOrLoadIndex, forKey: .saveOrLoadIndex)
        try c.encode(method, forKey: .method)
        try c.encode(rerank, forKey: .rerank)
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        modelPath = try c.decodeIfPresent(String.self, forKey: .modelPath)
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        passages = try c.decode(String.self, forKey: .passages)
        passagesEmbeddings = try c.decodeIfPresent(String.self, forKey: .passagesEmbeddings)
        bm25Index = try c.decodeIfPresent(String.self, forKey: .bm25Index)
        data = try c.decode(String.self, forKey: .data)
        outputPath = try c.decode(.outputPath, default: "retrieved.json")
        nDocs = try c.require(try c.decode(.nDocs, default: 100), .nDocs, "an integer >= 1") { $0 >= 1 }
        questionMaxlength = try c.require(try c.decode(.questionMaxlength, default: Self.defaultQuestionMaxlength), .questionMaxlength, "an integer >= 2") { $0 >= 2 }
        perGpuBatchSize = try c.require(try c.decode(.perGpuBatchSize, default: 64), .perGpuBatchSize, "an integer >= 1") { $0 >= 1 }
        nSubquantizers = try c.require(try c.decode(.nSubquantizers, default: 0), .nSubquantizers, "an integer >= 0") { $0 >= 0 }
        nBits = try c.require(try c.decode(.nBits, default: 8), .nBits, "an integer in 1…8") { (1...8).contains($0) }
        // FiD: n_subquantizers > 0 means its IndexPQ.
        index = try c.require(try c.decode(.index, default: nSubquantizers > 0 ? "pq" : "flat"), .index, "one of flat, sq8, pq") {
            ["flat", "sq8", "pq"].contains($0)
        }
        saveOrLoadIndex = try c.decode(.saveOrLoadIndex, default: false)
        method = try c.require(try c.decode(.method, default: "dense"), .method, "dense or bm25") { ["dense", "bm25"].contains($0) }
        rerank = try c.require(try c.decode(.rerank, default: 4), .rerank, "an integer >= 1") { $0 >= 1 }
        ignored = FiDIgnoredOptions(c, [
            (.noFP16, "questions are encoded in float32 either way"), (.validationWorkers, "answer matching runs on the job's threads"),
            (.indexingBatchSize, "shards are read block by block"), (.passageMaxlength, "passages were cut when embedded"),
        ] + (method == "dense" && index != "pq" ? [(.nBits, "only index pq reads it, and this job's index is \(index)")] : [])
            + (method == "dense" && index == "flat"
                ? [(.saveOrLoadIndex, "the flat index is the embedding shards themselves, searched in place: nothing to build or save")] : []))
        // A param of the other method would be ignored: the user believes it searches as it says
        // (`index: sq8` with BM25 is still BM25; `bm25_index` with dense is still dense).
        let denseOnly: [CodingKeys] = [.modelPath, .tokenizer, .passagesEmbeddings, .index, .nSubquantizers, .nBits, .saveOrLoadIndex, .rerank,
                                        .questionMaxlength, .perGpuBatchSize]
        for key in method == "bm25" ? denseOnly : [.bm25Index] where c.contains(key) {
            throw JobError.permanent("\(key.stringValue) is a param of method \(method == "bm25" ? "dense" : "bm25"), and this job's method is \(method)",
                                     field: "params." + key.stringValue,
                                     hint: "drop \(key.stringValue), or set method \(method == "bm25" ? "dense" : "bm25")" + (c.contains(.method) ? "" : " (dense is the default)"))
        }
        if method == "dense" {
            guard modelPath != nil else { throw JobError.permanent("method dense needs model_path", field: "params.model_path") }
            guard passagesEmbeddings != nil else {
                throw JobError.permanent("method dense needs passages_embeddings (a glob of shards)", field: "params.passages_embeddings")
            }
            if index == "pq" && nSubquantizers == 0 {
                throw JobError.permanent("index pq needs n_subquantizers > 0", field: "params.n_subquantizers")
            }
            // Another index's settings would be ignored: FiD reads n_subquantizers > 0 as pq, so
            // `index: flat` with it searches otherwise than the user expects.
            if index != "pq" && nSubquantizers > 0 {
                throw JobError.permanent("n_subquantizers \(nSubquantizers) is a setting of index pq, and this job's index is \(index)",
                                         field: "params.n_subquantizers", hint: "drop n_subquantizers, or set index pq (its default when n_subquantizers > 0)")
            }
            if index != "sq8" && c.contains(.rerank) {
                throw JobError.permanent("rerank is a setting of index sq8 (its float32 re-rank of rerank · n_docs candidates), and this job's index is \(index)",
                                         field: "params.rerank", hint: "drop rerank, or set index sq8")
            }
        } else if bm25Index == nil {
            throw JobError.permanent("method bm25 needs bm25_index (an index_bm25 job's output)", field: "params.bm25_index")
        }
    }

    public var outputPaths: [(field: String, path: String)] { [("output_path", outputPath)] }
    /// At submit and before each run, for dense retrieval: the model folder holds a BERT config and weights, and
    /// `question_maxlength` fits its position table.
    public func validateInputs(resolve: (String) -> String) throws {
        guard method == "dense", let modelPath else { return }
        let folder = resolve(modelPath)
        try ScoreParams.checkModelFolder(folder, field: "params.model_path", architecture: "BERT") {
            _ = try BertConfig.load(path: $0).fitLength("question_maxlength", questionMaxlength,
                                                         isDefault: questionMaxlength == Self.defaultQuestionMaxlength, configFile: $0)
        }
    }

    public var inputPaths: [(field: String, path: String)] {
        var p = [("passages", passages), ("data", data)]
        if method == "dense", let m = modelPath { p.append(("model_path", m)) }
        if method == "dense", let t = tokenizer { p.append(("tokenizer", t)) }
        if method == "bm25", let b = bm25Index { p.append(("bm25_index", b)) }
        return p
    }
}

public struct RetrieveOutput: Codable, Sendable {
    public var output: String
    public var questions: Int
    public var corpus: Int
    public var nDocs: Int
    public var nDocsReturned: Int
    public var method: String
    public var index: String
    /// Answer recall (DPR's has_answer) at 1, 5, 20 and 100, keyed "1", "5", "20", "100": those
    /// depths the output reaches (`n_docs_returned`), plus that depth itself when it is none of them.
    public var recall: [String: Double]
    public var note: String?
    /// Questions given fewer than `min(n_docs, corpus)` passages (BM25 returns only passages that
    /// share a word with the question), and the shortest list; absent when every list is full.
    public var shortQuestions: Int?
    public var fewestDocs: Int?
    public var queryS: Double
    public var indexS: Double
    public var searchS: Double

    enum CodingKeys: String, CodingKey {
        case output, questions, corpus, method, index, recall, note
        case nDocs = "n_docs"
        case nDocsReturned = "n_docs_returned"
        case shortQuestions = "short_questions"
        case fewestDocs = "fewest_docs"
        case queryS = "query_s"
        case indexS = "index_s"
        case searchS = "search_s"
    }
}

/// `retrieve`: reads the questions, embeds them (or tokenises them for BM25), searches, looks the
/// winning passages up in one streaming pass over the TSV, and writes FiD's JSON: each example's
/// `ctxs` replaced by the top `n_docs` `{id, title, text, score (a string, as FiD), hasanswer}`,
/// other fields kept. `n_docs` beyond the corpus returns the whole corpus and says so; BM25
/// lists hold only passages sharing a word with the question, and short ones are counted.
public struct RetrieveKind: JobKind {
    public init() {}
    public var name: String { "retrieve" }

    /// The depths `result.json` reports recall at: DPR's 1, 5, 20, 100 up to `returned`, plus
    /// `returned` itself when it is none of them (n_docs 10 → 1, 5, 10).
    static func recallDepths(returned: Int) -> [Int] {
        let depths = [1, 5, 20, 100].filter { $0 <= returned }
        return returned >= 1 && !depths.contains(returned) && returned < 100 ? depths + [returned] : depths
    }

    /// Refuses shards another retriever embedded: each shard's record (`ShardRecord`, written by
    /// `embed`) holds its model's embedding of a fixed probe passage, which `model` must
    /// reproduce. Shards without a record (FiD's, an older fidq's) are searched unchecked, as said.
    /// - Returns: the records' sampled passages (id → hash of the text embedded, and the shard),
    ///   which the passages file must still hold.
    static func checkEmbeddedBy(_ model: RetrieverModel, folder: String, shards: [EmbeddingShard],
                                _ context: JobContext) throws -> [String: (hash: String, shard: String)] {
        var samples: [String: (hash: String, shard: String)] = [:]
        var probes: [Int: [Float]] = [:]  // by passage_maxlength
        var unrecorded: [String] = [], worst: Float = 0
        for shard in shards {
            let record: ShardRecord?
            do { record = try ShardRecord.read(forShard: shard.path) } catch let e as RetrievalError {
                throw JobError.permanent(e.message, field: "params.passages_embeddings", hint: e.hint)
            }
            guard let record else { unrecorded.append(shard.path); continue }
            let length = record.passageMaxlength
            if probes[length] == nil { probes[length] = model.probe(maxLength: length) }
            let d = record.distance(to: probes[length]!)
            guard d <= ShardRecord.tolerance else {
                throw JobError.permanent(
                    "\(shard.path) was embedded by another retriever (\(record.modelPath)) than model_path \(folder): their embeddings "
                        + "of a probe passage differ by \(d) relative (the same retriever agrees within \(ShardRecord.tolerance))",
                    field: "params.passages_embeddings",
                    hint: "embed the passages with this retriever (re-run this shard's embed job with model_path \(folder)), "
                        + "or retrieve with the model that embedded them")
            }
            worst = max(worst, d)
            for (id, hash) in record.samples ?? [:] { samples[id] = (hash, shard.path) }
        }
        if !probes.isEmpty {
            context.log("retrieve: shards embedded by this retriever: \(shards.count - unrecorded.count) of \(shards.count) (probe agrees within \(worst))")
        }
        if !unrecorded.isEmpty {
            context.log("retrieve: no record of the retriever that embedded \(unrecorded.count) of \(shards.count) shards (FiD's, or an "
                        + "older fidq's), not checked: \(unrecorded.prefix(3).joined(separator: ", "))\(unrecorded.count > 3 ? ", …" : "")")
        }
        return samples
    }

    /// sq8 holds one byte per value in memory (16 GB for 21M × 768), and its ids: refused before
    /// the build rather than aborted in its allocation, which left no error.
    static func checkSQ8Memory(rows: Int, dim: Int, available: Int) throws {
        let need = Double(rows) * Double(dim + 64), have = Double(available)
        guard need > have else { return }
        throw JobError.permanent("index sq8 holds one byte per value: \(rows) passages × \(dim) need about \(AvailableMemory.gib(need)) GiB "
                                     + "of codes and ids, more than the \(AvailableMemory.gib(have)) GiB this process may use",
                                 field: "params.index", hint: "index flat searches the shards in place; pq keeps n_subquantizers bytes a passage")
    }

    public func run(_ p: RetrieveParams, _ context: JobContext) throws -> RetrieveOutput {
        let output = try context.output(p.outputPath, field: "params.output_path")
        if let line = p.ignored.note("retrieve") { context.log(line) }
        try FileManager.default.createDirectory(atPath: (output as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // The data file is read twice, streaming: its questions now, each example again as its
        // output is written (holding every example, ctxs and all, took ~5× the file in memory).
        let data = FiDData(path: context.resolve(p.data))
        var questions: [String] = [], idTexts: [String] = []
        do {
            _ = try data.forEach { ex in
                questions.append(ex.question)
                idTexts.append(ex.idText)
            }
        } catch {
            throw JobError.permanent("\(error)", field: "params.data")
        }
        // Searched a block of questions at a time (`QuestionBlocks`: the hits are one call's), with
        // progress and a stop check between blocks. Dense retrieval embeds the questions first:
        // progress counts both passes, so it only rises.
        let passes = p.method == "dense" ? 2 : 1, progressTotal = passes * questions.count
        /// `size`: questions per call. BM25 answers each question alone, so its blocks are small
        /// (a stop waited out a whole 8,192-question block, 20 s on a large corpus; each call zeroes
        /// a corpus-sized accumulator per thread, so not too small); dense search
        /// keeps `QuestionBlocks.size`, whose gemm shapes its scores' last bits depend on.
        func searchInBlocks(size: Int = QuestionBlocks.size, _ search: (Range<Int>) -> [[Hit]]) throws -> [[Hit]] {
            var all: [[Hit]] = []
            all.reserveCapacity(questions.count)
            context.progress.update(step: (passes - 1) * questions.count, total: progressTotal)  // status shows the search from its start
            for start in stride(from: 0, to: questions.count, by: size) {
                try context.checkCancelled()
                let block = start..<min(questions.count, start + size)
                all += search(block)
                context.progress.update(step: (passes - 1) * questions.count + block.upperBound, total: progressTotal)
                if questions.count > QuestionBlocks.size, block.upperBound % QuestionBlocks.size == 0 || block.upperBound == questions.count {
                    context.log("retrieve: searched \(block.upperBound)/\(questions.count) questions")
                }
            }
            return all
        }
        context.log("retrieve: \(questions.count) questions, method \(p.method)\(p.method == "dense" ? ", index \(p.index)" : ""), threads \(context.threads)")
        var hits: [[Hit]] = []
        var idOf: (Int) -> String = { String($0) }
        var corpus = 0
        var (queryS, indexS, searchS) = (0.0, 0.0, 0.0)
        var k = p.nDocs
        var samples: [String: (hash: String, shard: String)] = [:]  // passages the shards' records sampled
        func wrap<T>(_ field: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let e as RetrievalError { throw JobError.permanent(e.message, field: field, hint: e.hint) }
        }
        if p.method == "bm25" {
            var t = monotonicNow()
            let indexPath = context.resolve(p.bm25Index!)
            let bm25 = try wrap("params.bm25_index") { try BM25Index(path: indexPath) }
            if let source = BM25Source.read(beside: indexPath) {
                for (id, hash) in source.samples { samples[id] = (hash, indexPath) }
                let now = try wrap("params.passages") { try SavedIndexSource.File.stamp(context.resolve(p.passages)) }
                if now.bytes != source.passages.bytes {
                    context.log("retrieve: warning: \(p.passages) is \(now.bytes) bytes, but \(source.passages.path) was \(source.passages.bytes) "
                                + "when index_bm25 indexed it: passages added since are not searched (rebuild the index with index_bm25)")
                }
            } else {
                context.log("retrieve: no record of the passages file \(p.bm25Index!) was built from (an older fidq's index): "
                            + "its texts are not checked against \(p.passages)")
            }
            indexS = monotonicNow() - t
            corpus = bm25.documentCount
            k = min(k, max(corpus, 1))
            t = monotonicNow()
            hits = try searchInBlocks(size: 2048) { bm25.search(Array(questions[$0]), k: k) }
            searchS = monotonicNow() - t
            idOf = { bm25.ids[$0] }
        } else {
            var t = monotonicNow()
            let model: RetrieverModel, folder = context.resolve(p.modelPath!)
            do { model = try RetrieverModel.load(folder: folder, tokenizer: p.tokenizer.map(context.resolve)) } catch {
                throw ScoreParams.loadError(error, folder: folder, tokenizer: p.tokenizer, prefix: "cannot load the retriever: ")
            }
            let length = try model.model.config.fitLength("question_maxlength", p.questionMaxlength,
                                                          isDefault: p.questionMaxlength == RetrieveParams.defaultQuestionMaxlength,
                                                          configFile: folder + "/config.json")
            if let note = length.note { context.log("retrieve: " + note) }
            try model.model.config.checkMemory(sequences: min(p.perGpuBatchSize, questions.count), length: length.length,
                                               shape: "per_gpu_batch_size \(p.perGpuBatchSize)")
            let q = model.embedQuestions(questions, maxLength: length.length, batchSize: p.perGpuBatchSize,
                                         progress: { context.progress.update(step: $0, total: progressTotal) })  // (B, E)
            queryS = monotonicNow() - t
            context.log("retrieve: questions embedded (\(questions.count) × \(model.model.embeddingWidth)) in \(String(format: "%.2f", queryS)) s")
            t = monotonicNow()
            // A glob is no input path the registry can check: each shard it names (and its ids and
            // record files) must lie where a job may read, before a byte of it is read, and the
            // shards opened are those checked (a second glob could name a file added meanwhile).
            let glob = context.resolve(p.passagesEmbeddings!)
            let shardPaths = EmbeddingShard.glob(glob)
            for path in shardPaths {
                for file in [path, EmbeddingShard.idsPath(forShard: path), ShardRecord.path(forShard: path)] where context.fs.exists(file) || file == path {
                    _ = try context.paths.checkInput(file, field: "params.passages_embeddings", fs: context.fs)
                }
            }
            let shards = try wrap("params.passages_embeddings") {
                try shardPaths.isEmpty ? EmbeddingShard.open(glob: glob) : EmbeddingShard.open(paths: shardPaths)
            }
            let flat = try wrap("params.passages_embeddings") { try FlatIndex(shards: shards) }
            guard flat.dim == model.model.embeddingWidth else {
                throw JobError.permanent("shards of width \(flat.dim) (\(shards[0].path)), but the retriever \(folder) embeds "
                                         + "\(model.model.embeddingWidth)", field: "params.passages_embeddings",
                                         hint: "embed the passages with this retriever first (embed jobs), or retrieve with the model that embedded them")
            }
            if p.index == "pq" && flat.dim % p.nSubquantizers != 0 {
                throw JobError.permanent("n_subquantizers \(p.nSubquantizers) does not divide the embedding width \(flat.dim)", field: "params.n_subquantizers",
                                         hint: "one of " + (1...flat.dim).filter { flat.dim % $0 == 0 }.map(String.init).joined(separator: ", "))
            }
            samples = try Self.checkEmbeddedBy(model, folder: folder, shards: shards, context)
            corpus = flat.count
            k = min(k, max(corpus, 1))
            let dir = (shards[0].path as NSString).deletingLastPathComponent
            /// A compressed index: loaded when `save_or_load_index` finds one built from these
            /// very shards with these settings (and of their size), else built (and then saved,
            /// with its source).
            func compressed<I>(_ name: String, settings: [String: Int], load: (String) throws -> I, build: () throws -> I,
                               save: (I, String) throws -> Void, shape: (I) -> (count: Int, dim: Int)) throws -> I {
                try wrap("params.passages_embeddings") {
                    let path = dir + "/index." + name
                    guard p.saveOrLoadIndex else { return try build() }
                    _ = try context.output(path, field: "params.save_or_load_index")
                    let source = try SavedIndexSource(index: name, settings: settings, shards: shards, indexPath: path)
                    if FileManager.default.fileExists(atPath: path) {
                        if let why = source.mismatch(SavedIndexSource.read(beside: path)) {
                            context.log("retrieve: not loading \(path): \(why); building it again")
                        } else {
                            context.log("retrieve: loading \(path)")
                            let loaded = try load(path), (n, d) = shape(loaded)
                            guard n == flat.count, d == flat.dim else {
                                throw JobError.permanent("\(path) holds \(n) × \(d), the shards \(flat.count) × \(flat.dim)",
                                                         field: "params.passages_embeddings", hint: "delete it; the next run builds it again")
                            }
                            return loaded
                        }
                    }
                    let built = try build()
                    try save(built, path)
                    try source.write(beside: path)
                    context.log("retrieve: saved \(path)")
                    return built
                }
            }
            switch p.index {
            case "sq8":
                try Self.checkSQ8Memory(rows: flat.count, dim: flat.dim, available: AvailableMemory.bytes)
                let sq = try compressed("sq8", settings: [:], load: ScalarQuantizedIndex.init(path:),
                                        build: { try ScalarQuantizedIndex.build(shards: shards) }, save: { try $0.save(to: $1) },
                                        shape: { ($0.count, $0.dim) })
                indexS = monotonicNow() - t
                t = monotonicNow()
                hits = try q.withUnsafeBufferPointer { qp in
                    try searchInBlocks { sq.search(queries: qp.baseAddress! + $0.lowerBound * flat.dim, queryCount: $0.count, k: k, rerank: p.rerank, exact: flat) }
                }
            case "pq":
                // faiss warns below 39 training rows per centroid: its k-means then learns centroids
                // from a handful of rows each (or fewer rows than centroids), and recall drops.
                let centroids = 1 << p.nBits
                if flat.count < 39 * centroids {
                    context.log("retrieve: warning: pq's k-means learns \(centroids) centroids (n_bits \(p.nBits)) per sub-quantizer from "
                                + "\(flat.count) passages, fewer than the \(39 * centroids) faiss asks for; recall suffers: lower n_bits, or use sq8 or flat")
                }
                let pq = try compressed("pq", settings: ["n_subquantizers": p.nSubquantizers, "n_bits": p.nBits], load: ProductQuantizedIndex.init(path:),
                                        build: { try ProductQuantizedIndex.build(shards: shards, subquantizers: p.nSubquantizers, bits: p.nBits) },
                                        save: { try $0.save(to: $1) }, shape: { ($0.count, $0.dim) })
                indexS = monotonicNow() - t
                t = monotonicNow()
                hits = try q.withUnsafeBufferPointer { qp in
                    try searchInBlocks { pq.search(queries: qp.baseAddress! + $0.lowerBound * flat.dim, queryCount: $0.count, k: k) }
                }
            default:
                indexS = monotonicNow() - t
                t = monotonicNow()
                hits = try q.withUnsafeBufferPointer { qp in
                    try searchInBlocks { flat.search(queries: qp.baseAddress! + $0.lowerBound * flat.dim, queryCount: $0.count, k: k) }
                }
            }
            searchS = monotonicNow() - t
            idOf = { flat.id(ofRow: $0) }
        }
        context.log("retrieve: search \(String(format: "%.2f", searchS)) s over \(corpus) passages")
        let indexField = p.method == "bm25" ? "params.bm25_index" : "params.passages_embeddings"
        guard corpus > 0 else {
            throw JobError.permanent("the index holds no passages (\(p.method == "bm25" ? p.bm25Index! : p.passagesEmbeddings! + ": every shard is empty")): "
                                     + "every question would get none", field: indexField,
                                     hint: p.method == "bm25" ? "index a passages file that has rows" : "embed the passages first (embed jobs); every shard here is empty")
        }
        var notes: [String] = []
        if p.nDocs > corpus {
            notes.append("n_docs \(p.nDocs) exceeds the \(corpus) indexed passages: "
                         + (p.method == "bm25" ? "each question gets every passage that shares a word with it" : "every passage returned"))
            context.log("retrieve: " + notes.last!)
        }
        // BM25 scores a passage that shares no word with the question 0 and does not return it,
        // as Pyserini: such lists are shorter than n_docs, and a question none of whose words is
        // indexed gets none. Say so rather than let the output look complete.
        let full = min(p.nDocs, corpus), lengths = hits.map(\.count)
        let short = lengths.indices.filter { lengths[$0] < full }
        let fewest = short.min { lengths[$0] < lengths[$1] }
        if let fewest, p.method != "bm25" {
            // Dense scores of finite vectors rank every row: a short list means scores that were
            // not numbers, which no row beats.
            throw JobError.permanent(
                "\(short.count) of \(questions.count) questions got fewer than \(full) passages (fewest \(lengths[fewest]), question "
                    + "\(idTexts[fewest])): their scores were not numbers, so the question embeddings or the shards' rows hold NaN or ±inf",
                field: indexField, hint: "re-embed the shards (embed jobs) with a retriever whose weights are finite")
        }
        if let fewest {
            notes.append("\(short.count) of \(questions.count) questions got fewer than \(full) passages (fewest \(lengths[fewest]), "
                         + "question \(idTexts[fewest])): BM25 returns only passages that share a word with the question")
            context.log("retrieve: " + notes.last! + "; score and train_reader pad short lists with empty passages")
        }
        let note = notes.isEmpty ? nil : notes.joined(separator: "; ")
        // The passages' texts: one streaming pass keeping only the ids retrieved.
        var needed = Set<String>()
        for h in hits { for x in h { needed.insert(idOf(x.row)) } }
        var found: [String: Passage] = [:]
        // A pass over the passages file and the output's writing take minutes at 21M passages:
        // logged and shown as phases (status stood at 100 % through them).
        context.log("retrieve: reading the texts of \(needed.count) passages from \(p.passages)")
        context.progress.phase("reading passages")
        let reader = try wrap("params.passages") { try PassageReader(path: context.resolve(p.passages)) }
        // The shards' sampled passages must read as they were embedded: these texts are returned
        // with the shards' vectors' ranking.
        var sampled = Set<String>()
        var read = 0
        while found.count < needed.count || sampled.count < samples.count, let psg = try wrap("params.passages", { try reader.next() }) {
            read += 1
            if read % 65_536 == 0 { try context.checkCancelled() }
            if needed.contains(psg.id) {
                // The second row of an id would be returned in place of the one the index holds.
                guard found[psg.id] == nil else {
                    throw JobError.permanent("passage id \(psg.id) appears twice in \(p.passages) (the second time in row \(read), counted after the header)",
                                             field: "params.passages", hint: "DPR ids must be unique: renumber or drop the repeated rows, then "
                                                 + (p.method == "bm25" ? "index_bm25 and retrieve again" : "embed and retrieve again"))
                }
                found[psg.id] = psg
            }
            if let s = samples[psg.id] {
                sampled.insert(psg.id)
                guard ShardRecord.passageHash(title: psg.title, text: psg.text) == s.hash else {
                    throw JobError.permanent("passage \(psg.id) in \(p.passages) is not the passage \(s.shard) \(p.method == "bm25" ? "indexed" : "embedded") "
                                             + "under that id (its title or text changed)", field: "params.passages",
                                             hint: p.method == "bm25" ? "retrieve from the passages file the index was built from, or index this one (index_bm25)"
                                                 : "retrieve from the passages file the shards were embedded from, or embed this one")
                }
            }
        }
        if let missing = needed.first(where: { found[$0] == nil }) ?? samples.keys.sorted().first(where: { !sampled.contains($0) }) {
            throw JobError.permanent("passage id \(missing) of the index is not in \(p.passages)", field: "params.passages",
                                     hint: p.method == "bm25" ? "retrieve from the passages file the index was built from, or index this one (index_bm25)"
                                         : "search the shards embedded from this passages file")
        }
        if !samples.isEmpty {
            context.log("retrieve: \(sampled.count) passages sampled by " + (p.method == "bm25" ? "\(p.bm25Index!)'s record read as indexed" : "the shards' records read as embedded"))
        }
        var recall = RecallAtK()
        context.progress.phase("writing \(output)")
        let writer = try PyJSONWriter(path: output)
        var written = 0
        func changed() -> JobError {
            JobError.permanent("\(p.data) changed while it was being retrieved for (\(questions.count) questions read first)", field: "params.data",
                               hint: "retrieve again once the file is complete")
        }
        do {
            _ = try data.forEach { ex in
                guard written < hits.count, ex.question == questions[written] else { throw changed() }
                let h = hits[written]
                written += 1
                // A stop (cancel, lost lease) ends the write here; the unfinished file goes.
                if written % 1024 == 0 { try context.checkCancelled() }
                let answerTokens = ex.answers.map(AnswerMatch.normalizedTokens)
                var flags: [Bool] = []
                let ctxs: [FiDPassage] = h.map { x in
                    let id = idOf(x.row)
                    let psg = found[id]!
                    let has = AnswerMatch.hasAnswer(answerTokens: answerTokens, words: AnswerMatch.normalizedTokens(psg.text))
                    flags.append(has)
                    let raw = JSONNode.object([
                        ("id", .string(id)), ("title", .string(psg.title)), ("text", .string(psg.text)),
                        ("score", .string(String(describing: x.score))), ("hasanswer", .bool(has)),
                    ])
                    return FiDPassage(title: psg.title, text: psg.text, raw: raw)
                }
                recall.add(flags)
                // Output errors are the output's, not the data file's.
                do { try writer.append(ex.json(passages: ctxs)) } catch { throw JobError.classify(error) }
            }
        } catch let e as JobError {
            throw e
        } catch let e as CancellationError {
            throw e
        } catch {
            throw JobError.permanent("\(error)", field: "params.data")
        }
        guard written == hits.count else { throw changed() }
        // An attempt that lost its claim while writing must not put its file in place.
        try context.checkCancelled()
        try writer.finish()
        // Only depths the output reaches: with n_docs 20, "recall@100" would be recall@20 under
        // another name. The output's own depth is reported when it is not one of DPR's.
        let returned = lengths.max() ?? 0
        let depths = Self.recallDepths(returned: returned)
        var r: [String: Double] = [:]
        for at in depths { r[String(at)] = recall.recall(at: at) }
        context.log("retrieve: " + depths.map { "recall@\($0) \(r[String($0)]!)" }.joined(separator: ", ")
                    + "; hits \(recall.hits.prefix(100))")
        return RetrieveOutput(
            output: output, questions: questions.count, corpus: corpus, nDocs: p.nDocs, nDocsReturned: returned, method: p.method,
            index: p.method == "dense" ? p.index : "bm25", recall: r, note: note, shortQuestions: fewest.map { _ in short.count },
            fewestDocs: fewest.map { lengths[$0] }, queryS: queryS, indexS: indexS, searchS: searchS)
    }
}
