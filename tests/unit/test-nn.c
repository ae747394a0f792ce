// test-nn.c — the layer kernels of common/nn.c against the naive double-precision references of
// common/nn_ref.c, and every backward against central finite differences of those references.
//
// How a gradient is checked: the f32 backward gets a random dout g and gradient buffers pre-filled
// with random values (so that "+=" is checked too); the expected gradient of L = Σ g·out is
//   (L(x + eps·e_i) - L(x - eps·e_i)) / 2eps
// evaluated on the double reference at the same (f32-representable) point, eps = 1e-5. In double
// that estimate is exact to ~1e-10, so the tolerances below measure the f32 kernels only.
//
// Tolerances (|got - want| <= atol + rtol·|want|, per element; one CHECK per tensor). Inputs are
// U(-1, 1) or so, so outputs and gradients are O(1); f32 carries ~6e-8 relative:
//   matmul, rmsnorm, swiglu, embedding, residual  fwd 1e-5 / 1e-5   bwd 1e-5 / 1e-4
//   rope       fwd and bwd 2e-5 / 1e-4 (nn.c rounds the angle pos·inv_freq to f32 as HF does)
//   attention  fwd 2e-5 / 1e-4   bwd 5e-5 / 1e-3 (softmax recomputed from the saved lse)
//   logsoftmax_gather  fwd 2e-5 / 1e-5   bwd 2e-5 / 1e-4
// Set TEST_VERBOSE=1 to print the worst error of every comparison.
#include <stdint.h>
#include <string.h>

#include "blas.h"
#include "nn.h"
#include "nn_ref.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

static int verbose;

// ----------------------------------------------------------------------------
// helpers

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double urand(void)   // U(-1, 1), xorshift64*
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

// Random f32 values and their exact double copy.
static void fill(float *f, double *d, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) {
        f[i] = (float)(urand() * scale);
        if (d)
            d[i] = f[i];
    }
}

static float *fnew(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }
static double *dnew(size_t n) { return xcalloc(n ? n : 1, sizeof(double)); }

// Worst violation of |a - b| <= atol + rtol·|b| over n elements; one CHECK.
static void check_close_at(const char *file, int line, const char *what, const float *a,
                           const double *b, size_t n, double atol, double rtol)
{
    double worst = 0.0, worst_ratio = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]);
        double ratio = err == 0.0 ? 0.0 : err / (atol + rtol * fabs(b[i]));
        if (!(ratio <= worst_ratio)) {   // also catches NaN
            worst_ratio = ratio;
            worst = err;
            at = i;
        }
    }
    if (verbose)
        fprintf(stderr, "  %-40s max err %.3g (%.2f of tolerance)\n", what, worst, worst_ratio);
    if (worst_ratio <= 1.0) {
        test_passed++;
    } else {
        test_failed++;
        fprintf(stderr, "%s:%d: %s: element %zu: got %.9g, want %.9g (atol %.1g, rtol %.1g)\n",
                file, line, what, at, a[at], b[at], atol, rtol);
    }
}
#define check_close(...) check_close_at(__FILE__, __LINE__, __VA_ARGS__)

// A gradient check: got = prefill + gradient; want = the finite-difference gradient.
static void check_grad_at(const char *file, int line, const char *what, const float *got,
                          const float *prefill, const double *want, size_t n, double atol,
                          double rtol)
{
    float *g = fnew(n);
    for (size_t i = 0; i < n; i++)
        g[i] = (float)((double)got[i] - prefill[i]);
    check_close_at(file, line, what, g, want, n, atol, rtol);
    free(g);
}
#define check_grad(...) check_grad_at(__FILE__, __LINE__, __VA_ARGS__)

// Finite differences of L(x) = Σ g·f(x) for the inputs listed in idx (or all when idx == NULL);
// f reads its inputs through ctx, x being one of them. Gradients not probed are left NAN... so
// callers compare only probed entries (see fd_subset_check).
struct fd {
    void (*f)(void *ctx, double *out);
    void *ctx;
    const double *g;   // (nout) weights of the outputs
    size_t nout;
};

static double fd_loss(const struct fd *fd, double *out)
{
    fd->f(fd->ctx, out);
    double L = 0.0;
    for (size_t i = 0; i < fd->nout; i++)
        L += fd->g[i] * out[i];
    return L;
}

static void fd_grad(const struct fd *fd, double *x, size_t nx, double *grad)
{
    const double eps = 1e-5;
    double *out = dnew(fd->nout);
    for (size_t i = 0; i < nx; i++) {
        double x0 = x[i];
        x[i] = x0 + eps;
        double lp = fd_loss(fd, out);
        x[i] = x0 - eps;
        double lm = fd_loss(fd, out);
        x[i] = x0;
        grad[i] = (lp - lm) / (2 * eps);
    }
    free(out);
}

// Same, for a random sample of `count` indices; got/prefill/want are compared on those only.
static void fd_subset_check_at(const char *file, int line, const char *what, const struct fd *fd,
                               double *x, size_t nx, const float *got, const float *prefill,
                               size_t count, double atol, double rtol)
{
    const double eps = 1e-5;
    double *out = dnew(fd->nout), *want = dnew(count);
    float *g = fnew(count);
    for (size_t s = 0; s < count; s++) {
        size_t i = (size_t)((urand() + 1.0) / 2.0 * nx) % nx;
        double x0 = x[i];
        x[i] = x0 + eps;
        double lp = fd_loss(fd, out);
        x[i] = x0 - eps;
        double lm = fd_loss(fd, out);
        x[i] = x0;
        want[s] = (lp - lm) / (2 * eps);
        g[s] = (float)((double)got[i] - prefill[i]);
    }
    check_close_at(file, line, what, g, want, count, atol, rtol);
    free(out);
    free(want);
    free(g);
}
#define fd_subset_check(...) fd_subset_check_at(__FILE__, __LINE__, __VA_ARGS__)

static float *fcopy(const float *a, size_t n)
{
    float *b = fnew(n);
    memcpy(b, a, n * sizeof(float));
    return b;
}

// ----------------------------------------------------------------------------
// matmul

struct matmul_ctx { double *inp, *w, *b; int N, C, OC; };
static void matmul_f(void *p, double *out)
{
    struct matmul_ctx *c = p;
    matmul_forward_ref(out, c->inp, c->w, c->b, c->N, c->C, c->OC);
}

static void test_matmul(void)
{
    enum { N = 7, C = 16, OC = 12 };
    float *inp = fnew(N * C), *w = fnew(OC * C), *b = fnew(OC), *out = fnew(N * OC);
    double *inp_d = dnew(N * C), *w_d = dnew(OC * C), *b_d = dnew(OC), *out_d = dnew(N * OC);
    fill(inp, inp_d, N * C, 1.0);
    fill(w, w_d, OC * C, 1.0);
    fill(b, b_d, OC, 1.0);

    matmul_forward(out, inp, w, b, N, C, OC);
    matmul_forward_ref(out_d, inp_d, w_d, b_d, N, C, OC);
    check_close("matmul forward (bias)", out, out_d, N * OC, 1e-5, 1e-5);
    matmul_forward(out, inp, w, NULL, N, C, OC);
    matmul_forward_ref(out_d, inp_d, w_d, NULL, N, C, OC);
    check_close("matmul forward (no bias)", out, out_d, N * OC, 1e-5, 1e-5);

    float *dout = fnew(N * OC), *dinp = fnew(N * C), *dw = fnew(OC * C), *db = fnew(OC);
    double *g = dnew(N * OC);
    fill(dout, g, N * OC, 1.0);
    fill(dinp, NULL, N * C, 1.0);
    fill(dw, NULL, OC * C, 1.0);
    fill(db, NULL, OC, 1.0);
    float *dinp0 = fcopy(dinp, N * C), *dw0 = fcopy(dw, OC * C), *db0 = fcopy(db, OC);
    matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);

    struct matmul_ctx ctx = { inp_d, w_d, b_d, N, C, OC };
    struct fd fd = { matmul_f, &ctx, g, N * OC };
    double *num = dnew(OC * C);
    fd_grad(&fd, inp_d, N * C, num);
    check_grad("matmul dinp", dinp, dinp0, num, N * C, 1e-5, 1e-4);
    fd_grad(&fd, w_d, OC * C, num);
    check_grad("matmul dweight", dw, dw0, num, OC * C, 1e-5, 1e-4);
    fd_grad(&fd, b_d, OC, num);
    check_grad("matmul dbias", db, db0, num, OC, 1e-5, 1e-4);

    // NULL gradients are skipped and leave the others alone
    float *dw1 = fcopy(dw0, OC * C);
    matmul_backward(NULL, dw1, NULL, dout, inp, w, N, C, OC);
    fd_grad(&fd, w_d, OC * C, num);
    check_grad("matmul dweight only", dw1, dw0, num, OC * C, 1e-5, 1e-4);

    // matmul_backward_set_dinp: dinp overwritten (whatever it held), dweight/dbias accumulated
    float *dinp2 = fcopy(dinp0, N * C), *dw2 = fcopy(dw0, OC * C), *db2 = fcopy(db0, OC), *zeros = fnew(N * C);
    matmul_backward_set_dinp(dinp2, dw2, db2, dout, inp, w, N, C, OC);
    fd_grad(&fd, inp_d, N * C, num);
    check_grad("matmul_backward_set_dinp dinp", dinp2, zeros, num, N * C, 1e-5, 1e-4);
    CHECK_MSG(!memcmp(dw2, dw, OC * C * sizeof(float)) && !memcmp(db2, db, OC * sizeof(float)),
              "matmul_backward_set_dinp dweight/dbias accumulate as matmul_backward's");
    free(dinp2); free(dw2); free(db2); free(zeros);

    free(inp); free(w); free(b); free(out); free(inp_d); free(w_d); free(b_d); free(out_d);
    free(dout); free(dinp); free(dw); free(db); free(g); free(dinp0); free(dw0); free(db0);
    free(num); free(dw1);
}

// matmul_forward_bf16 against a double reference on the weights' bf16 values: every row count the
// kernel groups differently (1, 2, 3, 4 rows and remainders), output widths not a multiple of its
// block, K not a multiple of 8 (the scalar tail), with and without bias; and the same bits at 1
// and 2 threads.
static void test_matmul_bf16(void)
{
    enum { C = 37, OC = 4099 };
    static const int Ns[] = {1, 2, 3, 4, 5, 9, 16};
    float *w = fnew((size_t)OC * C), *b = fnew(OC);
    double *w_d = dnew((size_t)OC * C), *b_d = dnew(OC);
    uint16_t *wh = xmalloc((size_t)OC * C * sizeof *wh);
    fill(w, NULL, (size_t)OC * C, 1.0);
    fill(b, b_d, OC, 1.0);
    for (size_t i = 0; i < (size_t)OC * C; i++) {
        wh[i] = f32_to_bf16(w[i]);
        w_d[i] = bf16_to_f32(wh[i]);
    }
    for (size_t k = 0; k < sizeof Ns / sizeof *Ns; k++) {
        int N = Ns[k];
        float *inp = fnew((size_t)N * C), *out = fnew((size_t)N * OC), *out2 = fnew((size_t)N * OC);
        double *inp_d = dnew((size_t)N * C), *out_d = dnew((size_t)N * OC);
        fill(inp, inp_d, (size_t)N * C, 1.0);
        char what[64];
        for (int bias = 0; bias < 2; bias++) {
            fill(out, NULL, (size_t)N * OC, 1.0);   // overwritten, whatever it held
            matmul_forward_bf16(out, inp, wh, bias ? b : NULL, N, C, OC);
            matmul_forward_ref(out_d, inp_d, w_d, bias ? b_d : NULL, N, C, OC);
            snprintf(what, sizeof what, "matmul_forward_bf16 N=%d bias=%d", N, bias);
            check_close(what, out, out_d, (size_t)N * OC, 1e-5, 1e-5);
        }
        blas_init(2);
        matmul_forward_bf16(out2, inp, wh, b, N, C, OC);
        blas_init(1);
        CHECK_MSG(!memcmp(out, out2, (size_t)N * OC * sizeof(float)),
                  "matmul_forward_bf16 N=%d: 1 and 2 threads differ", N);
        free(inp), free(out), free(out2), free(inp_d), free(out_d);
    }
    free(w), free(b), free(w_d), free(b_d), free(wh);
}

// sgemm_nt_parts (decoding's fused q/k/v and gate/up products): every part bitwise equal to its
// separate product (sgemm_rm for f32, sgemm_bf16_nt for bf16), beta 0 and 1, few rows (the
// few-row kernel) and many (BLIS), 1 and 2 threads.
static void test_gemm_parts(void)
{
    enum { K = 40 };
    static const int Ns[3] = {24, 7, 7}, Ms[] = {1, 3, 8, 11};
    float *A = fnew(16 * K), *B[3], *Cp[3], *Cs[3];
    uint16_t *Bh[3];
    fill(A, NULL, 16 * K, 1.0);
    for (int i = 0; i < 3; i++) {
        B[i] = fnew((size_t)Ns[i] * K), Cp[i] = fnew(16 * 24), Cs[i] = fnew(16 * 24);
        Bh[i] = xmalloc((size_t)Ns[i] * K * sizeof(uint16_t));
        fill(B[i], NULL, (size_t)Ns[i] * K, 1.0);
        for (int j = 0; j < Ns[i] * K; j++) Bh[i][j] = f32_to_bf16(B[i][j]);
    }
    int bad = 0, cases = 0;
    for (int threads = 1; threads <= 2; threads++) {
        blas_init(threads);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (int bf16 = 0; bf16 < 2; bf16++)
                for (int beta = 0; beta < 2; beta++) {
                    int M = Ms[mi];
                    struct gemm_nt_part parts[3];
                    for (int i = 0; i < 3; i++) {
                        fill(Cp[i], NULL, 16 * 24, 1.0);
                        memcpy(Cs[i], Cp[i], 16 * 24 * sizeof(float));
                        parts[i] = (struct gemm_nt_part){bf16 ? (const void *)Bh[i] : (const void *)B[i], Ns[i],
                                                         Cp[i], (float)beta};
                        // one row at a time: the parts' product is row-invariant (blas.h)
                        for (int r = 0; r < M; r++)
                            if (bf16) sgemm_bf16_nt(1, Ns[i], K, A + r * K, K, Bh[i], K, (float)beta, Cs[i] + r * Ns[i], Ns[i]);
                            else sgemm_rm(false, true, 1, Ns[i], K, 1.0f, A + r * K, K, B[i], K, (float)beta,
                                          Cs[i] + r * Ns[i], Ns[i]);
                    }
                    sgemm_nt_parts(M, K, A, K, parts, 3, bf16);
                    for (int i = 0; i < 3; i++, cases++)
                        if (memcmp(Cp[i], Cs[i], (size_t)M * Ns[i] * sizeof(float))) {
                            bad++;
                            fprintf(stderr, "sgemm_nt_parts part %d differs: M=%d bf16=%d beta=%d threads=%d\n",
                                    i, M, bf16, beta, threads);
                        }
                }
    }
    blas_init(1);
    CHECK_MSG(bad == 0, "sgemm_nt_parts: %d of %d parts differ from their separate products", bad, cases);
    free(A);
    for (int i = 0; i < 3; i++) free(B[i]), free(Cp[i]), free(Cs[i]), free(Bh[i]);
}

// ----------------------------------------------------------------------------
// rmsnorm (also the Qwen3 per-head q/k norm shape: rows = tokens*heads, C = hs)

struct rmsnorm_ctx { double *inp, *w; int N, C; double eps; };
static void rmsnorm_f(void *p, double *out)
{
    struct rmsnorm_ctx *c = p;
    rmsnorm_forward_ref(out, c->inp, c->w, c->N, c->C, c->eps);
}

static void test_rmsnorm_shape(const char *name, int N, int C, float eps)
{
    char what[96];
    float *inp = fnew(N * C), *w = fnew(C), *out = fnew(N * C), *rstd = fnew(N);
    double *inp_d = dnew(N * C), *w_d = dnew(C), *out_d = dnew(N * C);
    fill(inp, inp_d, N * C, 2.0);
    fill(w, w_d, C, 1.0);
    rmsnorm_forward(out, rstd, inp, w, N, C, eps);
    rmsnorm_forward_ref(out_d, inp_d, w_d, N, C, eps);
    snprintf(what, sizeof what, "%s forward", name);
    check_close(what, out, out_d, N * C, 1e-5, 1e-5);

    float *dout = fnew(N * C), *dinp = fnew(N * C), *dw = fnew(C);
    double *g = dnew(N * C), *num = dnew(N * C);
    fill(dout, g, N * C, 1.0);
    fill(dinp, NULL, N * C, 1.0);
    fill(dw, NULL, C, 1.0);
    float *dinp0 = fcopy(dinp, N * C), *dw0 = fcopy(dw, C);
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    struct rmsnorm_ctx ctx = { inp_d, w_d, N, C, eps };
    struct fd fd = { rmsnorm_f, &ctx, g, N * C };
    fd_grad(&fd, inp_d, N * C, num);
    snprintf(what, sizeof what, "%s dinp", name);
    check_grad(what, dinp, dinp0, num, N * C, 1e-5, 1e-4);
    fd_grad(&fd, w_d, C, num);
    snprintf(what, sizeof what, "%s dweight", name);
    check_grad(what, dw, dw0, num, C, 1e-5, 1e-4);

    // rmsnorm_backward_set_dinp: dinp overwritten, dweight accumulated
    float *dinp2 = fcopy(dinp0, N * C), *dw2 = fcopy(dw0, C), *zeros = fnew(N * C);
    rmsnorm_backward_set_dinp(dinp2, dw2, dout, inp, w, rstd, N, C);
    fd_grad(&fd, inp_d, N * C, num);
    snprintf(what, sizeof what, "%s set dinp", name);
    check_grad(what, dinp2, zeros, num, N * C, 1e-5, 1e-4);
    CHECK_MSG(!memcmp(dw2, dw, C * sizeof(float)), "%s set: dweight as rmsnorm_backward's", name);
    free(dinp2); free(dw2); free(zeros);

    free(inp); free(w); free(out); free(rstd); free(inp_d); free(w_d); free(out_d);
    free(dout); free(dinp); free(dw); free(g); free(num); free(dinp0); free(dw0);
}

static void test_rmsnorm(void)
{
    test_rmsnorm_shape("rmsnorm", 7, 16, 1e-6f);
    test_rmsnorm_shape("rmsnorm (C > column block)", 5, 80, 1e-5f);
    test_rmsnorm_shape("rmsnorm per head (7x4 rows, hs 8)", 7 * 4, 8, 1e-6f);
}

// ----------------------------------------------------------------------------
// rope

struct rope_ctx { double *inp; const int *pos; int N, nh, hs; double theta; };
static void rope_f(void *p, double *out)
{
    struct rope_ctx *c = p;
    rope_forward_ref(out, c->inp, c->pos, c->N, c->nh, c->hs, c->theta);
}

static void test_rope_theta(float theta)
{
    enum { N = 7, NH = 4, HS = 8, MAXPOS = 128 };
    int cu[3] = { 0, 4, 7 }, pos[N];
    nn_positions(pos, cu, 2);
    CHECK(pos[0] == 0 && pos[3] == 3 && pos[4] == 0 && pos[6] == 2);
    pos[6] = 100;   // a larger angle too
    float inv_freq[HS / 2], *cos_tab = fnew(MAXPOS * HS / 2), *sin_tab = fnew(MAXPOS * HS / 2);
    rope_inv_freq(inv_freq, HS, theta);
    rope_tables(cos_tab, sin_tab, inv_freq, MAXPOS, HS);

    size_t n = N * NH * HS;
    float *inp = fnew(n), *out = fnew(n);
    double *inp_d = dnew(n), *out_d = dnew(n);
    fill(inp, inp_d, n, 1.0);
    rope_forward(out, inp, cos_tab, sin_tab, pos, N, NH, HS);
    rope_forward_ref(out_d, inp_d, pos, N, NH, HS, theta);
    check_close("rope forward", out, out_d, n, 2e-5, 1e-4);
    float *inplace = fcopy(inp, n);
    rope_forward(inplace, inplace, cos_tab, sin_tab, pos, N, NH, HS);
    CHECK(memcmp(inplace, out, n * sizeof(float)) == 0);

    float *dout = fnew(n), *dinp = fnew(n);
    double *g = dnew(n), *num = dnew(n);
    fill(dout, g, n, 1.0);
    fill(dinp, NULL, n, 1.0);
    float *dinp0 = fcopy(dinp, n);
    rope_backward(dinp, dout, cos_tab, sin_tab, pos, N, NH, HS);
    struct rope_ctx ctx = { inp_d, pos, N, NH, HS, theta };
    struct fd fd = { rope_f, &ctx, g, n };
    fd_grad(&fd, inp_d, n, num);
    check_grad("rope dinp", dinp, dinp0, num, n, 2e-5, 1e-4);
    // in place: the gradient is replaced, not accumulated
    float *din = fcopy(dout, n), *zero = fnew(n);
    rope_backward(din, din, cos_tab, sin_tab, pos, N, NH, HS);
    check_grad("rope dinp in place", din, zero, num, n, 2e-5, 1e-4);

    free(cos_tab); free(sin_tab); free(inp); free(out); free(inp_d); free(out_d); free(inplace);
    free(dout); free(dinp); free(g); free(num); free(dinp0); free(din); free(zero);
}

// Llama 3.1/3.2 scaling against Meta's apply_scaling (llama/model.py), written here in double:
// each frequency is kept, divided by the factor, or blended, by its wavelength.
static void test_rope_llama3(void)
{
    enum { HS = 64 };
    const double theta = 500000, factor = 32, lo = 1, hi = 4, old = 8192, pi = 3.14159265358979323846;
    float inv[HS / 2];
    rope_inv_freq(inv, HS, (float)theta);
    rope_scale_llama3(inv, HS, factor, lo, hi, old);
    int kept = 0, divided = 0, blended = 0;
    for (int i = 0; i < HS / 2; i++) {
        double f = 1.0 / pow(theta, 2.0 * i / HS), wl = 2 * pi / f, want;
        if (wl < old / hi) { want = f; kept++; }
        else if (wl > old / lo) { want = f / factor; divided++; }
        else {
            double smooth = (old / wl - lo) / (hi - lo);
            want = (1 - smooth) * f / factor + smooth * f;
            blended++;
        }
        CHECK_MSG(fabs(inv[i] - want) <= 2e-6 * want, "llama3 inv_freq[%d] = %.9g, want %.9g", i, inv[i], want);
    }
    CHECK_MSG(kept > 0 && divided > 0 && blended > 0, "regimes %d/%d/%d", kept, divided, blended);
}

static void test_rope(void)
{
    test_rope_theta(10000.0f);
    test_rope_theta(1000000.0f);   // Qwen2.5 / Qwen3 rope_theta
    test_rope_llama3();
}

// ----------------------------------------------------------------------------
// attention

struct attn_ctx { double *q, *k, *v; const int *cu; int nseq, N, NH, NKV, hs; };
static void attn_f(void *p, double *out)
{
    struct attn_ctx *c = p;
    attention_forward_ref(out, c->q, c->k, c->v, c->cu, c->nseq, c->N, c->NH, c->NKV, c->hs);
}

// fd_sample == 0: finite differences for every input element; else for that many random ones.
static void test_attention_case(const char *name, const int *cu, int nseq, int NH, int NKV, int hs,
                                size_t fd_sample)
{
    char what[128];
    int N = cu[nseq], T_max = 0;
    for (int s = 0; s < nseq; s++)
        if (cu[s + 1] - cu[s] > T_max)
            T_max = cu[s + 1] - cu[s];
    size_t nq = (size_t)N * NH * hs, nk = (size_t)N * NKV * hs;
    size_t scratch_size = attention_scratch_size(T_max, blas_threads());
    float *scratch = fnew(scratch_size);
    float *q = fnew(nq), *k = fnew(nk), *v = fnew(nk), *out = fnew(nq), *lse = fnew(N * NH);
    double *q_d = dnew(nq), *k_d = dnew(nk), *v_d = dnew(nk), *out_d = dnew(nq);
    // scale 2: scores of a few units, so the softmax is far from uniform
    fill(q, q_d, nq, 2.0);
    fill(k, k_d, nk, 2.0);
    fill(v, v_d, nk, 1.0);
    attention_forward(out, lse, q, k, v, cu, nseq, N, NH, NKV, hs, scratch, scratch_size);
    attention_forward_ref(out_d, q_d, k_d, v_d, cu, nseq, N, NH, NKV, hs);
    snprintf(what, sizeof what, "attention %s forward", name);
    check_close(what, out, out_d, nq, 2e-5, 1e-4);

    float *dout = fnew(nq), *dq = fnew(nq), *dk = fnew(nk), *dv = fnew(nk);
    double *g = dnew(nq);
    fill(dout, g, nq, 1.0);
    fill(dq, NULL, nq, 1.0);
    fill(dk, NULL, nk, 1.0);
    fill(dv, NULL, nk, 1.0);
    float *dq0 = fcopy(dq, nq), *dk0 = fcopy(dk, nk), *dv0 = fcopy(dv, nk);
    attention_backward(dq, dk, dv, dout, q, k, v, out, lse, cu, nseq, N, NH, NKV, hs,
                       scratch, scratch_size);
    struct attn_ctx ctx = { q_d, k_d, v_d, cu, nseq, N, NH, NKV, hs };
    struct fd fd = { attn_f, &ctx, g, nq };
    const char *names[3] = { "dq", "dk", "dv" };
    double *xs[3] = { q_d, k_d, v_d };
    float *gots[3] = { dq, dk, dv }, *pres[3] = { dq0, dk0, dv0 };
    size_t ns[3] = { nq, nk, nk };
    for (int t = 0; t < 3; t++) {
        snprintf(what, sizeof what, "attention %s %s", name, names[t]);
        if (fd_sample) {
            fd_subset_check(what, &fd, xs[t], ns[t], gots[t], pres[t], fd_sample, 5e-5, 1e-3);
        } else {
            double *num = dnew(ns[t]);
            fd_grad(&fd, xs[t], ns[t], num);
            check_grad(what, gots[t], pres[t], num, ns[t], 5e-5, 1e-3);
            free(num);
        }
    }
    free(scratch); free(q); free(k); free(v); free(out); free(lse); free(q_d); free(k_d);
    free(v_d); free(out_d); free(dout); free(dq); free(dk); free(dv); free(g);
    free(dq0); free(dk0); free(dv0);
}

// Sequence 0 must not see sequence 1 and vice versa: changing one sequence's inputs leaves the
// other's outputs bitwise unchanged, and a gradient on one sequence's outputs gives exactly zero
// gradient on the other's inputs.
static void test_attention_isolation(void)
{
    enum { NH = 4, NKV = 2, HS = 8 };
    int cu[3] = { 0, 4, 7 }, N = 7;
    size_t nq = N * NH * HS, nk = N * NKV * HS, split_q = 4 * NH * HS, split_k = 4 * NKV * HS;
    size_t scratch_size = attention_scratch_size(4, blas_threads());
    float *scratch = fnew(scratch_size);
    float *q = fnew(nq), *k = fnew(nk), *v = fnew(nk), *out = fnew(nq), *out2 = fnew(nq);
    float *lse = fnew(N * NH), *lse2 = fnew(N * NH);
    fill(q, NULL, nq, 2.0);
    fill(k, NULL, nk, 2.0);
    fill(v, NULL, nk, 1.0);
    attention_forward(out, lse, q, k, v, cu, 2, N, NH, NKV, HS, scratch, scratch_size);
    float *q2 = fcopy(q, nq), *k2 = fcopy(k, nk), *v2 = fcopy(v, nk);
    fill(q2 + split_q, NULL, nq - split_q, 3.0);   // new sequence 1
    fill(k2 + split_k, NULL, nk - split_k, 3.0);
    fill(v2 + split_k, NULL, nk - split_k, 3.0);
    attention_forward(out2, lse2, q2, k2, v2, cu, 2, N, NH, NKV, HS, scratch, scratch_size);
    CHECK(memcmp(out, out2, split_q * sizeof(float)) == 0);
    CHECK(memcmp(out + split_q, out2 + split_q, (nq - split_q) * sizeof(float)) != 0);
    // now change sequence 0 only
    memcpy(q2 + split_q, q + split_q, (nq - split_q) * sizeof(float));
    memcpy(k2 + split_k, k + split_k, (nk - split_k) * sizeof(float));
    memcpy(v2 + split_k, v + split_k, (nk - split_k) * sizeof(float));
    fill(q2, NULL, split_q, 3.0);
    fill(k2, NULL, split_k, 3.0);
    fill(v2, NULL, split_k, 3.0);
    attention_forward(out2, lse2, q2, k2, v2, cu, 2, N, NH, NKV, HS, scratch, scratch_size);
    CHECK(memcmp(out + split_q, out2 + split_q, (nq - split_q) * sizeof(float)) == 0);

    // gradient only on sequence 0's outputs
    float *dout = fnew(nq), *dq = fnew(nq), *dk = fnew(nk), *dv = fnew(nk);
    fill(dout, NULL, split_q, 1.0);
    attention_backward(dq, dk, dv, dout, q, k, v, out, lse, cu, 2, N, NH, NKV, HS,
                       scratch, scratch_size);
    int zero = 1, nonzero = 0;
    for (size_t i = split_q; i < nq; i++) zero &= dq[i] == 0.0f;
    for (size_t i = split_k; i < nk; i++) zero &= dk[i] == 0.0f && dv[i] == 0.0f;
    for (size_t i = 0; i < split_k; i++) nonzero |= dk[i] != 0.0f && dv[i] != 0.0f;
    CHECK(zero);
    CHECK(nonzero);

    free(scratch); free(q); free(k); free(v); free(out); free(out2); free(lse); free(lse2);
    free(q2); free(k2); free(v2); free(dout); free(dq); free(dk); free(dv);
}

static void test_attention(void)
{
    int cu2[3] = { 0, 4, 7 };
    test_attention_case("GQA 4:2, seqs 4+3", cu2, 2, 4, 2, 8, 0);
    test_attention_case("GQA 3:1, seqs 4+3", cu2, 2, 3, 1, 8, 0);
    int cu3[4] = { 0, 1, 1, 6 };   // a length-1 and an empty sequence
    test_attention_case("MHA 2:2, seqs 1+0+5", cu3, 3, 2, 2, 4, 0);
    int cu_long[3] = { 0, 70, 75 };  // crosses the ATTN_BLOCK = 64 row block
    test_attention_case("GQA 2:1, seqs 70+5", cu_long, 2, 2, 1, 8, 60);
    test_attention_isolation();
}

// ----------------------------------------------------------------------------
// swiglu, residual, embedding

struct swiglu_ctx { double *gate, *up; int N, FF; };
static void swiglu_f(void *p, double *out)
{
    struct swiglu_ctx *c = p;
    swiglu_forward_ref(out, c->gate, c->up, c->N, c->FF);
}

static void test_swiglu(void)
{
    enum { N = 7, FF = 10 };
    size_t n = N * FF;
    float *gate = fnew(n), *up = fnew(n), *out = fnew(n);
    double *gate_d = dnew(n), *up_d = dnew(n), *out_d = dnew(n);
    fill(gate, gate_d, n, 6.0);   // the saturated tails of the sigmoid too
    fill(up, up_d, n, 1.0);
    swiglu_forward(out, gate, up, N, FF);
    swiglu_forward_ref(out_d, gate_d, up_d, N, FF);
    check_close("swiglu forward", out, out_d, n, 1e-5, 1e-5);

    float *dout = fnew(n), *dgate = fnew(n), *dup = fnew(n);
    double *g = dnew(n), *num = dnew(n);
    fill(dout, g, n, 1.0);
    fill(dgate, NULL, n, 1.0);
    fill(dup, NULL, n, 1.0);
    float *dgate0 = fcopy(dgate, n), *dup0 = fcopy(dup, n);
    swiglu_backward(dgate, dup, dout, gate, up, N, FF);
    struct swiglu_ctx ctx = { gate_d, up_d, N, FF };
    struct fd fd = { swiglu_f, &ctx, g, n };
    fd_grad(&fd, gate_d, n, num);
    check_grad("swiglu dgate", dgate, dgate0, num, n, 1e-5, 1e-4);
    fd_grad(&fd, up_d, n, num);
    check_grad("swiglu dup", dup, dup0, num, n, 1e-5, 1e-4);

    // one gradient at a time, accumulating and overwriting (swiglu_backward_set)
    float *zeros = fnew(n), *a = fnew(n), *b = fnew(n);
    double *num_up = dnew(n);
    fd_grad(&fd, gate_d, n, num);
    fd_grad(&fd, up_d, n, num_up);
    memcpy(a, dgate0, n * sizeof(float));
    swiglu_backward(a, NULL, dout, gate, up, N, FF);
    CHECK_MSG(!memcmp(a, dgate, n * sizeof(float)), "swiglu dgate alone = dgate of both");
    memcpy(b, dup0, n * sizeof(float));
    swiglu_backward(NULL, b, dout, gate, up, N, FF);
    CHECK_MSG(!memcmp(b, dup, n * sizeof(float)), "swiglu dup alone = dup of both");
    memcpy(a, dgate0, n * sizeof(float)), memcpy(b, dup0, n * sizeof(float));
    swiglu_backward_set(a, b, dout, gate, up, N, FF);
    check_grad("swiglu_backward_set dgate", a, zeros, num, n, 1e-5, 1e-4);
    check_grad("swiglu_backward_set dup", b, zeros, num_up, n, 1e-5, 1e-4);
    memcpy(a, dgate0, n * sizeof(float));
    swiglu_backward_set(a, NULL, dout, gate, up, N, FF);
    check_grad("swiglu_backward_set dgate alone", a, zeros, num, n, 1e-5, 1e-4);
    memcpy(b, dup0, n * sizeof(float));
    swiglu_backward_set(NULL, b, dout, gate, up, N, FF);
    check_grad("swiglu_backward_set dup alone", b, zeros, num_up, n, 1e-5, 1e-4);
    free(zeros); free(a); free(b); free(num_up);

    free(gate); free(up); free(out); free(gate_d); free(up_d); free(out_d);
    free(dout); free(dgate); free(dup); free(g); free(num); free(dgate0); free(dup0);
}

static void test_residual(void)
{
    enum { n = 37 };
    float a[n], b[n], out[n], da[n], db[n], dout[n], da0[n], db0[n];
    double want[n], dwant[n];
    fill(a, NULL, n, 1.0);
    fill(b, NULL, n, 1.0);
    fill(dout, dwant, n, 1.0);
    fill(da, NULL, n, 1.0);
    fill(db, NULL, n, 1.0);
    memcpy(da0, da, sizeof da);
    memcpy(db0, db, sizeof db);
    for (int i = 0; i < n; i++)
        want[i] = (double)a[i] + b[i];
    residual_forward(out, a, b, n);
    check_close("residual forward", out, want, n, 1e-6, 1e-6);
    residual_backward(da, db, dout, n);
    check_grad("residual da", da, da0, dwant, n, 1e-6, 1e-6);
    check_grad("residual db", db, db0, dwant, n, 1e-6, 1e-6);
}

struct embedding_ctx { const int *tokens; double *wte; int N, C; };
static void embedding_f(void *p, double *out)
{
    struct embedding_ctx *c = p;
    embedding_forward_ref(out, c->tokens, c->wte, c->N, c->C);
}

static void test_embedding(void)
{
    enum { N = 7, V = 11, C = 80 };   // C spans two column blocks of the scatter
    int tokens[N] = { 3, 0, 10, 3, 5, 3, 0 };   // repeats accumulate
    float *wte = fnew(V * C), *out = fnew(N * C), *dwte = fnew(V * C), *dout = fnew(N * C);
    double *wte_d = dnew(V * C), *out_d = dnew(N * C), *g = dnew(N * C), *num = dnew(V * C);
    fill(wte, wte_d, V * C, 1.0);
    embedding_forward(out, tokens, wte, N, C);
    embedding_forward_ref(out_d, tokens, wte_d, N, C);
    check_close("embedding forward", out, out_d, N * C, 0.0, 0.0);
    fill(dout, g, N * C, 1.0);
    fill(dwte, NULL, V * C, 1.0);
    float *dwte0 = fcopy(dwte, V * C);
    embedding_backward(dwte, dout, tokens, N, C);
    struct embedding_ctx ctx = { tokens, wte_d, N, C };
    struct fd fd = { embedding_f, &ctx, g, N * C };
    fd_grad(&fd, wte_d, V * C, num);
    check_grad("embedding dwte", dwte, dwte0, num, V * C, 1e-5, 1e-4);
    free(wte); free(out); free(dwte); free(dout); free(wte_d); free(out_d); free(g); free(num);
    free(dwte0);
}

// ----------------------------------------------------------------------------
// logsoftmax_gather

struct lsg_ctx {
    double *h, *w;
    const int *rows, *ids;
    int M, K, C, V;
    double temperature;
    double *lse;   // scratch for the reference
};
// outputs: logp (M, K) then entropy (M)
static void lsg_f(void *p, double *out)
{
    struct lsg_ctx *c = p;
    logsoftmax_gather_ref(out, c->lse, out + c->M * c->K, NULL, NULL, 0, c->h, c->w, c->rows,
                          c->ids, c->M, c->K, c->C, c->V, c->temperature);
}

static void test_lsg_case(const char *name, int use_rows, int K, float temperature, int chunk,
                          int with_entropy)
{
    enum { NROWS = 9, M = 7, C = 16, V = 37, TOPK = 5 };
    char what[128];
    int rows_buf[M] = { 8, 0, 3, 4, 3, 6, 1 };   // a repeated row too
    const int *rows = use_rows ? rows_buf : NULL;
    int *ids = xmalloc((size_t)M * K * sizeof(int));
    for (int i = 0; i < M * K; i++)
        ids[i] = (int)((urand() + 1.0) / 2.0 * V) % V;
    if (K > 1)
        ids[K + 1] = ids[K];   // a repeated id within one position
    int NH_ = use_rows ? NROWS : M;
    float *h = fnew(NH_ * C), *w = fnew(V * C);
    double *h_d = dnew(NH_ * C), *w_d = dnew(V * C);
    fill(h, h_d, NH_ * C, 1.0);
    fill(w, w_d, V * C, 1.0);
    size_t scratch_size = logsoftmax_gather_scratch_size(chunk, C, V);
    float *scratch = fnew(scratch_size);

    float *logp = fnew(M * K), *lse = fnew(M), *ent = fnew(M), *tlp = fnew(M * TOPK);
    int *tid = xmalloc(M * TOPK * sizeof(int)), *tid_d = xmalloc(M * TOPK * sizeof(int));
    double *logp_d = dnew(M * K), *lse_d = dnew(M), *ent_d = dnew(M), *tlp_d = dnew(M * TOPK);
    logsoftmax_gather_forward(logp, lse, ent, tid, tlp, TOPK, h, w, rows, ids, M, K, C, V,
                              temperature, scratch, scratch_size);
    logsoftmax_gather_ref(logp_d, lse_d, ent_d, tid_d, tlp_d, TOPK, h_d, w_d, rows, ids, M, K, C,
                          V, temperature);
    snprintf(what, sizeof what, "logsoftmax_gather %s logp", name);
    check_close(what, logp, logp_d, M * K, 2e-5, 1e-5);
    snprintf(what, sizeof what, "logsoftmax_gather %s lse", name);
    check_close(what, lse, lse_d, M, 2e-5, 1e-5);
    snprintf(what, sizeof what, "logsoftmax_gather %s entropy", name);
    check_close(what, ent, ent_d, M, 2e-5, 1e-5);
    snprintf(what, sizeof what, "logsoftmax_gather %s top-k logp", name);
    check_close(what, tlp, tlp_d, M * TOPK, 2e-5, 1e-5);
    CHECK_MSG(memcmp(tid, tid_d, M * TOPK * sizeof(int)) == 0, "%s top-k ids", name);

    // backward: L = Σ dlogp·logp (+ Σ dent·entropy)
    size_t nout = (size_t)M * K + M;
    float *dlogp = fnew(M * K), *dent = fnew(M);
    double *g = dnew(nout);
    fill(dlogp, g, M * K, 1.0);
    fill(dent, with_entropy ? g + M * K : NULL, M, 1.0);
    float *dh = fnew(NH_ * C), *dw = fnew(V * C);
    fill(dh, NULL, NH_ * C, 1.0);
    fill(dw, NULL, V * C, 1.0);
    float *dh0 = fcopy(dh, NH_ * C), *dw0 = fcopy(dw, V * C);
    logsoftmax_gather_backward(dh, dw, dlogp, with_entropy ? dent : NULL, h, w, rows, ids, lse,
                               ent, M, K, C, V, temperature, scratch, scratch_size);
    double *ref_lse = dnew(M), *num = dnew(V * C);
    struct lsg_ctx ctx = { h_d, w_d, rows, ids, M, K, C, V, temperature, ref_lse };
    struct fd fd = { lsg_f, &ctx, g, nout };
    fd_grad(&fd, h_d, NH_ * C, num);
    snprintf(what, sizeof what, "logsoftmax_gather %s dh", name);
    check_grad(what, dh, dh0, num, NH_ * C, 2e-5, 1e-4);
    fd_grad(&fd, w_d, V * C, num);
    snprintf(what, sizeof what, "logsoftmax_gather %s dwlm", name);
    check_grad(what, dw, dw0, num, V * C, 2e-5, 1e-4);

    if (!with_entropy) {
        // logsoftmax_gather_fused: the same logp, lse, dh, dwlm, bitwise, from one logits product
        // per chunk; dh and dwlm against finite differences too, on their own
        float *logp1 = fnew(M * K), *lse1 = fnew(M);
        float *dh1 = fcopy(dh0, NH_ * C), *dw1 = fcopy(dw0, V * C);
        logsoftmax_gather_fused(logp1, lse1, dh1, dw1, dlogp, h, w, rows, ids, M, K, C, V,
                                temperature, scratch, scratch_size);
        CHECK_MSG(!memcmp(logp1, logp, M * K * sizeof(float)) && !memcmp(lse1, lse, M * sizeof(float)),
                  "%s fused logp/lse bitwise = forward", name);
        CHECK_MSG(!memcmp(dh1, dh, NH_ * C * sizeof(float)) && !memcmp(dw1, dw, V * C * sizeof(float)),
                  "%s fused dh/dwlm bitwise = backward", name);
        fd_grad(&fd, h_d, NH_ * C, num);
        snprintf(what, sizeof what, "logsoftmax_gather_fused %s dh", name);
        check_grad(what, dh1, dh0, num, NH_ * C, 2e-5, 1e-4);
        fd_grad(&fd, w_d, V * C, num);
        snprintf(what, sizeof what, "logsoftmax_gather_fused %s dwlm", name);
        check_grad(what, dw1, dw0, num, V * C, 2e-5, 1e-4);
        // NULL gradients: only the forward outputs
        logsoftmax_gather_fused(logp1, lse1, NULL, NULL, dlogp, h, w, rows, ids, M, K, C, V,
                                temperature, scratch, scratch_size);
        CHECK_MSG(!memcmp(logp1, logp, M * K * sizeof(float)), "%s fused without gradients", name);
        free(logp1); free(lse1); free(dh1); free(dw1);
    }

    free(ids); free(h); free(w); free(h_d); free(w_d); free(scratch); free(logp); free(lse);
    free(ent); free(tlp); free(tid); free(tid_d); free(logp_d); free(lse_d); free(ent_d);
    free(tlp_d); free(dlogp); free(dent); free(g); free(dh); free(dw); free(dh0); free(dw0);
    free(ref_lse); free(num);
}

static void test_logsoftmax_gather(void)
{
    test_lsg_case("K=1 (CE), all rows, one chunk", 0, 1, 1.0f, 64, 0);
    test_lsg_case("K=1, rows, chunks of 3", 1, 1, 1.0f, 3, 0);
    test_lsg_case("K=4 (KD top-k ids), rows, chunks of 2, T=0.7", 1, 4, 0.7f, 2, 0);
    test_lsg_case("K=1 + entropy, chunks of 1", 0, 1, 1.0f, 1, 1);
    test_lsg_case("K=3 + entropy, rows, T=1.3", 1, 3, 1.3f, 4, 1);
}

// ----------------------------------------------------------------------------
// threads: 1 vs 2 agree to float tolerance; a rerun with the same count is bitwise identical

struct run_out {
    float *mm, *dinp, *dw;          // matmul
    float *att, *dq, *dk, *dv;      // attention
    float *logp, *dh, *dwlm;        // logsoftmax_gather
};

enum { TN = 96, TC = 64, TOC = 160, TNH = 4, TNKV = 2, THS = 16, TV = 300 };
static float *t_inp, *t_w, *t_dout, *t_q, *t_k, *t_v, *t_datt, *t_wlm, *t_dlogp;
static int t_ids[TN];
static int t_cu[4] = { 0, 70, 71, 96 };

static void run_all(struct run_out *r)
{
    size_t nq = TN * TNH * THS, nk = TN * TNKV * THS;
    r->mm = fnew(TN * TOC); r->dinp = fnew(TN * TC); r->dw = fnew(TOC * TC);
    matmul_forward(r->mm, t_inp, t_w, NULL, TN, TC, TOC);
    matmul_backward(r->dinp, r->dw, NULL, t_dout, t_inp, t_w, TN, TC, TOC);

    size_t ss = attention_scratch_size(70, blas_threads());
    float *scratch = fnew(ss), *lse = fnew(TN * TNH);
    r->att = fnew(nq); r->dq = fnew(nq); r->dk = fnew(nk); r->dv = fnew(nk);
    attention_forward(r->att, lse, t_q, t_k, t_v, t_cu, 3, TN, TNH, TNKV, THS, scratch, ss);
    attention_backward(r->dq, r->dk, r->dv, t_datt, t_q, t_k, t_v, r->att, lse, t_cu, 3, TN, TNH,
                       TNKV, THS, scratch, ss);
    free(scratch);
    free(lse);

    ss = logsoftmax_gather_scratch_size(40, TC, TV);
    scratch = fnew(ss);
    float *lse2 = fnew(TN), *ent = fnew(TN);
    r->logp = fnew(TN); r->dh = fnew(TN * TC); r->dwlm = fnew(TV * TC);
    logsoftmax_gather_forward(r->logp, lse2, ent, NULL, NULL, 0, t_inp, t_wlm, NULL, t_ids, TN, 1,
                              TC, TV, 1.0f, scratch, ss);
    logsoftmax_gather_backward(r->dh, r->dwlm, t_dlogp, ent, t_inp, t_wlm, NULL, t_ids, lse2, ent,
                               TN, 1, TC, TV, 1.0f, scratch, ss);
    free(scratch);
    free(lse2);
    free(ent);
}

static void run_free(struct run_out *r)
{
    free(r->mm); free(r->dinp); free(r->dw); free(r->att); free(r->dq); free(r->dk); free(r->dv);
    free(r->logp); free(r->dh); free(r->dwlm);
}

static void compare_runs(const struct run_out *a, const struct run_out *b, int bitwise,
                         const char *label)
{
    size_t nq = TN * TNH * THS, nk = TN * TNKV * THS;
    const float *xa[10] = { a->mm, a->dinp, a->dw, a->att, a->dq, a->dk, a->dv, a->logp, a->dh,
                            a->dwlm };
    const float *xb[10] = { b->mm, b->dinp, b->dw, b->att, b->dq, b->dk, b->dv, b->logp, b->dh,
                            b->dwlm };
    size_t n[10] = { TN * TOC, TN * TC, TOC * TC, nq, nq, nk, nk, TN, TN * TC, TV * TC };
    const char *names[10] = { "matmul out", "matmul dinp", "matmul dweight", "attention out",
                              "attention dq", "attention dk", "attention dv", "logp", "dh",
                              "dwlm" };
    char what[128];
    for (int t = 0; t < 10; t++) {
        snprintf(what, sizeof what, "%s: %s", label, names[t]);
        if (bitwise) {
            CHECK_MSG(memcmp(xa[t], xb[t], n[t] * sizeof(float)) == 0, "%s", what);
        } else {
            double *d = dnew(n[t]);
            for (size_t i = 0; i < n[t]; i++)
                d[i] = xb[t][i];
            check_close(what, xa[t], d, n[t], 1e-5, 1e-4);
            free(d);
        }
    }
}

static void test_threads(void)
{
    size_t nq = TN * TNH * THS, nk = TN * TNKV * THS;
    t_inp = fnew(TN * TC); t_w = fnew(TOC * TC); t_dout = fnew(TN * TOC);
    t_q = fnew(nq); t_k = fnew(nk); t_v = fnew(nk); t_datt = fnew(nq);
    t_wlm = fnew(TV * TC); t_dlogp = fnew(TN);
    fill(t_inp, NULL, TN * TC, 1.0);
    fill(t_w, NULL, TOC * TC, 1.0);
    fill(t_dout, NULL, TN * TOC, 1.0);
    fill(t_q, NULL, nq, 1.0);
    fill(t_k, NULL, nk, 1.0);
    fill(t_v, NULL, nk, 1.0);
    fill(t_datt, NULL, nq, 1.0);
    fill(t_wlm, NULL, TV * TC, 1.0);
    fill(t_dlogp, NULL, TN, 1.0);
    for (int i = 0; i < TN; i++)
        t_ids[i] = (int)((urand() + 1.0) / 2.0 * TV) % TV;

    struct run_out one, two, again;
    blas_init(1);
    run_all(&one);
    blas_init(2);
    CHECK(blas_threads() == 2);
    run_all(&two);
    run_all(&again);
    compare_runs(&one, &two, 0, "1 vs 2 threads");
    compare_runs(&two, &again, 1, "2 threads rerun");
    blas_init(1);
    run_free(&one);
    run_free(&two);
    run_free(&again);
    free(t_inp); free(t_w); free(t_dout); free(t_q); free(t_k); free(t_v); free(t_datt);
    free(t_wlm); free(t_dlogp);
}

// ----------------------------------------------------------------------------

// sgemm_panels (blas.h): every row of C the same bits whatever M, the part grouping and the thread
// count; the scalar fmaf chains equal the AVX2 ones bit for bit; within float rounding of a double
// reference; N not a multiple of 16, K with no SIMD-friendly size, beta 0 and 1, f32 and bf16.
static void test_panels(void)
{
    enum { K = 203, MMAX = 13 };
    static const int Ns[2] = {37, 16};
    float *A = fnew(MMAX * K), *W[2], *ref = fnew(MMAX * 37), *C = fnew(MMAX * 37), *C1 = fnew(37), *Cs = fnew(MMAX * 37);
    fill(A, NULL, MMAX * K, 1.0);
    int bad_rows = 0, bad_scalar = 0, bad_threads = 0;
    double worst = 0;
    for (int i = 0; i < 2; i++) W[i] = fnew((size_t)Ns[i] * K), fill(W[i], NULL, (size_t)Ns[i] * K, 1.0);
    for (int bf16 = 0; bf16 < 2; bf16++)
        for (int beta = 0; beta < 2; beta++) {
            struct panels P;
            panels_pack(&P, W[0], Ns[0], K, bf16);
            blas_init(1);
            fill(ref, NULL, MMAX * 37, 1.0);
            float *init = fnew(MMAX * 37);
            memcpy(init, ref, MMAX * 37 * sizeof(float));
            struct gemm_panel_part part = {&P, ref, (float)beta};
            sgemm_panels(MMAX, A, K, &part, 1);
            for (int r = 0; r < MMAX; r++) {   // double reference on the (rounded) weights
                for (int j = 0; j < 37; j++) {
                    double s = beta ? init[r * 37 + j] : 0;
                    for (int k = 0; k < K; k++) {
                        float w = W[0][j * K + k];
                        if (bf16) w = bf16_to_f32(f32_to_bf16(w));
                        s += (double)A[r * K + k] * w;
                    }
                    worst = fmax(worst, fabs(s - ref[r * 37 + j]));
                }
                memcpy(C1, init + r * 37, 37 * sizeof(float));   // the row alone
                struct gemm_panel_part one = {&P, C1, (float)beta};
                sgemm_panels(1, A + r * K, K, &one, 1);
                bad_rows += memcmp(C1, ref + r * 37, 37 * sizeof(float)) != 0;
            }
            for (int M = 2; M <= MMAX; M += 5) {   // any M: the first M rows
                memcpy(C, init, MMAX * 37 * sizeof(float));
                struct gemm_panel_part pm = {&P, C, (float)beta};
                sgemm_panels(M, A, K, &pm, 1);
                bad_rows += memcmp(C, ref, (size_t)M * 37 * sizeof(float)) != 0;
            }
            panels_force_scalar(true);
            memcpy(Cs, init, MMAX * 37 * sizeof(float));
            struct gemm_panel_part ps = {&P, Cs, (float)beta};
            sgemm_panels(MMAX, A, K, &ps, 1);
            panels_force_scalar(false);
            bad_scalar += memcmp(Cs, ref, MMAX * 37 * sizeof(float)) != 0;
            for (int t = 2; t <= 3; t++) {
                blas_init(t);
                memcpy(C, init, MMAX * 37 * sizeof(float));
                struct gemm_panel_part pt = {&P, C, (float)beta};
                sgemm_panels(MMAX, A, K, &pt, 1);
                bad_threads += memcmp(C, ref, MMAX * 37 * sizeof(float)) != 0;
            }
            // two parts in one call: each as its own call
            struct panels P2;
            panels_pack(&P2, W[1], Ns[1], K, bf16);
            float *D = fnew(MMAX * 16), *D1 = fnew(MMAX * 16);
            memcpy(C, init, MMAX * 37 * sizeof(float));
            struct gemm_panel_part two[2] = {{&P, C, (float)beta}, {&P2, D, 0.0f}};
            sgemm_panels(MMAX, A, K, two, 2);
            struct gemm_panel_part solo = {&P2, D1, 0.0f};
            sgemm_panels(MMAX, A, K, &solo, 1);
            bad_rows += memcmp(C, ref, MMAX * 37 * sizeof(float)) != 0 || memcmp(D, D1, MMAX * 16 * sizeof(float)) != 0;
            free(D), free(D1), free(init);
            panels_free(&P), panels_free(&P2);
        }
    blas_init(1);
    CHECK_MSG(bad_rows == 0, "sgemm_panels: %d results depend on the rows or parts beside them", bad_rows);
    CHECK_MSG(bad_scalar == 0, "sgemm_panels: the scalar chains differ from the AVX2 ones in %d cases", bad_scalar);
    CHECK_MSG(bad_threads == 0, "sgemm_panels: %d results depend on the thread count", bad_threads);
    CHECK_MSG(worst < 1e-4, "sgemm_panels: off the double reference by %g", worst);
    free(A), free(ref), free(C), free(C1), free(Cs), free(W[0]), free(W[1]);
}

// Big products (above the one-call size) are cut into a grid of native BLIS calls that depends on
// the thread count (blas.c gemm_blocks): every element must still have the bits of one call, for
// every transpose, beta 0 and 1, at 1, 2, 3 and 5 threads; and near a double reference.
static void test_sgemm_grid(void)
{
    static const int shapes[][3] = {{300, 520, 200}, {1000, 130, 301}, {97, 2000, 150}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *A = fnew((size_t)M * K), *B = fnew((size_t)N * K), *C0 = fnew((size_t)M * N);
        fill(A, NULL, (size_t)M * K, 1.0);
        fill(B, NULL, (size_t)N * K, 1.0);
        fill(C0, NULL, (size_t)M * N, 1.0);
        for (int tr = 0; tr < 4; tr++) {
            bool ta = tr & 1, tb = tr & 2;
            int lda = ta ? M : K, ldb = tb ? K : N;
            for (int bi = 0; bi < 2; bi++) {
                float beta = (float)bi;
                float *ref = NULL;
                static const int threads[] = {1, 2, 3, 5};
                for (int ti = 0; ti < 4; ti++) {
                    float *C = fnew((size_t)M * N);
                    memcpy(C, C0, (size_t)M * N * sizeof(float));
                    blas_init(threads[ti]);
                    sgemm_rm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C, N);
                    if (!ref) {
                        ref = C;
                        continue;
                    }
                    CHECK_MSG(!memcmp(ref, C, (size_t)M * N * sizeof(float)),
                              "sgemm %dx%dx%d ta=%d tb=%d beta=%g: %d threads differ from 1", M, N, K, ta, tb,
                              beta, threads[ti]);
                    free(C);
                }
                // a double reference at a few elements
                for (int e = 0; e < 50; e++) {
                    int i = (e * 7919) % M, j = (e * 104729) % N;
                    double d = beta * C0[(size_t)i * N + j];
                    for (int k = 0; k < K; k++)
                        d += 0.5 * (double)(ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k]) *
                             (tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j]);
                    CHECK_NEAR(ref[(size_t)i * N + j], d, 1e-4 * (1 + fabs(d)));
                }
                free(ref);
            }
        }
        free(A); free(B); free(C0);
    }
    blas_init(1);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    const char *v = getenv("TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    blas_init(1);
    if (verbose)
        fprintf(stderr, "BLIS kernels: %s\n", blas_arch_name());
    test_matmul();
    test_matmul_bf16();
    test_gemm_parts();
    test_sgemm_grid();
    test_panels();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_swiglu();
    test_residual();
    test_embedding();
    test_logsoftmax_gather();
    test_threads();
    return test_finish("test-nn");
}
