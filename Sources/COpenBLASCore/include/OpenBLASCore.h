// COpenBLASCore: gives OpenBLAS the kernels of this CPU's instruction set when it does not know
// the CPU (OpenBLASCore.c says why and how).
#ifndef FIDQ_OPENBLAS_CORE_H
#define FIDQ_OPENBLAS_CORE_H

/// The core type OpenBLAS chose itself at load, when fidq replaced it ("Prescott"), else NULL.
const char *fidq_openblas_fallback_core(void);

/// The core type fidq chose in its place ("Cooperlake", "SkylakeX", "Haswell", "Sandybridge"),
/// else NULL.
const char *fidq_openblas_chosen_core(void);

/// The core type fidq would choose for a CPU with these features (1 = has it), NULL for none:
/// the rule the constructor applies, open to tests.
const char *fidq_openblas_core_for(int avx, int avx2, int fma, int avx512, int avx512bf16);

#endif
