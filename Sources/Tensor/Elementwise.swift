// Elementwise: add, scale and axpy over flat Float buffers (residuals, gradient sums).

/// Flat elementwise kernels; chunked like the activations, so results never depend on threads.
public enum Elementwise {
    /// out (n) = a + b. Out may alias a or b.
    public static func add(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { out[i] = a[i] + b[i] }
        }
    }

    /// out (n) = a + b on the calling thread, 16 lanes at a time: for a row inside a kernel's own
    /// parallel loop (`add` would split it again).
    @inline(__always)
    static func addRow(out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        var j = 0
        while j + 16 <= count {
            Reduce.store(Reduce.load(a + j) + Reduce.load(b + j), out + j)
            j += 16
        }
        while j < count {
            out[j] = a[j] + b[j]
            j += 1
        }
    }

    /// y (n) += x.
    public static func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { y[i] += x[i] }
        }
    }

    /// x (n) *= c.
    public static func scale(_ x: UnsafeMutablePointer<Float>, by c: Float, count: Int) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { x[i] *= c }
        }
    }

    /// Whether every x[i] is finite (no NaN, no ±∞): a diverged update is caught before it is
    /// evaluated or saved. x·0 is 0 for finite x and NaN otherwise, and a NaN lane stays NaN, so
    /// one pass of SIMD multiply-adds decides; chunked, so any thread count gives the same answer.
    public static func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
        let chunks = (count + finiteChunk - 1) / finiteChunk
        var bad = [Bool](repeating: false, count: chunks)
        bad.withUnsafeMutableBufferPointer { flags in
            parallelFor(chunks, grain: 1) { r in
                for c in r {
                    let start = c * finiteChunk, n = min(finiteChunk, count - start)
                    var acc = SIMD16<Float>()
                    var j = 0
                    while j + 16 <= n {
                        acc = acc.addingProduct(Reduce.load(x + start + j), 0)
                        j += 16
                    }
                    acc = acc.addingProduct(Reduce.load(x + start + j, count: n - j), 0)
                    flags[c] = acc != SIMD16<Float>()
                }
            }
        }
        return !bad.contains(true)
    }

    /// y (n) += a · x.
    public static func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, count: Int) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { y[i] = y[i].addingProduct(a, x[i]) }
        }
    }
}

/// Elements per chunk of `Elementwise.allFinite`.
private let finiteChunk = 1 << 16
