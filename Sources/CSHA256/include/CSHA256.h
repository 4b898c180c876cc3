// CSHA256: SHA-256's compression, on the x86 SHA extensions (Zen 3 and Zen 4 have them) or
// portable, for Fetch's SHA256 (Sources/Fetch/SHA256.swift), which streams and pads.
#ifndef FIDQ_CSHA256_H
#define FIDQ_CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the SHA extensions (and SSE4.1), so fidq_sha256_ni may run; else 0.
int fidq_sha256_ni_available(void);

/// FIPS 180-4 §6.2.2 over `blocks` consecutive 64-byte blocks at `data`, updating `state` (H0…H7),
/// on the SHA extensions (only where fidq_sha256_ni_available() says so).
void fidq_sha256_ni(uint32_t state[8], const uint8_t *data, size_t blocks);

/// The same in plain C, for any CPU.
void fidq_sha256_portable(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
