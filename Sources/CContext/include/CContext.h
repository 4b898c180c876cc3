// CContext: the context pass of `Attention.overMemory` (a decoding step's cross-attention) with
// AVX-512, chosen at run time; other CPUs run the Swift kernel it twins, to the same bits.
#ifndef FIDQ_CCONTEXT_H
#define FIDQ_CCONTEXT_H

#ifdef __cplusplus
extern "C" {
#endif

/// Whether this CPU runs the AVX-512 kernel (AVX-512 F).
int fidq_context_avx512_supported(void);

/// acc[i * d + e] = Σ_k w[k * tq + i] · x[rows[k] + e] for queries i < tq and e < (d & ~15),
/// over keys k < n in order, each term one fused multiply-add onto the running sum (from 0):
/// `Attention.contextChunk`'s sums, element for element. Columns d & ~15 … d − 1 are not touched.
/// Requires a CPU for which fidq_context_avx512_supported() is true.
void fidq_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d);

#ifdef __cplusplus
}
#endif

#endif
