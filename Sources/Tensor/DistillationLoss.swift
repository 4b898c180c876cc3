// DistillationLoss: FiD-KD's KL divergence from the reader's passage scores to the retriever's.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The retriever distillation loss of FiD-KD (fid-spec §5.4):
/// `gold = softmax(readerScores)`, `logq = log_softmax(retrieverScores)` over each question's N
/// passages, and `KLDivLoss(logq, gold)` with PyTorch's default `'mean'` reduction, which divides
/// by all B·N elements (not by B):
/// `loss = Σ_{b,i} gold·(log gold − logq) / (B·N)`.
///
/// The reader scores are constants; only the retriever scores get a gradient.
public enum DistillationLoss {
    /// What backward needs from forward.
    public struct Cache: Sendable {
        /// softmax of the reader scores.  // (B, N)
        public var gold: Tensor
        /// softmax of the retriever scores.  // (B, N)
        public var q: Tensor
    }

    /// - Parameters:
    ///   - retrieverScores: the retriever's similarity per passage.  // (B, N)
    ///   - readerScores: the reader's cross-attention score per passage.  // (B, N)
    /// - Returns: the loss and the cache for `backward`.
    public static func forward(retrieverScores: Tensor, readerScores: Tensor) -> (loss: Float, cache: Cache) {
        precondition(retrieverScores.rank == 2, "DistillationLoss: scores must be (B, N), got \(retrieverScores.shape)")
        precondition(
            retrieverScores.shape == readerScores.shape,
            "DistillationLoss: retriever scores \(retrieverScores.shape) != reader scores \(readerScores.shape)")
        let B = retrieverScores.shape[0], N = retrieverScores.shape[1]
        var gold = Tensor.zeros([B, N])
        var q = Tensor.zeros([B, N])
        var rowLoss = [Double](repeating: 0, count: B)
        retrieverScores.withUnsafeBufferPointer { s in
            readerScores.withUnsafeBufferPointer { r in
                gold.withUnsafeMutableBufferPointer { g in
                    q.withUnsafeMutableBufferPointer { qq in
                        rowLoss.withUnsafeMutableBufferPointer { rowLoss in
                            parallelFor(B, grain: max(1, 4096 / max(N, 1))) { rows in
                                for b in rows {
                                    let sr = s.baseAddress! + b * N, rr = r.baseAddress! + b * N
                                    let (mS, lsS) = CrossEntropy.maxAndLogSum(sr, N)
                                    let (mR, lsR) = CrossEntropy.maxAndLogSum(rr, N)
                                    var acc = 0.0
                                    for i in 0..<N {
                                        let logGold = (rr[i] - mR) - lsR
                                        let logq = (sr[i] - mS) - lsS
                                        let gi = exp(logGold)
                                        g[b * N + i] = gi
                                        qq[b * N + i] = exp(logq)
                                        // xlogy: a gold probability that underflowed to 0 adds 0, as in PyTorch;
                                        // a NaN one (an overflowed reader score) makes the loss NaN, as there.
                                        if !(gi <= 0) { acc += Double(gi) * (Double(logGold) - Double(logq)) }
                                    }
                                    rowLoss[b] = acc
                                }
                            }
                        }
                    }
                }
            }
        }
        let count = B * N
        let loss = count == 0 ? 0 : Float(rowLoss.reduce(0, +) / Double(count))
        return (loss, Cache(gold: gold, q: q))
    }

    /// Accumulates `dLoss · ∂loss/∂retrieverScores = dLoss · (q·Σgold − gold) / (B·N)`.
    ///
    /// - Parameters:
    ///   - dRetrieverScores: gradient accumulator.  // (B, N)
    public static func backward(dLoss: Float, cache: Cache, dRetrieverScores: inout Tensor) {
        precondition(
            dRetrieverScores.shape == cache.q.shape,
            "DistillationLoss.backward: dRetrieverScores \(dRetrieverScores.shape) != scores \(cache.q.shape)")
        let B = cache.q.shape[0], N = cache.q.shape[1]
        if B * N == 0 { return }
        let scale = dLoss / Float(B * N)
        cache.gold.withUnsafeBufferPointer { g in
            cache.q.withUnsafeBufferPointer { q in
                dRetrieverScores.withUnsafeMutableBufferPointer { ds in
                    for b in 0..<B {
                        // Σgold is 1 up to rounding; keeping it matches autograd's log_softmax backward.
                        var sumGold: Float = 0
                        for i in 0..<N { sumGold += g[b * N + i] }
                        for i in 0..<N {
                            ds[b * N + i] += scale * (q[b * N + i] * sumGold - g[b * N + i])
                        }
                    }
                }
            }
        }
    }

    /// The loss and gradient by the textbook formula in Double, for tests.
    public static func naive(retrieverScores: Tensor, readerScores: Tensor) -> (loss: Double, dRetrieverScores: [Double]) {
        let B = retrieverScores.shape[0], N = retrieverScores.shape[1]
        var loss = 0.0
        var grad = [Double](repeating: 0, count: B * N)
        for b in 0..<B {
            let s = (0..<N).map { Double(retrieverScores.data[b * N + $0]) }
            let r = (0..<N).map { Double(readerScores.data[b * N + $0]) }
            let zs = s.reduce(0) { $0 + exp($1) }
            let zr = r.reduce(0) { $0 + exp($1) }
            for i in 0..<N {
                let p = exp(r[i]) / zr
                let q = exp(s[i]) / zs
                loss += p * (log(p) - log(q))
                grad[b * N + i] = (q - p) / Double(B * N)
            }
        }
        return (loss / Double(B * N), grad)
    }
}
