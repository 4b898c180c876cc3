// OpenBLASCore: OpenBLAS's DYNAMIC_ARCH build picks its kernels once, at load, from the CPU's
// family and model numbers. A CPU newer than the library falls back to "Prescott", SSE3 kernels:
// Debian 12's OpenBLAS 0.3.21 does so on Intel's Emerald Rapids (family 6, model 207), where its
// sgemm then runs at 16–27 GFLOP/s on one core against 120–150 GFLOP/s with the AVX-512 kernels
// the CPU can run (measured 2026-12-05), and every product in fidq with it. OPENBLAS_CORETYPE
// overrides the choice, but only when set before the library loads, which a user would have to
// know to do.
//
// So, before main, when OPENBLAS_CORETYPE is unset and OpenBLAS fell back to Prescott, this
// chooses the kernels by instruction set as OpenBLAS does for CPUs it knows (AVX-512 with
// bfloat16: Cooperlake; AVX-512: SkylakeX; AVX2 and FMA: Haswell; AVX: Sandybridge) and makes
// the library start again with them, through the entry points its own load and its fork handler
// use (blas_thread_shutdown_, gotoblas_dynamic_quit, then gotoblas_dynamic_init, which reads
// OPENBLAS_CORETYPE). A constructor, because then no thread of fidq's exists yet: nothing of
// fidq's can be in a BLAS call, and setenv is safe. OPENBLAS_CORETYPE is removed again
// afterwards, so child processes choose for themselves. A user who wants Prescott's kernels
// sets OPENBLAS_CORETYPE=Prescott, and fidq leaves it.
#include "OpenBLASCore.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
// OpenBLAS's own exported functions (x86-64 DYNAMIC_ARCH builds, as Debian's: driver/others/
// dynamic.c and the thread server). Weak, so that a build without them links and is left alone.
extern char *openblas_get_corename(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern void blas_thread_shutdown_(void) __attribute__((weak));
#endif

static const char *fallback = NULL;
static const char *chosen = NULL;

const char *fidq_openblas_fallback_core(void) { return fallback; }
const char *fidq_openblas_chosen_core(void) { return chosen; }

const char *fidq_openblas_core_for(int avx, int avx2, int fma, int avx512, int avx512bf16) {
    if (avx512 && avx512bf16) return "Cooperlake";
    if (avx512) return "SkylakeX";
    if (avx2 && fma) return "Haswell";
    if (avx) return "Sandybridge";
    return NULL;
}

#if defined(__x86_64__) && defined(__linux__)
__attribute__((constructor)) static void fidq_openblas_settle_core(void) {
    if (!openblas_get_corename || !gotoblas_dynamic_init || !gotoblas_dynamic_quit || !blas_thread_shutdown_) return;
    if (getenv("OPENBLAS_CORETYPE") != NULL) return;  // the user's choice stands
    const char *name = openblas_get_corename();
    if (name == NULL || strcmp(name, "Prescott") != 0) return;
    __builtin_cpu_init();
    // SkylakeX's and Cooperlake's kernels use AVX-512 F, BW, DQ, VL and CD.
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512cd");
    const char *pick = fidq_openblas_core_for(
        __builtin_cpu_supports("avx"), __builtin_cpu_supports("avx2"), __builtin_cpu_supports("fma"), avx512,
        __builtin_cpu_supports("avx512bf16"));
    if (pick == NULL) return;  // an SSE-only CPU: Prescott's kernels are its own
    // OpenBLAS's pool threads, started by its own constructor, initialise the library too when
    // they find it uninitialised (blas_memory_alloc), so they are stopped first, as OpenBLAS's
    // fork handler stops them; the next call that needs them starts them again.
    blas_thread_shutdown_();
    gotoblas_dynamic_quit();
    setenv("OPENBLAS_CORETYPE", pick, 1);
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    // 0.3.21 cannot force "Cooperlake" by name: it says "Core not found" (at OPENBLAS_VERBOSE 1)
    // and chooses by instruction set itself, which gives Cooperlake on such a CPU. So record the
    // kernels it runs now, whatever their name.
    const char *now = openblas_get_corename();
    if (now != NULL && strcmp(now, "Prescott") != 0) {
        fallback = "Prescott";
        chosen = now;
    }
}
#endif
