// CDot8: exact int32 products of 8-bit codes with 8-bit queries (the sq8 index's scan), with
// AVX-512 VNNI, AVX2 and portable kernels chosen at run time. Swift reaches it only through
// Tensor's Gemm wrapper (`Gemm.dotsU8S8`).
#ifndef FIDQ_CDOT8_H
#define FIDQ_CDOT8_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Kernels: 0 portable C, 1 AVX2 (vpmaddwd on widened 16-bit operands), 2 AVX-512 VNNI (vpdpbusd).
/// Every kernel returns the same integers (exact arithmetic).
enum { FIDQ_DOT8_PORTABLE = 0, FIDQ_DOT8_AVX2 = 1, FIDQ_DOT8_VNNI = 2 };

/// The fastest kernel this CPU runs.
int fidq_dot8_best_kernel(void);

/// Whether this CPU runs `kernel`.
int fidq_dot8_supported(int kernel);

/// Largest `dim` whose sums cannot overflow int32 (255 · 127 · dim < 2^31).
long fidq_dot8_max_dim(void);

/// Rows of `out` a product writes: `rows` rounded up to the kernel's tile (the extra columns
/// hold products with zero codes, i.e. 0).
long fidq_dot8_padded_rows(int kernel, long rows);

/// Bytes of `rows` codes of width `dim` packed for `kernel`.
long fidq_dot8_packed_codes_bytes(int kernel, long rows, long dim);

/// Bytes of one query of width `dim` packed for `kernel` (queries are packed one after another,
/// so query q starts at q times this).
long fidq_dot8_packed_query_bytes(int kernel, long dim);

/// Packs codes (rows, dim) with leading dimension ldc into dst (64-byte aligned,
/// fidq_dot8_packed_codes_bytes bytes).
void fidq_dot8_pack_codes(int kernel, const uint8_t *codes, long rows, long ldc, long dim, void *dst);

/// Packs queries (nq, dim) with leading dimension ldq into dst (nq · fidq_dot8_packed_query_bytes bytes).
void fidq_dot8_pack_queries(int kernel, const int8_t *queries, long nq, long ldq, long dim, void *dst);

/// out[q * ldo + r] = Σ_j code[r][j] · query[q][j] for r < padded rows, q < nq, exactly, from
/// packed operands. Requires dim <= fidq_dot8_max_dim(), ldo >= fidq_dot8_padded_rows(kernel,
/// rows), a supported kernel, and query values in -127…127 (the bound assumes |q| <= 127).
void fidq_dot8(int kernel, const void *codes, long rows, const void *queries, long nq, long dim, int32_t *out, long ldo);

#ifdef __cplusplus
}
#endif

#endif
