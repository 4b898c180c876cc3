// OverMemory: the scoring and context passes of `Attention.overMemory` with AVX-512 (Zen 4).
//
// Why C: Swift builds for `-target-cpu haswell` (Zen 3 runs the same binary), so its SIMD code has
// 16 ymm registers, and both Swift kernels are bound by loads rather than multiply-adds:
//   scoring: 4 queries × 2 keys of 8-lane sums (8 accumulators) load 6 vectors per 8 FMAs;
//   context: 4 queries × 16 floats (8 accumulators) spend 4 broadcasts and 2 loads on 8 FMAs.
// With 32 zmm registers a scoring tile holds 8 queries × 4 keys (16 accumulators, each two
// queries' 8-lane sums side by side against one key) and a context tile 8 queries × 32 floats;
// each loads 8 to 10 vectors per 16 FMAs of twice the width.
//
// Same bits as the Swift kernels, and the test compares both with a scalar twin:
//   scoring: each product keeps the Swift kernel's 8 lanes (a zmm holds two queries' lanes, not
//   16 lanes of one), sums them first to last, then adds d's tail by plain multiply and add;
//   context: each element is its own chain of fused multiply-adds over the keys in order from 0,
//   whatever the vector width or tile.
#include "COverMemory.h"

// The tails' `s += a * b` must stay a multiply and an add, as in Swift, not one fused operation.
#pragma clang fp contract(off)

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

int fidq_over_memory_avx512_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

// Two rows' next 8 floats side by side (a pair of queries): lanes 0–7 from a, 8–15 from b.
INLINE TARGET __m512 pair(const float *a, const float *b) {
    __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(a)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_loadu_ps(b)), 1));
}

// A row's next 8 floats in both halves (a key against a pair of queries).
INLINE TARGET __m512 twice(const float *p) { return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p)))); }

// Scores of M queries (from q0) × the keys j … j+3 below hi. An accumulator holds a pair of
// queries' 8 lanes side by side against one key broadcast to both halves; a missing query or key
// repeats the last one (computed, not stored). The first query tile asks for the rows 8 keys
// ahead into L2, a line per 16 floats, as the Swift kernel does.
INLINE TARGET void score_tile(float *s, const float *q, const float *x, float scale, long tk, long d, long q0, long j,
                              long hi, int M, int ahead) {
    const int P = (M + 1) / 2;
    long nk = hi - j < 4 ? hi - j : 4, full = d & ~7L;
    const float *k[4];
    for (int t = 0; t < 4; t++) k[t] = x + (j + (t < nk ? t : nk - 1)) * d;
    const float *qs[8];
    for (int i = 0; i < 2 * P; i++) qs[i] = q + (q0 + (i < M ? i : M - 1)) * d;
    const float *next = ahead && j + 11 < tk ? x + (j + 8) * d : 0;
    __m512 a[4][4];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < 4; t++) a[p][t] = _mm512_setzero_ps();
    for (long e = 0; e < full; e += 8) {
        if (next && (e & 15) == 0)
            for (int t = 0; t < 4; t++) __builtin_prefetch(next + t * d + e, 0, 1);
        __m512 kk[4];
        for (int t = 0; t < 4; t++) kk[t] = twice(k[t] + e);
        for (int p = 0; p < P; p++) {
            __m512 qq = pair(qs[2 * p] + e, qs[2 * p + 1] + e);
            for (int t = 0; t < 4; t++) a[p][t] = _mm512_fmadd_ps(qq, kk[t], a[p][t]);
        }
    }
    float lanes[16];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < nk; t++) {
            _mm512_storeu_ps(lanes, a[p][t]);
            for (int h = 0; h < 2 && 2 * p + h < M; h++) {
                const float *qi = qs[2 * p + h];
                float sum = lanes[8 * h];
                for (int l = 1; l < 8; l++) sum += lanes[8 * h + l];
                for (long e = full; e < d; e++) sum += qi[e] * k[t][e];
                s[(q0 + 2 * p + h) * tk + j + t] = scale * sum;
            }
        }
}

INLINE TARGET void score_keys(float *s, const float *q, const float *x, float scale, long tq, long tk, long d, long j,
                              long hi) {
    long q0 = 0;
    for (; q0 + 8 <= tq; q0 += 8) score_tile(s, q, x, scale, tk, d, q0, j, hi, 8, q0 == 0);
    int ahead = q0 == 0;
    switch (tq - q0) {
    case 7: score_tile(s, q, x, scale, tk, d, q0, j, hi, 7, ahead); break;
    case 6: score_tile(s, q, x, scale, tk, d, q0, j, hi, 6, ahead); break;
    case 5: score_tile(s, q, x, scale, tk, d, q0, j, hi, 5, ahead); break;
    case 4: score_tile(s, q, x, scale, tk, d, q0, j, hi, 4, ahead); break;
    case 3: score_tile(s, q, x, scale, tk, d, q0, j, hi, 3, ahead); break;
    case 2: score_tile(s, q, x, scale, tk, d, q0, j, hi, 2, ahead); break;
    case 1: score_tile(s, q, x, scale, tk, d, q0, j, hi, 1, ahead); break;
    default: break;
    }
}

TARGET void fidq_over_memory_scores_avx512(float *s, const float *q, const float *x, float scale, long tq, long tk,
                                           long d, long lo, long hi) {
    for (long j = lo; j < hi; j += 4) score_keys(s, q, x, scale, tq, tk, d, j, hi);
}

// Context of M queries (from q0) × W vectors of 16 floats (from column c); M and W are constants
// at each call below, so the accumulators stay in registers.
INLINE TARGET void context_tile(float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d,
                                long q0, long c, int M, int W) {
    __m512 a[8][2];
    for (int i = 0; i < M; i++)
        for (int v = 0; v < W; v++) a[i][v] = _mm512_setzero_ps();
    const float *wk = w + q0;
    for (long k = 0; k < n; k++) {
        const float *xr = x + rows[k] + c;
        __m512 x0 = _mm512_loadu_ps(xr), x1 = W > 1 ? _mm512_loadu_ps(xr + 16) : x0;
        for (int i = 0; i < M; i++) {
            __m512 b = _mm512_set1_ps(wk[i]);
            a[i][0] = _mm512_fmadd_ps(b, x0, a[i][0]);
            if (W > 1) a[i][1] = _mm512_fmadd_ps(b, x1, a[i][1]);
        }
        wk += tq;
    }
    for (int i = 0; i < M; i++)
        for (int v = 0; v < W; v++) _mm512_storeu_ps(acc + (q0 + i) * d + c + 16 * v, a[i][v]);
}

// All column slices of M queries: pairs of vectors, then a last single one.
INLINE TARGET void context_columns(float *acc, const float *w, const long *rows, long n, const float *x, long tq,
                                   long d, long q0, int M) {
    long full = d & ~15L, c = 0;
    for (; c + 32 <= full; c += 32) context_tile(acc, w, rows, n, x, tq, d, q0, c, M, 2);
    if (c < full) context_tile(acc, w, rows, n, x, tq, d, q0, c, M, 1);
}

TARGET void fidq_over_memory_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x,
                                            long tq, long d) {
    long q0 = 0;
    for (; q0 + 8 <= tq; q0 += 8) context_columns(acc, w, rows, n, x, tq, d, q0, 8);
    switch (tq - q0) {
    case 7: context_columns(acc, w, rows, n, x, tq, d, q0, 7); break;
    case 6: context_columns(acc, w, rows, n, x, tq, d, q0, 6); break;
    case 5: context_columns(acc, w, rows, n, x, tq, d, q0, 5); break;
    case 4: context_columns(acc, w, rows, n, x, tq, d, q0, 4); break;
    case 3: context_columns(acc, w, rows, n, x, tq, d, q0, 3); break;
    case 2: context_columns(acc, w, rows, n, x, tq, d, q0, 2); break;
    case 1: context_columns(acc, w, rows, n, x, tq, d, q0, 1); break;
    default: break;
    }
}

#else

int fidq_over_memory_avx512_supported(void) { return 0; }

// Never called where not supported.
void fidq_over_memory_scores_avx512(float *s, const float *q, const float *x, float scale, long tq, long tk, long d,
                                    long lo, long hi) {
    (void)s, (void)q, (void)x, (void)scale, (void)tq, (void)tk, (void)d, (void)lo, (void)hi;
    __builtin_trap();
}

void fidq_over_memory_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x, long tq,
                                     long d) {
    (void)acc, (void)w, (void)rows, (void)n, (void)x, (void)tq, (void)d;
    __builtin_trap();
}

#endif
