// VectorMath: the one exp on SIMD16<Float>, so softmax, GELU and the losses vectorise instead of calling expf.

/// Elementwise math on SIMD16 lanes.
@usableFromInline
enum VectorMath {
    /// Below this e^x is under Float's normal range and the result is 0 (no subnormals: they
    /// would cost microcode assists on masked softmax entries and no caller needs them).
    @usableFromInline static let expLow: Float = -87.33654
    /// Above this the result saturates at e^88.376 ≈ 2.4e38, finite, so GELU's `e·1/(1 + e)`
    /// never becomes ∞·0.
    @usableFromInline static let expHigh: Float = 88.376

    /// e^x per lane, after Cephes' `expf`: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in two parts),
    /// e^r by a degree-6 polynomial, 2^n built in the exponent bits. Relative error < 3e-7
    /// (≈ 2.5 ulp) on [−87.3, 88.37]. Edges: −∞ and anything below `expLow` give exactly 0
    /// (masked logits), anything above `expHigh` (and +∞) gives e^88.376, NaN gives NaN.
    /// Branch-free, so every lane costs the same.
    @inlinable @inline(__always)
    static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let lo = SIMD16<Float>(repeating: expLow), hi = SIMD16<Float>(repeating: expHigh)
        // Compare-and-blend clamps, not pointwiseMin/Max: a NaN lane stays NaN through them.
        var xc = x.replacing(with: hi, where: x .> hi)
        xc = xc.replacing(with: lo, where: xc .< lo)
        // n = round(x·log2 e) with the 1.5·2²³ trick: the sum's low mantissa bits hold n.
        // Fused multiply-adds throughout: fewer µops than mul + add, and one rounding each.
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let t = magic.addingProduct(xc, SIMD16(repeating: 1.442_695_04))
        let n = t - magic
        // ln2 = 0.693359375 − 2.1219444e-4: the high part is exact in 9 bits, so n·high is exact.
        let r = xc.addingProduct(n, SIMD16(repeating: -0.693_359_375)).addingProduct(n, SIMD16(repeating: 2.121_944_4e-4))
        var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
        p = SIMD16(repeating: 1.398_199_95e-3).addingProduct(p, r)
        p = SIMD16(repeating: 8.333_451_9e-3).addingProduct(p, r)
        p = SIMD16(repeating: 4.166_579_59e-2).addingProduct(p, r)
        p = SIMD16(repeating: 1.666_666_55e-1).addingProduct(p, r)
        p = SIMD16(repeating: 5.000_000_12e-1).addingProduct(p, r)
        let er = (r + 1).addingProduct(p, r * r)
        // 2^n: (n + 127) << 23 as the float's bits; n sits in t's low bits as t_bits − magic_bits.
        // n ∈ [−126, 127] after the clamps, so one scale is a normal Float.
        let nBits = (unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000) &<< 23
        let scale = unsafeBitCast(nBits &+ 0x3F80_0000, to: SIMD16<Float>.self)
        return (er * scale).replacing(with: 0, where: x .< lo)
    }
}
