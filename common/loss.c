// loss.c — see loss.h.
#include "loss.h"
#include "nn.h"
#include "util.h"

#include <string.h>

#define LOSS_CHUNK 128   // rows per output-layer chunk: sgemms of 128 x V x C are efficient

void loss_ws_init(struct loss_ws *w, const struct model_config *cfg, int N_max)
{
    memset(w, 0, sizeof *w);
    w->N_max = N_max;
    size_t N = (size_t)N_max;
    w->rows = xmalloc(N * sizeof(int));
    w->ids = xmalloc(N * sizeof(int));
    w->logp = xmalloc(N * sizeof(float));
    w->lse = xmalloc(N * sizeof(float));
    w->dlogp = xmalloc(N * sizeof(float));
    w->dh = xmalloc(N * (size_t)cfg->C * sizeof(float));
    w->scratch_size = logsoftmax_gather_scratch_size(LOSS_CHUNK, cfg->C, cfg->V);
    w->scratch = xmalloc(w->scratch_size * sizeof(float));
}

void loss_ws_free(struct loss_ws *w)
{
    free(w->rows), free(w->ids), free(w->logp), free(w->lse), free(w->dlogp), free(w->dh), free(w->scratch);
    memset(w, 0, sizeof *w);
}

int loss_targets(struct loss_ws *w, const int *tokens, const int *mask, const int *cu_seqlens, int nseq)
{
    int M = 0;
    for (int s = 0; s < nseq; s++)
        for (int t = cu_seqlens[s] + 1; t < cu_seqlens[s + 1]; t++)
            if (mask[t]) {
                w->rows[M] = t - 1;
                w->ids[M] = tokens[t];
                M++;
            }
    return M;
}

double loss_ce(const struct model *m, struct model_params *grads, struct loss_ws *w,
               const float *hN, int N, int M, double denom)
{
    const struct model_config *c = &m->cfg;
    const float *wlm = lm_head_weight(m);
    if (M == 0) {
        if (grads) memset(w->dh, 0, (size_t)N * c->C * sizeof(float));
        return 0.0;
    }
    if (grads) {
        // dL/dlogp is the constant -1/denom: forward and backward in one pass over the logits
        // (logsoftmax_gather_fused: bitwise what forward + backward give, one sgemm less per chunk)
        float g = (float)(-1.0 / denom);
        for (int i = 0; i < M; i++) w->dlogp[i] = g;
        memset(w->dh, 0, (size_t)N * c->C * sizeof(float));
        logsoftmax_gather_fused(w->logp, w->lse, w->dh, grads->lmw, w->dlogp, hN, wlm, w->rows, w->ids,
                                M, 1, c->C, c->V, 1.0f, w->scratch, w->scratch_size);
    } else {
        logsoftmax_gather_forward(w->logp, w->lse, NULL, NULL, NULL, 0, hN, wlm, w->rows, w->ids,
                                  M, 1, c->C, c->V, 1.0f, w->scratch, w->scratch_size);
    }
    double sum = 0.0;
    for (int i = 0; i < M; i++) sum -= w->logp[i];
    return sum;
}
