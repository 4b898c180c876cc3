// GemmInt8Tests: every 8-bit product kernel this CPU runs against the naive twin, for equality
// (exact integer arithmetic), on odd shapes and at the overflow bound.
import Foundation
import Testing
@testable import Tensor

@Suite struct GemmInt8Tests {
    /// The kernels to check here: all this CPU runs (portable and AVX2 on any x86-64 CI machine,
    /// VNNI on Zen 4 too); the best one must be among them.
    static var kernels: [Gemm.Int8Kernel] { Gemm.Int8Kernel.allCases.filter(\.isSupported) }

    @Test func bestIsSupported() {
        #expect(Gemm.Int8Kernel.best.isSupported)
        #expect(Self.kernels.contains(.portable))
        #expect(Gemm.int8MaxDim == 66311)
        // FIDQ_DOT8_KERNEL (ops/test-coretypes sets avx2 under the AVX2-only core types) must take
        // when it names a supported kernel; otherwise the fastest supported one runs.
        let name = ProcessInfo.processInfo.environment["FIDQ_DOT8_KERNEL"] ?? ""
        let named = Gemm.Int8Kernel.allCases.first { "\($0)" == name && $0.isSupported }
        #expect(Gemm.Int8Kernel.best == named ?? Self.kernels.last!, "FIDQ_DOT8_KERNEL=\(name), best \(Gemm.Int8Kernel.best)")
    }

    /// (rows, queries, dim): tails of every tile (32/16 rows, 8/6 queries, 4/2 dims) and a
    /// query range that starts mid-way; (20, 22, 33) gives ranges of 7 and 15 queries, the VNNI
    /// tile's 7-query tail (no other shape reached it).
    @Test(arguments: [(1, 1, 1), (5, 3, 7), (33, 9, 13), (47, 13, 768), (64, 16, 64), (31, 7, 130), (20, 22, 33)])
    func matchesNaive(shape: (rows: Int, queries: Int, dim: Int)) {
        let (rows, nq, dim) = shape
        var rng = RNG(seed: UInt64(rows * 1000 + dim))
        let ldc = dim + 3, ldq = dim + 1
        // Extremes included: codes 0 and 255, queries ±127.
        let codes = (0..<(rows * ldc)).map { i -> UInt8 in i % 11 == 0 ? 255 : UInt8(truncatingIfNeeded: rng.next() % 256) }
        let queries = (0..<(nq * ldq)).map { i -> Int8 in i % 13 == 0 ? (i % 2 == 0 ? 127 : -127) : Int8(Int(rng.next() % 255) - 127) }
        var naive = [Int32](repeating: 0, count: nq * rows)
        Gemm.dotsU8S8Naive(codes: codes, rows: rows, ldc: ldc, queries: queries, count: nq, ldq: ldq, dim: dim, out: &naive, ldo: rows)
        for kernel in Self.kernels {
            let packed = Gemm.PackedCodes8(kernel: kernel, dim: dim)
            // Another block first, so the reused buffer must be overwritten, not assumed fresh.
            packed.pack(codes.reversed(), rows: rows, ldc: ldc)
            packed.pack(codes, rows: rows, ldc: ldc)
            let pq = Gemm.PackedQueries8(queries, count: nq, ldq: ldq, dim: dim, kernel: kernel)
            let ldo = packed.paddedRows + 5
            var out = [Int32](repeating: -1, count: nq * ldo)
            let lo = nq / 3
            out.withUnsafeMutableBufferPointer { o in
                Gemm.dotsU8S8(codes: packed, queries: pq, lo..<nq, out: o.baseAddress! + lo * ldo, ldo: ldo)
                Gemm.dotsU8S8(codes: packed, queries: pq, 0..<lo, out: o.baseAddress!, ldo: ldo)
            }
            var bad = 0
            for q in 0..<nq {
                for r in 0..<rows where out[q * ldo + r] != naive[q * rows + r] { bad += 1 }
                // Padding rows hold products with zero codes.
                for r in rows..<packed.paddedRows where out[q * ldo + r] != 0 { bad += 1 }
            }
            #expect(bad == 0, "kernel \(kernel) \(shape): \(bad) of \(nq * rows) products differ")
        }
    }

    /// At the widest allowed width, all-255 codes against ±127 queries sum to ±2,147,481,735: a
    /// kernel that saturates 16-bit pair sums (vpmaddubsw) or overflows would differ.
    @Test func exactAtTheOverflowBound() {
        let dim = Gemm.int8MaxDim, rows = 3
        let codes = [UInt8](repeating: 255, count: rows * dim)
        var queries = [Int8](repeating: 127, count: 2 * dim)
        for j in 0..<dim { queries[dim + j] = -127 }
        for kernel in Self.kernels {
            let packed = Gemm.PackedCodes8(kernel: kernel, dim: dim)
            packed.pack(codes, rows: rows, ldc: dim)
            let pq = Gemm.PackedQueries8(queries, count: 2, ldq: dim, dim: dim, kernel: kernel)
            var out = [Int32](repeating: 0, count: 2 * packed.paddedRows)
            Gemm.dotsU8S8(codes: packed, queries: pq, 0..<2, out: &out, ldo: packed.paddedRows)
            let top = Int32(255 * 127 * dim)
            #expect(out[0] == top && out[rows - 1] == top, "kernel \(kernel): \(out[0])")
            #expect(out[packed.paddedRows] == -top && out[packed.paddedRows + rows - 1] == -top, "kernel \(kernel): \(out[packed.paddedRows])")
        }
    }
}
