// loss.h — losses on top of lm_forward's final hidden states (lm.h) and the chunked output layer
// (logsoftmax_gather in nn.h). Each *_forward_backward computes the loss of a batch and, when
// grads is not NULL, accumulates its gradient into the lm_head gradient and returns dL/dhN for
// lm_backward. Scratch buffers are owned by struct loss_ws, sized once for the largest batch.
//
// Targets. Token t of a sequence is a target when mask[t] = 1 (t > 0 within its sequence); it is
// predicted from hidden row t - 1. loss_targets() lists those (row, id) pairs in order.
//
// Cross-entropy (SFT): L = -(1/W) Σ_targets log p(id | row), with W the number of targets of the
// whole optimizer step (passed in, so gradient accumulation over micro-batches of any split gives
// the same gradient as one big batch: each micro-batch divides by the step's total, not its own).
#ifndef SRLM_LOSS_H
#define SRLM_LOSS_H

#include <stddef.h>

#include "lm.h"

struct loss_ws {
    int N_max;
    int *rows, *ids;          // (N_max)
    float *logp, *lse, *dlogp; // (N_max)
    float *dh;                 // (N_max, C)
    float *scratch;            // logsoftmax_gather scratch
    size_t scratch_size;
};

void loss_ws_init(struct loss_ws *w, const struct model_config *cfg, int N_max);
void loss_ws_free(struct loss_ws *w);

// Fills w->rows / w->ids with the targets of a packed batch; returns their count M.
int loss_targets(struct loss_ws *w, const int *tokens, const int *mask, const int *cu_seqlens, int nseq);

// Sum over targets of -log p (not divided), and, when grads != NULL, accumulates the gradient of
// (that sum / denom) into grads->lmw and w->dh (N, C, zeroed here). Leaves log-probs in w->logp.
double loss_ce(const struct model *m, struct model_params *grads, struct loss_ws *w,
               const float *hN, int N, int M, double denom);

#endif
