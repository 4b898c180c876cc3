// CBF16: float32 products with bfloat16 operands and float32 sums (AVX-512 BF16's vdpbf16ps, Zen 4),
// for inference passes that run at half precision as FiD's scripts do (`.half()` unless
// `--no_fp16`). Swift reaches it only through Tensor's Gemm wrapper (`Gemm.BF16Weights`).
#ifndef FIDQ_CBF16_H
#define FIDQ_CBF16_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Kernels: 0 portable C (the naive twin: plain loops over the same packed operands), 1 AVX-512 BF16.
enum { FIDQ_BF16_PORTABLE = 0, FIDQ_BF16_AVX512 = 1 };

/// Whether this CPU runs `kernel`.
int fidq_bf16_supported(int kernel);

/// bfloat16 bits of `x`: rounded to nearest even, subnormals flushed to a signed zero (the hardware
/// product reads them as zero anyway), NaN kept a quiet NaN.
uint16_t fidq_bf16_round(float x);

/// 32-bit words of a weight W (n, k) packed by `fidq_bf16_pack_weight`: ceil(n / 16) panels of
/// ceil(k / 2) pairs × 16 columns.
long fidq_bf16_packed_weight_words(long n, long k);

/// Packs W (n, k) row-major (leading dimension `ldw`) for the products y = x · Wᵀ: panel p holds
/// W's rows 16p ..< 16p + 16, each word a pair (W[r][2j] low, W[r][2j+1] high) as bfloat16; rows past
/// n and the odd k's last high half are zero.
void fidq_bf16_pack_weight(const float *w, long n, long k, long ldw, uint32_t *out);

/// 32-bit words of scratch a product over k needs per call (its block of packed rows).
long fidq_bf16_scratch_words(long k);

/// c (m, n) = x (m, k) · Wᵀ, plus c's own values when `accumulate` (a bias or residual seeded
/// there); x rounded to bfloat16 pairs as it is packed, every sum in float32 over k in order, so a
/// row's results do not depend on which rows share the call. `scratch` holds
/// `fidq_bf16_scratch_words(k)` words.
void fidq_bf16_gemm(int kernel, const float *x, long m, long k, long ldx, const uint32_t *w, long n, float *c, long ldc,
                    int accumulate, uint32_t *scratch);

#ifdef __cplusplus
}
#endif

#endif
