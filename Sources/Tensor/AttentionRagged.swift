// AttentionRagged: self-attention over items of different lengths packed row after row, FiD's
// passages without their trailing padding.

extension Attention {
    /// Items of different lengths packed one after another: item b has `lengths[b]` rows
    /// (queries, and the same rows as keys) starting at row `rowOffsets[b]`, and attends to its own
    /// rows only. Its probabilities are an (H, n_b, n_b) block at `probsOffsets[b]`.
    ///
    /// Attention with `Size` (B items, Tq = Tk = the longest allowed length) and a `Ragged` is
    /// the function that the padded (B, Tq) batch with trailing keys masked computes at each item's
    /// first n_b queries: masked keys weigh exactly 0. The bias keeps its (H, Tq, Tk) layout;
    /// item b reads (and its gradient accumulates into) the top-left n_b × n_b block of each head.
    public struct Ragged: Sendable, Equatable {
        /// n_b: rows of item b (0 allowed: it is skipped).
        public let lengths: [Int]
        /// First row of item b.
        public let rowOffsets: [Int]
        /// First probability of item b (Σ H·n² over earlier items).
        public let probsOffsets: [Int]
        /// Rows of all items (Σ n_b).
        public let rows: Int
        /// Probabilities of all items (Σ H·n_b²).
        public let probsCount: Int

        public init(lengths: [Int], heads: Int) {
            precondition(lengths.allSatisfy { $0 >= 0 } && heads >= 1, "Attention.Ragged: lengths \(lengths), heads \(heads)")
            self.lengths = lengths
            var rows = 0, probs = 0
            var rowOffsets: [Int] = [], probsOffsets: [Int] = []
            rowOffsets.reserveCapacity(lengths.count)
            probsOffsets.reserveCapacity(lengths.count)
            for n in lengths {
                rowOffsets.append(rows)
                probsOffsets.append(probs)
                rows += n
                probs += heads * n * n
            }
            self.rowOffsets = rowOffsets
            self.probsOffsets = probsOffsets
            self.rows = rows
            self.probsCount = probs
        }
    }

    /// Where item b's work lies: tq query rows from row qRow, tk key rows from row kRow, and its
    /// (H, tq, tk) probabilities from `probs`.
    struct Extent {
        var tq: Int, tk: Int, qRow: Int, kRow: Int, probs: Int
    }

    @inline(__always)
    static func extent(_ b: Int, _ s: Size, _ ragged: Ragged?) -> Extent {
        if let ragged {
            let n = ragged.lengths[b], r = ragged.rowOffsets[b]
            return Extent(tq: n, tk: n, qRow: r, kRow: r, probs: ragged.probsOffsets[b])
        }
        return Extent(tq: s.queryLength, tk: s.keyLength, qRow: b * s.queryLength, kRow: b * s.keyLength,
                      probs: b * s.heads * s.queryLength * s.keyLength)
    }

    /// Checks a ragged layout against the call's size.
    static func check(_ ragged: Ragged?, _ s: Size, causal: Bool, _ what: String) {
        guard let ragged else { return }
        precondition(
            ragged.lengths.count == s.batch && s.queryLength == s.keyLength && !causal
                && ragged.lengths.allSatisfy { $0 <= s.queryLength },
            "Attention.\(what): ragged lengths \(ragged.lengths) for \(s) (causal \(causal))")
    }

    /// t[i, j] += s[i, j] over a (rows, cols) block, t and s with row strides ldt and lds: a
    /// head's bias block into its logits (forward), its logit gradients into the bias's (backward).
    @inline(__always)
    static func accumulateBlock(
        _ t: UnsafeMutablePointer<Float>, ldt: Int, _ s: UnsafePointer<Float>, lds: Int, rows: Int, cols: Int
    ) {
        if ldt == cols && lds == cols {
            for i in 0..<(rows * cols) { t[i] += s[i] }
        } else {
            for i in 0..<rows {
                let tr = t + i * ldt, sr = s + i * lds
                for j in 0..<cols { tr[j] += sr[j] }
            }
        }
    }
}
