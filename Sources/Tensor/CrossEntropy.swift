// CrossEntropy: token cross-entropy over logits with an ignore index, forward and backward.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Mean token cross-entropy, as `torch.nn.functional.cross_entropy(logits, targets,
/// ignore_index: -100)`: the mean over the rows whose target is not ignored.
///
/// When every target is ignored the loss is 0 and the gradient is 0 (PyTorch gives NaN there);
/// a batch of padding must not poison a training run. Rows are reduced through the log-sum-exp
/// with the row maximum subtracted, so logits of any magnitude are safe.
public enum CrossEntropy {
    /// Targets equal to this are skipped, as in PyTorch and Hugging Face labels.
    public static let ignoreIndex: Int32 = -100

    /// What backward needs from forward.
    public struct Cache: Sendable {
        /// The maximum of each row; unused for ignored rows.  // (N)
        public var rowMax: [Float]
        /// `log Σ_j exp(logits[i, j] − rowMax[i])` per row, kept apart from the maximum so that
        /// large logits lose no precision in `logits − max − logSum`.  // (N)
        public var logSum: [Float]
        /// Rows whose target is not ignored.
        public var count: Int
    }

    /// The mean loss over non-ignored rows.
    ///
    /// - Parameters:
    ///   - logits: unnormalised scores.  // (N, V)
    ///   - targets: the class of each row in `0..<V`, or `ignoreIndex`.  // (N)
    /// - Returns: the loss and the cache for `backward`.
    public static func forward(logits: Tensor, targets: [Int32]) -> (loss: Float, cache: Cache) {
        let (N, V) = checkShapes(logits: logits, targets: targets)
        var maxes = [Float](repeating: 0, count: N)
        var logSums = [Float](repeating: 0, count: N)
        var rowLoss = [Double](repeating: 0, count: N)
        logits.withUnsafeBufferPointer { x in
            maxes.withUnsafeMutableBufferPointer { maxes in
                logSums.withUnsafeMutableBufferPointer { logSums in
                    rowLoss.withUnsafeMutableBufferPointer { rowLoss in
                        parallelFor(N, grain: max(1, 16_384 / max(V, 1))) { rows in
                            for i in rows {
                                let t = targets[i]
                                if t == ignoreIndex { continue }
                                let row = x.baseAddress! + i * V
                                let (m, ls) = maxAndLogSum(row, V)
                                maxes[i] = m
                                logSums[i] = ls
                                rowLoss[i] = Double(m - row[Int(t)]) + Double(ls)
                            }
                        }
                    }
                }
            }
        }
        let count = targets.reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) }
        // Sum in row order after the parallel part, so the value never depends on the thread count.
        let total = rowLoss.reduce(0, +)
        let loss = count == 0 ? 0 : Float(total / Double(count))
        return (loss, Cache(rowMax: maxes, logSum: logSums, count: count))
    }

    /// Accumulates `dLoss · ∂loss/∂logits` into `dLogits`: `(softmax(row) − onehot(t)) / count`
    /// on non-ignored rows, nothing on ignored ones.
    ///
    /// - Parameters:
    ///   - dLoss: the gradient of the final objective with respect to the loss (1 for the loss itself).
    ///   - logits: the forward input.  // (N, V)
    ///   - targets: the forward targets.  // (N)
    ///   - dLogits: gradient accumulator, same shape as `logits`.  // (N, V)
    public static func backward(
        dLoss: Float, logits: Tensor, targets: [Int32], cache: Cache, dLogits: inout Tensor
    ) {
        let (N, V) = checkShapes(logits: logits, targets: targets)
        precondition(
            dLogits.shape == logits.shape, "CrossEntropy.backward: dLogits \(dLogits.shape) != logits \(logits.shape)")
        precondition(
            cache.rowMax.count == N, "CrossEntropy.backward: cache for \(cache.rowMax.count) rows, logits have \(N)")
        if cache.count == 0 { return }
        let scale = dLoss / Float(cache.count)
        logits.withUnsafeBufferPointer { x in
            dLogits.withUnsafeMutableBufferPointer { dx in
                parallelFor(N, grain: max(1, 16_384 / max(V, 1))) { rows in
                    for i in rows {
                        let t = targets[i]
                        if t == ignoreIndex { continue }
                        let row = x.baseAddress! + i * V
                        let drow = dx.baseAddress! + i * V
                        let m = cache.rowMax[i], ls = cache.logSum[i]
                        let shift = SIMD16<Float>(repeating: m), vls = SIMD16<Float>(repeating: ls)
                        var j = 0
                        while j < V {
                            let w = Swift.min(16, V - j)
                            let e = VectorMath.exp((Reduce.load(row + j, count: w) - shift) - vls)
                            Reduce.store(Reduce.load(drow + j, count: w) + scale * e, drow + j, count: w)
                            j += 16
                        }
                        drow[Int(t)] -= scale
                    }
                }
            }
        }
    }

    /// The same loss and gradient by the textbook formula in Double, for tests.
    public static func naive(logits: Tensor, targets: [Int32]) -> (loss: Double, dLogits: [Double]) {
        let (N, V) = checkShapes(logits: logits, targets: targets)
        var grad = [Double](repeating: 0, count: N * V)
        let count = targets.filter { $0 != ignoreIndex }.count
        var total = 0.0
        for i in 0..<N where targets[i] != ignoreIndex {
            let row = (0..<V).map { Double(logits.data[i * V + $0]) }
            let m = row.max()!
            let z = row.reduce(0) { $0 + exp($1 - m) }
            total += -(row[Int(targets[i])] - m - log(z))
            for j in 0..<V {
                grad[i * V + j] = (exp(row[j] - m) / z - (j == Int(targets[i]) ? 1 : 0)) / Double(count)
            }
        }
        return (count == 0 ? 0 : total / Double(count), grad)
    }

    /// The row maximum m and `log Σ exp(row − m)`; their sum is the log-sum-exp, but callers
    /// subtract them one at a time, which stays exact for logits far from zero. A NaN logit makes
    /// the exp sum NaN, so a diverged model gives a NaN loss instead of a plausible one.
    @inline(__always)
    static func maxAndLogSum(_ row: UnsafePointer<Float>, _ V: Int) -> (max: Float, logSum: Float) {
        let m = Reduce.max(row, V)
        return (m, log(Reduce.sumExp(row, V, shift: m)))
    }

    private static func checkShapes(logits: Tensor, targets: [Int32]) -> (Int, Int) {
        precondition(logits.rank == 2, "CrossEntropy: logits must be (N, V), got \(logits.shape)")
        let N = logits.shape[0], V = logits.shape[1]
        precondition(targets.count == N, "CrossEntropy: \(targets.count) targets for \(N) rows of logits \(logits.shape)")
        if let bad = targets.first(where: { $0 != ignoreIndex && ($0 < 0 || Int($0) >= V) }) {
            preconditionFailure("CrossEntropy: target \(bad) outside 0..<\(V) and not \(ignoreIndex)")
        }
        return (N, V)
    }
}
