// UnigramTokenizer: SentencePiece's unigram model (T5) — normalise, Viterbi over piece scores, decode.

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
    /// Hugging Face pre-tokenisation for unigram models.
    struct HFPreTokenizer: Sendable {
        enum Prepend: Sendable { case always, first, never }
        /// One normaliser of the file's sequence, applied in order.
        enum Step: Sendable {
            /// The precompiled character map.
            case precompiled
            /// Trim White_Space on the left and/or right (`Strip`).
            case strip(left: Bool, right: Bool)
            /// Replace each run of two or more spaces with `content` (`Replace` with pattern ` {2,}`).
            case replaceSpaceRuns(content: [UInt8])
        }
        var steps: [Step] = []
        var whitespaceSplit = false
        var metaspace = false
        var replacement: [UInt8] = [0xE2, 0x96, 0x81]
        var prepend = Prepend.always
        var split = true
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
    let unkSurface: String
    public let prefixIds: [Int32]
    public let suffixIds: [Int32]
    public let padId: Int32
    public var vocabSize: Int { pieces.count }

    init(pieces: [String], scores: [Double], kinds: [Kind], unkId: Int32, pipeline: Pipeline, charsMap: CharsMap?,
         specials: SpecialTokens, suffixIds: [Int32], padId: Int32, unkSurface: String = " \u{2047} ") {
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
        self.prefixIds = []
        self.suffixIds = suffixIds
        self.padId = padId
        self.unkSurface = unkSurface
        var keys: [[UInt8]] = []
        var ids: [Int32] = []
        switch pipeline {
        case .sentencePiece:
            // sentencepiece's trie holds normal, user-defined and unused pieces; min score over normal ones.
            var minF = Float.greatestFiniteMagnitude, maxF = -Float.greatestFiniteMagnitude
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
        trie = DoubleArrayTrie(keys: keys, ids: ids)
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

    /// Hugging Face's normaliser and pre-tokenizer (WhitespaceSplit, Metaspace), then the lattice per piece.
    private func preTokenize(_ seg: UnsafeBufferPointer<UInt8>, _ pre: HFPreTokenizer, atStart: Bool,
                             _ ids: inout [Int32], _ ws: Workspace) {
        ws.normalized.removeAll(keepingCapacity: true)
        ws.normalized.append(contentsOf: seg)
        for step in pre.steps {
            switch step {
            case .precompiled:
                guard let cm = charsMap else { continue }
                swap(&ws.normalized, &ws.scratch)
                ws.normalized.removeAll(keepingCapacity: true)
                ws.scratch.withUnsafeBufferPointer {
                    cm.normalizeGraphemes($0, into: &ws.normalized)
                }
            case let .strip(left, right):
                ws.normalized.withUnsafeBufferPointer { s in
                    var lo = 0, hi = s.count
                    if left { while lo < hi, let w = Unicode.whiteSpaceLength(s, lo) { lo += w } }
                    if right {
                        while hi > lo {
                            var k = hi - 1
                            while k > lo, s[k] & 0xC0 == 0x80 { k -= 1 }
                            guard Unicode.whiteSpaceLength(s, k) != nil else { break }
                            hi = k
                        }
                    }
                    ws.scratch.removeAll(keepingCapacity: true)
                    ws.scratch.append(contentsOf: s[lo..<hi])
                }
                swap(&ws.normalized, &ws.scratch)
            case let .replaceSpaceRuns(content):
                ws.scratch.removeAll(keepingCapacity: true)
                var k = 0
                let n = ws.normalized.count
                while k < n {
                    if ws.normalized[k] == 0x20 && k + 1 < n && ws.normalized[k + 1] == 0x20 {
                        while k < n && ws.normalized[k] == 0x20 { k += 1 }
                        ws.scratch.append(contentsOf: content)
                    } else {
                        ws.scratch.append(ws.normalized[k])
                        k += 1
                    }
                }
                swap(&ws.normalized, &ws.scratch)
            }
        }
        let rep = pre.replacement
        var word = ws.word
        ws.word = []
        defer { ws.word = word }
        ws.normalized.withUnsafeBufferPointer { s in
            let n = s.count
            var i = 0
            while i < n {
                // One word: up to the next whitespace when splitting on it, else the whole text.
                var j = i
                if pre.whitespaceSplit {
                    while i < n, let w = Unicode.whiteSpaceLength(s, i) { i += w }
                    if i >= n { break }
                    j = i
                    while j < n, Unicode.whiteSpaceLength(s, j) == nil { j += UTF8Decoding.length(lead: s[j]) }
                } else {
                    j = n
                }
                if !pre.metaspace {
                    lattice(UnsafeBufferPointer(rebasing: s[i..<j]), &ids, ws, spm: false)
                    i = j
                    continue
                }
                word.removeAll(keepingCapacity: true)
                // Spaces become `▁` before the prefix check, so a leading space counts as one.
                let startsWithRep = (j > i && s[i] == 0x20)
                    || (j - i >= rep.count && s[i] == rep[0] && s[i + 1] == rep[1] && s[i + 2] == rep[2])
                switch pre.prepend {
                case .always: if !startsWithRep { word.append(contentsOf: rep) }
                case .first: if !startsWithRep && atStart && i == 0 { word.append(contentsOf: rep) }
                case .never: break
                }
                for k in i..<j {
                    if s[k] == 0x20 { word.append(contentsOf: rep) } else { word.append(s[k]) }
                }
                word.withUnsafeBufferPointer { wb in
                    if !pre.split {
                        lattice(wb, &ids, ws, spm: false)
                        return
                    }
                    // Split before every replacement character (MergedWithNext).
                    var from = 0
                    var k = 1
                    while k + 2 < wb.count {
                        if wb[k] == rep[0] && wb[k + 1] == rep[1] && wb[k + 2] == rep[2] {
                            lattice(UnsafeBufferPointer(rebasing: wb[from..<k]), &ids, ws, spm: false)
                            from = k
                            k += 3
                        } else {
                            k += 1
                        }
                    }
                    lattice(UnsafeBufferPointer(rebasing: wb[from..<wb.count]), &ids, ws, spm: false)
                }
                i = j
            }
        }
    }

    /// Viterbi over the lattice of `text` (valid UTF-8); appends the best path's ids, unknown runs fused.
    private func lattice(_ text: UnsafeBufferPointer<UInt8>, _ ids: inout [Int32], _ ws: Workspace, spm: Bool) {
        let n = text.count
        if n == 0 { return }
        ws.reserveLattice(n + 1)
        let starts = ws.starts, nodeIds = ws.nodeIds
        if spm {
            forward(text, scoreTableF.buffer, unkScoreF, true, ws.bestF, starts, nodeIds)
        } else {
            forward(text, scoreTableD.buffer, unkScoreD, false, ws.bestD, starts, nodeIds)
        }
        // Backtrack from the end; consecutive unknowns become one `<unk>`.
        let mark = ids.count
        var e = n
        var prevUnk = false
        while e > 0 {
            let id = nodeIds[e]
            if id == unkId {
                if !prevUnk { ids.append(id) }
                prevUnk = true
            } else {
                ids.append(id)
                prevUnk = false
            }
            e = Int(starts[e])
        }
        ids[mark...].reverse()
    }

    /// The forward pass: best score of a segmentation ending at each byte offset (char boundaries only).
    @inline(__always)
    private func forward<S: BinaryFloatingPoint>(
        _ text: UnsafeBufferPointer<UInt8>, _ scores: UnsafeBufferPointer<S>, _ unkScore: S, _ spm: Bool,
        _ best: UnsafeMutablePointer<S>, _ starts: UnsafeMutablePointer<Int32>, _ nodeIds: UnsafeMutablePointer<Int32>
    ) {
        let n = text.count
        for k in 1...n { starts[k] = -1 }
        best[0] = 0
        do {
            let units = trie.units.buffer, values = trie.values.buffer, kinds = kindTable.buffer
            let root = units[0]
            var pos = 0
            while pos < n {
                let here = best[pos]
                let mblen = min(UTF8Decoding.length(lead: text[pos]), n - pos)
                var hasSingle = false
                var unit = root
                var k = pos
                while k < n {
                    // The slack after the last unit keeps `base + byte` in range.
                    guard let (next, t) = DoubleArrayTrie.child(units, unit, text[k]) else { break }
                    unit = next
                    k += 1
                    if next & (1 << 9) == 0 { continue }
                    let v = values[t]
                    var score = scores[Int(v)]
                    if spm {
                        let kind = kinds[Int(v)]
                        if kind == .unused { continue }
                        if kind == .userDefined { score = S(k - pos) * S(maxScoreF) - S(0.1) }
                    }
                    let candidate = score + here
                    if starts[k] < 0 || candidate > best[k] {
                        best[k] = candidate
                        starts[k] = Int32(pos)
                        nodeIds[k] = v
                    }
                    if k - pos == mblen { hasSingle = true }
                }
                if !hasSingle {
                    let e = pos + mblen
                    let candidate = unkScore + here
                    if starts[e] < 0 || candidate > best[e] {
                        best[e] = candidate
                        starts[e] = Int32(pos)
                        nodeIds[e] = unkId
                    }
                }
                pos += mblen
            }
        }
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var out: [UInt8] = []
        var first = true
        for id in ids {
            guard id >= 0, Int(id) < pieces.count else { continue }
            let kind = kinds[Int(id)]
            switch pipeline {
            case .sentencePiece(let spec):
                // sentencepiece `DecodeSentencePiece`: control pieces vanish, `<unk>` shows its surface,
                // the first piece loses one leading `▁`; added ids (`<extra_id_N>`) print as themselves.
                if kind == .control || (skipSpecialTokens && (kind == .added || kind == .unknown)) {
                    first = false
                    continue
                }
                if kind == .unknown {
                    out.append(contentsOf: Array(unkSurface.utf8))
                    first = false
                    continue
                }
                var p = pieceBytes[Int(id)][...]
                if first && (spec.addDummyPrefix || spec.removeExtraWhitespaces) && p.starts(with: [0xE2, 0x96, 0x81]) {
                    p = p.dropFirst(3)
                }
                first = false
                appendReplacing(p, [0xE2, 0x96, 0x81], with: [0x20], into: &out)
            case .huggingFace(let pre):
                // Metaspace decoder: `▁` becomes a space, and in the first kept token it is dropped.
                if skipSpecialTokens && specials.ids.contains(id) { continue }
                let drop = first && pre.prepend != .never && pre.metaspace
                first = false
                appendReplacing(pieceBytes[Int(id)][...], pre.metaspace ? pre.replacement : [], with: drop ? [] : [0x20],
                                into: &out)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func appendReplacing(_ p: ArraySlice<UInt8>, _ what: [UInt8], with rep: [UInt8], into out: inout [UInt8]) {
        if what.isEmpty { out.append(contentsOf: p); return }
        var i = p.startIndex
        while i < p.endIndex {
            if p.endIndex - i >= what.count && p[i..<(i + what.count)].elementsEqual(what) {
                out.append(contentsOf: rep)
                i += what.count
            } else {
                out.append(p[i])
                i += 1
            }
        }
    }
}

extension SentencePieceNormalizerSpec {
    /// Only the character map: no dummy prefix, no whitespace handling (Hugging Face's `Precompiled`).
    static let mapOnly = SentencePieceNormalizerSpec(
        addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: false)
}

extension Unicode {
    /// Byte length of the White_Space character at `s[i]` (what Rust's `char::is_whitespace` accepts), or nil.
    @inline(__always)
    static func whiteSpaceLength(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int? {
        let b = s[i]
        if b < 0x80 { return b == 0x20 || (b >= 0x09 && b <= 0x0D) ? 1 : nil }
        if b != 0xC2 && b != 0xE1 && b != 0xE2 && b != 0xE3 { return nil }
        guard let p = s.baseAddress else { return nil }
        let (c, len) = UTF8Decoding.scalar(p + i)
        switch c {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return len
        default: return nil
        }
    }
}
