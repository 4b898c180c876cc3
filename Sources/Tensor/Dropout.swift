// Dropout: inverted dropout with a seeded RNG; the mask is kept for backward.

/// Inverted dropout: in training each element is zeroed with probability p and the survivors
/// are scaled by 1/(1 − p), so eval is the identity and needs no rescaling.
///
/// The mask holds the factor per element (0 or 1/(1 − p)), so backward is one multiply. Masks
/// are drawn in fixed chunks of `chunk` elements, each from its own generator seeded from `rng`
/// in order, so a mask depends on the seed alone, never on the thread count.
///
/// Within a chunk the draws come from eight xoshiro256** streams stepped side by side in vector
/// registers, each 64-bit draw giving two 24-bit uniforms (`chunkMask` says which element gets
/// which): one stream drawing element by element is a serial chain of about 4 ns per element,
/// which made the masks 8 % of a t5-small training step on one core.
public enum Dropout {
    /// Elements per independently seeded chunk.
    public static let chunk = 4096

    /// Streams stepped together within a chunk.
    static let lanes = 8

    /// Fills mask (n) with 0 (probability p) or 1/(1 − p); advances `rng` by one draw per chunk.
    /// `threads` overrides `Threads.count` for this call (nil: the global setting).
    public static func fillMask(
        _ mask: UnsafeMutablePointer<Float>, count: Int, p: Float, rng: inout RNG, threads: Int? = nil
    ) {
        draw(mask: mask, x: nil, out: nil, count: count, p: p, rng: &rng, threads: threads)
    }

    /// The mask, and out = x · mask in the same pass when x is given (out may alias x).
    static func draw(
        mask: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>?,
        count: Int, p: Float, rng: inout RNG, threads: Int?
    ) {
        precondition(p >= 0 && p <= 1, "Dropout: p = \(p) outside [0, 1]")
        let chunks = (count + chunk - 1) / chunk
        let seeds = (0..<chunks).map { _ in rng.next() }
        // p == 1 drops everything (PyTorch returns zeros), and 1/(1 − p) would be infinite.
        let keep: Float = p < 1 ? 1 / (1 - p) : 0
        // A uniform x·2⁻²⁴ from 24 random bits x is below p exactly when x < ⌈p·2²⁴⌉: an
        // integer compare gives the mask that `RNG.nextFloat() < p` would.
        let threshold = UInt32((Double(p) * 0x1p24).rounded(.up))
        seeds.withUnsafeBufferPointer { seeds in
            parallelFor(chunks, grain: 4, threads: threads) { r in
                for c in r {
                    let start = c * chunk
                    chunkMask(mask + start, x: x.map { $0 + start }, out: out.map { $0 + start },
                              count: min(count - start, chunk), seed: seeds[c], threshold: threshold, keep: keep)
                }
            }
        }
    }

    /// One chunk's mask (count ≤ `chunk`) from its seed: lane l (0..<8) is `RNG(seed: seed &+ l)`;
    /// its k-th draw r decides element 16k + l by its top 24 bits (r >> 40) and element
    /// 16k + 8 + l by bits 8…31, each dropped when below `threshold`. With x, also out = x · mask.
    @inline(__always)
    static func chunkMask(
        _ mask: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>?,
        count: Int, seed: UInt64, threshold: UInt32, keep: Float
    ) {
        // s0…s3 (8): word w of every lane's xoshiro256** state.
        var s0 = SIMD8<UInt64>(), s1 = SIMD8<UInt64>(), s2 = SIMD8<UInt64>(), s3 = SIMD8<UInt64>()
        for l in 0..<lanes {
            let w = RNG(seed: seed &+ UInt64(l)).words
            s0[l] = w[0]
            s1[l] = w[1]
            s2[l] = w[2]
            s3[l] = w[3]
        }
        @inline(__always) func rotl(_ v: SIMD8<UInt64>, _ k: UInt64) -> SIMD8<UInt64> { (v &<< k) | (v &>> (64 - k)) }
        let below = SIMD8<UInt32>(repeating: threshold)
        let kept = SIMD8<Float>(repeating: keep), zero = SIMD8<Float>()
        var i = 0
        while i < count {
            // xoshiro256**: rotl(s1·5, 7)·9, the products as shifts and adds (AVX2 has no
            // 64-bit multiply).
            let a = (s1 &<< 2) &+ s1
            let b = rotl(a, 7)
            let r = (b &<< 3) &+ b
            let t = s1 &<< 17
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = rotl(s3, 45)
            let high = SIMD8<UInt32>(truncatingIfNeeded: r &>> 40)
            let low = SIMD8<UInt32>(truncatingIfNeeded: r &>> 8) & 0xFF_FFFF
            let m0 = kept.replacing(with: zero, where: high .< below)  // elements i ..< i + 8
            let m1 = kept.replacing(with: zero, where: low .< below)  // elements i + 8 ..< i + 16
            if i + 2 * lanes <= count {
                let raw = UnsafeMutableRawPointer(mask + i)
                raw.storeBytes(of: m0, as: SIMD8<Float>.self)
                raw.storeBytes(of: m1, toByteOffset: 4 * lanes, as: SIMD8<Float>.self)
                if let x, let out {
                    let xr = UnsafeRawPointer(x + i)
                    let y0 = xr.loadUnaligned(as: SIMD8<Float>.self) * m0
                    let y1 = xr.loadUnaligned(fromByteOffset: 4 * lanes, as: SIMD8<Float>.self) * m1
                    let o = UnsafeMutableRawPointer(out + i)
                    o.storeBytes(of: y0, as: SIMD8<Float>.self)
                    o.storeBytes(of: y1, toByteOffset: 4 * lanes, as: SIMD8<Float>.self)
                }
            } else {
                for j in i..<count {
                    let l = j - i
                    let m = l < lanes ? m0[l] : m1[l - lanes]
                    mask[j] = m
                    if let x, let out { out[j] = x[j] * m }
                }
            }
            i += 2 * lanes
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
            draw(mask: mask, x: x, out: out, count: count, p: p, rng: &rng, threads: threads)
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
