// UnigramTokenizer: SentencePiece's unigram model (T5): its tables and encoding entry point. Pre-tokenising
// is in UnigramPreTokenizer.swift, the lattice in UnigramLattice.swift, decoding in UnigramDecoder.swift.

/// A unigram language-model tokenizer (Kudo 2018), id for id with two references:
/// - loaded from a SentencePiece `.model`: sentencepiece's `Normalizer` and `unigram_model.cc`
///   `EncodeOptimized` (float scores, unused pieces skipped, whole normalised text in one lattice);
/// - loaded from a Hugging Face `tokenizer.json`: the file's normaliser and pre-tokenizer, then
///   `tokenizers/src/models/unigram/model.rs` `encode_optimized` (double scores, every piece in the trie).
/// Both give unknown characters the score `min(score) − 10` and fuse runs of unknowns into one `<unk>`.
public final class UnigramTokenizer: Tokenizer {
    /// How text reaches the lattice.
    enum Pipeline: Sendable {
        /// sentencepiece: normalise with the spec (dummy prefix, `▁`, extra whitespace removed).
        case sentencePiece(SentencePieceNormalizerSpec)
        /// Hugging Face: optional map-only normaliser, then WhitespaceSplit and/or Metaspace.
        case huggingFace(HFPreTokenizer)
    }
    /// Per-id piece kinds (sentencepiece's `ModelProto.SentencePiece.Type`).
    enum Kind: UInt8 { case normal, unused, userDefined, control, unknown, byte, added }

    let pieces: [String]
    let pieceBytes: [[UInt8]]
    let kinds: [Kind]
    let scoresF: [Float]
    let scoresD: [Double]
    /// The same three, frozen for the lattice (no reference counting across threads).
    let kindTable: FrozenArray<Kind>
    let scoreTableF: FrozenArray<Float>
    let scoreTableD: FrozenArray<Double>
    let trie: DoubleArrayTrie
    let unkId: Int32
    let unkScoreF: Float
    let unkScoreD: Double
    let maxScoreF: Float
    let pipeline: Pipeline
    let charsMap: CharsMap?
    let specials: SpecialTokens
    /// Ids `decode(skipSpecialTokens: true)` drops.
    let skipIds: Set<Int32>
    let unkSurface: String
    public let prefixIds: [Int32]
    public let suffixIds: [Int32]
    public let padId: Int32
    public var vocabSize: Int { pieces.count }

    init(pieces: [String], scores: [Double], kinds: [Kind], unkId: Int32, pipeline: Pipeline, charsMap: CharsMap?,
         specials: SpecialTokens, skipIds: Set<Int32>, suffixIds: [Int32], padId: Int32,
         unkSurface: String = " \u{2047} ") throws {
        precondition(pieces.count == scores.count && pieces.count == kinds.count,
                     "unigram: \(pieces.count) pieces, \(scores.count) scores, \(kinds.count) kinds")
        self.pieces = pieces
        self.pieceBytes = pieces.map { Array($0.utf8) }
        self.kinds = kinds
        self.scoresD = scores
        self.scoresF = scores.map { Float($0) }
        self.kindTable = FrozenArray(kinds)
        self.scoreTableF = FrozenArray(scores.map { Float($0) })
        self.scoreTableD = FrozenArray(scores)
        self.unkId = unkId
        self.pipeline = pipeline
        self.charsMap = charsMap
        self.specials = specials
        self.skipIds = skipIds
        self.prefixIds = []
        self.suffixIds = suffixIds
        self.padId = padId
        self.unkSurface = unkSurface
        var keys: [[UInt8]] = []
        var ids: [Int32] = []
        switch pipeline {
        case .sentencePiece:
            // sentencepiece's trie holds normal, user-defined and unused pieces; min and max score over normal
            // ones. Its max starts at FLT_MIN (the least positive float), so with log-probability scores the
            // user-defined score `length × max − 0.1` is about −0.1, which beats any split.
            var minF = Float.greatestFiniteMagnitude, maxF = Float.leastNormalMagnitude
            for (i, k) in kinds.enumerated() where k == .normal || k == .userDefined || k == .unused {
                keys.append(pieceBytes[i]); ids.append(Int32(i))
                if k == .normal { minF = min(minF, scoresF[i]); maxF = max(maxF, scoresF[i]) }
            }
            unkScoreF = minF - 10
            maxScoreF = maxF
            unkScoreD = Double(unkScoreF)
        case .huggingFace:
            // tokenizers puts every vocabulary entry in its trie; a repeated piece maps to its last id.
            var last: [String: Int] = [:]
            for (i, p) in pieces.enumerated() { last[p] = i }
            for (i, p) in pieces.enumerated() where last[p] == i { keys.append(pieceBytes[i]); ids.append(Int32(i)) }
            unkScoreD = (scores.min() ?? 0) - 10
            unkScoreF = Float(unkScoreD)
            maxScoreF = 0
        }
        trie = try DoubleArrayTrie(keys: keys, ids: ids)
    }

    public func piece(for id: Int32) -> String? { id >= 0 && Int(id) < pieces.count ? pieces[Int(id)] : nil }

    public func id(for piece: String) -> Int32? {
        if let i = trie.id(of: Array(piece.utf8)) { return i }
        return pieces.firstIndex(of: piece).map { Int32($0) }
    }

    /// Invalid UTF-8 is read as sentencepiece does (U+FFFD per bad byte) or, for tokenizer.json, repaired first.
    public func encodeContent(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], workspace ws: Workspace) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        if specials.isEmpty {
            encodeSegment(UnsafeBufferPointer(start: base, count: text.count), atStart: true, &ids, ws)
            return
        }
        specials.split(text, text: { r in
            encodeSegment(UnsafeBufferPointer(start: base + r.lowerBound, count: r.count),
                          atStart: r.lowerBound == 0, &ids, ws)
        }, special: { ids.append($0) })
    }

    private func encodeSegment(_ seg: UnsafeBufferPointer<UInt8>, atStart: Bool, _ ids: inout [Int32], _ ws: Workspace) {
        switch pipeline {
        case .sentencePiece(let spec):
            ws.normalized.removeAll(keepingCapacity: true)
            (charsMap ?? CharsMap.identity).normalize(seg, spec: spec, into: &ws.normalized)
            ws.normalized.withUnsafeBufferPointer { lattice($0, &ids, ws, spm: true) }
        case .huggingFace(let pre):
            withValidUTF8(seg) { preTokenize($0, pre, atStart: atStart, &ids, ws) }
        }
    }
}
