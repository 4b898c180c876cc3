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
    /// A text's tokens as `has_answer` compares them: every token's code points in one buffer, so
    /// a passage costs two arrays, not one per token.
    public struct Tokens: Equatable, Sendable {
        /// The tokens' code points, lower-cased, one after the other.
        var scalars: [UInt32] = []
        /// `ends[i]`: where token `i` ends in `scalars` (it starts where token `i − 1` ends).
        var ends: [Int] = []

        public var count: Int { ends.count }

        /// Token `i`'s code points.
        public subscript(i: Int) -> ArraySlice<UInt32> { scalars[(i == 0 ? 0 : ends[i - 1])..<ends[i]] }

        /// Every token as a string of its code points (tests, messages).
        public var strings: [String] {
            (0..<count).map { i in String(String.UnicodeScalarView(self[i].map { Unicode.Scalar($0)! })) }
        }
    }

    /// DPR's `SimpleTokenizer().tokenize(NFD(text)).words(uncased=True)`.
    ///
    /// One pass over the UTF-8 bytes: ASCII is tokenised and lower-cased in place (NFD leaves it
    /// unchanged, and its categories are fixed); each maximal run of non-ASCII characters is
    /// NFD-normalised on its own, which gives NFD of the whole text because every ASCII character
    /// is a starter that neither decomposes nor reorders with its neighbours. A token holding a
    /// non-ASCII character is lower-cased with Python's `str.lower` rules (`pythonLower`).
    public static func normalizedTokens(_ text: String) -> Tokens {
        var text = text
        text.makeContiguousUTF8()
        // The builder lives inside the closure: a captured, mutated variable costs a runtime
        // exclusivity check per access, a third of the time.
        return text.utf8.withContiguousStorageIfAvailable { u -> Tokens in
            var b = TokenBuilder(capacity: u.count)
            b.scan(u)
            return b.out
        }!
    }

    /// `normalizedTokens`' state: the tokens so far and the open word run.
    struct TokenBuilder {
        var out = Tokens()
        /// The open word run is `out.scalars[start...]`; `ascii` when it holds only ASCII.
        var start = 0, ascii = true

        init(capacity: Int) {
            out.scalars.reserveCapacity(capacity)
            out.ends.reserveCapacity(capacity / 4)
        }

        mutating func scan(_ u: UnsafeBufferPointer<UInt8>) {
            var i = 0
            while i < u.count {
                let b = u[i]
                guard b >= 0x80 else {
                    switch b {
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): out.scalars.append(UInt32(b))
                    case UInt8(ascii: "A")...UInt8(ascii: "Z"): out.scalars.append(UInt32(b) + 32)
                    case 0...0x20, 0x7F: close()  // controls and the space: separators, not tokens
                    default: single(CollectionOfOne(UInt32(b)))  // punctuation and symbols: a token each
                    }
                    i += 1
                    continue
                }
                var j = i + 1
                while j < u.count && u[j] >= 0x80 { j += 1 }
                let run = String(decoding: UnsafeBufferPointer(rebasing: u[i..<j]), as: UTF8.self)
                for s in run.decomposedStringWithCanonicalMapping.unicodeScalars { feed(s) }
                i = j
            }
            close()
        }

        /// Ends the open word run, lower-casing it as Python does when it holds more than ASCII.
        mutating func close() {
            let end = out.scalars.count
            guard end > start else { return }
            if !ascii {
                let token = String(String.UnicodeScalarView(out.scalars[start...].map { Unicode.Scalar($0)! }))
                out.scalars.replaceSubrange(start..., with: pythonLower(token).unicodeScalars.map(\.value))
            }
            out.ends.append(out.scalars.count)
            (start, ascii) = (out.scalars.count, true)
        }

        /// A token of its own (a character that is neither a word character nor a separator).
        mutating func single(_ scalars: some Sequence<UInt32>) {
            close()
            out.scalars.append(contentsOf: scalars)
            close()
        }

        /// A scalar of NFD text from a non-ASCII run (which may hold ASCII: U+212A K decomposes to K).
        mutating func feed(_ s: Unicode.Scalar) {
            if isWordScalar(s) {
                out.scalars.append(s.value)
                ascii = false
                return
            }
            switch s.properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator, .control, .format, .surrogate, .privateUse, .unassigned:
                close()
            default:
                single(pythonLower(String(s)).unicodeScalars.map(\.value))
            }
        }
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
    public static func pythonLower(_ s: String) -> String {
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

    /// Whether any answer occurs in `text` (nil text: false).
    public static func hasAnswer(answers: [String], text: String?) -> Bool {
        guard let text else { return false }
        let words = normalizedTokens(text)
        return hasAnswer(answerTokens: answers.map(normalizedTokens), words: words)
    }

    /// `hasAnswer` with the answers tokenised once (a question's answers against its 100 passages).
    public static func hasAnswer(answerTokens: [Tokens], words: Tokens) -> Bool {
        for answer in answerTokens {
            if answer.count == 0 { return true }
            guard answer.count <= words.count else { continue }
            let first = answer[0]
            for i in 0...(words.count - answer.count) where words[i] == first {
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
