// ExactMatch: FiD's reader metric (src/evaluation.py, fid-spec §4.1): normalised string equality
// against any of the answers.
import Retrieval

/// SQuAD-style answer normalisation and exact match, as FiD's `normalize_answer` / `ems`.
public enum ExactMatch {
    /// Python's `string.punctuation` (ASCII only).
    static let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars)

    /// `white_space_fix(remove_articles(remove_punc(lower(s))))`: lower-case as Python's
    /// `str.lower()` (Greek final sigma included), drop ASCII punctuation, the words a/an/the
    /// become spaces, whitespace runs (Python's `str.split()`'s) collapse to one space and the ends
    /// are trimmed. Code point by code point, as Python and its `regex` module see the text.
    public static func normalize(_ s: String) -> String {
        let lowered = AnswerMatch.pythonLower(s)
        var text: [Unicode.Scalar] = []
        for u in lowered.unicodeScalars where !punctuation.contains(u) { text.append(u) }
        // `\b(a|an|the)\b` then `split()`: splitting on whitespace first finds the same words,
        // since whitespace is never a word character, so a boundary at a token's end stays one.
        var words: [String] = []
        for token in text.split(whereSeparator: isPythonSpace) {
            words += splitArticles(token)
        }
        return words.joined(separator: " ")
    }

    /// Python's `str.isspace()`: Unicode's White_Space, and U+001C…U+001F (bidi separators).
    static func isPythonSpace(_ u: Unicode.Scalar) -> Bool {
        u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
    }

    /// The `regex` module's `\w` on a code point: Alphabetic, a mark, a decimal digit,
    /// connector punctuation or a joiner. "²" (another kind of number) is not one, so the
    /// article in "the²" stands between boundaries.
    static func isWord(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return u.properties.isAlphabetic || u.properties.isJoinControl
        }
    }

    /// Removes the articles a, an, the that stand between word boundaries inside one
    /// whitespace-free token (a boundary is a change between word and non-word code points).
    static func splitArticles(_ token: ArraySlice<Unicode.Scalar>) -> [String] {
        let chars = Array(token)
        func string(_ s: ArraySlice<Unicode.Scalar>) -> String { String(String.UnicodeScalarView(s)) }
        var out: [String] = []
        var start = 0, i = 0
        var piece = ""
        // Walk runs of word code points; an article run is replaced by a space (a split point).
        while i < chars.count {
            if isWord(chars[i]) {
                var j = i
                while j < chars.count, isWord(chars[j]) { j += 1 }
                let run = string(chars[i..<j])
                if run == "a" || run == "an" || run == "the" {
                    piece += string(chars[start..<i])
                    if !piece.isEmpty { out.append(piece) }
                    piece = ""
                    start = j
                }
                i = j
            } else {
                i += 1
            }
        }
        piece += string(chars[start..<chars.count])
        if !piece.isEmpty { out.append(piece) }
        return out
    }

    /// Whether `prediction` equals any of `answers` after normalisation (false for no answers),
    /// code point by code point as Python compares: Swift's `==` took "café" and "cafe\u{301}" as equal.
    public static func score(_ prediction: String, _ answers: [String]) -> Bool {
        let p = normalize(prediction)
        return answers.contains { normalize($0).unicodeScalars.elementsEqual(p.unicodeScalars) }
    }
}
