// T5Batch: one FiD batch (B questions × P passages of L tokens, answers of T tokens) and the outputs.
import Tensor

/// A Fusion-in-Decoder batch: passage rows q·P + p of question q, each L tokens.
public struct T5Batch: Sendable {
    /// B: questions.
    public let questions: Int
    /// P: passages per question.
    public let passages: Int
    /// L: tokens per passage (padded).
    public let passageLength: Int
    /// T: decoder positions.
    public let targetLength: Int
    /// Encoder ids.  // (B·P, L)
    public let inputIds: [Int32]
    /// 1 for a real token, 0 for padding.  // (B·P, L)
    public let attentionMask: [Float]
    /// Decoder input, the labels shifted right with the start token first.  // (B, T)
    public let decoderInputIds: [Int32]
    /// Targets, `CrossEntropy.ignoreIndex` (−100) on padding; nil for no loss.  // (B, T)
    public let labels: [Int32]?

    /// A batch; sizes that disagree with the arrays are a bug upstream.
    public init(
        questions: Int, passages: Int, passageLength: Int, inputIds: [Int32], attentionMask: [Float],
        decoderInputIds: [Int32], labels: [Int32]? = nil
    ) {
        let B = questions, P = passages, L = passageLength
        precondition(B >= 1 && P >= 1 && L >= 1, "T5Batch: B=\(B) P=\(P) L=\(L)")
        precondition(inputIds.count == B * P * L && attentionMask.count == B * P * L,
                     "T5Batch: \(inputIds.count) ids and \(attentionMask.count) mask values for B·P·L = \(B * P * L)")
        precondition(decoderInputIds.count % B == 0 && !decoderInputIds.isEmpty, "T5Batch: \(decoderInputIds.count) decoder ids for B = \(B)")
        precondition(labels == nil || labels!.count == decoderInputIds.count, "T5Batch: labels and decoder ids differ in count")
        self.questions = B
        self.passages = P
        self.passageLength = L
        targetLength = decoderInputIds.count / B
        self.inputIds = inputIds
        self.attentionMask = attentionMask
        self.decoderInputIds = decoderInputIds
        self.labels = labels
    }

    /// T5's `_shift_right`: `[start, y0, …, y(T−2)]` per row with −100 replaced by `pad`.
    public static func shiftRight(_ labels: [Int32], rows: Int, start: Int32, pad: Int32) -> [Int32] {
        let T = labels.count / rows
        var out = [Int32](repeating: pad, count: labels.count)
        for b in 0..<rows {
            out[b * T] = start
            for t in 1..<max(T, 1) {
                let y = labels[b * T + t - 1]
                out[b * T + t] = y == CrossEntropy.ignoreIndex ? pad : y
            }
        }
        return out
    }
}

/// What a forward returns.
public struct T5Output {
    /// Next-token logits.  // (B, T, V)
    public var logits: Tensor
    /// Mean cross-entropy over non-ignored labels; nil without labels.
    public var loss: Float?
    /// FiD's cross-attention passage scores (fid-spec §3.5) when asked for.  // (B, P)
    public var scores: Tensor?
}

extension T5Model {
    /// Checks a batch against the model before `forward`, which treats these as bugs: every id in
    /// 0..<vocab_size (a tokenizer of another vocabulary gives larger ids), labels in range or −100,
    /// mask values 0 or 1.
    /// - Throws: `ModelLoadError` naming the field, the position, the value and the vocabulary size.
    public func validate(_ batch: T5Batch, source: String = "batch") throws {
        let V = config.vocabSize
        func check(_ ids: [Int32], _ field: String, allowIgnore: Bool) throws {
            for (i, id) in ids.enumerated() where !(id >= 0 && Int(id) < V) && !(allowIgnore && id == CrossEntropy.ignoreIndex) {
                throw ModelLoadError(path: source, "\(field)[\(i)] is \(id), outside the model's vocabulary 0..<\(V)",
                                     hint: "the tokenizer and the model's config.json must share one vocabulary")
            }
        }
        try check(batch.inputIds, "input_ids", allowIgnore: false)
        try check(batch.decoderInputIds, "decoder_input_ids", allowIgnore: false)
        if let labels = batch.labels { try check(labels, "labels", allowIgnore: true) }
        if let i = batch.attentionMask.firstIndex(where: { $0 != 0 && $0 != 1 }) {
            throw ModelLoadError(path: source, "attention_mask[\(i)] is \(batch.attentionMask[i]), expected 0 or 1")
        }
    }
}
