// optim.h — AdamW with decoupled weight decay, global-norm gradient clipping and learning-rate
// schedules, over flat f32 buffers (parameters, gradients and the two moments share one layout).
//
// Contract: adamw_update() performs exactly one step of torch.optim.AdamW (PyTorch 1.13 docs,
// "AdamW" algorithm box; Loshchilov & Hutter 2019): with t the 1-based step,
//     p   <- p - lr * wd * p                       (decoupled decay, before the moment update)
//     m   <- b1 m + (1 - b1) g
//     v   <- b2 v + (1 - b2) g^2
//     p   <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// A per-element decay mask is not needed: callers run it once per parameter group with its own wd
// (norm weights and biases usually take wd = 0). Loops run on the compute pool (pool.h) in ranges
// cut by the length alone; the update is element-wise, so any thread count gives the same bits.
#ifndef SRLM_OPTIM_H
#define SRLM_OPTIM_H

#include <stddef.h>

struct adamw_config {
    double lr, beta1, beta2, eps, weight_decay;   // double, as PyTorch holds them (Python floats)
};

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const struct adamw_config *c, double lr, long step);

// The whole optimizer step of one parameter group in ONE pass over p, g, m, v (the step is memory
// bound: four separate passes over the 0.5B model's 2 GB buffers cost four times the traffic):
//     g' = g * gscale        (the clip factor of clip_scale(); 1 = no clipping)
//     adamw_update(p, g', m, v, ...)
//     g  = 0                 (ready for the next step's accumulation)
// Bitwise equal to scale_buffer(g, n, gscale) + adamw_update(...) + memset(g, 0): the same f32
// operations in the same order (g·1 is g exactly, so gscale = 1 needs no special case).
void adamw_step(float *p, float *g, float *m, float *v, size_t n,
                const struct adamw_config *c, double lr, long step, float gscale);

// Global L2 norm over several gradient buffers, squares summed in double (so the sum does not
// depend on how the buffers are split, to double rounding). One vectorised pass; each pool chunk sums
// a contiguous slice cut by the length alone and the slices are added in order, so every thread
// count gives the same bits. clip_scale() gives the factor torch.nn.utils.clip_grad_norm_
// applies: max_norm / (norm + 1e-6) when that is below 1, else 1.
double grad_norm(const float *const *g, const size_t *n, int nbuf);
float clip_scale(double norm, double max_norm);
void scale_buffer(float *g, size_t n, float s);

enum lr_schedule { LR_CONSTANT, LR_LINEAR, LR_COSINE };
// Learning rate at 1-based step `step` of `total`: linear warm-up over `warmup` steps from 0 to
// lr, then constant, linear decay to min_lr, or half-cosine decay to min_lr at step `total`.
double lr_at(enum lr_schedule s, double lr, double min_lr, long step, long warmup, long total);
// Parses "constant" | "linear" | "cosine"; returns -1 if unknown.
int lr_schedule_parse(const char *s);

#endif
