// VocabKernelsTests: argmax, top-k, log-softmax and the row gather against their naive twins, on
// odd widths, padded rows, ties, NaN and −∞.
import Foundation
import Testing
import TestSupport
@testable import Tensor

@Suite struct VocabKernelsTests {
    static let widths = [1, 2, 7, 15, 16, 17, 33, 100, 1000]

    /// rows × ld values, the first `cols` of each row drawn from a few levels (so ties happen) or
    /// uniformly; the padding past `cols` is a huge value no kernel may read.
    static func rows(_ rows: Int, _ cols: Int, ld: Int, ties: Bool, seed: UInt64) -> [Float] {
        var rng = RNG(seed: seed)
        var x = [Float](repeating: 1e30, count: rows * ld)
        for r in 0..<rows {
            for j in 0..<cols {
                x[r * ld + j] = ties ? Float(Int(rng.uniform(0, 4))) : rng.uniform(-8, 8)
            }
        }
        return x
    }

    @Test func argmaxMatchesNaive() {
        for cols in Self.widths {
            for ties in [false, true] {
                let (n, ld) = (5, cols + 3)
                var x = Self.rows(n, cols, ld: ld, ties: ties, seed: UInt64(cols))
                if cols > 3 {
                    x[1 * ld + cols - 1] = .nan  // a late NaN wins over every number
                    x[2 * ld + 2] = .nan
                    x[2 * ld + cols - 1] = .nan  // first NaN wins
                    for j in 0..<cols { x[3 * ld + j] = -.infinity }  // all −∞: index 0
                }
                var fast = [Int32](repeating: -1, count: n), slow = fast
                x.withUnsafeBufferPointer { px in
                    VocabKernels.argmax(px.baseAddress!, rows: n, cols: cols, ld: ld, into: &fast)
                    VocabKernels.argmaxNaive(px.baseAddress!, rows: n, cols: cols, ld: ld, into: &slow)
                }
                #expect(fast == slow, "cols \(cols) ties \(ties)")
                if cols > 3 {
                    #expect(fast[1] == Int32(cols - 1) && fast[2] == 2 && fast[3] == 0)
                }
            }
        }
    }

    @Test func argmaxFirstOfEqualMaxima() {
        let x: [Float] = [1, 5, 3, 5, 5, -2]
        var out: [Int32] = [0]
        VocabKernels.argmax(x, rows: 1, cols: 6, ld: 6, into: &out)
        #expect(out == [1])
    }

    @Test func topKMatchesNaive() {
        for cols in Self.widths {
            for ties in [false, true] {
                for k in Set([0, 1, min(3, cols), min(8, cols), cols]) {
                    let (n, ld) = (4, cols + 1)
                    var x = Self.rows(n, cols, ld: ld, ties: ties, seed: UInt64(cols * 31 + k))
                    if cols > 4 {
                        x[0 * ld + 3] = .nan
                        x[0 * ld + 1] = .nan
                        x[1 * ld + 0] = -.infinity
                        x[1 * ld + cols - 1] = .infinity
                    }
                    var fv = [Float](repeating: 0, count: n * k), sv = fv
                    var fi = [Int32](repeating: -1, count: n * k), si = fi
                    x.withUnsafeBufferPointer { px in
                        VocabKernels.topK(px.baseAddress!, rows: n, cols: cols, ld: ld, k: k, values: &fv, indices: &fi)
                        VocabKernels.topKNaive(px.baseAddress!, rows: n, cols: cols, ld: ld, k: k, values: &sv, indices: &si)
                    }
                    #expect(fi == si, "cols \(cols) ties \(ties) k \(k)")
                    #expect(zip(fv, sv).allSatisfy { $0.bitPattern == $1.bitPattern }, "cols \(cols) k \(k) values")
                    if cols > 4 && k >= 2 {
                        #expect(fi[0] == 1 && fi[1] == 3, "NaNs first, lower index first")
                        #expect(fi[k] == Int32(cols - 1), "+∞ first among numbers")
                    }
                }
            }
        }
    }

    @Test func topKOrdersTiesByIndex() {
        let x: [Float] = [2, 7, 7, 1, 7, 2]
        var v = [Float](repeating: 0, count: 5), i = [Int32](repeating: 0, count: 5)
        VocabKernels.topK(x, rows: 1, cols: 6, ld: 6, k: 5, values: &v, indices: &i)
        #expect(v == [7, 7, 7, 2, 2])
        #expect(i == [1, 2, 4, 0, 5])
    }

    @Test func logSoftmaxMatchesDoubleReference() {
        let eps = Double(Float.ulpOfOne)
        for cols in Self.widths {
            for scale: Float in [1, 30] {
                let (n, ld) = (3, cols + 2)
                var x = Self.rows(n, cols, ld: ld, ties: false, seed: UInt64(cols + 7))
                for r in 0..<n { for j in 0..<cols { x[r * ld + j] *= scale } }
                if cols > 2 { x[0 * ld + 1] = -.infinity }
                var fast = [Float](repeating: 0, count: n * ld), slow = fast
                x.withUnsafeBufferPointer { px in
                    VocabKernels.logSoftmax(px.baseAddress!, rows: n, cols: cols, ldx: ld, into: &fast, ldy: ld)
                    VocabKernels.logSoftmaxNaive(px.baseAddress!, rows: n, cols: cols, ldx: ld, into: &slow, ldy: ld)
                }
                for r in 0..<n {
                    // y = x − (m + log Σ): rounding of x − shift, of the shift itself (|m| + |log Σ|),
                    // and of the Float sum of `cols` exps in 16 lanes (relative, so absolute in log).
                    var m: Float = -.infinity
                    for j in 0..<cols { m = max(m, x[r * ld + j]) }
                    for j in 0..<cols {
                        let e = Double(slow[r * ld + j]), a = Double(fast[r * ld + j])
                        if e == -.infinity { #expect(a == -.infinity); continue }
                        let bound = 2 * eps * (abs(Double(x[r * ld + j])) + abs(Double(m)) + abs(e))
                            + Double(cols / 16 + 16) * eps
                        #expect(abs(a - e) <= bound, "cols \(cols) scale \(scale) [\(r),\(j)]: \(a) vs \(e), bound \(bound)")
                    }
                }
            }
        }
    }

    @Test func logSoftmaxInPlaceAndSpecialRows() {
        var x: [Float] = [1, 2, 3, .nan, 0, 0, -.infinity, -.infinity, -.infinity, 5, -.infinity, 5]
        let copy = x
        var expected = [Float](repeating: 0, count: 12)
        VocabKernels.logSoftmaxNaive(copy, rows: 4, cols: 3, ldx: 3, into: &expected, ldy: 3)
        x.withUnsafeMutableBufferPointer { p in
            VocabKernels.logSoftmax(p.baseAddress!, rows: 4, cols: 3, ldx: 3, into: p.baseAddress!, ldy: 3)
        }
        #expect(abs(x[2] - expected[2]) < 1e-6 && abs(x[0] - expected[0]) < 1e-6)
        let nanRow = x[3...5].allSatisfy { $0.isNaN }, infRow = x[6...8].allSatisfy { $0.isNaN }
        #expect(nanRow, "a NaN makes its row NaN, as torch")
        #expect(infRow, "an all −∞ row is NaN, as torch")
        #expect(abs(x[9] + Float(log(2.0))) < 1e-6 && x[10] == -.infinity && x[11] == x[9])
    }

    @Test func gatherRowsInPlaceMatchesNaive() {
        var rng = RNG(seed: 3)
        let (rows, width, stride) = (6, 5, 8)
        let data = (0..<(rows * stride)).map { _ in rng.uniform(-1, 1) }
        for source: [Int32] in [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [1, 1, 1, 0, 0, 5], [2, 0, 1, 5, 3, 4]] {
            var fast = data
            var slow = data  // columns past `width` keep their old values in both
            var scratch = [Float](repeating: .nan, count: rows * width)
            fast.withUnsafeMutableBufferPointer { p in
                VocabKernels.gatherRows(p.baseAddress!, rows: rows, width: width, stride: stride, source: source, scratch: &scratch)
            }
            VocabKernels.gatherRowsNaive(data, rows: rows, width: width, stride: stride, source: source, into: &slow)
            #expect(fast == slow, "source \(source)")
        }
    }
}
