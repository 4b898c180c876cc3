// TextCleanup: the decode cleanups that remove the spaces a token-joining decoder leaves before
// punctuation and inside English contractions.

/// Rules applied in order, each as Python's `str.replace` (left to right, no overlaps) on UTF-8
/// bytes, so a combining mark after "." does not hide the match as a Character comparison would.
public enum TextCleanup {
    public typealias Rules = [([UInt8], [UInt8])]

    /// `tokenizers/src/decoders/wordpiece.rs` `cleanup` (BERT's decode).
    public static let wordPiece = rules([(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                         (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")])
    /// transformers 3.0.2's `clean_up_tokenization` (`decode`'s default there, so FiD's answers):
    /// the same without " do not".
    public static let transformers302 = rules([(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                               (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")])

    static func rules(_ pairs: [(String, String)]) -> Rules { pairs.map { (Array($0.utf8), Array($1.utf8)) } }

    public static func apply(_ rules: Rules, to bytes: [UInt8]) -> [UInt8] {
        guard bytes.contains(0x20) else { return bytes }  // every rule starts with a space
        var t = bytes
        for (from, to) in rules {
            var out: [UInt8] = []
            out.reserveCapacity(t.count)
            var i = 0
            while i < t.count {
                if t[i] == from[0], t.count - i >= from.count, t[i..<(i + from.count)].elementsEqual(from) {
                    out += to
                    i += from.count
                } else {
                    out.append(t[i])
                    i += 1
                }
            }
            t = out
        }
        return t
    }
}
