// Dot8: exact int32 products of u8 codes (N, E) with s8 queries (Q, E): the sq8 index's scan.
//
// Why C: Swift builds for `-target-cpu haswell` and has no vector intrinsics; LLVM turns Swift's
// SIMD arithmetic into vpmaddwd only for a lone reduction (in a register-blocked tile, where each
// operand feeds several products, it comes out as vpmovsxwd + vpmulld, slower than float FMA),
// and never into vpmaddubsw; Debian's OpenBLAS 0.3.21 declares cblas_sbgemm but does not export
// it. So the kernels are C with per-function targets, chosen at run time:
//   VNNI (Zen 4, AVX-512 VNNI): vpdpbusd, 64 u8·s8 products per instruction.
//   AVX2 (Zen 3, Haswell): operands widened to int16, vpmaddwd (16 products per instruction,
//        two instructions a cycle: twice float FMA's rate).
//   portable: plain loops, for other CPUs.
// Every kernel is exact integer arithmetic (|sum| <= 255 · 127 · E < 2^31), so all return the
// same integers and a test compares each with a naive twin for equality.
//
// Layout: like a gemm, codes are packed into panels of 16 (VNNI) or 8 (AVX2) rows whose columns
// interleave 4 bytes (VNNI) or 2 int16 (AVX2) of each row, so one vector load holds a panel's
// next dims and a broadcast 32-bit query word multiplies all of them: an accumulator is a panel
// × one query and needs no horizontal sum. Queries are packed as 32-bit words.
#include "CDot8.h"

#include <string.h>

long fidq_dot8_max_dim(void) { return 2147483647L / (255L * 127L); }

static long round_up(long x, long m) { return (x + m - 1) / m * m; }

// Rows per tile: two panels.
static long tile_rows(int kernel) {
    switch (kernel) {
    case FIDQ_DOT8_VNNI: return 32;
    case FIDQ_DOT8_AVX2: return 16;
    default: return 1;
    }
}

// Dims per 32-bit query word.
static long group_dims(int kernel) {
    switch (kernel) {
    case FIDQ_DOT8_VNNI: return 4;
    case FIDQ_DOT8_AVX2: return 2;
    default: return 1;
    }
}

long fidq_dot8_padded_rows(int kernel, long rows) { return round_up(rows, tile_rows(kernel)); }

long fidq_dot8_packed_codes_bytes(int kernel, long rows, long dim) {
    switch (kernel) {
    case FIDQ_DOT8_VNNI: return fidq_dot8_padded_rows(kernel, rows) * round_up(dim, 4);
    case FIDQ_DOT8_AVX2: return fidq_dot8_padded_rows(kernel, rows) * round_up(dim, 2) * 2;
    default: return rows * dim;
    }
}

long fidq_dot8_packed_query_bytes(int kernel, long dim) {
    switch (kernel) {
    case FIDQ_DOT8_VNNI: return round_up(dim, 4);
    case FIDQ_DOT8_AVX2: return round_up(dim, 2) * 2;
    default: return dim;
    }
}

void fidq_dot8_pack_codes(int kernel, const uint8_t *codes, long rows, long ldc, long dim, void *dst) {
    long gd = group_dims(kernel), groups = round_up(dim, gd) / gd;
    long panel_rows = tile_rows(kernel) / 2;
    switch (kernel) {
    case FIDQ_DOT8_VNNI: {
        // Panel p, group g: 64 bytes, rows 16p…16p+15 × dims 4g…4g+3.
        uint8_t *out = (uint8_t *)dst;
        memset(out, 0, (size_t)fidq_dot8_packed_codes_bytes(kernel, rows, dim));
        for (long r = 0; r < rows; r++) {
            const uint8_t *x = codes + r * ldc;
            uint8_t *panel = out + (r / 16) * groups * 64 + (r % 16) * 4;
            long g = 0;
            for (; 4 * g + 4 <= dim; g++) memcpy(panel + g * 64, x + 4 * g, 4);
            for (long j = 4 * g; j < dim; j++) panel[g * 64 + (j - 4 * g)] = x[j];
        }
        break;
    }
    case FIDQ_DOT8_AVX2: {
        // Panel p, group g: 16 int16, rows 8p…8p+7 × dims 2g, 2g+1.
        int16_t *out = (int16_t *)dst;
        memset(out, 0, (size_t)fidq_dot8_packed_codes_bytes(kernel, rows, dim));
        for (long r = 0; r < rows; r++) {
            const uint8_t *x = codes + r * ldc;
            int16_t *panel = out + (r / panel_rows) * groups * 16 + (r % panel_rows) * 2;
            for (long j = 0; j < dim; j++) panel[(j / 2) * 16 + (j % 2)] = (int16_t)x[j];
        }
        break;
    }
    default:
        for (long r = 0; r < rows; r++) memcpy((uint8_t *)dst + r * dim, codes + r * ldc, (size_t)dim);
    }
}

void fidq_dot8_pack_queries(int kernel, const int8_t *queries, long nq, long ldq, long dim, void *dst) {
    long width = fidq_dot8_packed_query_bytes(kernel, dim);
    for (long q = 0; q < nq; q++) {
        const int8_t *y = queries + q * ldq;
        if (kernel == FIDQ_DOT8_AVX2) {
            int16_t *out = (int16_t *)((uint8_t *)dst + q * width);
            for (long j = 0; j < dim; j++) out[j] = y[j];
            if (dim % 2) out[dim] = 0;
        } else {
            int8_t *out = (int8_t *)dst + q * width;
            memcpy(out, y, (size_t)dim);
            memset(out + dim, 0, (size_t)(width - dim));
        }
    }
}

static void dot8_portable(const uint8_t *codes, long rows, const int8_t *queries, long nq, long dim, int32_t *out, long ldo) {
    for (long q = 0; q < nq; q++) {
        const int8_t *y = queries + q * dim;
        for (long r = 0; r < rows; r++) {
            const uint8_t *x = codes + r * dim;
            int32_t s = 0;
            for (long j = 0; j < dim; j++) s += (int32_t)x[j] * (int32_t)y[j];
            out[q * ldo + r] = s;
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

// ---- AVX-512 VNNI: tiles of 2 panels (32 rows) × up to 8 queries: 16 zmm accumulators.

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define VNNI_QT 8

static inline __attribute__((always_inline)) VNNI_TARGET void tile_vnni(
    int qt, const uint8_t *p0, const int32_t *qw, long groups, int32_t *out, long ldo) {
    __m512i acc0[VNNI_QT], acc1[VNNI_QT];
    for (int q = 0; q < qt; q++) acc0[q] = acc1[q] = _mm512_setzero_si512();
    const uint8_t *p1 = p0 + groups * 64;
    for (long g = 0; g < groups; g++) {
        __m512i a0 = _mm512_loadu_si512((const void *)(p0 + g * 64));
        __m512i a1 = _mm512_loadu_si512((const void *)(p1 + g * 64));
        for (int q = 0; q < qt; q++) {
            __m512i b = _mm512_set1_epi32(qw[q * groups + g]);
            acc0[q] = _mm512_dpbusd_epi32(acc0[q], a0, b);
            acc1[q] = _mm512_dpbusd_epi32(acc1[q], a1, b);
        }
    }
    for (int q = 0; q < qt; q++) {
        _mm512_storeu_si512((void *)(out + q * ldo), acc0[q]);
        _mm512_storeu_si512((void *)(out + q * ldo + 16), acc1[q]);
    }
}

static VNNI_TARGET void dot8_vnni(const uint8_t *codes, long rows, const int32_t *qw, long nq, long dim, int32_t *out, long ldo) {
    long groups = round_up(dim, 4) / 4, rows_p = fidq_dot8_padded_rows(FIDQ_DOT8_VNNI, rows);
    for (long r0 = 0; r0 < rows_p; r0 += 32) {
        const uint8_t *p0 = codes + (r0 / 16) * groups * 64;
        long q0 = 0;
        for (; q0 + VNNI_QT <= nq; q0 += VNNI_QT) tile_vnni(VNNI_QT, p0, qw + q0 * groups, groups, out + q0 * ldo + r0, ldo);
        const int32_t *w = qw + q0 * groups;
        int32_t *o = out + q0 * ldo + r0;
        switch (nq - q0) {  // constant tile heights, so each is unrolled into registers
        case 7: tile_vnni(7, p0, w, groups, o, ldo); break;
        case 6: tile_vnni(6, p0, w, groups, o, ldo); break;
        case 5: tile_vnni(5, p0, w, groups, o, ldo); break;
        case 4: tile_vnni(4, p0, w, groups, o, ldo); break;
        case 3: tile_vnni(3, p0, w, groups, o, ldo); break;
        case 2: tile_vnni(2, p0, w, groups, o, ldo); break;
        case 1: tile_vnni(1, p0, w, groups, o, ldo); break;
        default: break;
        }
    }
}

// ---- AVX2: tiles of 2 panels (16 rows) × up to 6 queries: 12 accumulators + 2 panel registers
// + 1 broadcast = 15 of the 16 ymm.

#define AVX2_TARGET __attribute__((target("avx2")))
#define AVX2_QT 6

static inline __attribute__((always_inline)) AVX2_TARGET void tile_avx2(
    int qt, const int16_t *p0, const int32_t *qw, long groups, int32_t *out, long ldo) {
    __m256i acc0[AVX2_QT], acc1[AVX2_QT];
    for (int q = 0; q < qt; q++) acc0[q] = acc1[q] = _mm256_setzero_si256();
    const int16_t *p1 = p0 + groups * 16;
    for (long g = 0; g < groups; g++) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(p0 + g * 16));
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(p1 + g * 16));
        for (int q = 0; q < qt; q++) {
            __m256i b = _mm256_set1_epi32(qw[q * groups + g]);
            acc0[q] = _mm256_add_epi32(acc0[q], _mm256_madd_epi16(a0, b));
            acc1[q] = _mm256_add_epi32(acc1[q], _mm256_madd_epi16(a1, b));
        }
    }
    for (int q = 0; q < qt; q++) {
        _mm256_storeu_si256((__m256i *)(out + q * ldo), acc0[q]);
        _mm256_storeu_si256((__m256i *)(out + q * ldo + 8), acc1[q]);
    }
}

static AVX2_TARGET void dot8_avx2(const int16_t *codes, long rows, const int32_t *qw, long nq, long dim, int32_t *out, long ldo) {
    long groups = round_up(dim, 2) / 2, rows_p = fidq_dot8_padded_rows(FIDQ_DOT8_AVX2, rows);
    for (long r0 = 0; r0 < rows_p; r0 += 16) {
        const int16_t *p0 = codes + (r0 / 8) * groups * 16;
        long q0 = 0;
        for (; q0 + AVX2_QT <= nq; q0 += AVX2_QT) tile_avx2(AVX2_QT, p0, qw + q0 * groups, groups, out + q0 * ldo + r0, ldo);
        const int32_t *w = qw + q0 * groups;
        int32_t *o = out + q0 * ldo + r0;
        switch (nq - q0) {
        case 5: tile_avx2(5, p0, w, groups, o, ldo); break;
        case 4: tile_avx2(4, p0, w, groups, o, ldo); break;
        case 3: tile_avx2(3, p0, w, groups, o, ldo); break;
        case 2: tile_avx2(2, p0, w, groups, o, ldo); break;
        case 1: tile_avx2(1, p0, w, groups, o, ldo); break;
        default: break;
        }
    }
}

int fidq_dot8_supported(int kernel) {
    __builtin_cpu_init();
    switch (kernel) {
    case FIDQ_DOT8_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case FIDQ_DOT8_AVX2: return __builtin_cpu_supports("avx2");
    case FIDQ_DOT8_PORTABLE: return 1;
    default: return 0;
    }
}

void fidq_dot8(int kernel, const void *codes, long rows, const void *queries, long nq, long dim, int32_t *out, long ldo) {
    switch (kernel) {
    case FIDQ_DOT8_VNNI: dot8_vnni((const uint8_t *)codes, rows, (const int32_t *)queries, nq, dim, out, ldo); break;
    case FIDQ_DOT8_AVX2: dot8_avx2((const int16_t *)codes, rows, (const int32_t *)queries, nq, dim, out, ldo); break;
    default: dot8_portable((const uint8_t *)codes, rows, (const int8_t *)queries, nq, dim, out, ldo); break;
    }
}

#else

int fidq_dot8_supported(int kernel) { return kernel == FIDQ_DOT8_PORTABLE; }

void fidq_dot8(int kernel, const void *codes, long rows, const void *queries, long nq, long dim, int32_t *out, long ldo) {
    (void)kernel;
    dot8_portable((const uint8_t *)codes, rows, (const int8_t *)queries, nq, dim, out, ldo);
}

#endif

int fidq_dot8_best_kernel(void) {
    if (fidq_dot8_supported(FIDQ_DOT8_VNNI)) return FIDQ_DOT8_VNNI;
    if (fidq_dot8_supported(FIDQ_DOT8_AVX2)) return FIDQ_DOT8_AVX2;
    return FIDQ_DOT8_PORTABLE;
}
