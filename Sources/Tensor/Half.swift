// Half: IEEE binary16 (F16) and bfloat16 (BF16) bit patterns to and from Float32.

/// Conversions between Float32 and the 16-bit float formats safetensors stores.
///
/// Done on bit patterns (`UInt16`) rather than through Swift's `Float16`, so the rules are
/// written here once: F16 → F32 is exact for every input (normals, subnormals, ±0, ±inf, NaN
/// with sign and payload kept); F32 → F16 rounds to nearest, ties to even, overflowing to ±inf,
/// and keeps NaN a NaN (quiet, top payload bits kept), which is what numpy and PyTorch do.
/// The buffer loops use the F16C instructions instead; they agree except that a signalling F16
/// NaN widens to a quiet one (HalfTests checks this on all 65 536 patterns).
/// BF16 is the top half of a Float32: widening is a shift, narrowing rounds to nearest even.
public enum Half {
    /// The Float32 value of an F16 bit pattern; exact.
    @inlinable
    public static func float(fromF16 h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        let man = UInt32(h & 0x03FF)
        if exp == 0x1F {
            // inf (man == 0) or NaN: all-ones exponent, payload moved to the top of the mantissa.
            return Float(bitPattern: sign | 0x7F80_0000 | (man << 13))
        }
        if exp == 0 {
            // ±0 or subnormal: man · 2^-24 is exact in Float32 (24-bit significand).
            let magnitude = Float(man) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        // Normal: rebias the exponent from 15 to 127.
        return Float(bitPattern: sign | ((exp + 112) << 23) | (man << 13))
    }

    /// The F16 bit pattern nearest to `x` (ties to even); overflow gives ±inf, NaN stays NaN.
    @inlinable
    public static func f16(from x: Float) -> UInt16 {
        let bits = x.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exp = Int((bits >> 23) & 0xFF)
        let man = bits & 0x7F_FFFF
        if exp == 0xFF {
            if man == 0 { return sign | 0x7C00 }
            // NaN: keep the top 10 payload bits and set the quiet bit, so it never becomes inf.
            return sign | 0x7E00 | UInt16(man >> 13)
        }
        // Unbiased exponent e; F16 normals cover e in -14...15.
        let e = exp - 127
        if e > 15 { return sign | 0x7C00 }
        if e >= -14 {
            // Normal: drop 13 mantissa bits with round-to-nearest-even. A carry out of the
            // mantissa correctly bumps the exponent (up to inf at the top).
            let half = UInt32((e + 15) << 10) | (man >> 13)
            let rest = man & 0x1FFF
            let roundUp = rest > 0x1000 || (rest == 0x1000 && (half & 1) == 1)
            return sign | UInt16(half + (roundUp ? 1 : 0))
        }
        // Subnormal or zero in F16: value = m · 2^-24, m = significand · 2^(e + 24 - 23).
        if e < -25 { return sign }  // below half the smallest subnormal: rounds to ±0
        let significand = man | 0x80_0000  // implicit leading 1 (Float32 subnormals are < 2^-126)
        let shift = UInt32(-e - 1)  // 14...24: bits dropped to land on the 2^-24 grid
        let m = significand >> shift
        let rest = significand & ((1 << shift) - 1)
        let halfway = UInt32(1) << (shift - 1)
        let roundUp = rest > halfway || (rest == halfway && (m & 1) == 1)
        // m + 1 may reach 0x400, which is exactly the smallest normal's bit pattern.
        return sign | UInt16(m + (roundUp ? 1 : 0))
    }

    /// The Float32 value of a BF16 bit pattern; exact (BF16 is Float32's top 16 bits).
    @inlinable
    public static func float(fromBF16 b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// The BF16 bit pattern nearest to `x` (ties to even); NaN stays a quiet NaN.
    @inlinable
    public static func bf16(from x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x0040 }
        // Adding 0x7FFF plus the kept lowest bit rounds to nearest even; overflow reaches inf.
        let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(rounded >> 16)
    }

    /// Widens `count` little-endian F16 values at `src` (any alignment) into `dst`.
    ///
    /// Uses Swift's `Float16`, which the haswell target lowers to F16C `vcvtph2ps` on 8 lanes;
    /// HalfTests checks it against `float(fromF16:)` on every pattern.
    @inlinable
    public static func widenF16(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            #if arch(x86_64) && os(macOS)
                dst[i] = float(fromF16: h)  // Float16 is unavailable on Intel Macs
            #else
                dst[i] = Float(Float16(bitPattern: h))
            #endif
        }
    }

    /// Widens `count` little-endian BF16 values at `src` (any alignment) into `dst`.
    @inlinable
    public static func widenBF16(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            let b = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            dst[i] = float(fromBF16: b)
        }
    }

    /// Narrows `count` floats to little-endian F16 at `dst` (any alignment).
    ///
    /// Uses Swift's `Float16` (F16C `vcvtps2ph`, round to nearest even; about 10× faster than the
    /// branchy `f16(from:)`); HalfTests checks both agree, NaN payloads included.
    @inlinable
    public static func narrowF16(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count: Int) {
        for i in 0..<count {
            #if arch(x86_64) && os(macOS)
                let h = f16(from: src[i])
            #else
                let h = Float16(src[i]).bitPattern
            #endif
            dst.storeBytes(of: h.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
        }
    }

    /// Narrows `count` floats to little-endian BF16 at `dst` (any alignment).
    @inlinable
    public static func narrowBF16(_ src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count: Int) {
        for i in 0..<count {
            dst.storeBytes(of: bf16(from: src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
        }
    }
}
