// RetrieverModel: a BERT retriever folder loaded with its WordPiece tokenizer, and the batched
// embedding API the `embed` and `retrieve` jobs call: FiD's text formats, tokenisation on all
// cores, length-sorted batches, forward only, rows returned in input order.
import Foundation
import Tensor
import Tokenizers

/// A `BertRetriever` and its tokenizer.
///
/// The tokenizer is the `tokenizer` argument when given (a `tokenizer.json`, a `vocab.txt`, or a
/// folder holding one), else the model folder's own. FiD's released retrievers ship none (they use
/// `bert-base-uncased`'s), so loading one needs the argument.
public struct RetrieverModel {
    public let model: BertRetriever
    /// Immutable: one instance serves every thread.
    public let tokenizer: any Tokenizer
    /// The tokenizer file actually read.
    public let tokenizerPath: String
    /// The kernel of half-precision embedding (`BertRetriever.withHalfPrecision`: bfloat16
    /// products, float32 sums), or nil for float32 throughout. The `embed` job sets
    /// `Gemm.BF16Kernel.fast` unless `no_fp16`, as FiD's script runs `.half()` unless `--no_fp16`.
    public var halfPrecision: Gemm.BF16Kernel?

    /// The tokenizer files looked for in a model folder, in order.
    public static let tokenizerFiles = ["tokenizer.json", "vocab.txt"]

    public init(model: BertRetriever, tokenizer: any Tokenizer, tokenizerPath: String) {
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizerPath = tokenizerPath
    }

    /// Loads `folder` as `BertRetriever.load(folder:)` does, and its tokenizer.
    ///
    /// - Throws: `ModelLoadError` naming the folder when it holds no tokenizer and none is given,
    ///   or the tokenizer file when its ids exceed `vocab_size` or its padding id is not
    ///   `pad_token_id`; `TokenizerError` for a damaged tokenizer file; the model's load errors.
    public static func load(folder: String, tokenizer: String? = nil) throws -> RetrieverModel {
        // The config first: a folder of another model is named as such, not as one without a tokenizer.
        let configPath = folder + "/config.json"
        let config = try BertConfig.load(path: configPath)
        let path = try tokenizerFile(folder: folder, tokenizer: tokenizer)
        let tok = try TokenizerLoader.load(path)
        guard tok.vocabSize <= config.vocabSize else {
            throw ModelLoadError(path: path, "has \(tok.vocabSize) ids but \(configPath) has vocab_size \(config.vocabSize)",
                                 hint: "use the tokenizer the model was trained with (bert-base-uncased's for FiD's retrievers)")
        }
        guard Int(tok.padId) == config.padTokenId else {
            throw ModelLoadError(path: path, "pads with id \(tok.padId) but \(configPath) has pad_token_id \(config.padTokenId)",
                                 hint: "use the tokenizer the model was trained with")
        }
        return RetrieverModel(model: try BertRetriever.load(folder: folder), tokenizer: tok, tokenizerPath: path)
    }

    public static func tokenizerFile(folder: String, tokenizer: String?) throws -> String {
        try ModelFolder.tokenizerFile(folder: folder, tokenizer: tokenizer, files: tokenizerFiles, reference: "bert-base-uncased's")
    }

    // MARK: - FiD's texts

    /// FiD's question text (its Dataset's prefix): `question: <q>`.
    public static func questionText(_ question: String) -> String { "question: " + question }

    /// FiD's passage text: `title: <title> context: <text>`.
    public static func passageText(title: String, text: String) -> String { "title: " + title + " context: " + text }

    /// Question embeddings (n, E) row-major, with FiD's prefix, `question_maxlength` and
    /// `apply_question_mask` from the config unless given.
    public func embedQuestions(_ questions: [String], maxLength: Int? = nil, batchSize: Int = 64,
                               progress: ((Int) -> Void)? = nil) -> [Float] {
        embed(questions.map(Self.questionText), maxLength: maxLength ?? model.config.questionMaxlength,
              applyMask: model.config.applyQuestionMask, batchSize: batchSize, progress: progress)
    }

    /// Passage embeddings (n, E) row-major, FiD's `title: … context: …` text, `passage_maxlength`
    /// and `apply_passage_mask` from the config unless given.
    public func embedPassages(titles: [String], texts: [String], maxLength: Int? = nil, batchSize: Int = 64,
                              progress: ((Int) throws -> Void)? = nil) rethrows -> [Float] {
        try embedPassages(tokenized: tokenizePassages(titles: titles, texts: texts, maxLength: maxLength), maxLength: maxLength,
                      batchSize: batchSize, progress: progress)
    }

    /// The fixed passage whose embedding fingerprints a retriever (weights, head, pooling,
    /// tokenizer): `embed` records it beside each shard and `retrieve` compares its own.
    public static let probeTitle = "fidq", probeText = "a fixed passage that tells one retriever from another : 0 1 2 3 4 5 6 7 8 9"

    /// (E) The probe passage's embedding at `maxLength` (the shard's `passage_maxlength`: without
    /// a passage mask the padding length changes the embedding).
    /// Always in float32, so shards embedded at either precision, on any CPU, compare alike.
    public func probe(maxLength: Int) -> [Float] {
        var exact = self
        exact.halfPrecision = nil
        return exact.embedPassages(titles: [Self.probeTitle], texts: [Self.probeText], maxLength: maxLength, batchSize: 1)
    }

    /// The first half of `embedPassages`: FiD's passage texts tokenised on `threads` cores
    /// (default all), special tokens included, truncated to `passage_maxlength` unless given.
    /// The `embed` job runs it on the next block while the model embeds the current one.
    public func tokenizePassages(titles: [String], texts: [String], maxLength: Int? = nil, threads: Int? = nil) -> [[Int32]] {
        precondition(titles.count == texts.count, "tokenizePassages: \(titles.count) titles, \(texts.count) texts")
        let joined = zip(titles, texts).map { Self.passageText(title: $0, text: $1) }
        return tokenizer.encodeAll(joined, addSpecialTokens: true, maxLength: maxLength ?? model.config.passageMaxlength,
                                   threads: threads ?? Threads.count)
    }

    /// The second half of `embedPassages`: embeddings (n, E) of rows from `tokenizePassages`
    /// (same `maxLength`), with `apply_passage_mask` from the config, in input order.
    public func embedPassages(tokenized rows: [[Int32]], maxLength: Int? = nil, batchSize: Int = 64,
                              progress: ((Int) throws -> Void)? = nil) rethrows -> [Float] {
        try embed(tokenized: rows, maxLength: maxLength ?? model.config.passageMaxlength, applyMask: model.config.applyPassageMask,
              batchSize: batchSize, progress: progress)
    }

    /// Embeddings (n, E) row-major of raw texts (no prefix), tokenised on all cores with special
    /// tokens and truncated to `maxLength` ids.
    public func embed(_ texts: [String], maxLength: Int, applyMask: Bool, batchSize: Int = 64,
                      progress: ((Int) throws -> Void)? = nil) rethrows -> [Float] {
        let rows = tokenizer.encodeAll(texts, addSpecialTokens: true, maxLength: maxLength, threads: Threads.count)
        return try embed(tokenized: rows, maxLength: maxLength, applyMask: applyMask, batchSize: batchSize, progress: progress)
    }

    /// Embeddings (n, E) row-major of tokenised rows (each at most `maxLength` ids, special tokens
    /// included), in input order.
    ///
    /// Rows are sorted by length and cut into batches of `batchSize`. With the mask applied each
    /// batch is padded only to its longest row: padded keys get probability 0 and pooling skips
    /// them, so the embeddings are those of FiD's fixed-length padding with less work. Without
    /// the mask BERT attends to padding, so every row is padded to `maxLength` as FiD pads.
    /// `progress` is called with the number of rows done after each batch; what it throws (a
    /// job's cancellation) stops the call there.
    public func embed(tokenized rows: [[Int32]], maxLength: Int, applyMask: Bool, batchSize: Int = 64,
                      progress: ((Int) throws -> Void)? = nil) rethrows -> [Float] {
        guard let kernel = halfPrecision, !rows.isEmpty else {
            return try embedBatches(rows, maxLength: maxLength, applyMask: applyMask, batchSize: batchSize, progress: progress)
        }
        return try model.withHalfPrecision(kernel: kernel) {
            try embedBatches(rows, maxLength: maxLength, applyMask: applyMask, batchSize: batchSize, progress: progress)
        }
    }

    private func embedBatches(_ rows: [[Int32]], maxLength: Int, applyMask: Bool, batchSize: Int,
                              progress: ((Int) throws -> Void)?) rethrows -> [Float] {
        precondition(batchSize >= 1, "embed: batchSize \(batchSize)")
        let E = model.embeddingWidth, pad = tokenizer.padId
        var out = [Float](repeating: 0, count: rows.count * E)  // (n, E)
        let order = rows.indices.sorted { rows[$0].count > rows[$1].count || (rows[$0].count == rows[$1].count && $0 < $1) }
        var ids: [Int32] = [], mask: [Float] = []
        var done = 0
        for start in stride(from: 0, to: order.count, by: batchSize) {
            let batch = order[start..<min(start + batchSize, order.count)]
            let L = applyMask ? max(1, rows[batch.first!].count) : maxLength
            let n = batch.count
            ids.removeAll(keepingCapacity: true)
            mask.removeAll(keepingCapacity: true)
            ids.reserveCapacity(n * L)
            mask.reserveCapacity(n * L)
            for i in batch {
                let r = rows[i]
                precondition(r.count <= L, "embed: a row of \(r.count) ids > maxLength \(L)")
                ids.append(contentsOf: r)
                ids.append(contentsOf: repeatElement(pad, count: L - r.count))
                mask.append(contentsOf: repeatElement(1, count: r.count))
                mask.append(contentsOf: repeatElement(0, count: L - r.count))
            }
            let emb = ids.withUnsafeBufferPointer { idp in
                mask.withUnsafeBufferPointer { mp in
                    model.embed(ids: idp.baseAddress!, mask: mp.baseAddress!, n: n, L: L, applyMask: applyMask)
                }
            }
            for (j, i) in batch.enumerated() {
                out.withUnsafeMutableBufferPointer { o in
                    emb.withUnsafeBufferPointer { e in (o.baseAddress! + i * E).update(from: e.baseAddress! + j * E, count: E) }
                }
            }
            done += n
            try progress?(done)
        }
        return out
    }
}
