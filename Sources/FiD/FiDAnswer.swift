// FiDAnswer: a generated answer's text as FiD's scripts write it.
import Foundation
import Tokenizers

/// FiD decodes answers with transformers 3.0.2's `tokenizer.decode(ids, skip_special_tokens=True)`,
/// whose `clean_up_tokenization_spaces` (on by default) then removes the space before `. ? ! ,`
/// and inside English contractions (fid-spec §3.4): "Carol Channing 's" becomes "Carol
/// Channing's", which exact match normalises to "carol channings", not "carol channing s".
/// transformers 4 turned the cleanup off by default for this tokenizer; fidq follows FiD.
public enum FiDAnswer {
    /// The answer `ids` (start token first, as generation returns them) as FiD's text.
    public static func text(_ tokenizer: any Tokenizer, _ ids: [Int32]) -> String {
        cleanUp(tokenizer.decode(ids, skipSpecialTokens: true))
    }

    /// transformers 3.0.2's `clean_up_tokenization`, its rules in its order (no " do not" rule:
    /// that one is the `tokenizers` WordPiece decoder's).
    static let rules: [([UInt8], [UInt8])] = [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
        (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ].map { (Array($0.utf8), Array($1.utf8)) }

    /// Python's `str.replace` per rule: left to right, without overlaps, on the exact code units
    /// (bytes, so a combining mark after "." does not hide it, as it would from a Character match).
    static func cleanUp(_ text: String) -> String {
        var bytes = Array(text.utf8)
        guard bytes.contains(0x20) else { return text }  // every rule starts with a space
        for (from, to) in rules {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            var i = 0
            while i < bytes.count {
                if bytes[i] == from[0], i + from.count <= bytes.count, bytes[i..<(i + from.count)].elementsEqual(from) {
                    out += to
                    i += from.count
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            bytes = out
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
