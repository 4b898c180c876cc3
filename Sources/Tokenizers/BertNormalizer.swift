// BertNormalizer: BERT's basic tokenizer (clean text, CJK spacing, accents, lower case, punctuation split).

/// Hugging Face's `BertNormalizer` followed by `BertPreTokenizer`, fused into one pass over UTF-8 that
/// hands each word to a callback. Character classes come from `BertTables` (probed from `tokenizers`).
/// Follows `tokenizers/src/normalizers/bert.rs` and `pre_tokenizers/bert.rs`.
struct BertNormalizer: Sendable {
    var cleanText = true
    var handleChineseChars = true
    var stripAccents = true
    var lowercase = true

    /// Per-ASCII-byte action: 0 keep, 1 drop, 2 space, 3 punctuation.
    private static let asciiClass: [UInt8] = (0..<128).map { b -> UInt8 in
        let c = UInt32(b)
        if BertTables.inRanges(BertTables.punctuation, c) { return 3 }
        if BertTables.inRanges(BertTables.whitespace, c) { return 2 }
        if BertTables.inRanges(BertTables.removed, c) { return 1 }
        return 0
    }

    /// Calls `word` with the UTF-8 bytes of each word and punctuation mark of `text` (valid UTF-8).
    func words(_ text: UnsafeBufferPointer<UInt8>, buffer: inout [UInt8], _ word: (UnsafeBufferPointer<UInt8>) -> Void) {
        guard let p = text.baseAddress else { return }
        buffer.removeAll(keepingCapacity: true)
        func flush() {
            if !buffer.isEmpty {
                buffer.withUnsafeBufferPointer { word($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        var one: [UInt8] = []
        func alone(_ c: UInt32) {
            flush()
            one.removeAll(keepingCapacity: true)
            UTF8Decoding.append(c, to: &one)
            one.withUnsafeBufferPointer { word($0) }
        }
        // Lower-cases one character into the word, splitting punctuation and spaces off.
        func put(_ s: UInt32) {
            if lowercase, let lowered = BertTables.lower[s] {
                for l in lowered { place(l) }
            } else {
                place(s)
            }
        }
        func place(_ l: UInt32) {
            if BertTables.isPunctuation(l) {
                alone(l)
            } else if BertTables.isWhiteSpace(l) {
                flush()
            } else {
                UTF8Decoding.append(l, to: &buffer)
            }
        }
        // Strips accents, then lower-cases, one character (in that order, as HF does).
        func emit(_ c: UInt32) {
            if stripAccents {
                if BertTables.inRanges(BertTables.nonspacingMarks, c) { return }
                if let d = BertTables.decompose(c) {
                    for s in d { put(s) }
                    return
                }
            }
            put(c)
        }
        let n = text.count
        var i = 0
        let ascii = BertNormalizer.asciiClass
        while i < n {
            let b = p[i]
            if b < 0x80 {
                i += 1
                switch ascii[Int(b)] {
                case 0: buffer.append(lowercase && b >= 0x41 && b <= 0x5A ? b | 0x20 : b)
                case 1:
                    // clean_text drops these controls. Kept, VT and FF are still White_Space, which
                    // BertPreTokenizer splits on (Rust's `char::is_whitespace`).
                    if cleanText { break }
                    if b == 0x0B || b == 0x0C { flush() } else { buffer.append(b) }
                case 2: flush()
                default: alone(UInt32(b))
                }
                continue
            }
            let (c, len) = UTF8Decoding.scalar(p + i)
            i += len
            if cleanText && BertTables.inRanges(BertTables.removed, c) { continue }
            if BertTables.isWhiteSpace(c) { flush(); continue }
            if handleChineseChars && BertTables.inRanges(BertTables.cjk, c) {
                // Padded with spaces, so it is a word of its own (compatibility ideographs still decompose).
                flush()
                emit(c)
                flush()
                continue
            }
            emit(c)
        }
        flush()
    }
}

extension BertTables {
    /// Whether `c` lies in one of the closed ranges of `table` (lo, hi pairs, sorted).
    @inline(__always)
    static func inRanges(_ table: [UInt32], _ c: UInt32) -> Bool {
        var lo = 0
        var hi = table.count / 2
        while lo < hi {
            let mid = (lo + hi) / 2
            if table[2 * mid + 1] < c { lo = mid + 1 } else { hi = mid }
        }
        return lo < table.count / 2 && table[2 * lo] <= c
    }

    /// Rust's `char::is_whitespace` (the Unicode White_Space property).
    @inline(__always)
    static func isWhiteSpace(_ c: UInt32) -> Bool {
        switch c {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// BertPreTokenizer's punctuation: ASCII punctuation or HF's Unicode punctuation classes.
    @inline(__always)
    static func isPunctuation(_ c: UInt32) -> Bool { inRanges(punctuation, c) }

    /// NFD of `c` without nonspacing marks, when it changes `c`.
    static func decompose(_ c: UInt32) -> [UInt32]? {
        if c >= 0xAC00 && c <= 0xD7A3 {
            // Hangul syllables decompose algorithmically (Unicode §3.12).
            let s = c - 0xAC00
            var out: [UInt32] = [0x1100 + s / 588, 0x1161 + (s % 588) / 28]
            if s % 28 != 0 { out.append(0x11A7 + s % 28) }
            return out
        }
        return strip[c]
    }

    static let strip: [UInt32: [UInt32]] = parse(stripSource)
    static let lower: [UInt32: [UInt32]] = parse(lowerSource)

    /// Parses "CP:CP CP;" entries (hex) into a map.
    private static func parse(_ source: String) -> [UInt32: [UInt32]] {
        var out: [UInt32: [UInt32]] = [:]
        for entry in source.split(whereSeparator: { $0 == ";" || $0 == "\n" }) {
            let kv = entry.split(separator: ":", omittingEmptySubsequences: false)
            guard kv.count == 2, let k = UInt32(kv[0], radix: 16) else { continue }
            out[k] = kv[1].split(separator: " ").compactMap { UInt32($0, radix: 16) }
        }
        return out
    }
}
