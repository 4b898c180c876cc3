// ExactMatch: FiD's reader metric (src/evaluation.py, fid-spec §4.1): normalised string equality
// against any of the answers.

/// SQuAD-style answer normalisation and exact match, as FiD's `normalize_answer` / `ems`.
public enum ExactMatch {
    /// Python's `string.punctuation` (ASCII only).
    static let punctuation = Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".unicodeScalars)

    /// `white_space_fix(remove_articles(remove_punc(lower(s))))`: lower-case, drop ASCII
    /// punctuation, the words a/an/the become spaces, whitespace runs collapse to one space and
    /// the ends are trimmed.
    public static func normalize(_ s: String) -> String {
        let lowered = s.lowercased()
        var kept = String.UnicodeScalarView()
        for u in lowered.unicodeScalars where !punctuation.contains(u) { kept.append(u) }
        // `\b(a|an|the)\b` then `split()`: splitting on whitespace first finds the same words,
        // since after punctuation removal a word boundary next to a letter run is whitespace or
        // a non-word character (kept inside the token, so e.g. "the²" is not an article).
        var words: [Substring] = []
        let text = String(kept)
        for token in text.split(whereSeparator: { $0.isWhitespace }) {
            words += splitArticles(token)
        }
        return words.joined(separator: " ")
    }

    /// Removes the articles a, an, the that stand between word boundaries inside one
    /// whitespace-free token (a boundary is a change between word and non-word characters,
    /// where word characters are letters, digits and `_`, as Python's `regex` `\w`).
    static func splitArticles(_ token: Substring) -> [Substring] {
        let chars = Array(token)
        func isWord(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c.unicodeScalars.contains { $0.properties.generalCategory == .nonspacingMark } }
        var out: [Substring] = []
        var start = 0, i = 0
        var piece = ""
        // Walk runs of word characters; an article run is replaced by a space (a split point).
        while i < chars.count {
            if isWord(chars[i]) {
                var j = i
                while j < chars.count, isWord(chars[j]) { j += 1 }
                let run = String(chars[i..<j])
                if run == "a" || run == "an" || run == "the" {
                    piece += String(chars[start..<i])
                    if !piece.isEmpty { out.append(Substring(piece)) }
                    piece = ""
                    start = j
                }
                i = j
            } else {
                i += 1
            }
        }
        piece += String(chars[start..<chars.count])
        if !piece.isEmpty { out.append(Substring(piece)) }
        return out
    }

    /// Whether `prediction` equals any of `answers` after normalisation (false for no answers).
    public static func score(_ prediction: String, _ answers: [String]) -> Bool {
        let p = normalize(prediction)
        return answers.contains { normalize($0) == p }
    }
}
