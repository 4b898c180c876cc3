// T5EncoderRows: which encoder rows FiD's passages need: each passage without its trailing
// padding, the kept rows packed one passage after another.
//
// Shape legend (DESIGN.md): NP passage rows of L tokens, N = NP·L padded rows, N' kept rows.
import Tensor

/// The encoder's kept rows: passage r keeps its first n_r tokens, n_r = 1 + the position of its
/// last attended token (0 for a passage with none) rounded up to a multiple of `alignment` (at
/// most L), the kept rows packed one passage after another.
///
/// The alignment is `Gemm.rowBlocking`: on Haswell's and Zen's sgemm kernels (Zen 3) a row's
/// bits depend on its place in a block of 24 rows, so each passage starts and ends on one and its
/// states do not depend on the passages packed before it (a question's answer and scores then do
/// not depend on the questions batched with it when L is a multiple of 24, as with every row
/// kept). The rows added are the passage's own padding, masked as keys like the rest.
///
/// Why it is the same function: FiD pads every passage to `text_maxlength` and masks the padding as
/// keys, so a padded position weighs exactly 0 in every real token's attention and in the
/// decoder's; its own output is read by nothing (the decoder masks it, passage scores skip it),
/// and no gradient reaches it. Computing only the kept rows gives every real token's state, the
/// loss and every gradient as the padded batch does (up to float32 summation order), with
/// relative positions unchanged because only a suffix is cut. Padding inside a passage (a 0 before
/// its last 1) stays, masked as before. The dropped rows' memory is zero.
struct T5EncoderRows: Equatable {
    /// L: tokens per padded passage row.
    let length: Int
    /// n_r: kept tokens of each passage row (NP).
    let lengths: [Int]
    /// N': kept rows.
    let rows: Int
    /// Runs of rows that are contiguous in both layouts: (padded row, packed row, count).
    let runs: [(padded: Int, packed: Int, count: Int)]

    static func == (a: T5EncoderRows, b: T5EncoderRows) -> Bool { a.length == b.length && a.lengths == b.lengths }

    /// The kept rows of NP passage rows of L tokens under `mask` (NP·L, 0 = padding), each
    /// passage's count rounded up to a multiple of `alignment` (at most L).
    init(mask: UnsafePointer<Float>, passages NP: Int, length L: Int, alignment: Int = 1) {
        precondition(alignment >= 1, "T5EncoderRows: alignment \(alignment)")
        length = L
        var lengths: [Int] = []
        lengths.reserveCapacity(NP)
        var runs: [(padded: Int, packed: Int, count: Int)] = []
        var packed = 0
        for r in 0..<NP {
            let m = mask + r * L
            var n = L
            while n > 0 && m[n - 1] == 0 { n -= 1 }
            n = min(L, (n + alignment - 1) / alignment * alignment)
            lengths.append(n)
            if n > 0 {
                if let last = runs.last, last.padded + last.count == r * L, last.packed + last.count == packed {
                    runs[runs.count - 1].count += n
                } else {
                    runs.append((r * L, packed, n))
                }
            }
            packed += n
        }
        self.lengths = lengths
        self.rows = packed
        self.runs = runs
    }

    /// Every row of NP passage rows of L tokens kept, as transformers computes them.
    init(keepingAll NP: Int, length L: Int) {
        length = L
        lengths = [Int](repeating: L, count: NP)
        rows = NP * L
        runs = NP * L > 0 ? [(0, 0, NP * L)] : []
    }

    /// Whether every row is kept (no passage ends in padding): the packed layout is the padded one.
    var keepsAll: Bool { rows == lengths.count * length }

    /// The attention layout of the kept rows; nil when every row is kept.
    func ragged(heads: Int) -> Attention.Ragged? {
        keepsAll ? nil : Attention.Ragged(lengths: lengths, heads: heads)
    }

    /// The kept entries of a padded (NP·L) array, packed.
    func pack<T>(_ padded: UnsafePointer<T>, into out: UnsafeMutablePointer<T>) {
        for run in runs { (out + run.packed).update(from: padded + run.padded, count: run.count) }
    }

    /// The kept entries of a padded array, packed.
    func pack<T>(_ padded: [T]) -> [T] {
        if keepsAll { return padded }
        return padded.withUnsafeBufferPointer { p in
            [T](unsafeUninitializedCapacity: rows) { out, count in
                for run in runs {
                    _ = UnsafeMutableBufferPointer(rebasing: out[run.packed..<(run.packed + run.count)])
                        .initialize(from: p[run.padded..<(run.padded + run.count)])
                }
                count = rows
            }
        }
    }
}
