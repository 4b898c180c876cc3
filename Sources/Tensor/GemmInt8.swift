// GemmInt8: the wrapper's 8-bit product (u8 codes × s8 queries, exact int32 sums) over CDot8's
// run-time-chosen kernels, and its naive twin.
import CDot8

extension Gemm {
    /// A kernel of the 8-bit product. All give the same integers (exact arithmetic), at different speeds:
    /// `vnni` (AVX-512 VNNI `vpdpbusd`, Zen 4: ~4.5× the multiply-adds of single-thread sgemm),
    /// `avx2` (`vpmaddwd` on widened operands, Zen 3 / Haswell: ~1.7×), `portable` (plain C).
    public enum Int8Kernel: Int32, CaseIterable, Sendable {
        case portable = 0, avx2 = 1, vnni = 2

        public var isSupported: Bool { fidq_dot8_supported(rawValue) != 0 }

        /// The fastest this CPU runs, or `FIDQ_DOT8_KERNEL` (portable, avx2, vnni) when set and
        /// supported (to time or test a slower machine's path; see `KernelSwitch`).
        public static let best: Int8Kernel = KernelSwitch.fromEnvironment(
            "FIDQ_DOT8_KERNEL", variants: allCases, name: { "\($0)" }, isSupported: { $0.isSupported },
            fallback: Int8Kernel(rawValue: fidq_dot8_best_kernel()) ?? .portable)
    }

    /// Largest width whose sums cannot overflow Int32 (255 · 127 · E < 2³¹): 66,311.
    public static let int8MaxDim = fidq_dot8_max_dim()

    /// (rows, E) UInt8 codes packed for a kernel (panels of interleaved rows, like a gemm's
    /// packed operand); one buffer reused block after block.
    public final class PackedCodes8 {
        public let kernel: Int8Kernel
        public let dim: Int
        public private(set) var rows = 0
        /// Rows a product writes per query: `rows` rounded up to the kernel's tile.
        public var paddedRows: Int { Self.paddedRows(rows, kernel: kernel) }

        /// `rows` rounded up to the kernel's tile: the least `ldo` of a product over that many rows.
        public static func paddedRows(_ rows: Int, kernel: Int8Kernel) -> Int { fidq_dot8_padded_rows(kernel.rawValue, rows) }
        private var buffer: UnsafeMutableRawPointer?
        private var capacity = 0

        public init(kernel: Int8Kernel = .best, dim: Int) {
            precondition(kernel.isSupported, "Int8 kernel \(kernel) is not supported on this CPU")
            precondition(dim >= 0 && dim <= Gemm.int8MaxDim, "int8 product: dim \(dim) > \(Gemm.int8MaxDim)")
            (self.kernel, self.dim) = (kernel, dim)
        }

        deinit { buffer?.deallocate() }

        /// Packs `rows` rows of `codes` (leading dimension `ldc`), replacing the previous block.
        public func pack(_ codes: UnsafePointer<UInt8>, rows: Int, ldc: Int) {
            precondition(rows >= 0 && ldc >= dim, "int8 pack: rows \(rows), ldc \(ldc) < dim \(dim)")
            let bytes = fidq_dot8_packed_codes_bytes(kernel.rawValue, rows, dim)
            if bytes > capacity {
                buffer?.deallocate()
                buffer = .allocate(byteCount: max(bytes, 64), alignment: 64)
                capacity = bytes
            }
            self.rows = rows
            fidq_dot8_pack_codes(kernel.rawValue, codes, rows, ldc, dim, buffer!)
        }

        var base: UnsafeRawPointer? { buffer.map { UnsafeRawPointer($0) } }
    }

    /// (Q, E) Int8 queries (values in −127…127) packed for a kernel.
    public final class PackedQueries8 {
        public let kernel: Int8Kernel
        public let dim: Int
        public let count: Int
        let stride: Int
        let buffer: UnsafeMutableRawPointer

        public init(_ queries: UnsafePointer<Int8>, count: Int, ldq: Int, dim: Int, kernel: Int8Kernel = .best) {
            precondition(kernel.isSupported, "Int8 kernel \(kernel) is not supported on this CPU")
            precondition(count >= 0 && ldq >= dim && dim <= Gemm.int8MaxDim, "int8 queries: count \(count), ldq \(ldq), dim \(dim)")
            for q in 0..<count {
                for j in 0..<dim { precondition(queries[q * ldq + j] != -128, "int8 queries: -128 at (\(q), \(j)); the bound needs |q| <= 127") }
            }
            (self.kernel, self.dim, self.count) = (kernel, dim, count)
            stride = fidq_dot8_packed_query_bytes(kernel.rawValue, dim)
            buffer = .allocate(byteCount: max(64, count * stride), alignment: 64)
            fidq_dot8_pack_queries(kernel.rawValue, queries, count, ldq, dim, buffer)
        }

        deinit { buffer.deallocate() }
    }

    /// `out[(q − queries.lowerBound)·ldo + r] = Σ_j code[r][j] · query[q][j]` for the packed
    /// block's rows (padded to `codes.paddedRows`; padding rows give 0) and the queries in
    /// `queries`: exact Int32, out (Q, rows) so each query's scores over the block are contiguous.
    /// Single-threaded: callers split rows over threads (each with its own `PackedCodes8`).
    public static func dotsU8S8(
        codes: PackedCodes8, queries packed: PackedQueries8, _ queries: Range<Int>, out: UnsafeMutablePointer<Int32>, ldo: Int
    ) {
        precondition(codes.kernel == packed.kernel && codes.dim == packed.dim, "int8 product: operands packed for different kernels or widths")
        precondition(queries.lowerBound >= 0 && queries.upperBound <= packed.count, "int8 product: queries \(queries) of \(packed.count)")
        precondition(ldo >= codes.paddedRows, "int8 product: ldo \(ldo) < padded rows \(codes.paddedRows)")
        guard codes.rows > 0, !queries.isEmpty, let base = codes.base else { return }
        fidq_dot8(
            codes.kernel.rawValue, base, codes.rows, packed.buffer + queries.lowerBound * packed.stride, queries.count,
            codes.dim, out, ldo)
    }

    /// The plain loop with `dotsU8S8`'s contract (rows unpadded), accumulated in Int64 and
    /// checked to fit Int32.
    public static func dotsU8S8Naive(
        codes: UnsafePointer<UInt8>, rows: Int, ldc: Int, queries: UnsafePointer<Int8>, count: Int, ldq: Int, dim: Int,
        out: UnsafeMutablePointer<Int32>, ldo: Int
    ) {
        for q in 0..<count {
            for r in 0..<rows {
                var s: Int64 = 0
                for j in 0..<dim { s += Int64(codes[r * ldc + j]) * Int64(queries[q * ldq + j]) }
                out[q * ldo + r] = Int32(s)
            }
        }
    }
}
