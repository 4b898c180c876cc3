// COverMemory: the two passes of `Attention.overMemory` (a decoding step's cross-attention) with
// AVX-512, chosen at run time; other CPUs run the Swift kernels these twin, to the same bits.
#ifndef FIDQ_COVERMEMORY_H
#define FIDQ_COVERMEMORY_H

#ifdef __cplusplus
extern "C" {
#endif

/// Whether this CPU runs the AVX-512 kernels (AVX-512 F).
int fidq_over_memory_avx512_supported(void);

/// s[i * tk + j] = scale · q_i · x_j for queries i < tq and keys lo ≤ j < hi, q (tq, d), x (tk, d):
/// `Attention.scoreChunk`'s sums, to the bit. Each product is summed in 8 lanes (lane l takes
/// d ≡ l mod 8 below d & ~7, by fused multiply-adds from 0), then the lanes from first to last,
/// then d's tail by plain multiplies and adds, and finally scaled.
void fidq_over_memory_scores_avx512(float *s, const float *q, const float *x, float scale, long tq, long tk, long d,
                                    long lo, long hi);

/// acc[i * d + e] = Σ_k w[k * tq + i] · x[rows[k] + e] for queries i < tq and e < (d & ~15),
/// over keys k < n in order, each term one fused multiply-add onto the running sum (from 0):
/// `Attention.contextChunk`'s sums, element for element. Columns d & ~15 … d − 1 are not touched.
void fidq_over_memory_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x, long tq,
                                     long d);

#ifdef __cplusplus
}
#endif

#endif
