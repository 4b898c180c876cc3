// VocabKernels: per-row argmax, top-k and log-softmax over a vocabulary, and the row gather that
// reorders beams; each with a naive twin for tests.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Row kernels over (rows, V) logits, row-major with a leading dimension `ld ≥ V`.
///
/// NaN policy, as PyTorch's CPU kernels: NaN counts as larger than every number (`argmax` and
/// `topK` pick it first; among NaNs the lowest index comes first), and a row holding a NaN has an
/// all-NaN log-softmax. Ties go to the lower index everywhere. `torch.topk` documents no order
/// among equal values (its CPU partial sort compares values only); the lower-index rule here is
/// what `torch.argmax`/`torch.sort(stable=True)` give and is deterministic.
public enum VocabKernels {
    // MARK: argmax

    /// `out[r]` = index of the largest entry of row r (first one on ties; first NaN if any;
    /// 0 for a row of all −∞). A NaN scan, the SIMD maximum, then the first index holding it.
    public static func argmax(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into out: UnsafeMutablePointer<Int32>
    ) {
        checkRows(rows: rows, cols: cols, ld: ld, "argmax")
        precondition(cols > 0, "argmax: empty rows")
        for r in 0..<rows {
            let row = x + r * ld
            var found = 0
            if Reduce.containsNaN(row, cols) {
                for j in 0..<cols where row[j].isNaN { found = j; break }
            } else {
                // A row of all −∞ has maximum −∞ (Reduce.max's floor), found at index 0.
                let m = Reduce.max(row, cols)
                for j in 0..<cols where row[j] == m { found = j; break }
            }
            out[r] = Int32(found)
        }
    }

    /// The plain loop with `argmax`'s contract.
    public static func argmaxNaive(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, into out: UnsafeMutablePointer<Int32>
    ) {
        checkRows(rows: rows, cols: cols, ld: ld, "argmax")
        for r in 0..<rows {
            var best = 0
            for j in 1..<max(cols, 1) where better(x[r * ld + j], j, than: x[r * ld + best], best) {
                best = j
            }
            out[r] = Int32(best)
        }
    }

    // MARK: top-k

    /// The k largest entries of each row, best first: `values[r·k + i]`, `indices[r·k + i]`.
    ///
    /// Order: larger value first; NaN above every number; equal values by lower index. A bounded
    /// min-heap of k entries kept in the output row itself (O(V log k), no allocation), heap-sorted
    /// at the end. Most entries of a vocabulary row lose one comparison against the heap's root.
    public static func topK(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, k: Int,
        values: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>
    ) {
        checkRows(rows: rows, cols: cols, ld: ld, "topK")
        precondition(k >= 0 && k <= cols, "topK: k=\(k) must be in 0...\(cols)")
        if k == 0 { return }
        for r in 0..<rows {
            let row = x + r * ld
            let v = values + r * k, ix = indices + r * k
            // The heap's root v[0] is the worst kept entry: every child is "better" than its parent.
            for j in 0..<k {
                v[j] = row[j]
                ix[j] = Int32(j)
                siftUp(v, ix, j)
            }
            var j = k
            while j < cols {
                let e = row[j]
                // Fast reject: not better than the root (ties lose, since j is a later index).
                if better(e, j, than: v[0], Int(ix[0])) {
                    v[0] = e
                    ix[0] = Int32(j)
                    siftDown(v, ix, 0, k)
                }
                j += 1
            }
            // Heap sort: move the worst to the end each time, leaving best-first order.
            var n = k
            while n > 1 {
                n -= 1
                v.swapAt(0, n, ix)
                siftDown(v, ix, 0, n)
            }
        }
    }

    /// The plain selection with `topK`'s contract: k passes, each taking the best entry not yet
    /// taken (O(k·V)).
    public static func topKNaive(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int, k: Int,
        values: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>
    ) {
        checkRows(rows: rows, cols: cols, ld: ld, "topK")
        precondition(k >= 0 && k <= cols, "topK: k=\(k) must be in 0...\(cols)")
        var taken = [Bool](repeating: false, count: cols)
        for r in 0..<rows {
            for j in 0..<cols { taken[j] = false }
            for i in 0..<k {
                var best = -1
                for j in 0..<cols where !taken[j] {
                    if best < 0 || better(x[r * ld + j], j, than: x[r * ld + best], best) { best = j }
                }
                taken[best] = true
                values[r * k + i] = x[r * ld + best]
                indices[r * k + i] = Int32(best)
            }
        }
    }

    /// Whether (a at index i) ranks above (b at index j): larger, NaN above numbers, then lower index.
    @inline(__always)
    static func better(_ a: Float, _ i: Int, than b: Float, _ j: Int) -> Bool {
        if a.isNaN || b.isNaN {
            if a.isNaN && b.isNaN { return i < j }
            return a.isNaN
        }
        return a > b || (a == b && i < j)
    }

    @inline(__always)
    static func siftUp(_ v: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>, _ start: Int) {
        var c = start
        while c > 0 {
            let p = (c - 1) / 2
            // Min-heap on rank: a parent must not rank above its child.
            guard better(v[p], Int(ix[p]), than: v[c], Int(ix[c])) else { return }
            v.swapAt(p, c, ix)
            c = p
        }
    }

    @inline(__always)
    static func siftDown(_ v: UnsafeMutablePointer<Float>, _ ix: UnsafeMutablePointer<Int32>, _ start: Int, _ n: Int) {
        var p = start
        while true {
            let l = 2 * p + 1
            if l >= n { return }
            var w = l  // the worse child goes up
            let rgt = l + 1
            if rgt < n && better(v[l], Int(ix[l]), than: v[rgt], Int(ix[rgt])) { w = rgt }
            guard better(v[p], Int(ix[p]), than: v[w], Int(ix[w])) else { return }
            v.swapAt(p, w, ix)
            p = w
        }
    }

    // MARK: log-softmax

    /// `y[r, j] = x[r, j] − max_r − log Σ_j exp(x[r, j] − max_r)`; y may equal x (in place).
    ///
    /// Stable: the shift by the row maximum keeps every exp ≤ 1. A row holding a NaN, or of all
    /// −∞, becomes all NaN (as `torch.log_softmax`); −∞ entries of other rows stay −∞.
    public static func logSoftmax(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ldx: Int,
        into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        checkRows(rows: rows, cols: cols, ld: ldx, "logSoftmax")
        checkRows(rows: rows, cols: cols, ld: ldy, "logSoftmax")
        for r in 0..<rows {
            let xr = x + r * ldx, yr = y + r * ldy
            let m = Reduce.max(xr, cols)
            if m == -.infinity {
                // Every entry −∞ or NaN: no finite normaliser exists.
                yr.update(repeating: .nan, count: cols)
                continue
            }
            // sumExp is NaN when the row holds a NaN, which then spreads to the whole row.
            let shift = m + log(Reduce.sumExp(xr, cols, shift: m))
            let vs = SIMD16<Float>(repeating: shift)
            var j = 0
            while j + 16 <= cols {
                Reduce.store(Reduce.load(xr + j) - vs, yr + j)
                j += 16
            }
            while j < cols {
                yr[j] = xr[j] - shift
                j += 1
            }
        }
    }

    /// The twin of `logSoftmax` computed in Double and rounded once.
    public static func logSoftmaxNaive(
        _ x: UnsafePointer<Float>, rows: Int, cols: Int, ldx: Int,
        into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        checkRows(rows: rows, cols: cols, ld: ldx, "logSoftmax")
        checkRows(rows: rows, cols: cols, ld: ldy, "logSoftmax")
        for r in 0..<rows {
            var m = -Double.infinity
            var nan = false
            for j in 0..<cols {
                let v = Double(x[r * ldx + j])
                if v.isNaN { nan = true } else { m = Swift.max(m, v) }
            }
            if nan || m == -.infinity {
                for j in 0..<cols { y[r * ldy + j] = .nan }
                continue
            }
            var s = 0.0
            for j in 0..<cols { s += exp(Double(x[r * ldx + j]) - m) }
            let lse = m + log(s)
            for j in 0..<cols { y[r * ldy + j] = Float(Double(x[r * ldx + j]) - lse) }
        }
    }

    // MARK: row gather

    /// `data[r] ← old data[source[r]]` for each of `rows` rows of `width` floats, rows `stride`
    /// apart; in place, through `scratch` (capacity ≥ rows·width). Reorders beams of a cache:
    /// `width < stride` moves only the filled prefix of each row.
    public static func gatherRows(
        _ data: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int,
        source: UnsafePointer<Int32>, scratch: UnsafeMutablePointer<Float>
    ) {
        precondition(rows >= 0 && width >= 0 && stride >= width, "gatherRows: rows=\(rows) width=\(width) stride=\(stride)")
        for r in 0..<rows {
            let s = Int(source[r])
            precondition(s >= 0 && s < rows, "gatherRows: source[\(r)]=\(s) outside 0..<\(rows)")
            if s == r { continue }
            (scratch + r * width).update(from: data + s * stride, count: width)
        }
        for r in 0..<rows where Int(source[r]) != r {
            (data + r * stride).update(from: scratch + r * width, count: width)
        }
    }

    /// The out-of-place twin: `dst[r] = src[source[r]]` element by element (dst must not overlap src).
    public static func gatherRowsNaive(
        _ src: UnsafePointer<Float>, rows: Int, width: Int, stride: Int,
        source: UnsafePointer<Int32>, into dst: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            let s = Int(source[r])
            precondition(s >= 0 && s < rows, "gatherRows: source[\(r)]=\(s) outside 0..<\(rows)")
            for j in 0..<width { dst[r * stride + j] = src[s * stride + j] }
        }
    }

    static func checkRows(rows: Int, cols: Int, ld: Int, _ name: String) {
        precondition(rows >= 0 && cols >= 0, "\(name): negative size rows=\(rows) cols=\(cols)")
        precondition(ld >= cols, "\(name): ld=\(ld) < cols=\(cols)")
    }
}

extension UnsafeMutablePointer where Pointee == Float {
    /// Swaps entries i and j here and in the paired index buffer.
    @inline(__always)
    fileprivate func swapAt(_ i: Int, _ j: Int, _ ix: UnsafeMutablePointer<Int32>) {
        let t = self[i]; self[i] = self[j]; self[j] = t
        let u = ix[i]; ix[i] = ix[j]; ix[j] = u
    }
}
