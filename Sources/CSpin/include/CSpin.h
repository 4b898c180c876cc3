// CSpin: the two atomics and the pause ComputePool spins on before it sleeps (Sources/Threading
// says why). C, because Swift's Synchronization module needs macOS 15 and the package builds for 13.
#ifndef FIDQ_CSPIN_H
#define FIDQ_CSPIN_H

#include <stdint.h>

/// `*counter` as another thread last published it (acquire).
static inline uint64_t fidq_spin_load(const uint64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_ACQUIRE);
}

/// `*counter += 1`, published to spinning readers (release).
static inline void fidq_spin_bump(uint64_t *counter) {
    __atomic_add_fetch(counter, 1, __ATOMIC_RELEASE);
}

/// One round of a spin-wait: tells the core (and a hypervisor) this thread is waiting.
static inline void fidq_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
