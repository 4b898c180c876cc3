// RelativePosition: T5's relative-position buckets, the bias gather and its scatter-add backward.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// T5's learned relative-position bias: a (numBuckets, H) table indexed by the bucket of
/// `key − query`, added to every head's attention logits.
///
/// Buckets as `T5Attention._relative_position_bucket`: bidirectional (encoder) splits the
/// buckets into two halves by the sign of key − query; causal (decoder) folds later keys into
/// bucket 0. Within a half, distances under half of it are exact, larger ones logarithmic up to
/// `maxDistance`, evaluated in Float32 as torch does.
public enum RelativePosition {
    /// The bucket of `relative = key − query`.
    public static func bucket(relative: Int, bidirectional: Bool, numBuckets: Int, maxDistance: Int) -> Int {
        var nb = numBuckets
        var ret = 0
        var n: Int
        if bidirectional {
            nb /= 2
            if relative > 0 { ret += nb }
            n = abs(relative)
        } else {
            n = max(-relative, 0)
        }
        let maxExact = nb / 2
        if n < maxExact { return ret + n }
        // torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb − max_exact), in float32.
        let ratio = Float(n) / Float(maxExact)
        let large = Float(logf(ratio)) / Float(log(Double(maxDistance) / Double(maxExact))) * Float(nb - maxExact)
        return ret + min(maxExact + Int(large), nb - 1)
    }

    /// Buckets (Tq, Tk) for queries at positions `queryStart ..< queryStart + Tq` and keys at `0 ..< Tk`.
    public static func buckets(
        queryLength: Int, keyLength: Int, queryStart: Int = 0, bidirectional: Bool, numBuckets: Int, maxDistance: Int
    ) -> [Int32] {
        var out = [Int32](repeating: 0, count: queryLength * keyLength)
        for i in 0..<queryLength {
            for j in 0..<keyLength {
                out[i * keyLength + j] = Int32(bucket(
                    relative: j - (queryStart + i), bidirectional: bidirectional, numBuckets: numBuckets,
                    maxDistance: maxDistance))
            }
        }
        return out
    }

    /// Gather: bias[h, n] = table[buckets[n], h] for the n = Tq·Tk positions.
    ///
    /// - Parameters:
    ///   - bias: (H, Tq·Tk), overwritten.
    ///   - table: (numBuckets, H), the `relative_attention_bias.weight`.
    ///   - buckets: (Tq·Tk), each in 0..<numBuckets.
    public static func forward(
        bias: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>, buckets: UnsafePointer<Int32>,
        count: Int, heads: Int
    ) {
        let H = heads, N = count
        parallelFor(H) { hs in
            for h in hs {
                let row = bias + h * N
                for n in 0..<N { row[n] = table[Int(buckets[n]) * H + h] }
            }
        }
    }

    /// Scatter-add backward: dTable[buckets[n], h] += dBias[h, n].
    ///
    /// Each head's column is summed by one thread in position order, so the result is the same
    /// for any thread count.
    ///
    /// - Parameters:
    ///   - dTable: (numBuckets, H), accumulated.
    ///   - dBias: (H, Tq·Tk).
    public static func backward(
        dTable: UnsafeMutablePointer<Float>, dBias: UnsafePointer<Float>, buckets: UnsafePointer<Int32>,
        count: Int, heads: Int, numBuckets: Int
    ) {
        let H = heads, N = count, NB = numBuckets
        parallelFor(H) { hs in
            // Partial sums per bucket, then one add per table element: fewer strided writes.
            var acc = [Float](repeating: 0, count: NB)
            for h in hs {
                for b in 0..<NB { acc[b] = 0 }
                let row = dBias + h * N
                for n in 0..<N { acc[Int(buckets[n])] += row[n] }
                for b in 0..<NB { dTable[b * H + h] += acc[b] }
            }
        }
    }
}
