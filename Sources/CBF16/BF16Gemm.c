// BF16Gemm: c = x · Wᵀ with bfloat16 operands and float32 sums, for half-precision inference.
//
// Why C: like CDot8 (Sources/CDot8/Dot8.c), Swift has no vector intrinsics, and Debian's OpenBLAS
// 0.3.21 declares cblas_sbgemm without exporting it. On Zen 4 one vdpbf16ps does 32 multiply-adds
// (16 lanes × a pair) where an FMA does 16: a 8 × 48 tile ran 12800 × 384 × 1536 at ~215 GFLOP/s
// on one core, against OpenBLAS sgemm's ~100.
//
// Layout: W is packed once (a model's weights do not change between inference batches) into panels
// of 16 output columns whose 32-bit words hold a pair of consecutive k's; x's rows are packed the
// same way, a block at a time, as they are rounded. An accumulator is 16 columns × one row: a
// broadcast word of x times a panel's vector of pairs. Products of two bfloat16 are exact in float32,
// so the kernels differ only in how they round the running sums; the portable kernel is the naive
// twin, and tests bound the difference by the operands.
#include "CBF16.h"

#include <string.h>

static long k_pairs(long k) { return (k + 1) / 2; }

uint16_t fidq_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);  // quiet NaN
    if (a < 0x00800000u) return (uint16_t)((u >> 16) & 0x8000u);  // zero or subnormal: signed zero
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // nearest even; past the top, inf
}

static inline uint32_t pair(const float *x, long j, long k) {
    uint32_t lo = fidq_bf16_round(x[2 * j]);
    uint32_t hi = 2 * j + 1 < k ? fidq_bf16_round(x[2 * j + 1]) : 0;
    return lo | (hi << 16);
}

long fidq_bf16_packed_weight_words(long n, long k) { return (n + 15) / 16 * 16 * k_pairs(k); }

void fidq_bf16_pack_weight(const float *w, long n, long k, long ldw, uint32_t *out) {
    long k2 = k_pairs(k), panels = (n + 15) / 16;
    for (long p = 0; p < panels; p++)
        for (long c = 0; c < 16; c++) {
            long r = p * 16 + c;
            uint32_t *o = out + p * k2 * 16 + c;
            if (r < n) {
                for (long j = 0; j < k2; j++) o[j * 16] = pair(w + r * ldw, j, k);
            } else {
                for (long j = 0; j < k2; j++) o[j * 16] = 0;
            }
        }
}

// Rows per block of packed x: its pairs stay in L2 beside a chunk of W's panels.
#define BLOCK_BYTES (192L * 1024)
static long block_rows(long k) {
    long r = BLOCK_BYTES / (4 * k_pairs(k)) / 8 * 8;
    return r < 8 ? 8 : r > 96 ? 96 : r;
}

long fidq_bf16_scratch_words(long k) { return block_rows(k) * k_pairs(k); }

static void pack_rows(const float *x, long rows, long k, long ldx, uint32_t *out) {
    long k2 = k_pairs(k);
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < k2; j++) out[i * k2 + j] = pair(x + i * ldx, j, k);
}

static void gemm_portable(const float *x, long m, long k, long ldx, const uint32_t *w, long n, float *c, long ldc, int accumulate,
                          uint32_t *scratch) {
    long k2 = k_pairs(k), mb = block_rows(k);
    for (long r0 = 0; r0 < m; r0 += mb) {
        long rows = m - r0 < mb ? m - r0 : mb;
        pack_rows(x + r0 * ldx, rows, k, ldx, scratch);
        for (long i = 0; i < rows; i++)
            for (long col = 0; col < n; col++) {
                const uint32_t *b = w + (col / 16) * k2 * 16 + col % 16;
                const uint32_t *a = scratch + i * k2;
                float s = accumulate ? c[(r0 + i) * ldc + col] : 0.0f;
                for (long j = 0; j < k2; j++) {
                    uint32_t av = a[j], bv = b[j * 16];
                    uint32_t alo = av << 16, ahi = av & 0xffff0000u, blo = bv << 16, bhi = bv & 0xffff0000u;
                    float fal, fah, fbl, fbh;
                    memcpy(&fal, &alo, 4);
                    memcpy(&fah, &ahi, 4);
                    memcpy(&fbl, &blo, 4);
                    memcpy(&fbh, &bhi, 4);
                    s += fal * fbl;
                    s += fah * fbh;
                }
                c[(r0 + i) * ldc + col] = s;
            }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define MR 8
#define NR 3

// One tile: mr rows × nr panels (mr ≤ MR, nr ≤ NR, constants at each call site so the accumulators
// stay in registers); `mask` selects the columns of the matrix's last panel.
TARGET __attribute__((always_inline)) static inline void tile(int mr, int nr, const uint32_t *a, long k2, const uint32_t *b,
                                                               long pstride, float *c, long ldc, int last, __mmask16 mask,
                                                               int accumulate) {
    __m512 acc[MR][NR];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            __mmask16 mj = (last && j == nr - 1) ? mask : (__mmask16)0xffff;
            acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(mj, c + i * ldc + j * 16) : _mm512_setzero_ps();
        }
    for (long kk = 0; kk < k2; kk++) {
        __m512bh bv[NR];
        for (int j = 0; j < nr; j++) bv[j] = (__m512bh)_mm512_load_si512((const void *)(b + j * pstride + kk * 16));
        for (int i = 0; i < mr; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i * k2 + kk]);
            for (int j = 0; j < nr; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            __mmask16 mj = (last && j == nr - 1) ? mask : (__mmask16)0xffff;
            _mm512_mask_storeu_ps(c + i * ldc + j * 16, mj, acc[i][j]);
        }
}

#define TILE_CASE(R, P) \
    case (R) * 4 + (P): tile(R, P, a, k2, b, pstride, c, ldc, last, mask, accumulate); break;
#define TILE_ROW(R) TILE_CASE(R, 1) TILE_CASE(R, 2) TILE_CASE(R, 3)

TARGET static void tile_any(int mr, int nr, const uint32_t *a, long k2, const uint32_t *b, long pstride, float *c, long ldc,
                            int last, __mmask16 mask, int accumulate) {
    switch (mr * 4 + nr) {
        TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5) TILE_ROW(6) TILE_ROW(7) TILE_ROW(8)
    default: break;
    }
}

// pack_rows with the hardware's conversion (vcvtne2ps2bf16: nearest even, subnormals to zero, NaN
// quieted, as fidq_bf16_round), 32 floats per instruction.
TARGET static void pack_rows_avx512(const float *x, long rows, long k, long ldx, uint32_t *out) {
    long k2 = k_pairs(k);
    for (long i = 0; i < rows; i++) {
        const float *xr = x + i * ldx;
        uint32_t *o = out + i * k2;
        long j = 0;
        for (; 2 * j + 32 <= k; j += 16) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xr + 2 * j + 16), _mm512_loadu_ps(xr + 2 * j));
            _mm512_storeu_si512((void *)(o + j), (__m512i)v);
        }
        for (; j < k2; j++) o[j] = pair(xr, j, k);
    }
}

// Panels per chunk of W kept in L2 while a block of rows passes over it.
#define CHUNK_BYTES (384L * 1024)

TARGET static void gemm_avx512(const float *x, long m, long k, long ldx, const uint32_t *w, long n, float *c, long ldc,
                               int accumulate, uint32_t *scratch) {
    long k2 = k_pairs(k), mb = block_rows(k), panels = (n + 15) / 16, pstride = k2 * 16;
    long chunk = CHUNK_BYTES / (pstride * 4) / NR * NR;
    if (chunk < NR) chunk = NR;
    __mmask16 mask = (n % 16) ? (__mmask16)((1u << (n % 16)) - 1) : (__mmask16)0xffff;
    for (long r0 = 0; r0 < m; r0 += mb) {
        long rows = m - r0 < mb ? m - r0 : mb;
        pack_rows_avx512(x + r0 * ldx, rows, k, ldx, scratch);
        for (long p0 = 0; p0 < panels; p0 += chunk) {
            long p1 = p0 + chunk < panels ? p0 + chunk : panels;
            for (long i = 0; i < rows; i += MR) {
                int mr = rows - i < MR ? (int)(rows - i) : MR;
                for (long p = p0; p < p1; p += NR) {
                    int nr = p1 - p < NR ? (int)(p1 - p) : NR;
                    tile_any(mr, nr, scratch + i * k2, k2, w + p * pstride, pstride, c + (r0 + i) * ldc + p * 16, ldc,
                             p + nr == panels, mask, accumulate);
                }
            }
        }
    }
}

int fidq_bf16_supported(int kernel) {
    __builtin_cpu_init();
    switch (kernel) {
    case FIDQ_BF16_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    case FIDQ_BF16_PORTABLE: return 1;
    default: return 0;
    }
}

void fidq_bf16_gemm(int kernel, const float *x, long m, long k, long ldx, const uint32_t *w, long n, float *c, long ldc,
                    int accumulate, uint32_t *scratch) {
    if (kernel == FIDQ_BF16_AVX512)
        gemm_avx512(x, m, k, ldx, w, n, c, ldc, accumulate, scratch);
    else
        gemm_portable(x, m, k, ldx, w, n, c, ldc, accumulate, scratch);
}

#else

int fidq_bf16_supported(int kernel) { return kernel == FIDQ_BF16_PORTABLE; }

void fidq_bf16_gemm(int kernel, const float *x, long m, long k, long ldx, const uint32_t *w, long n, float *c, long ldc,
                    int accumulate, uint32_t *scratch) {
    (void)kernel;
    gemm_portable(x, m, k, ldx, w, n, c, ldc, accumulate, scratch);
}

#endif
