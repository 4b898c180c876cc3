// Context: the context pass of `Attention.overMemory` with AVX-512 (Zen 4).
//
// Why C: Swift builds for `-target-cpu haswell` (Zen 3 runs the same binary), so its SIMD code has
// 16 ymm registers. The Swift kernel keeps 4 queries × 16 floats in 8 accumulators and spends
// 4 broadcasts and 2 row loads per key on 8 FMAs: bound by loads, ~50 GFLOP/s on one core. With 32
// zmm registers a tile of 8 queries × 32 floats (16 accumulators) spends 8 broadcasts and 2 loads
// on 16 FMAs of twice the width, and reads each row slice once for all 8 queries.
//
// Same bits as the Swift kernel: each element is its own chain of fused multiply-adds over the
// keys in order, starting from 0, whatever the vector width or tile; the test compares the two.
#include "CContext.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))

int fidq_context_avx512_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

// A tile of M queries (from q0) × W vectors of 16 floats (from column c); M and W are constants
// at each call below, so the accumulators stay in registers.
static inline __attribute__((always_inline)) TARGET void tile(
    float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d, long q0, long c,
    int M, int W)
{
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

// All column slices of a tile of M queries: pairs of vectors, then a last single one.
static inline __attribute__((always_inline)) TARGET void columns(
    float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d, long q0, int M)
{
    long full = d & ~15L, c = 0;
    for (; c + 32 <= full; c += 32) tile(acc, w, rows, n, x, tq, d, q0, c, M, 2);
    if (c < full) tile(acc, w, rows, n, x, tq, d, q0, c, M, 1);
}

TARGET void fidq_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d) {
    long q0 = 0;
    for (; q0 + 8 <= tq; q0 += 8) columns(acc, w, rows, n, x, tq, d, q0, 8);
    switch (tq - q0) {
    case 7: columns(acc, w, rows, n, x, tq, d, q0, 7); break;
    case 6: columns(acc, w, rows, n, x, tq, d, q0, 6); break;
    case 5: columns(acc, w, rows, n, x, tq, d, q0, 5); break;
    case 4: columns(acc, w, rows, n, x, tq, d, q0, 4); break;
    case 3: columns(acc, w, rows, n, x, tq, d, q0, 3); break;
    case 2: columns(acc, w, rows, n, x, tq, d, q0, 2); break;
    case 1: columns(acc, w, rows, n, x, tq, d, q0, 1); break;
    default: break;
    }
}

#else

int fidq_context_avx512_supported(void) { return 0; }

void fidq_context_avx512(float *acc, const float *w, const long *rows, long n, const float *x, long tq, long d) {
    (void)acc, (void)w, (void)rows, (void)n, (void)x, (void)tq, (void)d;
    __builtin_trap();  // never called: not supported
}

#endif
