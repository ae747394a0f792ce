// optim.c — see optim.h.
#include "optim.h"

#include <math.h>
#include <string.h>

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const struct adamw_config *c, double lr, long step)
{
    // Bias corrections in double, as PyTorch computes them from Python floats.
    const double bc1 = 1.0 - pow(c->beta1, (double)step);
    const double bc2 = 1.0 - pow(c->beta2, (double)step);
    const float step_size = (float)(lr / bc1);   // lr / bias_correction1, in double
    const float bc2_sqrt = (float)sqrt(bc2);
    // Scalars are formed in double and rounded once, as PyTorch does with its Python-float
    // hyper-parameters (1 - beta1 is 0.1 exactly rounded, not 1.0f - 0.9f).
    const float decay = (float)(1.0 - (double)lr * c->weight_decay);
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    const float a1 = (float)(1.0 - c->beta1), a2 = (float)(1.0 - c->beta2);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        p[i] *= decay;
        m[i] = b1 * m[i] + a1 * gi;                 // torch: exp_avg.mul_(b1).add_(g, alpha=1 - b1)
        v[i] = b2 * v[i] + a2 * (gi * gi);          // torch: exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * (m[i] / denom);         // torch: param.addcdiv_(m, denom, value=-step_size)
    }
}

double grad_norm(const float *const *g, const size_t *n, int nbuf)
{
    double total = 0.0;
    for (int b = 0; b < nbuf; b++) {
        const float *x = g[b];
        double s = 0.0;
        #pragma omp parallel for schedule(static) reduction(+:s)
        for (size_t i = 0; i < n[b]; i++) s += (double)x[i] * x[i];
        total += s;
    }
    return sqrt(total);
}

float clip_scale(double norm, double max_norm)
{
    if (max_norm <= 0) return 1.0f;
    double s = max_norm / (norm + 1e-6);      // torch.nn.utils.clip_grad_norm_
    return s < 1.0 ? (float)s : 1.0f;
}

void scale_buffer(float *g, size_t n, float s)
{
    if (s == 1.0f) return;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

double lr_at(enum lr_schedule s, double lr, double min_lr, long step, long warmup, long total)
{
    if (warmup > 0 && step <= warmup) return lr * (double)step / (double)warmup;
    if (s == LR_CONSTANT || total <= warmup) return lr;
    double frac = (double)(step - warmup) / (double)(total - warmup);
    if (frac > 1.0) frac = 1.0;
    if (s == LR_LINEAR) return min_lr + (lr - min_lr) * (1.0 - frac);
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + cos(M_PI * frac));
}

int lr_schedule_parse(const char *s)
{
    if (!strcmp(s, "constant")) return LR_CONSTANT;
    if (!strcmp(s, "linear")) return LR_LINEAR;
    if (!strcmp(s, "cosine")) return LR_COSINE;
    return -1;
}
