// kd.c — see kd.h.
#include "kd.h"
#include "lm.h"
#include "nn.h"
#include "pool.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KD_CHUNK 128   // rows per output-layer chunk (as loss.c)
#define KD_KMAX 4096   // per-position stack scratch

int kd_div_parse(const char *s)
{
    if (!strcmp(s, "fkl") || !strcmp(s, "kl")) return KD_FKL;
    if (!strcmp(s, "rkl")) return KD_RKL;
    if (!strcmp(s, "jsd")) return KD_JSD;
    return -1;
}

const char *kd_div_name(enum kd_div d)
{
    return d == KD_FKL ? "fkl" : d == KD_RKL ? "rkl" : "jsd";
}

// log-softmax over K values x·s, into out (double).
static void log_softmax_k(double *out, const float *x, int K, double s)
{
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) {
        out[k] = (double)x[k] * s;
        if (out[k] > mx) mx = out[k];
    }
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp(out[k] - mx);
    double lse = mx + log(sum);
    for (int k = 0; k < K; k++) out[k] -= lse;
}

double kd_divergence(const struct kd_config *c, const float *sl, const float *tl, int K,
                     double tscale, float *dsl, double scale)
{
    ASSERT(K >= 1 && K <= KD_KMAX);
    double lp[KD_KMAX], lq[KD_KMAX];
    log_softmax_k(lp, tl, K, tscale);    // teacher, renormalised on its K ids, at temperature T
    log_softmax_k(lq, sl, K, 1.0);       // student, renormalised on the same ids
    double D = 0.0;
    switch (c->div) {
    case KD_FKL:
        // KL(P‖Q) = Σ p (log p − log q);  dD/dsl_j = q_j − p_j
        for (int k = 0; k < K; k++) D += exp(lp[k]) * (lp[k] - lq[k]);
        if (dsl)
            for (int k = 0; k < K; k++) dsl[k] = (float)(scale * (exp(lq[k]) - exp(lp[k])));
        break;
    case KD_RKL:
        // KL(Q‖P) = Σ q (log q − log p);  dD/dsl_j = q_j (log q_j − log p_j − D)
        for (int k = 0; k < K; k++) D += exp(lq[k]) * (lq[k] - lp[k]);
        if (dsl)
            for (int k = 0; k < K; k++) dsl[k] = (float)(scale * exp(lq[k]) * (lq[k] - lp[k] - D));
        break;
    case KD_JSD: {
        // M = β P + (1−β) Q;  D = β KL(P‖M) + (1−β) KL(Q‖M)   (GKD eq. 2)
        // dD/dq_j = (1−β) log(q_j/m_j);  through the softmax: q_j (h_j − Σ_k q_k h_k)
        const double b = c->beta;
        double lm[KD_KMAX], klq = 0.0, klp = 0.0;
        for (int k = 0; k < K; k++) {
            // log m = logsumexp(log β + log p, log(1−β) + log q), stable
            double a1 = log(b) + lp[k], a2 = log1p(-b) + lq[k];
            double mx = a1 > a2 ? a1 : a2;
            lm[k] = mx + log(exp(a1 - mx) + exp(a2 - mx));
            klp += exp(lp[k]) * (lp[k] - lm[k]);
            klq += exp(lq[k]) * (lq[k] - lm[k]);
        }
        D = b * klp + (1.0 - b) * klq;
        if (dsl)
            for (int k = 0; k < K; k++)
                dsl[k] = (float)(scale * (1.0 - b) * exp(lq[k]) * (lq[k] - lm[k] - klq));
        break;
    }
    }
    return D;
}

struct kd_job {
    const struct kd_config *c;
    const float *sl, *tl;
    float *dsl;
    double tscale, scale;
    double *part;
    int M, K, nchunks;
};

static void kd_chunk(void *ctx, int i)
{
    const struct kd_job *J = ctx;
    size_t lo, hi;
    pool_range((size_t)J->M, J->nchunks, i, &lo, &hi);
    double sum = 0.0;
    for (size_t m = lo; m < hi; m++)
        sum += kd_divergence(J->c, J->sl + m * J->K, J->tl + m * J->K, J->K, J->tscale,
                             J->dsl ? J->dsl + m * J->K : NULL, J->scale);
    J->part[i] = sum;
}

// Rows in chunks on the pool; the chunks depend on M and K only and their sums are added in chunk
// order, so the loss has the same bits at every thread count.
double kd_loss(const struct kd_config *c, const float *sl, const float *tl, int M, int K,
               double tscale, float *dsl, double scale)
{
    double part[64];   // pool_chunks returns at most 64
    int nc = pool_chunks((size_t)M * K, 8192);
    if (nc > M) nc = M > 0 ? M : 1;
    struct kd_job J = {c, sl, tl, dsl, tscale, scale, part, M, K, nc};
    pool_for(nc, kd_chunk, &J);
    double sum = 0.0;
    for (int i = 0; i < nc; i++)
        sum += part[i];
    return sum;
}

void kd_ws_init(struct kd_ws *w, const struct model_config *cfg, int M_max, int K)
{
    memset(w, 0, sizeof *w);
    w->M_max = M_max;
    w->K = K;
    size_t n = mul_size((size_t)(M_max > 0 ? M_max : 1), (size_t)K, "KD workspace");
    w->ids = xmalloc(n * sizeof(int));
    w->tl = xmalloc(n * sizeof(float));
    w->sl = xmalloc(n * sizeof(float));
    w->dsl = xmalloc(n * sizeof(float));
    w->lse = xmalloc((size_t)(M_max > 0 ? M_max : 1) * sizeof(float));
    w->scratch_size = logsoftmax_gather_scratch_size(KD_CHUNK, cfg->C, cfg->V);
    w->scratch = xmalloc(w->scratch_size * sizeof(float));
}

void kd_ws_free(struct kd_ws *w)
{
    free(w->ids), free(w->tl), free(w->sl), free(w->dsl), free(w->lse), free(w->scratch);
    memset(w, 0, sizeof *w);
}

double kd_model_loss(const struct kd_config *c, const struct model *m, float *dwlm, float *dh,
                     struct kd_ws *w, const float *hN, const int *rows, int M, double tscale,
                     double scale)
{
    if (M == 0) return 0.0;
    ASSERT(M <= w->M_max);
    const struct model_config *cfg = &m->cfg;
    const float *wlm = lm_head_weight(m);
    const int K = w->K;
    const float T = (float)c->temperature;
    logsoftmax_gather_forward(w->sl, w->lse, NULL, NULL, NULL, 0, hN, wlm, rows, w->ids, M, K,
                              cfg->C, cfg->V, T, w->scratch, w->scratch_size);
    double sum = kd_loss(c, w->sl, w->tl, M, K, tscale, dh ? w->dsl : NULL, scale);
    if (dh)
        logsoftmax_gather_backward(dh, dwlm, w->dsl, NULL, hN, wlm, rows, w->ids, w->lse, NULL, M,
                                   K, cfg->C, cfg->V, T, w->scratch, w->scratch_size);
    return sum;
}
