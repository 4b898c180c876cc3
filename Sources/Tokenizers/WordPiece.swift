// WordPieceTokenizer: BERT's basic tokenizer, then greedy longest-match WordPiece with `##`.

/// BERT's tokenizer, id for id with Hugging Face `tokenizers` (`models/wordpiece/mod.rs`): each word
/// from `BertNormalizer` is cut greedily into the longest vocabulary pieces, later pieces carrying the
/// continuation prefix; a word with an unmatchable rest, or over `maxInputCharsPerWord` characters,
/// becomes one `[UNK]`. Immutable after init (hence `@unchecked Sendable`: it holds raw views of its tries).
public final class WordPieceTokenizer: Tokenizer, @unchecked Sendable {
    let pieces: [String]
    /// Every vocabulary entry, for the first piece of a word.
    let initial: DoubleArrayTrie
    /// Entries with the continuation prefix, stored without it.
    let continuation: DoubleArrayTrie
    /// The tries' tables as raw buffers for the per-word walk (kept alive by `initial` and `continuation`).
    let initialUnits: UnsafeBufferPointer<UInt32>
    let initialValues: UnsafeBufferPointer<Int32>
    let continuationUnits: UnsafeBufferPointer<UInt32>
    let continuationValues: UnsafeBufferPointer<Int32>
    let unkId: Int32
    let maxInputCharsPerWord: Int
    let continuingPrefix: String
    let normalizer: BertNormalizer
    let specials: SpecialTokens
    /// Ids dropped by `decode(skipSpecialTokens: true)`.
    let skipIds: Set<Int32>
    let cleanup: Bool
    public let prefixIds: [Int32]
    public let suffixIds: [Int32]
    public let padId: Int32
    public var vocabSize: Int { pieces.count }

    init(pieces: [String], unkId: Int32, continuingPrefix: String = "##", maxInputCharsPerWord: Int = 100,
         normalizer: BertNormalizer, specials: SpecialTokens, skipIds: Set<Int32>, prefixIds: [Int32],
         suffixIds: [Int32], padId: Int32, cleanup: Bool = true) throws {
        self.pieces = pieces
        self.unkId = unkId
        self.continuingPrefix = continuingPrefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        self.normalizer = normalizer
        self.specials = specials
        self.skipIds = skipIds
        self.prefixIds = prefixIds
        self.suffixIds = suffixIds
        self.padId = padId
        self.cleanup = cleanup
        let prefix = Array(continuingPrefix.utf8)
        var keys: [[UInt8]] = [], ids: [Int32] = []
        var ckeys: [[UInt8]] = [], cids: [Int32] = []
        // A piece listed twice maps to its last id, as a dictionary built from the file would.
        var last: [String: Int] = [:]
        for (i, p) in pieces.enumerated() where !p.isEmpty { last[p] = i }
        for (i, p) in pieces.enumerated() where last[p] == i {
            let b = Array(p.utf8)
            keys.append(b); ids.append(Int32(i))
            if b.count > prefix.count && b.starts(with: prefix) {
                ckeys.append(Array(b[prefix.count...])); cids.append(Int32(i))
            }
        }
        initial = try DoubleArrayTrie(keys: keys, ids: ids)
        continuation = try DoubleArrayTrie(keys: ckeys, ids: cids)
        initialUnits = initial.units.buffer
        initialValues = initial.values.buffer
        continuationUnits = continuation.units.buffer
        continuationValues = continuation.values.buffer
    }

    public func piece(for id: Int32) -> String? { id >= 0 && Int(id) < pieces.count ? pieces[Int(id)] : nil }
    public func id(for piece: String) -> Int32? { initial.id(of: Array(piece.utf8)) }

    public func encodeContent(_ text: UnsafeBufferPointer<UInt8>, into ids: inout [Int32], workspace ws: Workspace) {
        guard let base = text.baseAddress, !text.isEmpty else { return }
        var buffer = ws.word
        ws.word = []
        defer { ws.word = buffer }
        specials.split(text, text: { r in
            withValidUTF8(UnsafeBufferPointer(start: base + r.lowerBound, count: r.count)) { seg in
                normalizer.words(seg, buffer: &buffer) { wordPiece($0, &ids) }
            }
        }, special: { ids.append($0) })
    }

    /// Greedy longest-match of one word (valid UTF-8).
    @inline(__always)
    private func wordPiece(_ w: UnsafeBufferPointer<UInt8>, _ ids: inout [Int32]) {
        var chars = 0
        for b in w where b & 0xC0 != 0x80 { chars += 1 }
        if chars > maxInputCharsPerWord { ids.append(unkId); return }
        let mark = ids.count
        var start = 0
        let n = w.count
        while start < n {
            let u = start == 0 ? initialUnits : continuationUnits
            let values = start == 0 ? initialValues : continuationValues
            var bestEnd = -1
            var bestId: Int32 = -1
            var unit = u[0]
            var k = start
            while k < n {
                guard let (next, t) = DoubleArrayTrie.child(u, unit, w[k]) else { break }
                unit = next
                k += 1
                if next & (1 << 9) != 0 && (k == n || w[k] & 0xC0 != 0x80) { bestEnd = k; bestId = values[t] }
            }
            if bestEnd < 0 {
                ids.removeLast(ids.count - mark)
                ids.append(unkId)
                return
            }
            ids.append(bestId)
            start = bestEnd
        }
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        // HF's WordPiece decoder: continuation pieces glue on, others get a space, then `cleanup`. Bytes, not
        // Characters: a combining mark after `##` would otherwise hide the prefix.
        let prefix = Array(continuingPrefix.utf8)
        var out: [UInt8] = []
        var first = true
        for id in ids {
            guard let p = piece(for: id) else { continue }
            if skipSpecialTokens && skipIds.contains(id) { continue }
            var token = Array(p.utf8)
            if !first {
                if token.starts(with: prefix) {
                    token.removeFirst(prefix.count)
                } else {
                    token.insert(0x20, at: 0)
                }
            }
            first = false
            out += cleanup ? WordPieceTokenizer.cleanUp(token) : token
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `tokenizers/src/decoders/wordpiece.rs` `cleanup`: spaces before punctuation and contractions.
    static func cleanUp(_ s: [UInt8]) -> [UInt8] {
        if s.first != 0x20 { return s }  // every pattern starts with a space
        return TextCleanup.apply(TextCleanup.wordPiece, to: s)
    }
}
