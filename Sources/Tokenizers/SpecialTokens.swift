// SpecialTokens: finds special (added) tokens such as `</s>` or `[CLS]` in raw text so they stay whole.

/// Splits raw UTF-8 text around special tokens, leftmost-longest like Hugging Face's AddedVocabulary
/// (aho-corasick, `MatchKind::LeftmostLongest`), before any normalisation.
struct SpecialTokens: Sendable {
    struct Token: Sendable {
        var bytes: [UInt8]
        var id: Int32
        /// Absorb whitespace on the left / right of the match (HF `lstrip` / `rstrip`).
        var lstrip = false
        var rstrip = false
    }
    /// Tokens by first byte, longest first.
    private let byFirst: [[Token]]
    /// Whether some token starts with the byte: the scan tests only this for ordinary text.
    private let isFirst: [Bool]
    let ids: Set<Int32>

    init(_ tokens: [Token]) {
        var table = [[Token]](repeating: [], count: 256)
        for t in tokens where !t.bytes.isEmpty { table[Int(t.bytes[0])].append(t) }
        for i in 0..<256 { table[i].sort { $0.bytes.count > $1.bytes.count } }
        byFirst = table
        isFirst = table.map { !$0.isEmpty }
        ids = Set(tokens.map(\.id))
    }

    var isEmpty: Bool { ids.isEmpty }

    /// Calls `text(range)` for each run of ordinary text and `special(id)` for each token, in order.
    func split(_ s: UnsafeBufferPointer<UInt8>, text: (Range<Int>) -> Void, special: (Int32) -> Void) {
        let n = s.count
        var from = 0
        var i = 0
        while i < n {
            // Skip to the next byte that can start a token.
            isFirst.withUnsafeBufferPointer { first in
                while i < n, !first[Int(s[i])] { i += 1 }
            }
            if i >= n { break }
            let candidates = byFirst[Int(s[i])]
            var matched: Token? = nil
            if !candidates.isEmpty {
                for t in candidates where t.bytes.count <= n - i {
                    var k = 1
                    while k < t.bytes.count, s[i + k] == t.bytes[k] { k += 1 }
                    if k == t.bytes.count { matched = t; break }
                }
            }
            guard let t = matched else { i += 1; continue }
            var left = i
            if t.lstrip { while left > from, isSpace(s[left - 1]) { left -= 1 } }
            var right = i + t.bytes.count
            if t.rstrip { while right < n, isSpace(s[right]) { right += 1 } }
            if left > from { text(from..<left) }
            special(t.id)
            from = right
            i = right
        }
        if from < n { text(from..<n) }
    }

    private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }
}
