// optim.c — see optim.h.
//
// Built with -fno-math-errno (Makefile): without it GCC must keep sqrtf a libm call that may set
// errno, and the AdamW loop does not vectorise. Nothing in srlm reads errno after these functions.
// The element-wise loops are compiled for AVX-512 / AVX2 / baseline and the best clone is picked
// at load time (as in nn.c); FMA contraction stays off (fp-contract=off, and neither clone enables
// FMA), and vsqrtps / vdivps round exactly like sqrtf and '/', so every clone gives the bits of the
// scalar formula.
#include "optim.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define OPT_VEC __attribute__((target_clones("avx512f", "avx2", "default"), \
                               optimize("no-trapping-math", "fp-contract=off")))

struct adamw_scalars { float step_size, bc2_sqrt, decay, b1, b2, eps, a1, a2; };

static struct adamw_scalars adamw_scalars(const struct adamw_config *c, double lr, long step)
{
    // Bias corrections in double, as PyTorch computes them from Python floats.
    const double bc1 = 1.0 - pow(c->beta1, (double)step);
    const double bc2 = 1.0 - pow(c->beta2, (double)step);
    // Scalars are formed in double and rounded once, as PyTorch does with its Python-float
    // hyper-parameters (1 - beta1 is 0.1 exactly rounded, not 1.0f - 0.9f).
    return (struct adamw_scalars){
        .step_size = (float)(lr / bc1),   // lr / bias_correction1, in double
        .bc2_sqrt = (float)sqrt(bc2),
        .decay = (float)(1.0 - (double)lr * c->weight_decay),
        .b1 = (float)c->beta1, .b2 = (float)c->beta2, .eps = (float)c->eps,
        .a1 = (float)(1.0 - c->beta1), .a2 = (float)(1.0 - c->beta2),
    };
}

// The per-element formula, shared by adamw_update and adamw_step (torch.optim.AdamW, foreach or
// not: same f32 operations):
//   param.mul_(1 - lr*wd); exp_avg.mul_(b1).add_(g, alpha=1 - b1);
//   exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2);
//   denom = (exp_avg_sq.sqrt() / sqrt(bc2)).add_(eps); param.addcdiv_(exp_avg, denom, value=-step_size)
#define ADAMW_ELEMENT(s, pi, gi, mi, vi)                               \
    do {                                                               \
        float p_ = (pi) * (s).decay;                                   \
        float m_ = (s).b1 * (mi) + (s).a1 * (gi);                      \
        float v_ = (s).b2 * (vi) + (s).a2 * ((gi) * (gi));             \
        float d_ = sqrtf(v_) / (s).bc2_sqrt + (s).eps;                 \
        (mi) = m_, (vi) = v_;                                          \
        (pi) = p_ - (s).step_size * (m_ / d_);                         \
    } while (0)

OPT_VEC static void adamw_span(float *restrict p, const float *restrict g, float *restrict m,
                               float *restrict v, size_t n, struct adamw_scalars s)
{
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        ADAMW_ELEMENT(s, p[i], gi, m[i], v[i]);
    }
}

OPT_VEC static void adamw_step_span(float *restrict p, float *restrict g, float *restrict m,
                                    float *restrict v, size_t n, struct adamw_scalars s, float gscale)
{
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;   // scale_buffer's product; exact when gscale = 1
        g[i] = 0.0f;
        ADAMW_ELEMENT(s, p[i], gi, m[i], v[i]);
    }
}

OPT_VEC static double sumsq_span(const float *restrict x, size_t n)
{
    double s = 0.0;
    #pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

OPT_VEC static void scale_span(float *restrict g, size_t n, float s)
{
    #pragma omp simd
    for (size_t i = 0; i < n; i++)
        g[i] *= s;
}

// Thread t of nt gets elements [n·t/nt, n·(t+1)/nt): contiguous, cache-line friendly slices.
#define SLICE(n, t, nt) ((size_t)((unsigned __int128)(n) * (unsigned)(t) / (unsigned)(nt)))

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const struct adamw_config *c, double lr, long step)
{
    const struct adamw_scalars s = adamw_scalars(c, lr, step);
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = SLICE(n, t, nt), hi = SLICE(n, t + 1, nt);
        adamw_span(p + lo, g + lo, m + lo, v + lo, hi - lo, s);
    }
}

void adamw_step(float *p, float *g, float *m, float *v, size_t n,
                const struct adamw_config *c, double lr, long step, float gscale)
{
    const struct adamw_scalars s = adamw_scalars(c, lr, step);
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = SLICE(n, t, nt), hi = SLICE(n, t + 1, nt);
        adamw_step_span(p + lo, g + lo, m + lo, v + lo, hi - lo, s, gscale);
    }
}

#define NORM_MAX_THREADS 256

double grad_norm(const float *const *g, const size_t *n, int nbuf)
{
    double total = 0.0;
    for (int b = 0; b < nbuf; b++) {
        double part[NORM_MAX_THREADS];
        int used = 1;
        const float *x = g[b];
        size_t nb = n[b];
        #pragma omp parallel
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            if (nt > NORM_MAX_THREADS) nt = NORM_MAX_THREADS;
            if (t == 0) used = nt;
            if (t < nt) {
                size_t lo = SLICE(nb, t, nt), hi = SLICE(nb, t + 1, nt);
                part[t] = sumsq_span(x + lo, hi - lo);
            }
        }
        for (int t = 0; t < used; t++) total += part[t];   // in thread order: deterministic
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
    #pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = SLICE(n, t, nt), hi = SLICE(n, t + 1, nt);
        scale_span(g + lo, hi - lo, s);
    }
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
