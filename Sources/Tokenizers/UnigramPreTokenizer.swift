// UnigramPreTokenizer: Hugging Face's normalisers and pre-tokenizers in front of the unigram lattice.

extension UnigramTokenizer {
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

    /// Hugging Face's normaliser and pre-tokenizer (WhitespaceSplit, Metaspace), then the lattice per piece.
    func preTokenize(_ seg: UnsafeBufferPointer<UInt8>, _ pre: HFPreTokenizer, atStart: Bool,
                     _ ids: inout [Int32], _ ws: Workspace) {
        ws.normalized.removeAll(keepingCapacity: true)
        ws.normalized.append(contentsOf: seg)
        // Metaspace `first` prepends `▁` only to a word whose original offset is 0 (`offsets_original().0`),
        // so for the text's first segment track `zero`: how many leading normalised bytes HF aligns to
        // offset 0, through each normaliser as `NormalizedString::transform` moves alignments.
        let track = pre.prepend == .first && atStart
        var zero = track && !seg.isEmpty ? min(UTF8Decoding.length(lead: seg[0]), seg.count) : 0
        for step in pre.steps {
            switch step {
            case .precompiled:
                guard let cm = charsMap else { continue }
                swap(&ws.normalized, &ws.scratch)
                ws.normalized.removeAll(keepingCapacity: true)
                let zeroChars = ws.scratch[0..<zero].reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
                zero = ws.scratch.withUnsafeBufferPointer {
                    cm.normalizeGraphemes($0, into: &ws.normalized, zeroChars: zeroChars)
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
                    // Kept characters keep their own alignments.
                    zero = max(0, min(zero, hi) - lo)
                }
                swap(&ws.normalized, &ws.scratch)
            case let .replaceSpaceRuns(content):
                ws.scratch.removeAll(keepingCapacity: true)
                var k = 0
                let n = ws.normalized.count
                // The replacement takes the alignment of the run's last space.
                var cut = -1, grow = 0
                while k < n {
                    if ws.normalized[k] == 0x20 && k + 1 < n && ws.normalized[k + 1] == 0x20 {
                        let from = k
                        while k < n && ws.normalized[k] == 0x20 { k += 1 }
                        if cut < 0 && from < zero {
                            if k <= zero { grow += content.count - (k - from) } else { cut = ws.scratch.count }
                        }
                        ws.scratch.append(contentsOf: content)
                    } else {
                        ws.scratch.append(ws.normalized[k])
                        k += 1
                    }
                }
                zero = cut >= 0 ? cut : zero + grow
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
                case .first: if !startsWithRep && i < zero { word.append(contentsOf: rep) }
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
