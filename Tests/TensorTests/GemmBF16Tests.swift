// GemmBF16Tests: the bfloat16 rounding against its rules, and every bfloat16 product kernel this CPU
// runs against an exact sum of the rounded operands' products, within the float32 bound of its
// operands; row splits give the same bits. (Inference only: no backward, so no gradient check.)
import Foundation
import Testing
@testable import Tensor

@Suite struct GemmBF16Tests {
    /// The kernels to check here: portable everywhere, AVX-512 BF16 on Zen 4.
    static var kernels: [Gemm.BF16Kernel] {
        let k = Gemm.BF16Kernel.allCases.filter(\.isSupported)
        if !k.contains(.avx512) { print("⚠︎ GemmBF16Tests: this CPU has no AVX-512 BF16; only the portable kernel is checked here") }
        return k
    }

    /// The twin of the rounding: nearest even, subnormals to a signed zero, NaN quieted.
    static func rounded(_ x: Float) -> UInt16 {
        if x.isNaN { return UInt16(x.bitPattern >> 16) | 0x40 }
        if x.isSubnormal || x == 0 { return x.sign == .minus ? 0x8000 : 0 }
        return Half.bf16(from: x)
    }

    static func widen(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    @Test func roundingFollowsItsRules() {
        var rng = RNG(seed: 11)
        var xs: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                           .leastNormalMagnitude, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, Float(bitPattern: 0x007f_ffff),
                           Float(bitPattern: 0x3f80_8000), Float(bitPattern: 0x3f81_8000), Float(bitPattern: 0x3f80_8001),
                           Float(bitPattern: 0x7f7f_ffff), Float(bitPattern: 0x7fa0_0001)]
        for _ in 0..<20000 { xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        for x in xs {
            #expect(Gemm.bfloat16Bits(x) == Self.rounded(x), "x = \(x) (0x\(String(x.bitPattern, radix: 16)))")
        }
        // Ties go to even; past the largest finite value, infinity.
        #expect(Gemm.bfloat16Bits(Float(bitPattern: 0x3f80_8000)) == 0x3f80)
        #expect(Gemm.bfloat16Bits(Float(bitPattern: 0x3f81_8000)) == 0x3f82)
        #expect(Gemm.bfloat16Bits(.greatestFiniteMagnitude) == 0x7f80)
    }

    /// (m, n, k): tails of the 8-row × 48-column tile, of a panel's 16 columns, an odd k, and
    /// rows past one packed block (k 383 packs 64 rows a block).
    @Test(arguments: [(1, 1, 1), (7, 15, 2), (8, 16, 3), (9, 17, 64), (13, 50, 33), (130, 100, 383), (17, 48, 1536)])
    func matchesExactSumWithinOperandBound(shape: (m: Int, n: Int, k: Int)) {
        let (m, n, k) = shape
        var rng = RNG(seed: UInt64(m * 7919 + n * 31 + k))
        let ldx = k + 3, ldw = k + 1, ldc = n + 2
        let x = rng.normalArray(m * ldx), w = rng.normalArray(n * ldw, std: 0.1), seed = rng.normalArray(m * ldc)
        for kernel in Self.kernels {
            let packed = Gemm.BF16Weights(w, outFeatures: n, inFeatures: k, ldw: ldw)
            for accumulate in [false, true] {
                var c = seed
                Gemm.gemmBF16(kernel: kernel, m: m, x: x, ldx: ldx, weights: packed, c: &c, ldc: ldc, accumulate: accumulate)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        // The rounded operands' products are exact in float32; only the k + 1 float32
                        // additions round: |error| <= γ(k+1) · (|seed| + Σ|x·w|), γ(t) = t·u/(1 − t·u).
                        var exact = accumulate ? Double(seed[i * ldc + j]) : 0, magnitude = abs(exact)
                        for t in 0..<k {
                            let p = Double(Self.widen(Self.rounded(x[i * ldx + t]))) * Double(Self.widen(Self.rounded(w[j * ldw + t])))
                            exact += p
                            magnitude += abs(p)
                        }
                        let u = 0x1p-24, terms = Double(k + 1)
                        let bound = terms * u / (1 - terms * u) * magnitude
                        let err = abs(Double(c[i * ldc + j]) - exact)
                        worst = max(worst, bound > 0 ? err / bound : err)
                        #expect(err <= bound, "\(kernel) accumulate \(accumulate) (\(i), \(j)): \(c[i * ldc + j]) vs \(exact), bound \(bound)")
                    }
                    // Padding columns of c are never written.
                    for j in n..<ldc { #expect(c[i * ldc + j] == seed[i * ldc + j]) }
                }
                #expect(worst <= 1)
            }
        }
    }

    /// A row's results are the same bits however rows are split over threads or calls.
    @Test func rowSplitsGiveTheSameBits() {
        let m = 203, n = 70, k = 129
        var rng = RNG(seed: 5)
        let x = rng.normalArray(m * k), w = rng.normalArray(n * k)
        for kernel in Self.kernels {
            let packed = Gemm.BF16Weights(w, outFeatures: n, inFeatures: k)
            var one = [Float](repeating: 0, count: m * n), two = one, rows = one
            Gemm.gemmBF16(kernel: kernel, m: m, x: x, ldx: k, weights: packed, c: &one, ldc: n, accumulate: false, threads: 1)
            Gemm.gemmBF16(kernel: kernel, m: m, x: x, ldx: k, weights: packed, c: &two, ldc: n, accumulate: false, threads: 2)
            x.withUnsafeBufferPointer { xp in
                rows.withUnsafeMutableBufferPointer { cp in
                    for i in 0..<m {
                        Gemm.gemmBF16(kernel: kernel, m: 1, x: xp.baseAddress! + i * k, ldx: k, weights: packed, c: cp.baseAddress! + i * n,
                                      ldc: n, accumulate: false, threads: 1)
                    }
                }
            }
            #expect(one == two, "\(kernel): 1 vs 2 threads")
            #expect(one == rows, "\(kernel): one call vs a call per row")
        }
    }

    /// Linear at half precision: bias and residual seeded as in float32; the result equals the
    /// float32 Linear over the rounded operands within the operand bound.
    @Test func linearSeedsBiasAndResidual() {
        let N = 37, I = 45, O = 29
        var rng = RNG(seed: 9)
        let x = rng.normalArray(N * I), w = rng.normalArray(O * I), b = rng.normalArray(O), r = rng.normalArray(N * O)
        let xr = x.map { Self.widen(Self.rounded($0)) }, wr = w.map { Self.widen(Self.rounded($0)) }
        var want = [Float](repeating: 0, count: N * O)
        Linear.forward(y: &want, x: xr, weight: wr, bias: b, residual: r, rows: N, inFeatures: I, outFeatures: O)
        for kernel in Self.kernels {
            var y = [Float](repeating: .nan, count: N * O)
            Linear.forward(y: &y, x: x, weights: Gemm.BF16Weights(w, outFeatures: O, inFeatures: I), kernel: kernel, bias: b, residual: r, rows: N)
            for i in 0..<N {
                for j in 0..<O {
                    var magnitude = Double(abs(b[j])) + Double(abs(r[i * O + j]))
                    for t in 0..<I { magnitude += Double(abs(xr[i * I + t] * wr[j * I + t])) }
                    // Two float32 sums of I + 2 terms, each within γ(I + 2) of the exact one.
                    let g = Double(I + 2) * 0x1p-24 / (1 - Double(I + 2) * 0x1p-24)
                    #expect(Double(abs(y[i * O + j] - want[i * O + j])) <= 2 * g * magnitude, "\(kernel) (\(i), \(j))")
                }
            }
        }
    }
}
