// GemmBF16: the wrapper's half-precision product (bfloat16 operands, float32 sums) over CBF16's
// kernels, for inference passes run at half precision as FiD's embedding scripts run theirs.
import CBF16

extension Gemm {
    /// A kernel of the bfloat16 product: `avx512` (AVX-512 BF16's vdpbf16ps, Zen 4: about twice
    /// single-thread sgemm's multiply-adds) or `portable` (plain C over the same packed operands: the
    /// naive twin, for tests on any CPU). Both sum exact products in float32, k in order; they differ
    /// only in how the hardware rounds a pair's two additions.
    public enum BF16Kernel: Int32, CaseIterable, Sendable {
        case portable = 0, avx512 = 1

        public var isSupported: Bool { fidq_bf16_supported(rawValue) != 0 }

        /// The kernel half-precision inference uses here: `avx512` where the CPU runs it, else nil
        /// (products stay float32: the portable loops are far slower than sgemm). `FIDQ_BF16=off`
        /// (or 0) turns it off, to time or test a machine without it; `avx512` is the default
        /// where supported (see `KernelSwitch`).
        public static let fast: BF16Kernel? = KernelSwitch.fromEnvironment(
            "FIDQ_BF16", variants: [nil, BF16Kernel.avx512], name: { $0.map { "\($0)" } ?? "off" },
            aliases: ["0": "off"], isSupported: { $0?.isSupported ?? true },
            fallback: BF16Kernel.avx512.isSupported ? .avx512 : nil)
    }

    /// The bfloat16 bits the product rounds `x` to: nearest even, subnormals to a signed zero,
    /// NaN quieted (what vcvtne2ps2bf16 does).
    public static func bfloat16Bits(_ x: Float) -> UInt16 { fidq_bf16_round(x) }

    /// A weight W (out, in) packed once for `gemmBF16` (and `Linear.forward(weights:kernel:…)`): panels of 16 output rows, pairs of
    /// consecutive inputs rounded to bfloat16 in each 32-bit word.
    public final class BF16Weights: @unchecked Sendable {
        public let outFeatures: Int, inFeatures: Int
        let words: UnsafeMutableRawPointer

        /// Packs W (out, in) row-major with leading dimension `ldw` (default `inFeatures`).
        public init(_ weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int, ldw: Int? = nil) {
            precondition(outFeatures >= 1 && inFeatures >= 1 && (ldw ?? inFeatures) >= inFeatures,
                         "BF16Weights: out \(outFeatures), in \(inFeatures), ldw \(ldw ?? inFeatures)")
            (self.outFeatures, self.inFeatures) = (outFeatures, inFeatures)
            let count = fidq_bf16_packed_weight_words(outFeatures, inFeatures)
            words = .allocate(byteCount: 4 * count, alignment: 64)  // the kernel's aligned panel loads
            fidq_bf16_pack_weight(weight, outFeatures, inFeatures, ldw ?? inFeatures, words.assumingMemoryBound(to: UInt32.self))
        }

        deinit { words.deallocate() }
    }

    /// c (m, n) = x (m, k) · Wᵀ (+ c when `accumulate`), x rounded to bfloat16 as it is read, sums
    /// in float32; rows split over `threads` (default `Threads.count`). A row's results do not
    /// depend on the split.
    public static func gemmBF16(
        kernel: BF16Kernel, m: Int, x: UnsafePointer<Float>, ldx: Int, weights w: BF16Weights, c: UnsafeMutablePointer<Float>,
        ldc: Int, accumulate: Bool, threads: Int? = nil
    ) {
        precondition(kernel.isSupported, "bfloat16 kernel \(kernel) is not supported on this CPU")
        precondition(m >= 0 && ldx >= w.inFeatures && ldc >= w.outFeatures, "gemmBF16: m \(m), ldx \(ldx), ldc \(ldc), W \(w.outFeatures)×\(w.inFeatures)")
        guard m > 0 else { return }
        let k = w.inFeatures, n = w.outFeatures, packed = w.words.assumingMemoryBound(to: UInt32.self)
        parallelFor(m, grain: Threads.grain(work: k * n), threads: threads) { r in
            let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: fidq_bf16_scratch_words(k))
            defer { scratch.deallocate() }
            fidq_bf16_gemm(kernel.rawValue, x + r.lowerBound * ldx, r.count, k, ldx, packed, n, c + r.lowerBound * ldc, ldc,
                           accumulate ? 1 : 0, scratch)
        }
    }
}
