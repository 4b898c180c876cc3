// Dropout: inverted dropout with a seeded RNG; the mask is kept for backward.

/// Inverted dropout: in training each element is zeroed with probability p and the survivors
/// are scaled by 1/(1 − p), so eval is the identity and needs no rescaling.
///
/// The mask holds the factor per element (0 or 1/(1 − p)), so backward is one multiply. Masks
/// are drawn in fixed chunks of `chunk` elements, each from its own generator seeded from `rng`
/// in order, so a mask depends on the seed alone, never on the thread count.
public enum Dropout {
    /// Elements per independently seeded chunk.
    public static let chunk = 4096

    /// Fills mask (n) with 0 (probability p) or 1/(1 − p); advances `rng` by one draw per chunk.
    /// `threads` overrides `Threads.count` for this call (nil: the global setting).
    public static func fillMask(
        _ mask: UnsafeMutablePointer<Float>, count: Int, p: Float, rng: inout RNG, threads: Int? = nil
    ) {
        precondition(p >= 0 && p <= 1, "Dropout: p = \(p) outside [0, 1]")
        let chunks = (count + chunk - 1) / chunk
        let seeds = (0..<chunks).map { _ in rng.next() }
        // p == 1 drops everything (PyTorch returns zeros), and 1/(1 − p) would be infinite.
        let keep: Float = p < 1 ? 1 / (1 - p) : 0
        // nextFloat() is x·2⁻²⁴ for the draw's top 24 bits x, exact in Float, so nextFloat() < p
        // exactly when x < ⌈p·2²⁴⌉: the same mask from an integer compare.
        let threshold = UInt64((Double(p) * 0x1p24).rounded(.up))
        seeds.withUnsafeBufferPointer { seeds in
            parallelFor(chunks, grain: 4, threads: threads) { r in
                for c in r {
                    var g = RNG(seed: seeds[c])
                    for i in (c * chunk)..<min(count, (c + 1) * chunk) {
                        mask[i] = g.next() >> 40 < threshold ? 0 : keep
                    }
                }
            }
        }
    }

    /// Forward: out (n) = x · mask in training (drawing a fresh mask), out = x (and mask = 1) in
    /// eval or when p == 0. Out may alias x.
    ///
    /// - Parameters:
    ///   - mask: (n), written; backward reads it.
    ///   - training: false makes this the identity.
    ///   - threads: overrides `Threads.count` for this call; nil uses the global setting.
    public static func forward(
        out: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
        count: Int, p: Float, training: Bool, rng: inout RNG, threads: Int? = nil
    ) {
        if training && p > 0 {
            fillMask(mask, count: count, p: p, rng: &rng, threads: threads)
            parallelFor(count, grain: elementwiseGrain, threads: threads) { r in
                for i in r { out[i] = x[i] * mask[i] }
            }
        } else {
            parallelFor(count, grain: elementwiseGrain, threads: threads) { r in
                for i in r {
                    out[i] = x[i]
                    mask[i] = 1
                }
            }
        }
    }

    /// Backward: dx += dy · mask.
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, mask: UnsafePointer<Float>, count: Int
    ) {
        parallelFor(count, grain: elementwiseGrain) { r in
            for i in r { dx[i] += dy[i] * mask[i] }
        }
    }
}

extension Dropout {
    /// Forward on tensors: returns the output and the mask (same shape as x); `threads` overrides
    /// `Threads.count` for this call.
    public static func forward(
        _ x: Tensor, p: Float, training: Bool, rng: inout RNG, threads: Int? = nil
    ) -> (Tensor, mask: Tensor) {
        var out = Tensor.zeros(x.shape), mask = Tensor.zeros(x.shape)
        if x.count == 0 { return (out, mask) }
        x.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { po in
                mask.withUnsafeMutableBufferPointer { pm in
                    forward(out: po.baseAddress!, mask: pm.baseAddress!, x: px.baseAddress!, count: x.count, p: p, training: training, rng: &rng, threads: threads)
                }
            }
        }
        return (out, mask)
    }
}
