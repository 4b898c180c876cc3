// GradClip: the global gradient L2 norm and clipping, as torch.nn.utils.clip_grad_norm_.

/// Global gradient-norm clipping over one flat gradient buffer.
public enum GradClip {
    /// Elements per partial sum. Fixed, not per thread, so the norm is the same for any thread count.
    static let chunk = 1 << 16

    /// The L2 norm of all gradients: SIMD16 Float sums within fixed chunks, Double across them.
    /// `threads` overrides `Threads.count` for this call (nil: the global setting).
    public static func norm(_ grads: UnsafeBufferPointer<Float>, threads: Int? = nil) -> Float {
        let n = grads.count
        guard n > 0, let base = grads.baseAddress else { return 0 }
        let chunks = (n + chunk - 1) / chunk
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { partial in
            parallelFor(chunks, threads: threads) { range in
                for c in range {
                    let lo = c * chunk, hi = min(n, lo + chunk)
                    partial[c] = Double(Reduce.dot(base + lo, base + lo, hi - lo))
                }
            }
        }
        return Float(partial.reduce(0, +).squareRoot())
    }

    /// Scales the gradients so their global L2 norm is at most `maxNorm`, as
    /// `torch.nn.utils.clip_grad_norm_(params, maxNorm)`: the coefficient is
    /// `maxNorm / (norm + 1e-6)` clamped at 1, so gradients under the limit are left untouched.
    /// A NaN or infinite norm makes the gradients NaN, as in PyTorch.
    ///
    /// - Returns: the norm before clipping (what FiD logs).
    @discardableResult
    public static func clip(_ grads: UnsafeMutableBufferPointer<Float>, maxNorm: Double) -> Float {
        let total = norm(UnsafeBufferPointer(grads))
        let coef = Float(maxNorm) / (total + 1e-6)
        // `!(coef >= 1)` and not `coef < 1`: a NaN coefficient must propagate as torch's does.
        if !(coef >= 1), let base = grads.baseAddress {
            parallelFor(grads.count, grain: 16_384) { range in
                for i in range { base[i] *= coef }
            }
        }
        return total
    }

    /// `clip` over an array.
    @discardableResult
    public static func clip(_ grads: inout [Float], maxNorm: Double) -> Float {
        grads.withUnsafeMutableBufferPointer { clip($0, maxNorm: maxNorm) }
    }

    /// `norm` over an array.
    public static func norm(_ grads: [Float], threads: Int? = nil) -> Float {
        grads.withUnsafeBufferPointer { norm($0, threads: threads) }
    }
}
