// nn.c — transformer layer kernels on BLIS; see nn.h for the contract and the formulas.
#include "nn.h"

#include <float.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "blas.h"
#include "pool.h"
#include "util.h"

// Column blocks for the reductions over tokens (dbias, dweight of RMSNorm, dwte): each thread owns
// whole columns and adds the tokens in order n = 0..N-1, so the sums need no scratch, no atomics,
// and do not depend on the thread count.
#define COL_BLOCK 64

static inline int imin(int a, int b) { return a < b ? a : b; }

// The loops run on the compute pool (pool.h) in contiguous ranges of rows, elements or column
// blocks, each range at least PAR_MIN_WORK elements of work: a decode step (one row per sequence)
// has ~15 such loops per layer, and waking the other threads for each cost more than the loop, so
// below 2·PAR_MIN_WORK a loop runs on the calling thread alone. Every result element is written by
// one range in a fixed order, so nothing depends on the thread count or on who ran which range.
#define PAR_MIN_WORK 16384

// Column blocks of C columns over N rows: blocks [b, e) of COL_BLOCK columns.
static inline int col_blocks(int C) { return (C + COL_BLOCK - 1) / COL_BLOCK; }

// ----------------------------------------------------------------------------
// vectorised row helpers
//
// The softmax-like loops spend their time in exp: with libm's scalar expf, the exps of a T = 256
// attention row cost as much as the two sgemms around them. exp_fast is Cephes's expf (range
// reduction by ln 2 in two parts, degree-5 polynomial, 2^n put in the exponent bits), written
// without calls or branches so that the loops vectorise; its error is under 1.4 ulp (checked over
// [-87, 88] against double exp), libm's is under 1 ulp. Arguments below -87 give 0 (the true value
// is below 1.6e-38), above 88 give 2^127-ish; softmax arguments are <= 0 after max subtraction.
//
// The loops are compiled three times (AVX-512, AVX2, baseline) and the best is chosen at load time
// (GCC target_clones, an ifunc), because the project's baseline -march has no AVX. "no-trapping-
// math" lets GCC turn the clamps into blends; nothing here reads floating-point exception flags.
// The clone is fixed per machine, so results stay bitwise reproducible there.
#define NN_VEC __attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-trapping-math")))

__attribute__((optimize("no-trapping-math")))
static inline float exp_fast(float x)
{
    float xc = x > -87.0f ? x : -87.0f;
    xc = xc < 88.0f ? xc : 88.0f;
    // n = round(x / ln2) by the 1.5·2^23 trick (exact for |n| < 2^22, and no libm call)
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;        // ln2 = 0.693359375 - 2.12194440e-4, in two parts
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n = { .i = ((int32_t)n + 127) << 23 };
    y = y * two_n.f;
    return x < -87.0f ? 0.0f : y;
}

NN_VEC static float vec_max(const float *x, int n)
{
    float mx = -FLT_MAX;
    #pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    return mx;
}

// x[j] = exp(x[j] - sub); returns Σ x[j]
NN_VEC static float vec_exp_sum(float *x, int n, float sub)
{
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        x[j] = exp_fast(x[j] - sub);
        sum += x[j];
    }
    return sum;
}

NN_VEC static void vec_scale(float *x, int n, float a)
{
    #pragma omp simd
    for (int j = 0; j < n; j++)
        x[j] *= a;
}

void softmax_inplace(float *x, int n)
{
    float mx = vec_max(x, n);
    vec_scale(x, n, 1.0f / vec_exp_sum(x, n, mx));
}

// dp[j] = p[j] * (dp[j] - D): the softmax backward of one attention row
NN_VEC static void vec_softmax_bwd(float *dp, const float *p, int n, float D)
{
    #pragma omp simd
    for (int j = 0; j < n; j++)
        dp[j] = p[j] * (dp[j] - D);
}

// ----------------------------------------------------------------------------
// positions

void nn_positions(int *pos, const int *cu_seqlens, int nseq)
{
    for (int s = 0; s < nseq; s++)
        for (int t = cu_seqlens[s]; t < cu_seqlens[s + 1]; t++)
            pos[t] = t - cu_seqlens[s];
}

// ----------------------------------------------------------------------------
// linear layer

struct fill_job { float *out; const float *row; size_t len; };

static void fill_range(void *ctx, size_t b, size_t e)
{
    const struct fill_job *J = ctx;
    for (size_t n = b; n < e; n++)
        memcpy(J->out + n * J->len, J->row, J->len * sizeof(float));
}

// out[n] = row for n < N (rows of len floats)
static void fill_rows(float *out, const float *row, int N, int len)
{
    struct fill_job J = {out, row, (size_t)len};
    pool_for_range((size_t)N, (size_t)len, PAR_MIN_WORK, fill_range, &J);
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int N, int C, int OC)
{
    ASSERT(N >= 0 && C > 0 && OC > 0);
    float beta = 0.0f;
    if (bias) {
        // Pre-fill with the bias and let the sgemm add onto it (beta = 1): one pass over out.
        fill_rows(out, bias, N, OC);
        beta = 1.0f;
    }
    // out(N,OC) = inp(N,C) · weight(OC,C)ᵀ
    sgemm_rm(false, true, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

void matmul_forward_bf16(float *out, const float *inp, const uint16_t *weight, const float *bias,
                         int N, int C, int OC)
{
    ASSERT(N >= 0 && C > 0 && OC > 0);
    if (bias)
        fill_rows(out, bias, N, OC);
    sgemm_bf16_nt(N, OC, C, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
}

// dst[j] += Σ_n a[n][j] (· x[n][j] · r[n] when x is set: RMSNorm's dweight), for the column
// blocks [b, e), the rows added in order n = 0..N-1.
struct colsum_job { float *dst; const float *a, *x, *r; int N, C; };

static void colsum_range(void *ctx, size_t b, size_t e)
{
    const struct colsum_job *J = ctx;
    for (int j0 = (int)b * COL_BLOCK; j0 < (int)e * COL_BLOCK && j0 < J->C; j0 += COL_BLOCK) {
        int j1 = imin(j0 + COL_BLOCK, J->C);
        float acc[COL_BLOCK] = {0};
        for (int n = 0; n < J->N; n++) {
            const float *row = J->a + (size_t)n * J->C;
            if (J->x) {
                const float *x = J->x + (size_t)n * J->C;
                float r = J->r[n];
                for (int j = j0; j < j1; j++)
                    acc[j - j0] += row[j] * x[j] * r;
            } else {
                for (int j = j0; j < j1; j++)
                    acc[j - j0] += row[j];
            }
        }
        for (int j = j0; j < j1; j++)
            J->dst[j] += acc[j - j0];
    }
}

// dinp_beta: 1 accumulates into dinp, 0 overwrites it (matmul_backward_set_dinp)
static void matmul_backward_beta(float *dinp, float dinp_beta, float *dweight, float *dbias,
                                 const float *dout, const float *inp, const float *weight,
                                 int N, int C, int OC)
{
    ASSERT(N >= 0 && C > 0 && OC > 0);
    // forward: out = inp·weightᵀ + bias
    // dinp(N,C) (+)= dout(N,OC) · weight(OC,C)
    if (dinp)
        sgemm_rm(false, false, N, C, OC, 1.0f, dout, OC, weight, C, dinp_beta, dinp, C);
    // dweight(OC,C) += dout(N,OC)ᵀ · inp(N,C)
    if (dweight)
        sgemm_rm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    // dbias(OC) += Σ_n dout[n]
    if (dbias) {
        struct colsum_job J = {dbias, dout, NULL, NULL, N, OC};
        pool_for_range((size_t)col_blocks(OC), (size_t)N * COL_BLOCK, PAR_MIN_WORK, colsum_range, &J);
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int N, int C, int OC)
{
    matmul_backward_beta(dinp, 1.0f, dweight, dbias, dout, inp, weight, N, C, OC);
}

void matmul_backward_set_dinp(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int N, int C, int OC)
{
    matmul_backward_beta(dinp, 0.0f, dweight, dbias, dout, inp, weight, N, C, OC);
}

// ----------------------------------------------------------------------------
// RMSNorm

struct rmsnorm_job {
    float *out, *rstd, *dinp, *dweight;
    const float *inp, *weight, *dout, *rs;
    int N, C;
    float eps;
    bool set;
};

static void rmsnorm_forward_range(void *ctx, size_t b, size_t e)
{
    const struct rmsnorm_job *J = ctx;
    const float *weight = J->weight;
    int C = J->C;
    for (size_t n = b; n < e; n++) {
        const float *x = J->inp + n * C;
        float *y = J->out + n * C;
        // variance = x.pow(2).mean(-1) in f32 in HF; summed in double here so the result does not
        // drift with C (4096-wide rows lose ~3 digits in a naive f32 sum).
        double ss = 0.0;
        for (int i = 0; i < C; i++)
            ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + (double)J->eps));
        for (int i = 0; i < C; i++)
            y[i] = x[i] * r * weight[i];
        if (J->rstd)
            J->rstd[n] = r;
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                     int N, int C, float eps)
{
    ASSERT(N >= 0 && C > 0);
    struct rmsnorm_job J = {.out = out, .rstd = rstd, .inp = inp, .weight = weight, .N = N, .C = C, .eps = eps};
    pool_for_range((size_t)N, (size_t)C, PAR_MIN_WORK, rmsnorm_forward_range, &J);
}

// forward: y_i = w_i x_i r,  r = (Σ_j x_j²/C + eps)^(-1/2),  ∂r/∂x_k = -r³ x_k / C
// dx_k = r w_k dy_k - (r³/C) x_k Σ_i w_i dy_i x_i
static void rmsnorm_dinp_range(void *ctx, size_t b, size_t e)
{
    const struct rmsnorm_job *J = ctx;
    const float *weight = J->weight;
    int C = J->C;
    for (size_t n = b; n < e; n++) {
        const float *x = J->inp + n * C, *dy = J->dout + n * C;
        float *dx = J->dinp + n * C;
        float r = J->rs[n];
        double dot = 0.0;
        for (int i = 0; i < C; i++)
            dot += (double)weight[i] * dy[i] * x[i];
        float coef = (float)((double)r * r * r * dot / C);
        if (J->set)
            for (int i = 0; i < C; i++)
                dx[i] = r * weight[i] * dy[i] - coef * x[i];
        else
            for (int i = 0; i < C; i++)
                dx[i] += r * weight[i] * dy[i] - coef * x[i];
    }
}

static void rmsnorm_backward_mode(float *dinp, bool set, float *dweight, const float *dout,
                                  const float *inp, const float *weight, const float *rstd, int N, int C)
{
    ASSERT(N >= 0 && C > 0);
    if (dinp) {
        struct rmsnorm_job J = {.dinp = dinp, .inp = inp, .weight = weight, .dout = dout, .rs = rstd,
                                .N = N, .C = C, .set = set};
        pool_for_range((size_t)N, (size_t)C, PAR_MIN_WORK, rmsnorm_dinp_range, &J);
    }
    // dw_i += Σ_n dy_ni x_ni r_n
    if (dweight) {
        struct colsum_job J = {dweight, dout, inp, rstd, N, C};
        pool_for_range((size_t)col_blocks(C), (size_t)N * COL_BLOCK, PAR_MIN_WORK, colsum_range, &J);
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C)
{
    rmsnorm_backward_mode(dinp, false, dweight, dout, inp, weight, rstd, N, C);
}

void rmsnorm_backward_set_dinp(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *rstd, int N, int C)
{
    rmsnorm_backward_mode(dinp, true, dweight, dout, inp, weight, rstd, N, C);
}

// ----------------------------------------------------------------------------
// RoPE

void rope_inv_freq(float *inv_freq, int hs, float theta)
{
    ASSERT(hs > 0 && hs % 2 == 0);
    // HF _compute_default_rope_parameters:
    //   inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))   (all in f32)
    for (int i = 0; i < hs / 2; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hs);
}

void rope_scale_llama3(float *inv_freq, int hs, double factor, double low_freq_factor,
                       double high_freq_factor, double original_max_pos)
{
    ASSERT(hs > 0 && hs % 2 == 0 && factor > 0 && high_freq_factor > low_freq_factor && low_freq_factor > 0);
    // HF works on f32 tensors with Python-float scalars: the scalars are rounded to f32 at each
    // operation, and `a / tensor` is reciprocal(tensor) * a.
    const float lo_wl = (float)(original_max_pos / low_freq_factor);
    const float hi_wl = (float)(original_max_pos / high_freq_factor);
    const float f = (float)factor, n = (float)original_max_pos, lo = (float)low_freq_factor;
    const float span = (float)(high_freq_factor - low_freq_factor);
    for (int i = 0; i < hs / 2; i++) {
        float inv = inv_freq[i];
        float wl = (1.0f / inv) * (float)6.283185307179586;   // math.pi * 2
        float inv_l = wl > lo_wl ? inv / f : inv;
        if (!(wl < hi_wl) && !(wl > lo_wl)) {
            float smooth = ((1.0f / wl) * n - lo) / span;
            inv_l = (1.0f - smooth) * inv_l / f + smooth * inv_l;
        }
        inv_freq[i] = inv_l;
    }
}

void rope_tables(float *cos_tab, float *sin_tab, const float *inv_freq, int max_pos, int hs)
{
    ASSERT(max_pos >= 0 && hs > 0 && hs % 2 == 0);
    int half = hs / 2;
    // HF LlamaRotaryEmbedding.forward: freqs = inv_freq ⊗ position_ids in f32, then cos/sin. The
    // f32 product is kept on purpose: at position 2000 it differs from the exact angle by ~1e-4 rad,
    // and matching HF matters more than the extra digits.
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            float angle = (float)p * inv_freq[i];
            cos_tab[(size_t)p * half + i] = (float)cos((double)angle);
            sin_tab[(size_t)p * half + i] = (float)sin((double)angle);
        }
}

struct rope_job {
    float *out;
    const float *inp, *cos_tab, *sin_tab;
    const int *pos;
    int nh, hs;
};

static void rope_forward_range(void *ctx, size_t b, size_t e)
{
    const struct rope_job *J = ctx;
    const float *inp = J->inp, *cos_tab = J->cos_tab, *sin_tab = J->sin_tab;
    float *out = J->out;
    const int *pos = J->pos;
    int nh = J->nh, hs = J->hs, half = hs / 2;
    // q_embed = q * cos + rotate_half(q) * sin, rotate_half(x) = cat(-x2, x1)
    for (size_t n = b; n < e; n++) {
        const float *c = cos_tab + (size_t)pos[n] * half, *s = sin_tab + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            const float *x = inp + ((size_t)n * nh + h) * hs;
            float *y = out + ((size_t)n * nh + h) * hs;
            for (int i = 0; i < half; i++) {
                float x1 = x[i], x2 = x[i + half];   // read both first: out may alias inp
                y[i] = x1 * c[i] - x2 * s[i];
                y[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

void rope_forward(float *out, const float *inp, const float *cos_tab, const float *sin_tab,
                  const int *pos, int N, int nh, int hs)
{
    ASSERT(N >= 0 && nh > 0 && hs > 0 && hs % 2 == 0);
    struct rope_job J = {out, inp, cos_tab, sin_tab, pos, nh, hs};
    pool_for_range((size_t)N, (size_t)nh * hs, PAR_MIN_WORK, rope_forward_range, &J);
}

// (J->out is dinp, J->inp is dout)
static void rope_backward_range(void *ctx, size_t b, size_t e)
{
    const struct rope_job *J = ctx;
    const float *dout = J->inp, *cos_tab = J->cos_tab, *sin_tab = J->sin_tab;
    float *dinp = J->out;
    const int *pos = J->pos;
    int nh = J->nh, hs = J->hs, half = hs / 2;
    bool inplace = dinp == dout;
    // forward per pair: [y1; y2] = [c -s; s c] [x1; x2], so [dx1; dx2] = [c s; -s c] [dy1; dy2]
    for (size_t n = b; n < e; n++) {
        const float *c = cos_tab + (size_t)pos[n] * half, *s = sin_tab + (size_t)pos[n] * half;
        for (int h = 0; h < nh; h++) {
            const float *dy = dout + ((size_t)n * nh + h) * hs;
            float *dx = dinp + ((size_t)n * nh + h) * hs;
            for (int i = 0; i < half; i++) {
                float dy1 = dy[i], dy2 = dy[i + half];
                float g1 = dy1 * c[i] + dy2 * s[i];
                float g2 = dy2 * c[i] - dy1 * s[i];
                if (inplace) {
                    dx[i] = g1;
                    dx[i + half] = g2;
                } else {
                    dx[i] += g1;
                    dx[i + half] += g2;
                }
            }
        }
    }
}

void rope_backward(float *dinp, const float *dout, const float *cos_tab, const float *sin_tab,
                   const int *pos, int N, int nh, int hs)
{
    ASSERT(N >= 0 && nh > 0 && hs > 0 && hs % 2 == 0);
    struct rope_job J = {dinp, dout, cos_tab, sin_tab, pos, nh, hs};
    pool_for_range((size_t)N, (size_t)nh * hs, PAR_MIN_WORK, rope_backward_range, &J);
}

// ----------------------------------------------------------------------------
// attention
//
// Per (sequence, head) task and per block of up to ATTN_BLOCK query rows [i0, i0+nb) of that
// sequence, the keys that block can see are 0..nk-1 with nk = i0+nb. One sgemm gives the nb×nk score
// block S = scale·Q_blk·K[0:nk]ᵀ, read straight out of the (N, NH, hs) / (N, NKV, hs) tensors through
// their row strides (NH*hs, NKV*hs); the softmax is done row by row in place; one more sgemm gives
// out_blk = P·V[0:nk]. Scores right of the diagonal are computed and then zeroed: at most half of
// one ATTN_BLOCK-wide diagonal block is wasted per block row.
//
// The tasks are the pool's chunks (one each, taken in any order): each task writes only its own rows
// of out/lse (forward) or its own dq rows and dk/dv rows (backward, one task per key/value head),
// and runs its sgemms single-threaded (nested in a chunk), so the result does not depend on which
// thread ran it.

static int max_seqlen(const int *cu_seqlens, int nseq, int N)
{
    ASSERT(nseq >= 0 && cu_seqlens[0] == 0 && cu_seqlens[nseq] == N);
    int T_max = 0;
    for (int s = 0; s < nseq; s++) {
        int T = cu_seqlens[s + 1] - cu_seqlens[s];
        ASSERT(T >= 0);
        if (T > T_max)
            T_max = T;
    }
    return T_max;
}

size_t attention_scratch_size(int T_max, int threads)
{
    ASSERT(T_max >= 0 && threads > 0);
    return (size_t)threads * 2 * ATTN_BLOCK * (size_t)T_max;
}

// This thread's slice of the scratch: split by the pool's size.
static float *thread_scratch(float *scratch, size_t scratch_size, size_t need)
{
    size_t per = scratch_size / (size_t)pool_threads();
    ASSERT(per >= need);
    return scratch + per * (size_t)pool_thread_id();
}

struct attn_job {
    float *out, *lse;                      // forward
    float *dq, *dk, *dv;                   // backward
    const float *dout, *o, *l;
    const float *q, *k, *v;
    const int *cu_seqlens;
    int NH, NKV, hs, T_max;
    float *scratch;
    size_t scratch_size;
};

static void attention_forward_task(void *ctx, int task);
static void attention_backward_task(void *ctx, int task);

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int *cu_seqlens, int nseq, int N, int NH, int NKV, int hs,
                       float *scratch, size_t scratch_size)
{
    ASSERT(NH > 0 && NKV > 0 && NH % NKV == 0 && hs > 0);
    int T_max = max_seqlen(cu_seqlens, nseq, N);
    if (T_max == 0)
        return;
    struct attn_job J = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .cu_seqlens = cu_seqlens,
                         .NH = NH, .NKV = NKV, .hs = hs, .T_max = T_max, .scratch = scratch,
                         .scratch_size = scratch_size};
    pool_for(nseq * NH, attention_forward_task, &J);
}

static void attention_forward_task(void *ctx, int task)
{
    const struct attn_job *J = ctx;
    int NH = J->NH, NKV = J->NKV, hs = J->hs, T_max = J->T_max;
    const int *cu_seqlens = J->cu_seqlens;
    const float *q = J->q, *k = J->k, *v = J->v;
    float *out = J->out, *lse = J->lse;
    int G = NH / NKV;                         // query heads per key/value head (repeat_kv)
    int ldq = NH * hs, ldk = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);    // HF: self.scaling = head_dim ** -0.5
    float *S = thread_scratch(J->scratch, J->scratch_size, (size_t)ATTN_BLOCK * T_max);
    int s = task / NH, h = task % NH, hk = h / G;
    int t0 = cu_seqlens[s], T = cu_seqlens[s + 1] - t0;
    const float *qs = q + (size_t)t0 * ldq + (size_t)h * hs;
    const float *ks = k + (size_t)t0 * ldk + (size_t)hk * hs;
    const float *vs = v + (size_t)t0 * ldk + (size_t)hk * hs;
    float *os = out + (size_t)t0 * ldq + (size_t)h * hs;
    for (int i0 = 0; i0 < T; i0 += ATTN_BLOCK) {
        int nb = imin(ATTN_BLOCK, T - i0), nk = i0 + nb;
        // S(nb,nk) = scale · Q_blk(nb,hs) · K(nk,hs)ᵀ
        sgemm_rm(false, true, nb, nk, hs, scale, qs + (size_t)i0 * ldq, ldq, ks, ldk,
                 0.0f, S, nk);
        for (int r = 0; r < nb; r++) {
            float *row = S + (size_t)r * nk;
            int last = i0 + r;                      // causal: keys 0..last
            float mx = vec_max(row, last + 1);
            float sum = vec_exp_sum(row, last + 1, mx);
            vec_scale(row, last + 1, 1.0f / sum);
            for (int j = last + 1; j < nk; j++)
                row[j] = 0.0f;
            lse[(size_t)(t0 + last) * NH + h] = mx + logf(sum);
        }
        // out_blk(nb,hs) = P(nb,nk) · V(nk,hs)
        sgemm_rm(false, false, nb, hs, nk, 1.0f, S, nk, vs, ldk, 0.0f,
                 os + (size_t)i0 * ldq, ldq);
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v,
                        const float *out, const float *lse,
                        const int *cu_seqlens, int nseq, int N, int NH, int NKV, int hs,
                        float *scratch, size_t scratch_size)
{
    ASSERT(NH > 0 && NKV > 0 && NH % NKV == 0 && hs > 0);
    int T_max = max_seqlen(cu_seqlens, nseq, N);
    if (T_max == 0 || (!dq && !dk && !dv))
        return;
    // One task per (sequence, key/value head): it owns dk/dv of that head and dq of its G query
    // heads, so the += of the sgemms need no synchronisation.
    struct attn_job J = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .o = out, .l = lse, .q = q, .k = k,
                         .v = v, .cu_seqlens = cu_seqlens, .NH = NH, .NKV = NKV, .hs = hs,
                         .T_max = T_max, .scratch = scratch, .scratch_size = scratch_size};
    pool_for(nseq * NKV, attention_backward_task, &J);
}

static void attention_backward_task(void *ctx, int task)
{
    const struct attn_job *J = ctx;
    int NH = J->NH, NKV = J->NKV, hs = J->hs, T_max = J->T_max;
    const int *cu_seqlens = J->cu_seqlens;
    const float *q = J->q, *k = J->k, *v = J->v, *dout = J->dout, *out = J->o, *lse = J->l;
    float *dq = J->dq, *dk = J->dk, *dv = J->dv;
    int G = NH / NKV;
    int ldq = NH * hs, ldk = NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    float *P = thread_scratch(J->scratch, J->scratch_size, (size_t)2 * ATTN_BLOCK * T_max);
    float *dP = P + (size_t)ATTN_BLOCK * T_max;
    int s = task / NKV, hk = task % NKV;
    int t0 = cu_seqlens[s], T = cu_seqlens[s + 1] - t0;
    const float *ks = k + (size_t)t0 * ldk + (size_t)hk * hs;
    const float *vs = v + (size_t)t0 * ldk + (size_t)hk * hs;
    float *dks = dk ? dk + (size_t)t0 * ldk + (size_t)hk * hs : NULL;
    float *dvs = dv ? dv + (size_t)t0 * ldk + (size_t)hk * hs : NULL;
    for (int h = hk * G; h < (hk + 1) * G; h++) {
        size_t off = (size_t)t0 * ldq + (size_t)h * hs;
        for (int i0 = 0; i0 < T; i0 += ATTN_BLOCK) {
            int nb = imin(ATTN_BLOCK, T - i0), nk = i0 + nb;
            size_t boff = off + (size_t)i0 * ldq;
            // recompute P_ij = exp(scale·q_i·k_j - lse_i) for j <= i, else 0
            sgemm_rm(false, true, nb, nk, hs, scale, q + boff, ldq, ks, ldk, 0.0f, P, nk);
            for (int r = 0; r < nb; r++) {
                float *row = P + (size_t)r * nk;
                int last = i0 + r;
                vec_exp_sum(row, last + 1, lse[(size_t)(t0 + last) * NH + h]);
                for (int j = last + 1; j < nk; j++)
                    row[j] = 0.0f;
            }
            // forward: out = P·V  →  dV(nk,hs) += Pᵀ · dout_blk
            if (dvs)
                sgemm_rm(true, false, nk, hs, nb, 1.0f, P, nk, dout + boff, ldq, 1.0f,
                         dvs, ldk);
            if (!dq && !dks)
                continue;
            // dP(nb,nk) = dout_blk · V(nk,hs)ᵀ
            sgemm_rm(false, true, nb, nk, hs, 1.0f, dout + boff, ldq, vs, ldk, 0.0f, dP, nk);
            // softmax backward: dS_ij = P_ij (dP_ij - D_i), D_i = Σ_j P_ij dP_ij = dout_i·out_i
            for (int r = 0; r < nb; r++) {
                const float *o = out + boff + (size_t)r * ldq;
                const float *dy = dout + boff + (size_t)r * ldq;
                float D = 0.0f;
                for (int c = 0; c < hs; c++)
                    D += dy[c] * o[c];
                float *prow = P + (size_t)r * nk, *drow = dP + (size_t)r * nk;
                vec_softmax_bwd(drow, prow, nk, D);
            }
            // forward: S = scale·Q·Kᵀ  →  dQ_blk += scale·dS·K,  dK += scale·dSᵀ·Q_blk
            if (dq)
                sgemm_rm(false, false, nb, hs, nk, scale, dP, nk, ks, ldk, 1.0f,
                         dq + boff, ldq);
            if (dks)
                sgemm_rm(true, false, nk, hs, nb, scale, dP, nk, q + boff, ldq, 1.0f,
                         dks, ldk);
        }
    }
}

// ----------------------------------------------------------------------------
// SwiGLU

// sigmoid through exp_fast: exp(-g) saturates to 2^127-ish or 0, giving σ = 0 or 1 in the tails.
NN_VEC static void swiglu_forward_span(float *out, const float *gate, const float *up, int n)
{
    #pragma omp simd
    for (int i = 0; i < n; i++) {
        float g = gate[i], sg = 1.0f / (1.0f + exp_fast(-g));
        out[i] = g * sg * up[i];
    }
}

// forward: out = g σ(g) u
// d out/d u = g σ(g);  d out/d g = u σ(g) (1 + g (1 - σ(g)))
// σ is computed once per element when both gradients are wanted (the same bits as computing it
// twice). set: overwrite the gradients instead of accumulating.
NN_VEC static void swiglu_backward_span(float *dgate, float *dup, const float *dout,
                                        const float *gate, const float *up, int n, int set)
{
    if (dgate && dup && set) {
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + exp_fast(-g));
            dgate[i] = dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
            dup[i] = dout[i] * g * sg;
        }
        return;
    }
    if (dgate && dup) {
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + exp_fast(-g));
            dgate[i] += dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
            dup[i] += dout[i] * g * sg;
        }
        return;
    }
    if (dgate) {
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + exp_fast(-g));
            float d = dout[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
            dgate[i] = set ? d : dgate[i] + d;
        }
    }
    if (dup) {
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float g = gate[i], sg = 1.0f / (1.0f + exp_fast(-g));
            float d = dout[i] * g * sg;
            dup[i] = set ? d : dup[i] + d;
        }
    }
}

// Rows [b, e) of FF elements, a span per row (as decoding sees it: a row's elements take the same
// vector or scalar path whatever the rows around it).
struct swiglu_job { float *out, *dgate, *dup; const float *dout, *gate, *up; int FF, set; };

static void swiglu_forward_range(void *ctx, size_t b, size_t e)
{
    const struct swiglu_job *J = ctx;
    for (size_t n = b; n < e; n++) {
        size_t o = n * J->FF;
        swiglu_forward_span(J->out + o, J->gate + o, J->up + o, J->FF);
    }
}

static void swiglu_backward_range(void *ctx, size_t b, size_t e)
{
    const struct swiglu_job *J = ctx;
    for (size_t n = b; n < e; n++) {
        size_t o = n * J->FF;
        swiglu_backward_span(J->dgate ? J->dgate + o : NULL, J->dup ? J->dup + o : NULL, J->dout + o,
                             J->gate + o, J->up + o, J->FF, J->set);
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, int N, int FF)
{
    ASSERT(N >= 0 && FF > 0);
    struct swiglu_job J = {.out = out, .gate = gate, .up = up, .FF = FF};
    pool_for_range((size_t)N, (size_t)FF, PAR_MIN_WORK, swiglu_forward_range, &J);
}

static void swiglu_backward_mode(float *dgate, float *dup, const float *dout, const float *gate,
                                 const float *up, int N, int FF, int set)
{
    ASSERT(N >= 0 && FF > 0);
    struct swiglu_job J = {.dgate = dgate, .dup = dup, .dout = dout, .gate = gate, .up = up, .FF = FF,
                           .set = set};
    pool_for_range((size_t)N, (size_t)FF, PAR_MIN_WORK, swiglu_backward_range, &J);
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int N, int FF)
{
    swiglu_backward_mode(dgate, dup, dout, gate, up, N, FF, 0);
}

void swiglu_backward_set(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int N, int FF)
{
    swiglu_backward_mode(dgate, dup, dout, gate, up, N, FF, 1);
}

// ----------------------------------------------------------------------------
// residual and embedding

// out = a + b (forward), or da += dout and db += dout (backward: a, b NULL)
struct residual_job { float *out, *da, *db; const float *a, *b, *dout; };

static void residual_range(void *ctx, size_t b, size_t e)
{
    const struct residual_job *J = ctx;
    if (J->out) {
        for (size_t i = b; i < e; i++)
            J->out[i] = J->a[i] + J->b[i];
        return;
    }
    for (size_t i = b; i < e; i++) {
        if (J->da)
            J->da[i] += J->dout[i];
        if (J->db)
            J->db[i] += J->dout[i];
    }
}

void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    struct residual_job J = {.out = out, .a = a, .b = b};
    pool_for_range(n, 1, PAR_MIN_WORK, residual_range, &J);
}

void residual_backward(float *da, float *db, const float *dout, size_t n)
{
    struct residual_job J = {.da = da, .db = db, .dout = dout};
    pool_for_range(n, 1, PAR_MIN_WORK, residual_range, &J);
}

// Rows gathered or scattered by index: dst[n] = src[idx[n]] (gather), or dst[idx[n]] += src[n]
// over whole column blocks (scatter: an index may repeat, so ranges split the columns).
struct rows_job { float *dst; const float *src; const int *idx; int N, C; };

static void gather_range(void *ctx, size_t b, size_t e)
{
    const struct rows_job *J = ctx;
    for (size_t n = b; n < e; n++)
        memcpy(J->dst + n * J->C, J->src + (size_t)J->idx[n] * J->C, (size_t)J->C * sizeof(float));
}

static void scatter_add_range(void *ctx, size_t b, size_t e)
{
    const struct rows_job *J = ctx;
    for (int j0 = (int)b * COL_BLOCK; j0 < (int)e * COL_BLOCK && j0 < J->C; j0 += COL_BLOCK) {
        int j1 = imin(j0 + COL_BLOCK, J->C);
        for (int n = 0; n < J->N; n++) {
            float *dst = J->dst + (size_t)J->idx[n] * J->C;
            const float *src = J->src + (size_t)n * J->C;
            for (int j = j0; j < j1; j++)
                dst[j] += src[j];
        }
    }
}

static void gather_rows_by(float *dst, const float *src, const int *idx, int N, int C)
{
    struct rows_job J = {dst, src, idx, N, C};
    pool_for_range((size_t)N, (size_t)C, PAR_MIN_WORK, gather_range, &J);
}

static void scatter_add_rows(float *dst, const float *src, const int *idx, int N, int C)
{
    struct rows_job J = {dst, src, idx, N, C};
    pool_for_range((size_t)col_blocks(C), (size_t)N * COL_BLOCK, PAR_MIN_WORK, scatter_add_range, &J);
}

void embedding_forward(float *out, const int *tokens, const float *wte, int N, int C)
{
    gather_rows_by(out, wte, tokens, N, C);
}

void embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C)
{
    scatter_add_rows(dwte, dout, tokens, N, C);   // the same token may occur twice
}

// ----------------------------------------------------------------------------
// LM head + log-softmax + gather
//
// Scratch layout per chunk of mc rows: hc (chunk, C) gathered rows of h, z (chunk, V) logits, dhc
// (chunk, C) their gradient before it is scattered back into dh.

size_t logsoftmax_gather_scratch_size(int chunk, int C, int V)
{
    ASSERT(chunk > 0 && C > 0 && V > 0);
    return (size_t)chunk * ((size_t)V + 2 * (size_t)C);
}

// Rows of h for positions m0..m0+mc-1: a view of h when rows == NULL, else gathered into hc.
static const float *gather_rows(float *hc, const float *h, const int *rows, int m0, int mc, int C)
{
    if (!rows)
        return h + (size_t)m0 * C;
    gather_rows_by(hc, h, rows + m0, mc, C);
    return hc;
}

// Keeps the topk largest logits of z seen so far in ids/vals, sorted descending. A later (larger)
// id only displaces an entry when strictly larger, so ties rank the smaller id first.
static void topk_row(int *ids, float *vals, int topk, const float *z, int V)
{
    int n = 0;
    for (int j = 0; j < V; j++) {
        float x = z[j];
        if (n == topk && !(x > vals[n - 1]))
            continue;
        int p = n < topk ? n++ : topk - 1;
        while (p > 0 && x > vals[p - 1]) {
            vals[p] = vals[p - 1];
            ids[p] = ids[p - 1];
            p--;
        }
        vals[p] = x;
        ids[p] = j;
    }
}

// sum = Σ exp(z_j - mx), sum_ez = Σ exp(z_j - mx)·(z_j - mx), accumulated in double: V-long sums
NN_VEC static void exp_sums(const float *z, int V, float mx, double *sum, double *sum_ez)
{
    double s = 0.0, se = 0.0;
    #pragma omp simd reduction(+ : s, se)
    for (int j = 0; j < V; j++) {
        float d = z[j] - mx, e = exp_fast(d);
        s += e;
        se += (double)e * d;
    }
    *sum = s;
    *sum_ez = se;
}

// z_j (a logit) becomes dz_j without the one-hot part:
//   -p_j·gsum - de·p_j·(log p_j + H),  p_j = exp(z_j - lse)
NN_VEC static void dlogits_row(float *z, int V, float lse, float gsum, float de, float H)
{
    if (de != 0.0f) {
        #pragma omp simd
        for (int j = 0; j < V; j++) {
            float lp = z[j] - lse, p = exp_fast(lp);
            z[j] = -p * gsum - de * p * (lp + H);
        }
    } else {
        #pragma omp simd
        for (int j = 0; j < V; j++)
            z[j] = -exp_fast(z[j] - lse) * gsum;
    }
}

static int chunk_rows(size_t scratch_size, int M, int C, int V)
{
    size_t per_row = (size_t)V + 2 * (size_t)C;
    ASSERT(scratch_size >= per_row);
    size_t chunk = scratch_size / per_row;
    return chunk < (size_t)M ? (int)chunk : M;
}

// Given dz (mc, V) of the chunk of positions m0..m0+mc-1 (rows hx of h):
// forward z = hx·wlmᵀ / T  →  dh[rows] += dz·wlm / T,  dwlm += dzᵀ·hx / T
static void lsg_chunk_backward(float *dh, float *dwlm, const float *z, float *dhc, const float *hx,
                               const float *wlm, const int *rows, int m0, int mc, int C, int V,
                               float inv_t)
{
    if (dh && !rows) {
        sgemm_rm(false, false, mc, C, V, inv_t, z, V, wlm, C, 1.0f, dh + (size_t)m0 * C, C);
    } else if (dh) {
        sgemm_rm(false, false, mc, C, V, inv_t, z, V, wlm, C, 0.0f, dhc, C);
        scatter_add_rows(dh, dhc, rows + m0, mc, C);   // rows may repeat
    }
    if (dwlm)
        sgemm_rm(true, false, V, C, mc, inv_t, z, V, hx, C, 1.0f, dwlm, C);
}

// The row loops of the three logsoftmax_gather_* below, over rows r of a chunk z(mc, V) whose first
// position is m0: each row's results depend on that row only.
struct lsg_job {
    float *z, *logp, *lse, *entropy, *topk_logp;
    int *topk_ids;
    const float *dlogp, *dentropy, *lse_in, *entropy_in;
    const int *ids;
    int m0, K, V, topk;
};

static void lsg_forward_range(void *ctx, size_t b, size_t e)
{
    const struct lsg_job *J = ctx;
    int K = J->K, V = J->V, topk = J->topk;
    for (size_t r = b; r < e; r++) {
        int m = J->m0 + (int)r;
        const float *zr = J->z + r * V;
        // torch.log_softmax: z - max - log Σ exp(z - max); the V-long sums in double
        float mx = vec_max(zr, V);
        double sum, sum_ez;
        exp_sums(zr, V, mx, &sum, &sum_ez);
        double log_sum = log(sum);
        float l = mx + (float)log_sum;
        J->lse[m] = l;
        for (int kk = 0; kk < K; kk++)
            J->logp[(size_t)m * K + kk] = zr[J->ids[(size_t)m * K + kk]] - l;
        // H = -Σ p log p = log Σ e - E_p[z - max]: shifted by max, so no cancellation of two
        // large numbers
        if (J->entropy)
            J->entropy[m] = (float)(log_sum - sum_ez / sum);
        if (topk > 0) {
            int *ti = J->topk_ids + (size_t)m * topk;
            float *tv = J->topk_logp + (size_t)m * topk;
            topk_row(ti, tv, topk, zr, V);
            for (int kk = 0; kk < topk; kk++)
                tv[kk] -= l;
        }
    }
}

// z becomes dz in place:
//   logp_k = z[id_k] - lse            → dz_j += Σ_k dlogp_k ([j == id_k] - p_j)
//   H = -Σ p log p, ∂H/∂z_j = -p_j (log p_j + H)
static void lsg_backward_range(void *ctx, size_t b, size_t e)
{
    const struct lsg_job *J = ctx;
    int K = J->K, V = J->V;
    for (size_t r = b; r < e; r++) {
        int m = J->m0 + (int)r;
        float *zr = J->z + r * V;
        const float *g = J->dlogp + (size_t)m * K;
        float l = J->lse_in[m], gsum = 0.0f;
        for (int kk = 0; kk < K; kk++)
            gsum += g[kk];
        float de = J->dentropy ? J->dentropy[m] : 0.0f;
        dlogits_row(zr, V, l, gsum, de, de != 0.0f ? J->entropy_in[m] : 0.0f);
        for (int kk = 0; kk < K; kk++)
            zr[J->ids[(size_t)m * K + kk]] += g[kk];
    }
}

static void lsg_fused_range(void *ctx, size_t b, size_t e)
{
    const struct lsg_job *J = ctx;
    int K = J->K, V = J->V;
    for (size_t r = b; r < e; r++) {
        int m = J->m0 + (int)r;
        float *zr = J->z + r * V;
        // forward (as logsoftmax_gather_forward without entropy / top-k)
        float mx = vec_max(zr, V);
        double sum, sum_ez;
        exp_sums(zr, V, mx, &sum, &sum_ez);
        float l = mx + (float)log(sum);
        J->lse[m] = l;
        const float *g = J->dlogp + (size_t)m * K;
        float gsum = 0.0f;
        for (int kk = 0; kk < K; kk++) {
            J->logp[(size_t)m * K + kk] = zr[J->ids[(size_t)m * K + kk]] - l;
            gsum += g[kk];
        }
        // backward (as logsoftmax_gather_backward without dentropy): z becomes dz in place
        dlogits_row(zr, V, l, gsum, 0.0f, 0.0f);
        for (int kk = 0; kk < K; kk++)
            zr[J->ids[(size_t)m * K + kk]] += g[kk];
    }
}

void logsoftmax_gather_forward(float *logp, float *lse, float *entropy, int *topk_ids,
                               float *topk_logp, int topk, const float *h, const float *wlm,
                               const int *rows, const int *ids, int M, int K, int C, int V,
                               float temperature, float *scratch, size_t scratch_size)
{
    ASSERT(M >= 0 && K >= 0 && C > 0 && V > 0 && temperature > 0.0f);
    ASSERT(topk >= 0 && topk <= V && (topk == 0 || (topk_ids && topk_logp)));
    if (M == 0)
        return;
    int chunk = chunk_rows(scratch_size, M, C, V);
    float *hc = scratch, *z = scratch + (size_t)chunk * C;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        int mc = imin(chunk, M - m0);
        const float *hx = gather_rows(hc, h, rows, m0, mc, C);
        // z(mc,V) = hx(mc,C) · wlm(V,C)ᵀ / temperature
        sgemm_rm(false, true, mc, V, C, 1.0f / temperature, hx, C, wlm, C, 0.0f, z, V);
        struct lsg_job J = {.z = z, .logp = logp, .lse = lse, .entropy = entropy, .topk_logp = topk_logp,
                            .topk_ids = topk_ids, .ids = ids, .m0 = m0, .K = K, .V = V, .topk = topk};
        pool_for_range((size_t)mc, (size_t)V, (size_t)V, lsg_forward_range, &J);
    }
}

void logsoftmax_gather_backward(float *dh, float *dwlm, const float *dlogp, const float *dentropy,
                                const float *h, const float *wlm, const int *rows, const int *ids,
                                const float *lse, const float *entropy,
                                int M, int K, int C, int V, float temperature,
                                float *scratch, size_t scratch_size)
{
    ASSERT(M >= 0 && K >= 0 && C > 0 && V > 0 && temperature > 0.0f);
    ASSERT(!dentropy || entropy);
    if (M == 0 || (!dh && !dwlm))
        return;
    int chunk = chunk_rows(scratch_size, M, C, V);
    float *hc = scratch, *z = scratch + (size_t)chunk * C, *dhc = z + (size_t)chunk * V;
    float inv_t = 1.0f / temperature;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        int mc = imin(chunk, M - m0);
        const float *hx = gather_rows(hc, h, rows, m0, mc, C);
        sgemm_rm(false, true, mc, V, C, inv_t, hx, C, wlm, C, 0.0f, z, V);
        struct lsg_job J = {.z = z, .dlogp = dlogp, .dentropy = dentropy, .lse_in = lse,
                            .entropy_in = entropy, .ids = ids, .m0 = m0, .K = K, .V = V};
        pool_for_range((size_t)mc, (size_t)V, (size_t)V, lsg_backward_range, &J);
        lsg_chunk_backward(dh, dwlm, z, dhc, hx, wlm, rows, m0, mc, C, V, inv_t);
    }
}

void logsoftmax_gather_fused(float *logp, float *lse, float *dh, float *dwlm, const float *dlogp,
                             const float *h, const float *wlm, const int *rows, const int *ids,
                             int M, int K, int C, int V, float temperature,
                             float *scratch, size_t scratch_size)
{
    ASSERT(M >= 0 && K >= 0 && C > 0 && V > 0 && temperature > 0.0f);
    if (M == 0)
        return;
    int chunk = chunk_rows(scratch_size, M, C, V);
    float *hc = scratch, *z = scratch + (size_t)chunk * C, *dhc = z + (size_t)chunk * V;
    float inv_t = 1.0f / temperature;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        int mc = imin(chunk, M - m0);
        const float *hx = gather_rows(hc, h, rows, m0, mc, C);
        // the one logits product of the chunk (the same call as the forward's and the backward's)
        sgemm_rm(false, true, mc, V, C, inv_t, hx, C, wlm, C, 0.0f, z, V);
        struct lsg_job J = {.z = z, .logp = logp, .lse = lse, .dlogp = dlogp, .ids = ids, .m0 = m0,
                            .K = K, .V = V};
        pool_for_range((size_t)mc, (size_t)V, (size_t)V, lsg_fused_range, &J);
        lsg_chunk_backward(dh, dwlm, z, dhc, hx, wlm, rows, m0, mc, C, V, inv_t);
    }
}
