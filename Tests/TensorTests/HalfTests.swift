// HalfTests: F16 and BF16 conversions against Swift's Float16 and exact rounding references.
import Testing
@testable import Tensor

@Suite struct HalfTests {
    /// Every one of the 65 536 F16 patterns widens to the value Swift's Float16 gives.
    @Test func f16WidenIsExactForAllPatterns() {
        var mismatches: [String] = []
        for bits in 0...UInt16.max {
            let got = Half.float(fromF16: bits)
            let want = Float(Float16(bitPattern: bits))
            let same = want.isNaN
                ? got.isNaN && got.sign == want.sign && (got.bitPattern & 0x3F_FFFF) >> 13 == UInt32(bits & 0x1FF)
                : got.bitPattern == want.bitPattern
            if !same, mismatches.count < 5 { mismatches.append("0x\(String(bits, radix: 16)): got \(got), want \(want)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
        // Spot values, written out so the rule is visible.
        #expect(Half.float(fromF16: 0x0001) == 0x1p-24)  // smallest subnormal
        #expect(Half.float(fromF16: 0x03FF) == 1023 * 0x1p-24)  // largest subnormal
        #expect(Half.float(fromF16: 0x7BFF) == 65504)
        #expect(Half.float(fromF16: 0xFC00) == -.infinity)
        #expect(Half.float(fromF16: 0x8000).bitPattern == (-0.0 as Float).bitPattern)
    }

    /// Narrowing matches Float16(x) (round to nearest even) on every F16 value, the midpoints
    /// between neighbours and one ulp either side of them, and on random Float32 bit patterns.
    @Test func f16NarrowRoundsToNearestEven() {
        var inputs: [Float] = []
        for bits in 0..<UInt16(0x7C00) {
            let lo = Float(Float16(bitPattern: bits)), hi = Float(Float16(bitPattern: bits + 1))
            let mid = (lo + hi) / 2  // exact in Float32
            for x in [lo, mid, mid.nextDown, mid.nextUp] { inputs += [x, -x] }
        }
        var rng = RNG(seed: 11)
        for _ in 0..<200_000 {
            inputs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())))
        }
        inputs += [.infinity, -.infinity, 65520, 65519.996, .greatestFiniteMagnitude, 0x1p-25, 0x1p-26, .leastNonzeroMagnitude]
        var mismatches: [String] = []
        for x in inputs where !x.isNaN {
            let got = Half.f16(from: x), want = Float16(x).bitPattern
            if got != want, mismatches.count < 5 { mismatches.append("\(x): got 0x\(String(got, radix: 16)), want 0x\(String(want, radix: 16))") }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
        #expect(Half.f16(from: 0x1p-25) == 0)  // tie between 0 and the smallest subnormal: even (0)
        #expect(Half.f16(from: 0x1.8p-24) == 2)  // tie between 1 and 2 subnormal steps: even (2)
        #expect(Half.f16(from: 65520) == 0x7C00)  // halfway past 65504: overflows to inf
    }

    @Test func f16NarrowKeepsNaN() {
        for x in [Float.nan, -Float.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_1234)] {
            let h = Half.f16(from: x)
            #expect(Half.float(fromF16: h).isNaN, "0x\(String(x.bitPattern, radix: 16)) -> 0x\(String(h, radix: 16))")
            #expect((h & 0x8000 != 0) == (x.sign == .minus))
        }
        #expect(Half.f16(from: .nan) == 0x7E00)  // the default NaN, as numpy and PyTorch write it
    }

    @Test func bf16WidenIsAShift() {
        for bits in stride(from: 0, through: Int(UInt16.max), by: 1) {
            let b = UInt16(bits)
            let got = Half.float(fromBF16: b)
            #expect(got.bitPattern == UInt32(b) << 16)
        }
        #expect(Half.float(fromBF16: 0x3F80) == 1)
        #expect(Half.float(fromBF16: 0xFF80) == -.infinity)
    }

    /// Narrowing to BF16 picks the nearer of the two neighbouring BF16 values, ties to even.
    @Test func bf16NarrowRoundsToNearestEven() {
        var rng = RNG(seed: 5)
        var mismatches: [String] = []
        for _ in 0..<200_000 {
            let x = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            guard x.isFinite else { continue }
            let down = Float(bitPattern: x.bitPattern & 0xFFFF_0000)
            let up = Float(bitPattern: (x.bitPattern & 0xFFFF_0000) + 0x1_0000)
            guard up.isFinite else { continue }
            let dDown = abs(Double(x) - Double(down)), dUp = abs(Double(x) - Double(up))
            let pick = dDown < dUp ? down : dUp < dDown ? up : ((down.bitPattern >> 16) & 1 == 0 ? down : up)
            let got = Half.bf16(from: x)
            if UInt32(got) << 16 != pick.bitPattern, mismatches.count < 5 { mismatches.append("\(x)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches)")
        #expect(Half.bf16(from: 1.0 / 3.0) == 0x3EAB)
        #expect(Half.bf16(from: .greatestFiniteMagnitude) == 0x7F80)  // rounds up to inf
        #expect(Half.float(fromBF16: Half.bf16(from: -.nan)).isNaN)
    }

    /// The buffer loops (hardware F16C through Float16) agree with the scalar rules on every F16
    /// pattern, on random Float32 patterns, and on NaN payloads and signs.
    @Test func bufferLoopsMatchScalarRules() {
        let patterns = (0...UInt16.max).map { $0 }
        var wide = [Float](repeating: 0, count: patterns.count)
        patterns.withUnsafeBytes { p in wide.withUnsafeMutableBufferPointer { Half.widenF16(p.baseAddress!, into: $0.baseAddress!, count: $0.count) } }
        // Signalling NaNs come back quiet from F16C (quiet bit 0x0040_0000 set), payload and sign kept.
        let widenBad = zip(patterns, wide).filter { h, f in
            let want = Half.float(fromF16: h).bitPattern
            return want != (f.isNaN ? f.bitPattern & ~0x0040_0000 | (want & 0x0040_0000) : f.bitPattern)
        }.prefix(5)
        #expect(widenBad.isEmpty, "\(widenBad.map { "0x\(String($0.0, radix: 16)) -> \($0.1)" })")
        var rng = RNG(seed: 3)
        var floats = (0..<100_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        floats += [.nan, -.nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC0_1234), Float(bitPattern: 0x7FBF_FFFF)]
        var narrow = [UInt16](repeating: 0, count: floats.count)
        floats.withUnsafeBufferPointer { f in narrow.withUnsafeMutableBytes { Half.narrowF16(f.baseAddress!, into: $0.baseAddress!, count: f.count) } }
        let bad = zip(floats, narrow).filter { Half.f16(from: $0) != $1 }.prefix(5)
        #expect(bad.isEmpty, "\(bad.map { "0x\(String($0.0.bitPattern, radix: 16)) -> 0x\(String($0.1, radix: 16))" })")
    }

    /// The buffer loops read and write unaligned little-endian data.
    @Test func bufferLoopsHandleUnalignedData() {
        let values: [Float] = [1, -2, 0.5, 65504, 0x1p-24, -0.0, .infinity]
        var raw = [UInt8](repeating: 0, count: 1 + 2 * values.count)
        var back = [Float](repeating: 0, count: values.count)
        for narrowBF in [false, true] {
            raw.withUnsafeMutableBytes { r in
                values.withUnsafeBufferPointer { v in
                    if narrowBF { Half.narrowBF16(v.baseAddress!, into: r.baseAddress! + 1, count: v.count) }
                    else { Half.narrowF16(v.baseAddress!, into: r.baseAddress! + 1, count: v.count) }
                }
                back.withUnsafeMutableBufferPointer { b in
                    if narrowBF { Half.widenBF16(UnsafeRawPointer(r.baseAddress! + 1), into: b.baseAddress!, count: b.count) }
                    else { Half.widenF16(UnsafeRawPointer(r.baseAddress! + 1), into: b.baseAddress!, count: b.count) }
                }
            }
            let expected = narrowBF ? values.map { Half.float(fromBF16: Half.bf16(from: $0)) } : values
            #expect(back.map(\.bitPattern) == expected.map(\.bitPattern), "bf16: \(narrowBF)")
        }
    }
}
