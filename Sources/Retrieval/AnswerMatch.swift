// AnswerMatch: DPR's has_answer (SimpleTokenizer + NFD + lower-case, contiguous token match) and top-k recall as DPR counts it.
import Foundation

/// DPR's answer matching (`dpr/utils/qa_validation.py: has_answer`, `match_type='string'`, with
/// `dpr/utils/tokenizers.py: SimpleTokenizer`), which FiD copies (ref/fid-spec.md §4.2).
///
/// Tokens are the matches of `([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])`: maximal runs of letters,
/// digits and marks, and every other character that is neither a separator nor "other"
/// (control, format, private use, surrogate, unassigned) as a token of its own. Text and answers
/// are NFD-normalised, tokenised, and each token lower-cased with Python's `str.lower` rules;
/// an answer matches when its token list occurs contiguously in the text's (an answer with no
/// tokens matches any text, as in DPR). Tokens compare as code points, as Python compares them.
public enum AnswerMatch {
    /// DPR's `SimpleTokenizer().tokenize(text).words(uncased=True)` of already-normalised text.
    public static func tokens(_ text: String) -> [String] {
        var out: [String] = []
        var run = String.UnicodeScalarView()
        func flush() {
            if !run.isEmpty {
                out.append(pythonLower(String(run)))
                run = String.UnicodeScalarView()
            }
        }
        for s in text.unicodeScalars {
            if isWordScalar(s) {
                run.append(s)
                continue
            }
            flush()
            switch s.properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator, .control, .format, .surrogate, .privateUse, .unassigned:
                break
            default:
                out.append(pythonLower(String(s)))
            }
        }
        flush()
        return out
    }

    /// `[\p{L}\p{N}\p{M}]`: a letter, digit or mark, what DPR's (and BM25's) word tokens are made of.
    public static func isWordScalar(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .decimalNumber, .letterNumber, .otherNumber, .nonspacingMark, .spacingMark, .enclosingMark:
            return true
        default:
            return false
        }
    }

    /// `str.lower()`: full lower-case mappings, and Greek capital sigma as final sigma (ς) when
    /// a cased letter precedes it and none follows (Python's Final_Sigma rule, which Swift's
    /// `lowercased()` does not apply).
    static func pythonLower(_ s: String) -> String {
        let lowered = s.lowercased()
        guard s.unicodeScalars.contains("\u{03A3}") else { return lowered }
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        func cased(_ c: Unicode.Scalar) -> Bool { c.properties.isCased }
        func ignorable(_ c: Unicode.Scalar) -> Bool { c.properties.isCaseIgnorable }
        for (i, c) in scalars.enumerated() {
            guard c == "\u{03A3}" else {
                out.append(contentsOf: String(c).lowercased().unicodeScalars)
                continue
            }
            var before = false
            var j = i - 1
            while j >= 0 {
                if ignorable(scalars[j]) { j -= 1; continue }
                before = cased(scalars[j])
                break
            }
            var after = false
            j = i + 1
            while j < scalars.count {
                if ignorable(scalars[j]) { j += 1; continue }
                after = cased(scalars[j])
                break
            }
            out.append(before && !after ? "\u{03C2}" : "\u{03C3}")
        }
        return String(out)
    }

    /// Tokens of a text or answer as `has_answer` compares them: NFD first.
    public static func normalizedTokens(_ text: String) -> [[Unicode.Scalar]] {
        tokens(text.decomposedStringWithCanonicalMapping).map { Array($0.unicodeScalars) }
    }

    /// Whether any answer occurs in `text` (nil text: false).
    public static func hasAnswer(answers: [String], text: String?) -> Bool {
        guard let text else { return false }
        let words = normalizedTokens(text)
        return hasAnswer(answerTokens: answers.map(normalizedTokens), words: words)
    }

    /// `hasAnswer` with the answers tokenised once (a question's answers against its 100 passages).
    public static func hasAnswer(answerTokens: [[[Unicode.Scalar]]], words: [[Unicode.Scalar]]) -> Bool {
        for answer in answerTokens {
            if answer.isEmpty { return true }
            guard answer.count <= words.count else { continue }
            for i in 0...(words.count - answer.count) where words[i] == answer[0] {
                if (1..<answer.count).allSatisfy({ words[i + $0] == answer[$0] }) { return true }
            }
        }
        return false
    }
}

/// Top-k answer recall as DPR's `calculate_matches` counts it: a question counts at k when any of
/// its first k passages has the answer.
public struct RecallAtK: Equatable, Codable, Sendable {
    /// Questions counted.
    public var questions: Int
    /// `hits[r]`: questions whose first passage with the answer is at rank ≤ r (0-based), over
    /// the longest passage list seen.
    public var hits: [Int]

    public init() { (questions, hits) = (0, []) }

    /// Adds one question's per-passage answer flags, best passage first.
    public mutating func add(_ flags: [Bool]) {
        questions += 1
        if hits.count < flags.count {
            let last = hits.last ?? 0
            hits += [Int](repeating: last, count: flags.count - hits.count)
        }
        if let first = flags.firstIndex(of: true) {
            for r in first..<hits.count { hits[r] += 1 }
        }
    }

    /// Fraction of questions with the answer in the top k (a k beyond the lists counts the
    /// whole lists, as the passages beyond them do not exist).
    public func recall(at k: Int) -> Double {
        guard questions > 0, !hits.isEmpty, k >= 1 else { return 0 }
        return Double(hits[min(k, hits.count) - 1]) / Double(questions)
    }
}
