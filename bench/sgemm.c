// sgemm.c — the machine's f32 peak, the denominator of every "fraction of peak" srlm reports:
//   * an FMA loop (register-only, no memory traffic): the theoretical f32 peak the cores reach,
//     for the widest FMA the CPU has (AVX-512 or AVX2+FMA, chosen at run time);
//   * BLIS sgemm through sgemm_rm (the wrapper every kernel uses) on large square matrices and
//     on the shapes a training step and a decode step actually run.
// All rates are wall-clock GFLOP/s (2 flops per multiply-add), best of `reps` runs after a
// warm-up; the median is printed beside it (the machine is shared: best ≈ what the code can do,
// median ≈ what it got). One JSON line per measurement on stdout, e.g.
//   {"bench":"sgemm","what":"square","shape":"2048x2048x2048","ta":0,"tb":1,"threads":1,
//    "arch":"zen","best_gflops":35.1,"median_gflops":33.9}
//   {"bench":"fma_peak","threads":1,"isa":"avx2","best_gflops":...,"median_gflops":...}
// and a last summary line {"bench":"peak","threads":T,"fma_peak":...,"sgemm_peak":...} where
// sgemm_peak is the best square sgemm rate (the number the other benches divide by).
//
// Build (from the repository root, after `make`; bench/run.sh does this):
//   cc -O2 -fopenmp -D_GNU_SOURCE -Icommon -o build/bench/sgemm bench/sgemm.c build/libcommon.a
//      -lmsgpackc -lblis -lxxhash -lpcre2-8 -lutf8proc -ljansson -lm -lpthread   (one line)
// Run: build/bench/sgemm [--threads T] [--quick] [--reps R]
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "util.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *randu(size_t n, uint32_t seed)
{
    float *x = xmalloc(n * sizeof(float));
    uint32_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    return x;
}

// ---------------------------------------------------------------------------------------------
// FMA loop: 12 independent accumulator chains (more than latency x throughput on any x86 core),
// `iters` iterations of 12 vector FMAs each, all in registers.

#define FMA_CHAINS 12

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters, float seed)
{
    __m512 acc[FMA_CHAINS];
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(seed * 1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++)
        acc[i] = _mm512_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < FMA_CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++)
        s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters, float seed)
{
    __m256 acc[FMA_CHAINS];
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(seed * 1e-7f);
    for (int i = 0; i < FMA_CHAINS; i++)
        acc[i] = _mm256_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < FMA_CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    __m256 s = acc[0];
    for (int i = 1; i < FMA_CHAINS; i++)
        s = _mm256_add_ps(s, acc[i]);
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

static volatile float sink;

// GFLOP/s of the FMA loop on `threads` threads (one parallel region, each thread iters loops).
static double fma_rate(int threads, bool avx512, long iters)
{
    double t0 = now_seconds();
    #pragma omp parallel num_threads(threads)
    {
        float r = avx512 ? fma_loop_avx512(iters, (float)omp_get_thread_num())
                         : fma_loop_avx2(iters, (float)omp_get_thread_num());
        #pragma omp atomic
        sink += r;
    }
    double dt = now_seconds() - t0;
    int lanes = avx512 ? 16 : 8;
    return (double)threads * iters * FMA_CHAINS * lanes * 2.0 / dt * 1e-9;
}

// ---------------------------------------------------------------------------------------------

struct stat { double best, median; };

static struct stat summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    struct stat s = { v[n - 1], n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]) };
    return s;
}

static struct stat time_sgemm(bool ta, bool tb, int M, int N, int K, int reps)
{
    // Operand storage: op(A) is M x K; A stored (K, M) when transposed, and so on.
    float *A = randu((size_t)M * K, 1), *B = randu((size_t)K * N, 2), *C = randu((size_t)M * N, 3);
    int lda = ta ? M : K, ldb = tb ? K : N;
    double rate[64];
    if (reps > 64) reps = 64;
    sgemm_rm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);   // warm-up (and BLIS init)
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        sgemm_rm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        rate[r] = 2.0 * M * N * K / (now_seconds() - t0) * 1e-9;
    }
    free(A), free(B), free(C);
    return summarize(rate, reps);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    int threads = 1, reps = 5;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = (int)parse_int(argv[++i], 1, 256, "--threads");
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = (int)parse_int(argv[++i], 1, 64, "--reps");
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else { fprintf(stderr, "usage: sgemm [--threads T] [--reps R] [--quick]\n"); return 64; }
    }
    blas_init(threads);
    const char *arch = blas_arch_name();

    // FMA peak
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f");
    if (!avx512 && !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "sgemm: no FMA on this CPU\n");
        return 69;
    }
    long iters = quick ? 20000000L : 50000000L;
    double fr[16];
    int nf = quick ? 3 : 7;
    fma_rate(threads, avx512, iters / 10);
    for (int r = 0; r < nf; r++)
        fr[r] = fma_rate(threads, avx512, iters);
    struct stat fs = summarize(fr, nf);
    printf("{\"bench\":\"fma_peak\",\"threads\":%d,\"isa\":\"%s\",\"best_gflops\":%.1f,\"median_gflops\":%.1f}\n",
           threads, avx512 ? "avx512" : "avx2", fs.best, fs.median);
    fflush(stdout);

    // sgemm: square, then the products of training and decoding
    struct shape { const char *what; bool ta, tb; int M, N, K; } shapes[] = {
        {"square", false, true, 1024, 1024, 1024},
        {"square", false, true, 2048, 2048, 2048},
        {"square", false, false, 2048, 2048, 2048},
        {"small fwd N1024 C512->FF1408", false, true, 1024, 1408, 512},
        {"small bwd dW FF1408xC512 over N1024", true, false, 1408, 512, 1024},
        {"small lm_head 128xV8192xC512", false, true, 128, 8192, 512},
        {"0.5b fwd N512 C896->FF4864", false, true, 512, 4864, 896},
        {"0.5b bwd dX N512 FF4864->C896", false, false, 512, 896, 4864},
        {"0.5b bwd dW FF4864xC896 over N512", true, false, 4864, 896, 512},
        {"0.5b lm_head 128xV151936xC896", false, true, 128, 151936, 896},
        {"0.5b decode B1 C896->FF4864", false, true, 1, 4864, 896},
        {"0.5b decode B8 C896->FF4864", false, true, 8, 4864, 896},
    };
    double best_square = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const struct shape *s = &shapes[i];
        if (quick && s->M * (double)s->N * s->K > 2e10 && strcmp(s->what, "square"))
            continue;   // the 0.5b lm_head (17 GFLOP) is skipped by --quick
        int r = reps;
        if (s->M * (double)s->N * s->K < 1e8) r = reps * 20 > 64 ? 64 : reps * 20;   // decode shapes
        struct stat st = time_sgemm(s->ta, s->tb, s->M, s->N, s->K, r);
        if (!strcmp(s->what, "square") && st.best > best_square)
            best_square = st.best;
        printf("{\"bench\":\"sgemm\",\"what\":\"%s\",\"shape\":\"%dx%dx%d\",\"ta\":%d,\"tb\":%d,\"threads\":%d,"
               "\"arch\":\"%s\",\"best_gflops\":%.1f,\"median_gflops\":%.1f}\n",
               s->what, s->M, s->N, s->K, s->ta, s->tb, threads, arch, st.best, st.median);
        fflush(stdout);
    }
    printf("{\"bench\":\"peak\",\"threads\":%d,\"arch\":\"%s\",\"isa\":\"%s\",\"fma_peak\":%.1f,\"sgemm_peak\":%.1f}\n",
           threads, arch, avx512 ? "avx512" : "avx2", fs.best, best_square);
    return 0;
}
