// VectorMath: exp on SIMD16<Float>, so softmax rows vectorise instead of calling expf per element.

/// Elementwise math on SIMD16 lanes.
@usableFromInline
enum VectorMath {
    /// e^x per lane, after Cephes' `expf`: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
    /// polynomial, 2^n built in the exponent bits. Relative error ≲ 2 ulp on [−87.3, 88.37]
    /// (above, it saturates at e^88.376 so 2^n stays finite); below −87.3 (and at −∞) it is 0,
    /// as e^x is then under Float's normal range. Softmax only needs x ≤ 0.
    @inlinable @inline(__always)
    static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let lo = SIMD16<Float>(repeating: -87.33654), hi = SIMD16<Float>(repeating: 88.376)
        var xc = x.replacing(with: hi, where: x .> hi)
        xc = xc.replacing(with: lo, where: xc .< lo)
        // n = round(x·log2 e) with the 1.5·2²³ trick: the sum's low mantissa bits hold n.
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let t = xc * 1.442_695_04 + magic
        let n = t - magic
        let r = xc - n * 0.693_359_375 - n * -2.121_944_4e-4
        var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        let er = p * (r * r) + r + 1
        // 2^n: (n + 127) << 23 as the float's bits; n sits in t's low bits as t_bits − magic_bits.
        let nBits = (unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000) &<< 23
        let scale = unsafeBitCast(nBits &+ 0x3F80_0000, to: SIMD16<Float>.self)
        return (er * scale).replacing(with: 0, where: x .< lo)
    }
}
