// CPrefetch: a software prefetch hint for Swift kernels (Swift has no intrinsics). Swift inlines
// this static inline function where it is called, so the hint costs one instruction.
#ifndef FIDQ_CPREFETCH_H
#define FIDQ_CPREFETCH_H

/// Asks the core to bring the cache line at `p` into every cache level for reading. A hint only:
/// never faults, whatever `p` is.
static inline void fidq_prefetch(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

#endif
