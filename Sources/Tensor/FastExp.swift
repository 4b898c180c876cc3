// FastExp: exp over SIMD16<Float> lanes (Cephes expf polynomial), for softmax-style row reductions.

/// A vectorised `exp` for Float, within 3 ulp over the normal range.
///
/// Libm's `expf` is a call per element that the compiler cannot vectorise; cross-entropy over a
/// 32k vocabulary spends most of its time there. This is Cephes' `expf`: round `x·log₂e` to n,
/// reduce `r = x − n·ln2` in two parts, a degree-6 polynomial for `eʳ`, and scale by `2ⁿ` in two
/// halves through the exponent bits (so neither half overflows or goes subnormal). Inputs are
/// clamped to [−120, 100]: far-negative inputs (masked logits) give 0, results past
/// Float's range +∞; the result for a NaN input is unspecified (it goes through min/max).
/// Branch-free, so every lane costs the same.
public enum FastExp {
    @inlinable
    public static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let v = pointwiseMin(pointwiseMax(x, SIMD16(repeating: -120)), SIMD16(repeating: 100))
        // n = round(v·log₂e) by the 1.5·2²³ trick: the sum's low mantissa bits hold n.
        let magic: Float = 12_582_912
        let shifted = v * 1.442_695_04 + magic
        let fx = shifted - magic
        var r = v - fx * 0.693_359_375  // ln2, high part (exact in 9 bits)
        r = r + fx * 2.121_944_4e-4  // ln2, low part: ln2 = 0.693359375 − 2.1219444e-4
        let z = r * r
        var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        let y = p * z + r + 1
        // 2ⁿ = 2^(n>>1) · 2^(n − n>>1); n ∈ [−173, 145], so each half is a normal Float.
        let n = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
        let n1 = n &>> 1
        let s1 = unsafeBitCast((n1 &+ 127) &<< 23, to: SIMD16<Float>.self)
        let s2 = unsafeBitCast((n &- n1 &+ 127) &<< 23, to: SIMD16<Float>.self)
        return y * s1 * s2
    }
}
