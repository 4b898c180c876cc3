// FiDCollator: FiD's reader input pipeline (fid-spec §2.3–§2.4): passages sorted and cut to
// n_context, `question: Q title: T context: P` strings, passages and targets tokenised into a T5Batch.
//
// Follows facebookresearch/FiD src/data.py (`Dataset.__getitem__`, `Collator`, `encode_passages`)
// as run under transformers 3.0.2: no `</s>` on passages, `target + " </s>"` as labels, -100 on
// label padding. Where FiD crashes (no passages, fewer than n_context), fidq pads with fully
// masked passages instead, which is what the model would see for absent passages anyway.
import Jobs
import Models
import Tensor
import Tokenizers

/// FiD's options that shape a batch.
public struct FiDFormat: Sendable, Equatable {
    /// P: passages per question (`n_context`).
    public var nContext: Int
    /// L: tokens per passage, truncated and padded to exactly this (`text_maxlength`).
    public var textMaxLength: Int
    /// Labels truncated to this many ids when > 0 (`answer_maxlength`; -1: none).
    public var answerMaxLength: Int

    public init(nContext: Int, textMaxLength: Int = 200, answerMaxLength: Int = -1) {
        precondition(nContext >= 1 && textMaxLength >= 1, "FiDFormat: n_context \(nContext), text_maxlength \(textMaxLength)")
        self.nContext = nContext
        self.textMaxLength = textMaxLength
        self.answerMaxLength = answerMaxLength
    }

    /// Refuses a batch shape whose attention alone (`T5Config.attentionBytes`, a lower bound)
    /// exceeds the memory this process may use: FiD pads every passage to `text_maxlength` and
    /// every answer to `answer_maxlength`, so a mistyped length asked for hundreds of GiB and the
    /// allocation stopped the process (a queue worker with it).
    /// - Throws: `JobError.permanent` naming the length that dominates, with both figures.
    public func checkMemory(_ config: T5Config, batchSize: Int, batchNote: String? = nil, generationLength: Int? = nil,
                            available: Int = AvailableMemory.bytes) throws {
        // Training pads labels to answer_maxlength and its evaluation generates answer_maxlength + 1
        // tokens; `score` generates `generationLength` whatever answer_maxlength says.
        let target = generationLength ?? (answerMaxLength > 0 ? answerMaxLength + 1 : 1)
        let need = config.attentionBytes(batch: batchSize, passages: nContext, length: textMaxLength, targetLength: target)
        guard need.encoder + need.decoder > Double(available) else { return }
        let gib = AvailableMemory.gib
        let field = need.encoder >= need.decoder || generationLength != nil ? "text_maxlength" : "answer_maxlength"
        throw JobError.permanent(
            "batches of \(batchSize) questions (\(batchNote ?? "per_gpu_batch_size")) × n_context \(nContext) passages of text_maxlength \(textMaxLength) tokens"
                + (generationLength == nil && answerMaxLength > 0 ? ", answers of answer_maxlength \(answerMaxLength)" : "")
                + " need at least \(gib(need.encoder + need.decoder)) GiB for T5's attention alone, more than the \(gib(Double(available))) GiB this process may use",
            field: "params." + field,
            hint: "FiD pads every passage to text_maxlength and every answer to answer_maxlength (200–512 and 20–50 are usual); "
                + "lower them, or per_gpu_batch_size or n_context")
    }

    /// The example's passages in FiD's order: by score descending (a stable sort, so ties keep
    /// file order) when every passage has a score, else file order. FiD decides this once per data
    /// set from the first passage and fills missing scores with one value per example, which
    /// sorts the same way.
    ///
    /// Where a reader scored only some passages (`score` read the first `n_context`: numbers; the
    /// others keep a retrieval's string scores, or none), those come first by their score and the
    /// others follow in file order: FiD's sort ranks the two scales together (BM25's or DPR's
    /// scores above every cross-attention score), putting passages the reader never read first.
    public static func orderedIndices(_ ctxs: [FiDPassage]) -> [Int] {
        // Swift's sort is not guaranteed stable: sort indices with the position as tie-break. A
        // nan score ranks below every number: compared as is, it made the order depend on the
        // sort's algorithm (a nan passage was read in place of the best one).
        func byScore(_ a: Int, _ b: Int) -> Bool {
            let x = ctxs[a].score!, y = ctxs[b].score!
            if x.isNaN || y.isNaN { return x.isNaN == y.isNaN ? a < b : y.isNaN }
            return x != y ? x > y : a < b
        }
        if let read = FiDPassage.readerScoredWhenMixed(ctxs) {
            return read.sorted(by: byScore) + ctxs.indices.filter { !ctxs[$0].hasReaderScore }
        }
        guard !ctxs.isEmpty, ctxs.allSatisfy({ $0.score != nil }) else { return Array(ctxs.indices) }
        return ctxs.indices.sorted(by: byScore)
    }

    /// The passages in `orderedIndices`' order.
    public static func ordered(_ ctxs: [FiDPassage]) -> [FiDPassage] { orderedIndices(ctxs).map { ctxs[$0] } }

    /// The passages the reader reads: the first `nContext` of `ordered(ctxs)`.
    public func passages(_ example: FiDExample) -> [FiDPassage] {
        Array(Self.ordered(example.ctxs).prefix(nContext))
    }

    /// The encoder strings of an example: `question: Q title: T context: P` per passage read
    /// (FiD joins `"question: " + Q` and `"title: " + T + " context: " + P` with one space), or
    /// `question: Q` alone when it has no passages.
    public func encoderStrings(_ example: FiDExample) -> [String] {
        let q = "question: " + example.question
        let ps = passages(example)
        if ps.isEmpty { return [q] }
        return ps.map { q + " title: " + $0.title + " context: " + $0.text }
    }

    /// The training target's text without `</s>`: `target` when present, else one of `answers`
    /// drawn by `rng` (FiD's `random.choice`, drawn anew each time the example is read, i.e.
    /// per epoch); nil when the example has neither.
    public static func target(_ example: FiDExample, rng: inout RNG) -> String? {
        if let t = example.target { return t }
        if example.answers.isEmpty { return nil }
        return example.answers[Int(rng.next() % UInt64(example.answers.count))]
    }
}

/// A collated batch and what produced it.
public struct FiDBatch {
    /// (B·P, L) ids and masks; decoder inputs and labels when targets were given, else one
    /// start token per question.
    public var batch: T5Batch
    /// The examples, in batch order.
    public var examples: [FiDExample]
    /// Per example, the passages in the rows of its question (≤ P; the rest are masked padding).
    public var passages: [[FiDPassage]]
    /// Per example, its encoder strings (row order).
    public var encoderStrings: [[String]]
}

/// Turns examples into `T5Batch`es as FiD's `Collator` does (fid-spec §2.4).
public struct FiDCollator {
    public let format: FiDFormat
    public let tokenizer: any Tokenizer
    /// The decoder start id (T5: the pad id 0).
    public let startId: Int32
    /// `</s>`, appended to every target.
    public let eosId: Int32
    /// Threads for tokenisation.
    public var threads: Int?

    public init(format: FiDFormat, tokenizer: any Tokenizer, startId: Int32 = 0, eosId: Int32 = 1, threads: Int? = nil) {
        self.format = format
        self.tokenizer = tokenizer
        self.startId = startId
        self.eosId = eosId
        self.threads = threads
    }

    /// Label ids of one target text: its pieces then `</s>`, cut to `answer_maxlength` when > 0
    /// (which can cut the `</s>`, as 3.0.2's truncation did).
    public func labelIds(_ target: String) -> [Int32] {
        var ids = tokenizer.encode(target, addSpecialTokens: false) + [eosId]
        if format.answerMaxLength > 0, ids.count > format.answerMaxLength { ids.removeLast(ids.count - format.answerMaxLength) }
        return ids
    }

    /// Collates `examples` (B ≥ 1). With `targets` (one text per example, without `</s>`), the
    /// labels are their ids padded with -100 to the longest (or to `answer_maxlength` when > 0)
    /// and the decoder inputs are the labels shifted right; without, each question gets the start
    /// token alone (for generation and passage scores).
    public func collate(_ examples: [FiDExample], targets: [String]? = nil) -> FiDBatch {
        precondition(!examples.isEmpty && (targets == nil || targets!.count == examples.count), "FiDCollator: \(examples.count) examples")
        let B = examples.count, P = format.nContext, L = format.textMaxLength
        var passages: [[FiDPassage]] = [], strings: [[String]] = []
        var texts: [String] = []
        for ex in examples {
            let s = format.encoderStrings(ex)
            passages.append(format.passages(ex))
            strings.append(s)
            texts += s
        }
        // 3.0.2 adds no </s> to passages: content ids only, truncated and padded to L.
        let enc = tokenizer.encodeBatch(texts, maxLength: L, addSpecialTokens: false, padToMaxLength: true, threads: threads)
        var ids = [Int32](repeating: tokenizer.padId, count: B * P * L)  // (B·P, L)
        var mask = [Float](repeating: 0, count: B * P * L)               // (B·P, L)
        var row = 0
        for (b, s) in strings.enumerated() {
            for p in 0..<s.count {
                for t in 0..<L {
                    ids[(b * P + p) * L + t] = enc.ids[row * L + t]
                    mask[(b * P + p) * L + t] = Float(enc.mask[row * L + t])
                }
                row += 1
            }
        }
        var decoder = [Int32](repeating: startId, count: B)  // (B, 1)
        var labels: [Int32]? = nil
        if let targets {
            let rows = targets.map(labelIds)
            let T = format.answerMaxLength > 0 ? format.answerMaxLength : max(1, rows.map(\.count).max() ?? 1)
            var y = [Int32](repeating: CrossEntropy.ignoreIndex, count: B * T)  // (B, T)
            for (b, r) in rows.enumerated() { for (t, id) in r.enumerated() { y[b * T + t] = id } }
            labels = y
            decoder = T5Batch.shiftRight(y, rows: B, start: startId, pad: tokenizer.padId)
        }
        let batch = T5Batch(questions: B, passages: P, passageLength: L, inputIds: ids, attentionMask: mask,
                            decoderInputIds: decoder, labels: labels)
        return FiDBatch(batch: batch, examples: examples, passages: passages, encoderStrings: strings)
    }
}

/// Counts the examples with fewer passages than `n_context`, which the collator pads with
/// masked passages where FiD fails: a job says so once in its log instead of silently reading
/// less than the user asked for.
public struct ShortContexts: Sendable {
    public let nContext: Int
    public private(set) var examples = 0, short = 0, fewest = Int.max

    public init(nContext: Int) { self.nContext = nContext }

    public mutating func add(_ e: FiDExample) {
        examples += 1
        if e.ctxs.count < nContext {
            short += 1
            fewest = min(fewest, e.ctxs.count)
        }
    }

    /// The log line about `what` (a param name), or nil when no example is short.
    public func note(_ what: String) -> String? {
        guard short > 0 else { return nil }
        return "\(what): \(short) of \(examples) examples have fewer than n_context \(nContext) passages (fewest \(fewest)); "
            + "they are padded with empty, masked passages" + (fewest == 0 ? " (an example without passages is answered from its question alone)" : "")
    }
}
