// lm.c — see lm.h. Layer formulas and their references are in nn.h; this file only wires them.
#include "lm.h"
#include "blas.h"
#include "lora.h"
#include "nn.h"
#include "pool.h"
#include "util.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

// Pointer to layer l of a per-kind block whose layers hold n floats each; NULL stays NULL
// (a kind the architecture does not have, or a gradient that is not wanted).
#define LP(p, l, n) ((p) ? (p) + (size_t)(l) * (size_t)(n) : NULL)

// ---------------------------------------------------------------------------------------------
// activations

// Carves n floats off the arena cursor (64-byte aligned: 16 floats).
static float *carve(float **cur, size_t n)
{
    float *p = *cur;
    *cur += (n + 15) & ~(size_t)15;
    return p;
}

static size_t layer_floats(const struct model_config *c, size_t N)
{
    size_t qd = (size_t)c->NH * c->hs, kd = (size_t)c->NKV * c->hs, pad = 16 * 18;
    return N * (4 * (size_t)c->C + 3 * qd + 3 * kd + 2 * (size_t)c->NH + (size_t)c->NKV + 2 + 3 * (size_t)c->FF) + pad;
}

// Backward temporaries: dres, dln (N, C); dact, dgate, dup (N, FF); datt, dq, dqraw (N, NH*hs);
// dk, dv, dkraw (N, NKV*hs).
static size_t grad_floats(const struct model_config *c, size_t N)
{
    size_t qd = (size_t)c->NH * c->hs, kd = (size_t)c->NKV * c->hs;
    return N * (2 * (size_t)c->C + 3 * (size_t)c->FF + 3 * qd + 3 * kd) + 16 * 11;
}

// RoPE inverse frequencies (hs/2 floats) with the config's scaling applied, as HF's rope_init_fn
// for its rope_type computes them.
static void rope_inv_freq_scaled(const struct model_config *cfg, float *inv_freq)
{
    rope_inv_freq(inv_freq, cfg->hs, (float)cfg->rope_theta);
    switch (cfg->rope_type) {
    case MODEL_ROPE_DEFAULT: break;
    case MODEL_ROPE_LINEAR:
        for (int i = 0; i < cfg->hs / 2; i++) inv_freq[i] /= (float)cfg->rope_factor;
        break;
    case MODEL_ROPE_LLAMA3:
        rope_scale_llama3(inv_freq, cfg->hs, cfg->rope_factor, cfg->rope_low_freq_factor,
                          cfg->rope_high_freq_factor, cfg->rope_original_max_pos);
        break;
    }
}

// Carves one layer's activations; k and v only when with_kv (forward-only arenas keep them per
// layer, apart from the shared rest).
static void carve_layer(struct lm_layer_acts *la, float **cur, const struct model_config *cfg, size_t N,
                        bool with_kv)
{
    size_t qd = (size_t)cfg->NH * cfg->hs, kd = (size_t)cfg->NKV * cfg->hs;
    la->x = carve(cur, N * cfg->C);
    la->ln1 = carve(cur, N * cfg->C);
    la->rstd1 = carve(cur, N);
    la->qraw = carve(cur, N * qd);
    la->kraw = carve(cur, N * kd);
    la->qrstd = carve(cur, N * cfg->NH);
    la->krstd = carve(cur, N * cfg->NKV);
    la->q = carve(cur, N * qd);
    if (with_kv) la->k = carve(cur, N * kd), la->v = carve(cur, N * kd);
    la->att = carve(cur, N * qd);
    la->lse = carve(cur, N * cfg->NH);
    la->xmid = carve(cur, N * cfg->C);
    la->ln2 = carve(cur, N * cfg->C);
    la->rstd2 = carve(cur, N);
    la->gate = carve(cur, N * cfg->FF);
    la->up = carve(cur, N * cfg->FF);
    la->act = carve(cur, N * cfg->FF);
}

static void acts_init(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max, bool train)
{
    memset(a, 0, sizeof *a);
    ASSERT(N_max > 0 && T_max > 0 && T_max <= N_max);
    a->N_max = N_max, a->T_max = T_max;
    size_t N = (size_t)N_max, half = (size_t)cfg->hs / 2, kd = (size_t)cfg->NKV * cfg->hs;
    a->scratch_size = attention_scratch_size(T_max, blas_threads());
    size_t layers = train ? (size_t)cfg->L * layer_floats(cfg, N)
                          : layer_floats(cfg, N) + (size_t)cfg->L * (2 * N * kd + 32);
    size_t total = layers + 2 * N * cfg->C + N + 2 * (size_t)T_max * half + a->scratch_size
                   + (train ? grad_floats(cfg, N) : 0) + 16 * 8;
    a->memory = xmalloc(total * sizeof(float));
    float *cur = a->memory;
    a->tokens = xmalloc(N * sizeof(int));
    a->pos = xmalloc(N * sizeof(int));
    a->cu_seqlens = xmalloc((N + 1) * sizeof(int));
    a->layer = xcalloc((size_t)cfg->L, sizeof *a->layer);
    if (!train) carve_layer(&a->layer[0], &cur, cfg, N, false);
    for (int l = 0; l < cfg->L; l++) {
        struct lm_layer_acts *la = &a->layer[l];
        if (train) {
            carve_layer(la, &cur, cfg, N, true);
        } else {
            // Every layer overwrites the one before: layer_forward reads its input x last in the
            // attention residual, before the MLP writes the next layer's x into the same buffer.
            *la = a->layer[0];
            la->k = carve(&cur, N * kd), la->v = carve(&cur, N * kd);
        }
    }
    a->xL = carve(&cur, N * cfg->C);
    a->hN = carve(&cur, N * cfg->C);
    a->rstdN = carve(&cur, N);
    a->cos_tab = carve(&cur, (size_t)T_max * half);
    a->sin_tab = carve(&cur, (size_t)T_max * half);
    a->scratch = carve(&cur, a->scratch_size);
    if (train) a->grad_scratch = carve(&cur, grad_floats(cfg, N));
    ASSERT((size_t)(cur - a->memory) <= total);
    float *inv_freq = xmalloc(half * sizeof(float));
    rope_inv_freq_scaled(cfg, inv_freq);
    rope_tables(a->cos_tab, a->sin_tab, inv_freq, T_max, cfg->hs);
    free(inv_freq);
}

void lm_acts_init(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max)
{
    acts_init(a, cfg, N_max, T_max, true);
}

void lm_acts_init_forward(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max)
{
    acts_init(a, cfg, N_max, T_max, false);
    a->row_invariant = true;
}

void lm_acts_free(struct lm_acts *a)
{
    free(a->memory);
    free(a->tokens);
    free(a->pos);
    free(a->cu_seqlens);
    free(a->layer);
    free(a->lora_t);
    free(a->lora_dt);
    memset(a, 0, sizeof *a);
}

// ---------------------------------------------------------------------------------------------
// LoRA: y(N, out) += scaling·(x·Aᵀ)·Bᵀ on top of the base projection (lora.h)

void lm_acts_set_lora(struct lm_acts *a, const struct lora *lo)
{
    free(a->lora_t), free(a->lora_dt);
    a->lora_t = a->lora_dt = NULL;
    a->lora = lo;
    if (!lo) return;
    size_t per = mul_size((size_t)a->N_max, (size_t)lo->r, "adapter activations");
    size_t n = mul_size(per, (size_t)lo->L * (size_t)__builtin_popcount(lo->targets), "adapter activations");
    a->lora_t = xmalloc(n * sizeof(float));
    a->lora_dt = xmalloc(per * sizeof(float));
}

// Saved scaling·x·Aᵀ (N_max, r) of (layer l, target t), or NULL if t is not adapted.
static float *lora_saved(const struct lm_acts *a, int l, enum lora_target t)
{
    const struct lora *lo = a->lora;
    if (!lo || !(lo->targets & (1u << t))) return NULL;
    size_t nt = (size_t)__builtin_popcount(lo->targets), rank = (size_t)__builtin_popcount(lo->targets & ((1u << t) - 1));
    return a->lora_t + ((size_t)l * nt + rank) * (size_t)a->N_max * lo->r;
}

// out(N, OUT) += (scaling·inp·Aᵀ)·Bᵀ, with tsave (N, r) receiving scaling·inp·Aᵀ. A no-op when
// (l, t) is not adapted (tsave NULL).
static void lora_forward(const struct lora *lo, int l, enum lora_target t, float *out, const float *inp,
                         float *tsave, int N, bool rowinv)
{
    void (*gemm)(bool, bool, int, int, int, float, const float *, int, const float *, int, float, float *, int) =
        rowinv ? sgemm_rm_rowinv : sgemm_rm;
    if (!lo || !tsave) return;
    int r = lo->r, in = lo->in[t], od = lo->out[t];
    const float *A = lo->params + lora_a_offset(lo, l, t), *B = lo->params + lora_b_offset(lo, l, t);
    gemm(false, true, N, r, in, lo->scaling, inp, in, A, in, 0.0f, tsave, r);   // t(N,r) = s·inp·Aᵀ
    gemm(false, true, N, od, r, 1.0f, tsave, r, B, r, 1.0f, out, od);           // out += t·Bᵀ
}

// Backward of lora_forward given dout (N, OUT): dB += doutᵀ·t; dt = scaling·dout·B;
// dA += dtᵀ·inp; dinp += dt·A. dinp, lgrad may be NULL.
static void lora_backward(const struct lm_acts *a, float *lgrad, int l, enum lora_target t, float *dinp,
                          const float *dout, const float *inp, int N)
{
    const struct lora *lo = a->lora;
    const float *ts = lora_saved(a, l, t);
    if (!ts || (!dinp && !lgrad)) return;
    int r = lo->r, in = lo->in[t], od = lo->out[t];
    size_t ao = lora_a_offset(lo, l, t), bo = lora_b_offset(lo, l, t);
    const float *A = lo->params + ao, *B = lo->params + bo;
    if (lgrad) sgemm_rm(true, false, od, r, N, 1.0f, dout, od, ts, r, 1.0f, lgrad + bo, r);
    sgemm_rm(false, false, N, r, od, lo->scaling, dout, od, B, r, 0.0f, a->lora_dt, r);
    if (lgrad) sgemm_rm(true, false, r, in, N, 1.0f, a->lora_dt, r, inp, in, 1.0f, lgrad + ao, in);
    if (dinp) sgemm_rm(false, false, N, in, r, 1.0f, a->lora_dt, r, A, in, 1.0f, dinp, in);
}

static void check_lora(const struct lora *lo, const struct model_config *c)
{
    ASSERT(lo->L == c->L && lo->in[LORA_Q] == c->C && lo->out[LORA_Q] == c->NH * c->hs &&
           lo->out[LORA_K] == c->NKV * c->hs && lo->out[LORA_GATE] == c->FF);
}

const float *lm_head_weight(const struct model *m)
{
    return m->cfg.tied ? m->params.embed : m->params.lmw;
}

// ---------------------------------------------------------------------------------------------
// training forward / backward

static void check_batch(struct lm_acts *a, const int *cu_seqlens, int nseq, int N)
{
    if (N > a->N_max) die(EX_DATAERR, "batch of %d tokens exceeds the planned %d", N, a->N_max);
    ASSERT(nseq >= 1 && cu_seqlens[0] == 0 && cu_seqlens[nseq] == N);
    for (int s = 0; s < nseq; s++) {
        int T = cu_seqlens[s + 1] - cu_seqlens[s];
        ASSERT(T >= 1);
        if (T > a->T_max) die(EX_DATAERR, "sequence of %d tokens exceeds the maximum length %d", T, a->T_max);
    }
}

// out(N, OC) = inp·wᵀ + bias: matmul_forward, or for forward-only activations (inference) the
// row-invariant product (blas.h), so a sequence's results do not depend on the batch around it.
static void mm(const struct lm_acts *a, float *out, const float *inp, const float *w, const float *bias,
               int N, int C, int OC)
{
    if (!a->row_invariant) {
        matmul_forward(out, inp, w, bias, N, C, OC);
        return;
    }
    if (bias)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
    sgemm_rm_rowinv(false, true, N, OC, C, 1.0f, inp, C, w, C, bias ? 1.0f : 0.0f, out, OC);
}

static void layer_forward(const struct model *m, struct lm_acts *a, int l, float *xout)
{
    const struct model_config *c = &m->cfg;
    const struct model_params *p = &m->params;
    struct lm_layer_acts *la = &a->layer[l];
    int N = a->N, C = c->C, hs = c->hs, qd = c->NH * hs, kd = c->NKV * hs, FF = c->FF;
    float eps = c->rms_norm_eps;

    rmsnorm_forward(la->ln1, la->rstd1, la->x, LP(p->ln1w, l, C), N, C, eps);
    const struct lora *lo = a->lora;
    mm(a, la->qraw, la->ln1, LP(p->qw, l, (size_t)qd * C), LP(p->qb, l, qd), N, C, qd);
    lora_forward(lo, l, LORA_Q, la->qraw, la->ln1, lora_saved(a, l, LORA_Q), N, a->row_invariant);
    mm(a, la->kraw, la->ln1, LP(p->kw, l, (size_t)kd * C), LP(p->kb, l, kd), N, C, kd);
    lora_forward(lo, l, LORA_K, la->kraw, la->ln1, lora_saved(a, l, LORA_K), N, a->row_invariant);
    mm(a, la->v, la->ln1, LP(p->vw, l, (size_t)kd * C), LP(p->vb, l, kd), N, C, kd);
    lora_forward(lo, l, LORA_V, la->v, la->ln1, lora_saved(a, l, LORA_V), N, a->row_invariant);
    const float *qin = la->qraw, *kin = la->kraw;
    if (c->qk_norm) {   // Qwen3: RMSNorm over each head, before RoPE
        rmsnorm_forward(la->q, la->qrstd, la->qraw, LP(p->qnw, l, hs), N * c->NH, hs, eps);
        rmsnorm_forward(la->k, la->krstd, la->kraw, LP(p->knw, l, hs), N * c->NKV, hs, eps);
        qin = la->q, kin = la->k;
    }
    rope_forward(la->q, qin, a->cos_tab, a->sin_tab, a->pos, N, c->NH, hs);
    rope_forward(la->k, kin, a->cos_tab, a->sin_tab, a->pos, N, c->NKV, hs);
    attention_forward(la->att, la->lse, la->q, la->k, la->v, a->cu_seqlens, a->nseq, N, c->NH, c->NKV, hs,
                      a->scratch, a->scratch_size);
    mm(a, la->xmid, la->att, LP(p->ow, l, (size_t)C * qd), LP(p->ob, l, C), N, qd, C);
    lora_forward(lo, l, LORA_O, la->xmid, la->att, lora_saved(a, l, LORA_O), N, a->row_invariant);
    residual_forward(la->xmid, la->xmid, la->x, (size_t)N * C);
    rmsnorm_forward(la->ln2, la->rstd2, la->xmid, LP(p->ln2w, l, C), N, C, eps);
    mm(a, la->gate, la->ln2, LP(p->gatew, l, (size_t)FF * C), NULL, N, C, FF);
    lora_forward(lo, l, LORA_GATE, la->gate, la->ln2, lora_saved(a, l, LORA_GATE), N, a->row_invariant);
    mm(a, la->up, la->ln2, LP(p->upw, l, (size_t)FF * C), NULL, N, C, FF);
    lora_forward(lo, l, LORA_UP, la->up, la->ln2, lora_saved(a, l, LORA_UP), N, a->row_invariant);
    swiglu_forward(la->act, la->gate, la->up, N, FF);
    mm(a, xout, la->act, LP(p->downw, l, (size_t)C * FF), NULL, N, FF, C);
    lora_forward(lo, l, LORA_DOWN, xout, la->act, lora_saved(a, l, LORA_DOWN), N, a->row_invariant);
    residual_forward(xout, xout, la->xmid, (size_t)N * C);
}

const float *lm_forward(const struct model *m, struct lm_acts *a, const int *tokens,
                        const int *cu_seqlens, int nseq, int N)
{
    const struct model_config *c = &m->cfg;
    check_batch(a, cu_seqlens, nseq, N);
    if (a->lora) check_lora(a->lora, c);
    a->N = N, a->nseq = nseq;
    memcpy(a->tokens, tokens, (size_t)N * sizeof(int));
    memcpy(a->cu_seqlens, cu_seqlens, (size_t)(nseq + 1) * sizeof(int));
    nn_positions(a->pos, a->cu_seqlens, nseq);
    embedding_forward(a->layer[0].x, a->tokens, m->params.embed, N, c->C);
    for (int l = 0; l < c->L; l++)
        layer_forward(m, a, l, l + 1 < c->L ? a->layer[l + 1].x : a->xL);
    rmsnorm_forward(a->hN, a->rstdN, a->xL, m->params.normw, N, c->C, c->rms_norm_eps);
    return a->hN;
}

struct grad_tmp { float *dres, *dln, *dact, *dgate, *dup, *datt, *dq, *dqraw, *dk, *dv, *dkraw; };

static void grad_tmp_carve(struct grad_tmp *g, struct lm_acts *a, const struct model_config *c)
{
    size_t N = (size_t)a->N_max, qd = (size_t)c->NH * c->hs, kd = (size_t)c->NKV * c->hs;
    float *cur = a->grad_scratch;
    g->dres = carve(&cur, N * c->C), g->dln = carve(&cur, N * c->C);
    g->dact = carve(&cur, N * c->FF), g->dgate = carve(&cur, N * c->FF), g->dup = carve(&cur, N * c->FF);
    g->datt = carve(&cur, N * qd), g->dq = carve(&cur, N * qd), g->dqraw = carve(&cur, N * qd);
    g->dk = carve(&cur, N * kd), g->dv = carve(&cur, N * kd), g->dkraw = carve(&cur, N * kd);
}

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

// On entry g->dres is the gradient of the layer's output; on exit, of its input.
// lg: adapter gradients (flat, adapter layout) or NULL. need_dinp: whether the gradient of the
// layer's input is wanted (not for layer 0 of a frozen model: only the embedding would use it).
static void layer_backward(const struct model *m, struct model_params *d, float *lg, struct lm_acts *a, int l,
                           struct grad_tmp *g, int need_dinp)
{
    const struct model_config *c = &m->cfg;
    const struct model_params *p = &m->params;
    struct lm_layer_acts *la = &a->layer[l];
    int N = a->N, C = c->C, hs = c->hs, qd = c->NH * hs, kd = c->NKV * hs, FF = c->FF;

    // xout = xmid + down(act)
    // The first product into each fresh temporary overwrites it (the *_set variants of nn.h), so
    // the temporaries need no zeroing.
    matmul_backward_set_dinp(g->dact, LP(d->downw, l, (size_t)C * FF), NULL, g->dres, la->act, LP(p->downw, l, (size_t)C * FF), N, FF, C);
    lora_backward(a, lg, l, LORA_DOWN, g->dact, g->dres, la->act, N);
    swiglu_backward_set(g->dgate, g->dup, g->dact, la->gate, la->up, N, FF);
    matmul_backward_set_dinp(g->dln, LP(d->gatew, l, (size_t)FF * C), NULL, g->dgate, la->ln2, LP(p->gatew, l, (size_t)FF * C), N, C, FF);
    lora_backward(a, lg, l, LORA_GATE, g->dln, g->dgate, la->ln2, N);
    matmul_backward(g->dln, LP(d->upw, l, (size_t)FF * C), NULL, g->dup, la->ln2, LP(p->upw, l, (size_t)FF * C), N, C, FF);
    lora_backward(a, lg, l, LORA_UP, g->dln, g->dup, la->ln2, N);
    // xmid feeds the residual and ln2: dres (already d xmid through the residual) += norm path
    rmsnorm_backward(g->dres, LP(d->ln2w, l, C), g->dln, la->xmid, LP(p->ln2w, l, C), la->rstd2, N, C);

    // xmid = x + o(att)
    matmul_backward_set_dinp(g->datt, LP(d->ow, l, (size_t)C * qd), LP(d->ob, l, C), g->dres, la->att, LP(p->ow, l, (size_t)C * qd), N, qd, C);
    lora_backward(a, lg, l, LORA_O, g->datt, g->dres, la->att, N);
    zero(g->dq, (size_t)N * qd), zero(g->dk, (size_t)N * kd), zero(g->dv, (size_t)N * kd);
    attention_backward(g->dq, g->dk, g->dv, g->datt, la->q, la->k, la->v, la->att, la->lse,
                       a->cu_seqlens, a->nseq, N, c->NH, c->NKV, hs, a->scratch, a->scratch_size);
    rope_backward(g->dq, g->dq, a->cos_tab, a->sin_tab, a->pos, N, c->NH, hs);   // in place: replaces
    rope_backward(g->dk, g->dk, a->cos_tab, a->sin_tab, a->pos, N, c->NKV, hs);
    float *dqraw = g->dq, *dkraw = g->dk;
    if (c->qk_norm) {
        rmsnorm_backward_set_dinp(g->dqraw, LP(d->qnw, l, hs), g->dq, la->qraw, LP(p->qnw, l, hs), la->qrstd, N * c->NH, hs);
        rmsnorm_backward_set_dinp(g->dkraw, LP(d->knw, l, hs), g->dk, la->kraw, LP(p->knw, l, hs), la->krstd, N * c->NKV, hs);
        dqraw = g->dqraw, dkraw = g->dkraw;
    }
    // d ln1 feeds only the layer's input gradient and ln1's weight gradient: skip it if neither is wanted
    float *dln = need_dinp || d->ln1w ? g->dln : NULL;
    matmul_backward_set_dinp(dln, LP(d->qw, l, (size_t)qd * C), LP(d->qb, l, qd), dqraw, la->ln1, LP(p->qw, l, (size_t)qd * C), N, C, qd);
    lora_backward(a, lg, l, LORA_Q, dln, dqraw, la->ln1, N);
    matmul_backward(dln, LP(d->kw, l, (size_t)kd * C), LP(d->kb, l, kd), dkraw, la->ln1, LP(p->kw, l, (size_t)kd * C), N, C, kd);
    lora_backward(a, lg, l, LORA_K, dln, dkraw, la->ln1, N);
    matmul_backward(dln, LP(d->vw, l, (size_t)kd * C), LP(d->vb, l, kd), g->dv, la->ln1, LP(p->vw, l, (size_t)kd * C), N, C, kd);
    lora_backward(a, lg, l, LORA_V, dln, g->dv, la->ln1, N);
    if (dln) rmsnorm_backward(need_dinp ? g->dres : NULL, LP(d->ln1w, l, C), dln, la->x, LP(p->ln1w, l, C), la->rstd1, N, C);
}

void lm_backward_lora(const struct model *m, struct model_params *grads, float *lora_grads, struct lm_acts *a,
                      float *dhN)
{
    ASSERT(a->grad_scratch);   // lm_acts_init_forward arenas keep no activations for a backward
    const struct model_config *c = &m->cfg;
    static const struct model_params frozen;   // all NULL: no base gradient wanted
    struct model_params *d = grads ? grads : (struct model_params *)&frozen;
    ASSERT(a->lora || !lora_grads);
    struct grad_tmp g;
    grad_tmp_carve(&g, a, c);
    zero(g.dres, (size_t)a->N * c->C);
    rmsnorm_backward(g.dres, d->normw, dhN, a->xL, m->params.normw, a->rstdN, a->N, c->C);
    for (int l = c->L - 1; l >= 0; l--) layer_backward(m, d, lora_grads, a, l, &g, l > 0 || d->embed);
    if (d->embed) embedding_backward(d->embed, g.dres, a->tokens, a->N, c->C);
}

void lm_backward(const struct model *m, struct model_params *grads, struct lm_acts *a, float *dhN)
{
    lm_backward_lora(m, grads, NULL, a, dhN);
}

// ---------------------------------------------------------------------------------------------
// generation

void lm_cache_init(struct lm_cache *c, const struct model_config *cfg, int slots, int T_max)
{
    memset(c, 0, sizeof *c);
    c->slots = slots, c->T_max = T_max;
    size_t kd = (size_t)cfg->NKV * cfg->hs, qd = (size_t)cfg->NH * cfg->hs, S = (size_t)slots;
    size_t per = mul_size(mul_size((size_t)cfg->L, S, "kv cache"), mul_size((size_t)T_max, kd, "kv cache"), "kv cache");
    c->len = xcalloc(S, sizeof(int));
    c->k = xmalloc(per * sizeof(float));
    c->v = xmalloc(per * sizeof(float));
    c->x = xmalloc(S * cfg->C * sizeof(float));
    c->ln = xmalloc(S * cfg->C * sizeof(float));
    c->tmp = xmalloc(S * cfg->C * sizeof(float));
    c->hN = xmalloc(S * cfg->C * sizeof(float));
    c->rstd = xmalloc(S * cfg->NH * sizeof(float));
    c->q = xmalloc(S * qd * sizeof(float));
    c->att = xmalloc(S * qd * sizeof(float));
    c->kk = xmalloc(S * kd * sizeof(float));
    c->vv = xmalloc(S * kd * sizeof(float));
    c->gate = xmalloc(S * cfg->FF * sizeof(float));
    c->up = xmalloc(S * cfg->FF * sizeof(float));
    c->scores = xmalloc(S * cfg->NH * (size_t)T_max * sizeof(float));
    size_t half = (size_t)cfg->hs / 2;
    c->cos_tab = xmalloc((size_t)T_max * half * sizeof(float));
    c->sin_tab = xmalloc((size_t)T_max * half * sizeof(float));
    float *inv_freq = xmalloc(half * sizeof(float));
    rope_inv_freq_scaled(cfg, inv_freq);
    rope_tables(c->cos_tab, c->sin_tab, inv_freq, T_max, cfg->hs);
    free(inv_freq);
}

struct lm_panels;
static void panels_drop(struct lm_panels *P);

void lm_cache_free(struct lm_cache *c)
{
    float *bufs[] = {c->k, c->v, c->x, c->ln, c->q, c->kk, c->vv, c->att, c->tmp, c->gate, c->up,
                     c->hN, c->rstd, c->scores, c->cos_tab, c->sin_tab};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->len);
    free(c->lora_t);
    panels_drop(c->panels);
    memset(c, 0, sizeof *c);
}

void lm_cache_set_lora(struct lm_cache *c, const struct lora *lo)
{
    free(c->lora_t);
    c->lora_t = lo ? xmalloc(mul_size((size_t)c->slots, (size_t)lo->r, "adapter scratch") * sizeof(float)) : NULL;
    c->lora = lo;
}

// Keys of layer l, slot s, position t: (L, slots, T_max, NKV*hs).
static float *cache_at(const struct lm_cache *c, float *base, const struct model_config *cfg, int l, int s, int t)
{
    size_t kd = (size_t)cfg->NKV * cfg->hs;
    return base + (((size_t)l * c->slots + (size_t)s) * c->T_max + (size_t)t) * kd;
}

const float *lm_prefill(const struct model *m, struct lm_acts *a, struct lm_cache *c,
                        const int *tokens, const int *cu_seqlens, int nseq, const int *slot)
{
    const struct model_config *cfg = &m->cfg;
    int N = cu_seqlens[nseq];
    ASSERT(a->lora == c->lora);   // prompt and decoded tokens must see the same model
    const float *hN = lm_forward(m, a, tokens, cu_seqlens, nseq, N);
    size_t kd = (size_t)cfg->NKV * cfg->hs;
    for (int s = 0; s < nseq; s++) {
        int b = cu_seqlens[s], T = cu_seqlens[s + 1] - b;
        if (T > c->T_max) die(EX_DATAERR, "prompt of %d tokens exceeds the cache's %d", T, c->T_max);
        for (int l = 0; l < cfg->L; l++) {
            memcpy(cache_at(c, c->k, cfg, l, slot[s], 0), a->layer[l].k + (size_t)b * kd, (size_t)T * kd * sizeof(float));
            memcpy(cache_at(c, c->v, cfg, l, slot[s], 0), a->layer[l].v + (size_t)b * kd, (size_t)T * kd * sizeof(float));
        }
        c->len[slot[s]] = T;
    }
    return hN;
}

void lm_cache_grow(struct lm_cache *c, const struct model_config *cfg, int T_max)
{
    if (T_max <= c->T_max) return;
    struct lm_cache n;
    lm_cache_init(&n, cfg, c->slots, T_max);
    size_t kd = (size_t)cfg->NKV * cfg->hs;
    for (int s = 0; s < c->slots; s++) {
        n.len[s] = c->len[s];
        for (int l = 0; l < cfg->L; l++) {
            memcpy(cache_at(&n, n.k, cfg, l, s, 0), cache_at(c, c->k, cfg, l, s, 0), (size_t)c->len[s] * kd * sizeof(float));
            memcpy(cache_at(&n, n.v, cfg, l, s, 0), cache_at(c, c->v, cfg, l, s, 0), (size_t)c->len[s] * kd * sizeof(float));
        }
    }
    n.lora = c->lora, n.lora_t = c->lora_t, n.panels = c->panels;
    c->lora_t = NULL, c->panels = NULL;
    lm_cache_free(c);
    *c = n;
}

void lm_cache_copy(struct lm_cache *c, const struct model_config *cfg, int dst, int src)
{
    size_t kd = (size_t)cfg->NKV * cfg->hs, n = (size_t)c->len[src] * kd * sizeof(float);
    for (int l = 0; l < cfg->L; l++) {
        memcpy(cache_at(c, c->k, cfg, l, dst, 0), cache_at(c, c->k, cfg, l, src, 0), n);
        memcpy(cache_at(c, c->v, cfg, l, dst, 0), cache_at(c, c->v, cfg, l, src, 0), n);
    }
    c->len[dst] = c->len[src];
}

// One query head of one sequence against its T cached keys and values. The q·k dot products
// were a scalar chain (a float sum is not reordered without -ffast-math) and took a third of a
// small model's decode step at a few hundred positions. Here four keys at a time, each dot in 8
// lanes added in a fixed order, and the value rows four at a time into the output (a quarter of
// the loads and stores of out); cloned for AVX-512 / AVX2 like nn.c's loops.
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-trapping-math")))
static void attend_one(float *out, float *sc, const float *q, const float *K, const float *V,
                       size_t stride, int T, int hs, float scale)
{
    int h8 = hs & ~7, T4 = T & ~3;
    for (int t = 0; t < T4; t += 4) {
        const float *k0 = K + t * stride, *k1 = k0 + stride, *k2 = k1 + stride, *k3 = k2 + stride;
        float a0[8] = {0}, a1[8] = {0}, a2[8] = {0}, a3[8] = {0};
        for (int i = 0; i < h8; i += 8)
            for (int j = 0; j < 8; j++) {
                a0[j] += q[i + j] * k0[i + j];
                a1[j] += q[i + j] * k1[i + j];
                a2[j] += q[i + j] * k2[i + j];
                a3[j] += q[i + j] * k3[i + j];
            }
        float s0 = ((a0[0] + a0[4]) + (a0[1] + a0[5])) + ((a0[2] + a0[6]) + (a0[3] + a0[7]));
        float s1 = ((a1[0] + a1[4]) + (a1[1] + a1[5])) + ((a1[2] + a1[6]) + (a1[3] + a1[7]));
        float s2 = ((a2[0] + a2[4]) + (a2[1] + a2[5])) + ((a2[2] + a2[6]) + (a2[3] + a2[7]));
        float s3 = ((a3[0] + a3[4]) + (a3[1] + a3[5])) + ((a3[2] + a3[6]) + (a3[3] + a3[7]));
        for (int i = h8; i < hs; i++) {
            s0 += q[i] * k0[i], s1 += q[i] * k1[i];
            s2 += q[i] * k2[i], s3 += q[i] * k3[i];
        }
        sc[t] = s0 * scale, sc[t + 1] = s1 * scale, sc[t + 2] = s2 * scale, sc[t + 3] = s3 * scale;
    }
    for (int t = T4; t < T; t++) {
        const float *k = K + t * stride;
        float acc[8] = {0};
        for (int i = 0; i < h8; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += q[i + j] * k[i + j];
        float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (int i = h8; i < hs; i++) s += q[i] * k[i];
        sc[t] = s * scale;
    }
    softmax_inplace(sc, T);
    for (int i = 0; i < hs; i++) out[i] = 0;
    for (int t = 0; t < T4; t += 4) {
        const float *v0 = V + t * stride, *v1 = v0 + stride, *v2 = v1 + stride, *v3 = v2 + stride;
        float w0 = sc[t], w1 = sc[t + 1], w2 = sc[t + 2], w3 = sc[t + 3];
        for (int i = 0; i < hs; i++) out[i] += (w0 * v0[i] + w1 * v1[i]) + (w2 * v2[i] + w3 * v3[i]);
    }
    for (int t = T4; t < T; t++) {
        float w = sc[t];
        const float *v = V + t * stride;
        for (int i = 0; i < hs; i++) out[i] += w * v[i];
    }
}

// One query row per (b, head) against its slot's cached keys 0..pos (the new token included).
// Same maths as attention_forward: scaled scores, max-subtracted softmax, weighted sum of values.
// The (b, head) tasks are independent: pool chunks of consecutive tasks.
struct att_job { const struct lm_cache *c; const struct model_config *cfg; int l, B, nchunks; const int *slot, *pos; };

static void attention_decode_chunk(void *p, int ch)
{
    const struct att_job *J = p;
    const struct lm_cache *c = J->c;
    const struct model_config *cfg = J->cfg;
    int NH = cfg->NH, hs = cfg->hs, rep = cfg->NH / cfg->NKV;
    float scale = 1.0f / sqrtf((float)hs);
    size_t stride = (size_t)cfg->NKV * hs, b0, b1;
    pool_range((size_t)J->B * NH, J->nchunks, ch, &b0, &b1);
    for (size_t bh = b0; bh < b1; bh++) {
        int b = (int)bh / NH, h = (int)bh % NH, kvh = h / rep;
        attend_one(c->att + bh * hs, c->scores + bh * c->T_max, c->q + bh * hs,
                   cache_at(c, c->k, cfg, J->l, J->slot[b], 0) + (size_t)kvh * hs,
                   cache_at(c, c->v, cfg, J->l, J->slot[b], 0) + (size_t)kvh * hs, stride, J->pos[b] + 1, hs, scale);
    }
}

static void attention_decode(const struct lm_cache *c, const struct model_config *cfg, int l,
                             const int *slot, const int *pos, int B)
{
    size_t work = 0;
    for (int b = 0; b < B; b++) work += (size_t)cfg->NH * cfg->hs * (size_t)(pos[b] + 1);
    struct att_job J = {c, cfg, l, B, 0, slot, pos};
    // chunks of whole tasks, each at least ~16K multiply-adds
    J.nchunks = pool_chunks((size_t)B * cfg->NH, 16384 / (work / ((size_t)B * cfg->NH) + 1) + 1);
    pool_for(J.nchunks, attention_decode_chunk, &J);
}

// lora_forward for the decoder: scratch c->lora_t, nothing saved.
static void lora_decode(const struct lm_cache *c, int l, enum lora_target t, float *out, const float *inp, int B)
{
    if (c->lora && (c->lora->targets & (1u << t))) lora_forward(c->lora, l, t, out, inp, c->lora_t, B, true);
}

// The bf16 mirror of weight w (a pointer into the f32 parameters).
// The decoder's packed weights (blas.h panels), one per product weight, sorted by address: built
// from the model at the first decode step (bf16 when the model has its bf16 mirror, i.e. after
// model_use_bf16, from the already rounded f32 weights: the same values).
struct lm_panels {
    const struct model *m;
    bool bf16;
    int n;
    struct pw { const float *w; struct panels p; } *e;
};

static int pw_cmp(const void *x, const void *y)
{
    const float *a = ((const struct pw *)x)->w, *b = ((const struct pw *)y)->w;
    return a < b ? -1 : a > b;
}

static void panels_drop(struct lm_panels *P)
{
    if (!P) return;
    for (int i = 0; i < P->n; i++) panels_free(&P->e[i].p);
    free(P->e);
    free(P);
}

static const struct lm_panels *decode_panels(const struct model *m, struct lm_cache *c)
{
    bool bf16 = m->bf16_memory != NULL;
    if (c->panels && c->panels->m == m && c->panels->bf16 == bf16) return c->panels;
    panels_drop(c->panels);
    const struct model_config *cfg = &m->cfg;
    const struct model_params *p = &m->params;
    int C = cfg->C, qd = cfg->NH * cfg->hs, kd = cfg->NKV * cfg->hs, FF = cfg->FF;
    struct lm_panels *P = xcalloc(1, sizeof *P);
    P->m = m, P->bf16 = bf16;
    P->e = xmalloc(((size_t)7 * cfg->L + 1) * sizeof *P->e);
    for (int l = 0; l < cfg->L; l++) {
        const float *w[7] = {LP(p->qw, l, (size_t)qd * C), LP(p->kw, l, (size_t)kd * C), LP(p->vw, l, (size_t)kd * C),
                             LP(p->ow, l, (size_t)C * qd), LP(p->gatew, l, (size_t)FF * C), LP(p->upw, l, (size_t)FF * C),
                             LP(p->downw, l, (size_t)C * FF)};
        const int N[7] = {qd, kd, kd, C, FF, FF, C}, K[7] = {C, C, C, qd, C, C, FF};
        for (int i = 0; i < 7; i++) {
            P->e[P->n].w = w[i];
            panels_pack(&P->e[P->n++].p, w[i], N[i], K[i], bf16);
        }
    }
    P->e[P->n].w = lm_head_weight(m);
    panels_pack(&P->e[P->n++].p, lm_head_weight(m), cfg->V, C, bf16);
    qsort(P->e, (size_t)P->n, sizeof *P->e, pw_cmp);
    c->panels = P;
    return P;
}

static const struct panels *panels_of(const struct lm_panels *P, const float *w)
{
    struct pw key = {.w = w};
    const struct pw *e = bsearch(&key, P->e, (size_t)P->n, sizeof *P->e, pw_cmp);
    ASSERT(e);
    return &e->p;
}

// Products of one decode step that share their input (q, k, v; gate, up; or a single one) in one
// parallel loop, on the packed weights (f32, or bf16 after model_use_bf16). Every element is one
// multiply-add chain over k whatever B (blas.h sgemm_panels): a sequence's logits do not depend
// on the sequences decoded beside it (issue 13).
static void decode_matmuls(const struct model *m, struct lm_cache *c, const float *inp, int B, int n,
                           float *const *out, const float *const *w, const float *const *bias, const int *OC)
{
    const struct lm_panels *P = decode_panels(m, c);
    struct gemm_panel_part part[3];
    ASSERT(n <= 3);
    for (int i = 0; i < n; i++) {
        if (bias[i])
            for (int b = 0; b < B; b++) memcpy(out[i] + (size_t)b * OC[i], bias[i], (size_t)OC[i] * sizeof(float));
        part[i] = (struct gemm_panel_part){panels_of(P, w[i]), out[i], bias[i] ? 1.0f : 0.0f};
        ASSERT(part[i].W->N == OC[i]);
    }
    sgemm_panels(B, inp, part[0].W->K, part, n);
}

static void decode_matmul(const struct model *m, struct lm_cache *c, float *out, const float *inp, const float *w,
                          const float *bias, int B, int OC)
{
    decode_matmuls(m, c, inp, B, 1, &out, &w, &bias, &OC);
}

void lm_decode(const struct model *m, struct lm_cache *c, const int *token, const int *slot, int B,
               float *logits)
{
    const struct model_config *cfg = &m->cfg;
    const struct model_params *p = &m->params;
    int C = cfg->C, hs = cfg->hs, qd = cfg->NH * hs, kd = cfg->NKV * hs, FF = cfg->FF;
    float eps = cfg->rms_norm_eps;
    ASSERT(B <= c->slots);
    int pos[B];
    if (c->lora) check_lora(c->lora, cfg);
    for (int b = 0; b < B; b++) {
        pos[b] = c->len[slot[b]];
        if (pos[b] >= c->T_max) die(EX_DATAERR, "sequence exceeds the cache's %d tokens", c->T_max);
    }
    embedding_forward(c->x, token, p->embed, B, C);
    for (int l = 0; l < cfg->L; l++) {
        rmsnorm_forward(c->ln, NULL, c->x, LP(p->ln1w, l, C), B, C, eps);
        {
            float *const out[3] = {c->q, c->kk, c->vv};
            const float *const w[3] = {LP(p->qw, l, (size_t)qd * C), LP(p->kw, l, (size_t)kd * C),
                                       LP(p->vw, l, (size_t)kd * C)};
            const float *const bias[3] = {LP(p->qb, l, qd), LP(p->kb, l, kd), LP(p->vb, l, kd)};
            const int OC[3] = {qd, kd, kd};
            decode_matmuls(m, c, c->ln, B, 3, out, w, bias, OC);
        }
        lora_decode(c, l, LORA_Q, c->q, c->ln, B);
        lora_decode(c, l, LORA_K, c->kk, c->ln, B);
        lora_decode(c, l, LORA_V, c->vv, c->ln, B);
        if (cfg->qk_norm) {
            rmsnorm_forward(c->q, NULL, c->q, LP(p->qnw, l, hs), B * cfg->NH, hs, eps);
            rmsnorm_forward(c->kk, NULL, c->kk, LP(p->knw, l, hs), B * cfg->NKV, hs, eps);
        }
        rope_forward(c->q, c->q, c->cos_tab, c->sin_tab, pos, B, cfg->NH, hs);
        rope_forward(c->kk, c->kk, c->cos_tab, c->sin_tab, pos, B, cfg->NKV, hs);
        for (int b = 0; b < B; b++) {
            memcpy(cache_at(c, c->k, cfg, l, slot[b], pos[b]), c->kk + (size_t)b * kd, (size_t)kd * sizeof(float));
            memcpy(cache_at(c, c->v, cfg, l, slot[b], pos[b]), c->vv + (size_t)b * kd, (size_t)kd * sizeof(float));
        }
        attention_decode(c, cfg, l, slot, pos, B);
        decode_matmul(m, c, c->tmp, c->att, LP(p->ow, l, (size_t)C * qd), LP(p->ob, l, C), B, C);
        lora_decode(c, l, LORA_O, c->tmp, c->att, B);
        residual_forward(c->x, c->x, c->tmp, (size_t)B * C);
        rmsnorm_forward(c->ln, NULL, c->x, LP(p->ln2w, l, C), B, C, eps);
        {
            float *const out[2] = {c->gate, c->up};
            const float *const w[2] = {LP(p->gatew, l, (size_t)FF * C), LP(p->upw, l, (size_t)FF * C)};
            const float *const bias[2] = {NULL, NULL};
            const int OC[2] = {FF, FF};
            decode_matmuls(m, c, c->ln, B, 2, out, w, bias, OC);
        }
        lora_decode(c, l, LORA_GATE, c->gate, c->ln, B);
        lora_decode(c, l, LORA_UP, c->up, c->ln, B);
        swiglu_forward(c->gate, c->gate, c->up, B, FF);
        decode_matmul(m, c, c->tmp, c->gate, LP(p->downw, l, (size_t)C * FF), NULL, B, C);
        lora_decode(c, l, LORA_DOWN, c->tmp, c->gate, B);
        residual_forward(c->x, c->x, c->tmp, (size_t)B * C);
    }
    rmsnorm_forward(c->hN, NULL, c->x, p->normw, B, C, eps);
    decode_matmul(m, c, logits, c->hN, lm_head_weight(m), NULL, B, cfg->V);
    for (int b = 0; b < B; b++) c->len[slot[b]]++;
}
