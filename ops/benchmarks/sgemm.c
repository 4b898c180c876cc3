/* sgemm.c: the raw-OpenBLAS peer of `ops/bench gemm`; answers timing requests on stdin.
 *
 * Built by ops/bench with `gcc -O2 sgemm.c -lopenblas`. One request per line, one reply per line:
 *   info                               -> the OpenBLAS build and the core kernel it picked
 *   gemm M K N TRANSB THREADS MINTIME  -> "SECONDS_PER_CALL CALLS": row-major C = A·B (B stored
 *                                         N×K and transposed when TRANSB is 1), repeated until
 *                                         MINTIME seconds have passed
 *   quit                               -> exit
 * The operands of the last shape are kept, so repeated samples of one shape allocate nothing.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *fresh(size_t count, unsigned *state) {
    float *p = malloc(count * sizeof(float));
    if (!p) {
        fprintf(stderr, "sgemm peer: out of memory for %zu floats\n", count);
        exit(1);
    }
    for (size_t i = 0; i < count; i++) {
        *state = *state * 1664525u + 1013904223u; /* LCG: values in [-1, 1) */
        p[i] = (float)(*state >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    return p;
}

int main(void) {
    char line[256];
    long cm = -1, ck = -1, cn = -1; /* the shape the buffers hold */
    float *a = NULL, *b = NULL, *c = NULL;
    while (fgets(line, sizeof line, stdin)) {
        long m, k, n;
        int transB, threads;
        double minTime;
        if (strncmp(line, "quit", 4) == 0) break;
        if (strncmp(line, "info", 4) == 0) {
            printf("%s; core %s\n", openblas_get_config(), openblas_get_corename());
        } else if (sscanf(line, "gemm %ld %ld %ld %d %d %lf", &m, &k, &n, &transB, &threads, &minTime) == 6) {
            openblas_set_num_threads(threads);
            if (m != cm || k != ck || n != cn) {
                unsigned state = 42;
                free(a), free(b), free(c);
                a = fresh((size_t)m * k, &state); /* (M, K) */
                b = fresh((size_t)k * n, &state); /* (K, N), or (N, K) when transposed */
                c = fresh((size_t)m * n, &state); /* (M, N) */
                cm = m, ck = k, cn = n;
            }
            long calls = 0;
            double start = now(), elapsed;
            do {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                            (int)k, 1.0f, a, (int)k, b, transB ? (int)k : (int)n, 0.0f, c, (int)n);
                calls++;
                elapsed = now() - start;
            } while (elapsed < minTime);
            printf("%.9e %ld\n", elapsed / (double)calls, calls);
        } else {
            fprintf(stderr, "sgemm peer: bad request: %s", line);
            printf("error\n");
        }
        fflush(stdout);
    }
    free(a), free(b), free(c);
    return 0;
}
