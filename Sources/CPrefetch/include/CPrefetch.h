// CPrefetch: a software prefetch hint for Swift kernels (Swift has no intrinsics). Swift inlines
// this static inline function where it is called, so the hint costs one instruction.
#ifndef FIDQ_CPREFETCH_H
#define FIDQ_CPREFETCH_H

/// Asks the core to bring the cache line at `p` into the outer caches (L2 and L3) for reading,
/// not L1: a kernel whose L1 holds its operands (Attention.overMemory's queries) loses them when
/// lines it will read later land there (measured: into L1, a cold pass over P 25's memory was
/// 1.8 ms against 1.2 ms hot; into L2, 1.2 ms). A hint only: never faults, whatever `p` is.
static inline void fidq_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 1);
}

#endif
