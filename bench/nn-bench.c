// nn-bench.c — throughput of the layer kernels of common/nn.c and of sgemm_rm, in GFLOP/s, at
// Qwen2.5-0.5B-like shapes (C 896, NH 14, NKV 2, hs 64, FF 4864). Writes one line per kernel to
// stdout: "<kernel> <shape> threads=<n> arch=<blis arch> cpu_ms=<best of reps> gflops=<rate>".
// FLOP counts are the useful ones (2 per multiply-add; causal attention counts only the lower
// triangle; backward passes count the recomputed forward products too).
//
// Build and run (from the repository root, after `make`):
//   cc -O2 -fopenmp -D_GNU_SOURCE -Icommon -o build/nn-bench bench/nn-bench.c build/libcommon.a
//      -lblis -lxxhash -lpcre2-8 -lutf8proc -ljansson -lmsgpackc -lm      (one line)
//   build/nn-bench [threads [section]]   # threads default 1; section: sgemm matmul attention
//                                        # swiglu logsoftmax (default all)
//   BLIS_ARCH_TYPE=3 build/nn-bench                # compare BLIS kernel sets (0 = skx needs AVX-512)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas.h"
#include "nn.h"
#include "util.h"

static float *randn(size_t n, float scale)
{
    float *x = xmalloc(n * sizeof(float));
    uint32_t s = 12345u + (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
    }
    return x;
}

static void report(const char *kernel, const char *shape, double flops, double secs)
{
    printf("%-22s %-28s threads=%d arch=%s cpu_ms=%.2f gflops=%.1f\n", kernel, shape, blas_threads(),
           blas_arch_name(), secs * 1e3, flops / secs * 1e-9);
    fflush(stdout);
}

// CPU seconds of the whole process (all threads). The 2 cores here are shared with other jobs,
// so wall time is noisy; cpu/threads is the time the run would take on idle cores when the threads
// never wait (an optimistic bound for threads > 1).
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Best CPU time / threads of `reps` runs of the block (after one warm-up run).
#define TIME_BEST(reps, best, ...) do { \
    __VA_ARGS__; \
    best = 1e30; \
    for (int r_ = 0; r_ < (reps); r_++) { \
        double t0_ = cpu_seconds(); \
        __VA_ARGS__; \
        double dt_ = (cpu_seconds() - t0_) / blas_threads(); \
        if (dt_ < best) best = dt_; \
    } \
} while (0)

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    blas_init(argc > 1 ? (int)parse_int(argv[1], 1, 256, "threads") : 1);
    const char *only = argc > 2 ? argv[2] : NULL;
    double t;
    char shape[64];
#define SECTION(name) if (!only || strcmp(only, name) == 0)

    // --- sgemm
    SECTION("sgemm") for (int n = 512; n <= 2048; n *= 2) {
        float *a = randn((size_t)n * n, 1), *b = randn((size_t)n * n, 1), *c = randn((size_t)n * n, 1);
        TIME_BEST(3, t, sgemm_rm(false, true, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n));
        snprintf(shape, sizeof shape, "%dx%dx%d", n, n, n);
        report("sgemm_rm NT", shape, 2.0 * n * n * n, t);
        free(a); free(b); free(c);
    }

    // --- matmul (mlp up projection shape)
    SECTION("matmul") {
        int N = 512, C = 896, OC = 4864;
        float *inp = randn((size_t)N * C, 1), *w = randn((size_t)OC * C, 0.03f);
        float *out = randn((size_t)N * OC, 1), *dinp = randn((size_t)N * C, 0);
        float *dw = randn((size_t)OC * C, 0);
        snprintf(shape, sizeof shape, "N%d C%d OC%d", N, C, OC);
        TIME_BEST(3, t, matmul_forward(out, inp, w, NULL, N, C, OC));
        report("matmul_forward", shape, 2.0 * N * C * OC, t);
        TIME_BEST(3, t, matmul_backward(dinp, dw, NULL, out, inp, w, N, C, OC));
        report("matmul_backward", shape, 4.0 * N * C * OC, t);
        free(inp); free(w); free(out); free(dinp); free(dw);
    }

    // --- attention: 2 sequences of T tokens
    SECTION("attention") for (int T = 256; T <= 1024; T *= 2) {
        int nseq = 2, N = nseq * T, NH = 14, NKV = 2, hs = 64;
        int cu[3] = { 0, T, 2 * T };
        size_t nq = (size_t)N * NH * hs, nk = (size_t)N * NKV * hs;
        float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *out = randn(nq, 0);
        float *lse = randn((size_t)N * NH, 0), *dq = randn(nq, 0), *dk = randn(nk, 0);
        float *dv = randn(nk, 0);
        size_t ss = attention_scratch_size(T, blas_threads());
        float *scratch = xmalloc(ss * sizeof(float));
        // useful flops: QKᵀ and PV over the causal triangle, 2·(T(T+1)/2)·hs each
        double fwd = (double)nseq * NH * 2.0 * 2.0 * (T * (T + 1) / 2.0) * hs;
        snprintf(shape, sizeof shape, "2x%d NH%d NKV%d hs%d", T, NH, NKV, hs);
        TIME_BEST(3, t, attention_forward(out, lse, q, k, v, cu, nseq, N, NH, NKV, hs, scratch, ss));
        report("attention_forward", shape, fwd, t);
        TIME_BEST(3, t, attention_backward(dq, dk, dv, out, q, k, v, out, lse, cu, nseq, N, NH, NKV,
                                           hs, scratch, ss));
        report("attention_backward", shape, fwd * 2.5, t);   // S, dV, dP, dQ, dK: 5 products
        free(q); free(k); free(v); free(out); free(lse); free(dq); free(dk); free(dv); free(scratch);
    }

    // --- swiglu (elementwise: GB/s would be the fairer unit; gflops counts ~10 flops/element)
    SECTION("swiglu") {
        int N = 512, FF = 4864;
        size_t n = (size_t)N * FF;
        float *g = randn(n, 4), *u = randn(n, 1), *o = randn(n, 0), *dg = randn(n, 0);
        float *du = randn(n, 0);
        snprintf(shape, sizeof shape, "N%d FF%d", N, FF);
        TIME_BEST(3, t, swiglu_forward(o, g, u, N, FF));
        report("swiglu_forward", shape, 10.0 * n, t);
        TIME_BEST(3, t, swiglu_backward(dg, du, o, g, u, N, FF));
        report("swiglu_backward", shape, 20.0 * n, t);
        free(g); free(u); free(o); free(dg); free(du);
    }

    // --- log-softmax gather (LM head)
    SECTION("logsoftmax") {
        int M = 256, C = 896, V = 151936, chunk = 128;
        float *h = randn((size_t)M * C, 1), *w = randn((size_t)V * C, 0.03f);
        float *dh = randn((size_t)M * C, 0), *dw = randn((size_t)V * C, 0);
        float *logp = randn(M, 0), *lse = randn(M, 0), *ent = randn(M, 0), *dlogp = randn(M, 1);
        int *ids = xmalloc(M * sizeof(int));
        for (int i = 0; i < M; i++)
            ids[i] = (i * 7919) % V;
        size_t ss = logsoftmax_gather_scratch_size(chunk, C, V);
        float *scratch = xmalloc(ss * sizeof(float));
        snprintf(shape, sizeof shape, "M%d C%d V%d chunk%d", M, C, V, chunk);
        TIME_BEST(2, t, logsoftmax_gather_forward(logp, lse, ent, NULL, NULL, 0, h, w, NULL, ids, M, 1,
                                                  C, V, 1.0f, scratch, ss));
        report("logsoftmax_gather_fwd", shape, 2.0 * M * C * V, t);
        TIME_BEST(2, t, logsoftmax_gather_backward(dh, dw, dlogp, NULL, h, w, NULL, ids, lse, NULL, M,
                                                   1, C, V, 1.0f, scratch, ss));
        report("logsoftmax_gather_bwd", shape, 6.0 * M * C * V, t);
        free(h); free(w); free(dh); free(dw); free(logp); free(lse); free(ent); free(dlogp);
        free(ids); free(scratch);
    }
    return 0;
}
