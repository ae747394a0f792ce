// blas.c — see blas.h for the contract.
#include "blas.h"

#include <blis.h>
#include <omp.h>
#include <stdlib.h>

#include "util.h"

static int blas_nthreads = 1;

// AVX-512 kernels need the four subsets BLIS's skx configuration uses. __builtin_cpu_supports reads
// cpuid and (in libgcc) checks with xgetbv that the OS saves the zmm state.
static bool cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

void blas_init(int threads)
{
    static bool arch_chosen;
    if (!arch_chosen) {
        // Must happen before BLIS's first call: BLIS reads it once, at initialisation. The 0 in
        // setenv keeps a value the user set (e.g. BLIS_ARCH_TYPE=3 to compare with haswell).
        if (cpu_has_avx512())
            setenv("BLIS_ARCH_TYPE", "0", 0);
        arch_chosen = true;
    }
    if (threads <= 0) {
        const char *s = getenv("BLIS_NUM_THREADS");
        const char *name = "BLIS_NUM_THREADS";
        if (!s || !*s) {
            s = getenv("OMP_NUM_THREADS");
            name = "OMP_NUM_THREADS";
        }
        threads = (s && *s) ? (int)parse_int(s, 1, 4096, name) : 1;
    }
    blas_nthreads = threads;
    bli_thread_set_num_threads(threads);
    omp_set_num_threads(threads);
    // Our loops call single-threaded BLIS from inside parallel regions; a nested team would only
    // oversubscribe the cores.
    omp_set_max_active_levels(1);
}

int blas_threads(void)
{
    return blas_nthreads;
}

const char *blas_arch_name(void)
{
    bli_init();   // querying before initialisation aborts in BLIS 0.9.0
    return bli_arch_string(bli_arch_query_id());
}

void sgemm_rm(bool trans_a, bool trans_b, int M, int N, int K,
              float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc)
{
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        // An empty product: C = beta·C. Done here so that beta = 0 also clears NaNs in C.
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    // Row-major: element (i, j) of a stored matrix sits at i*ld + j, so rs = ld and cs = 1; BLIS
    // applies the transpose to the stored matrix (docs/platform-notes.md, BLIS section).
    trans_t ta = trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    trans_t tb = trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    float *a = (float *)A, *b = (float *)B;   // BLIS's typed API is not const-qualified
    if (omp_in_parallel()) {
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_num_threads(1, &rntm);
        bli_sgemm_ex(ta, tb, M, N, K, &alpha, a, lda, 1, b, ldb, 1, &beta, C, ldc, 1, NULL, &rntm);
    } else {
        bli_sgemm(ta, tb, M, N, K, &alpha, a, lda, 1, b, ldb, 1, &beta, C, ldc, 1);
    }
}
