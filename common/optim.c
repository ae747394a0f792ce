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
#include <string.h>

#include "pool.h"

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

// The loops run on the compute pool (pool.h) in contiguous ranges of at least OPT_MIN_WORK
// elements. The element-wise results do not depend on the ranges; the norm's partial sums are
// per range, and the ranges depend on the buffer's length only, so the norm has the same bits at
// every thread count.
#define OPT_MIN_WORK 32768

struct opt_job {
    float *p, *g, *m, *v;
    const float *x;
    double *part;
    size_t n;
    int nchunks;
    struct adamw_scalars s;
    float gscale;
};

static void adamw_range(void *ctx, size_t lo, size_t hi)
{
    const struct opt_job *J = ctx;
    adamw_span(J->p + lo, J->g + lo, J->m + lo, J->v + lo, hi - lo, J->s);
}

static void adamw_step_range(void *ctx, size_t lo, size_t hi)
{
    const struct opt_job *J = ctx;
    adamw_step_span(J->p + lo, J->g + lo, J->m + lo, J->v + lo, hi - lo, J->s, J->gscale);
}

static void scale_range(void *ctx, size_t lo, size_t hi)
{
    const struct opt_job *J = ctx;
    scale_span(J->g + lo, hi - lo, J->gscale);
}

static void sumsq_chunk(void *ctx, int c)
{
    const struct opt_job *J = ctx;
    size_t lo, hi;
    pool_range(J->n, J->nchunks, c, &lo, &hi);
    J->part[c] = sumsq_span(J->x + lo, hi - lo);
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const struct adamw_config *c, double lr, long step)
{
    struct opt_job J = {.p = p, .g = (float *)g, .m = m, .v = v, .s = adamw_scalars(c, lr, step)};
    pool_for_range(n, 1, OPT_MIN_WORK, adamw_range, &J);
}

void adamw_step(float *p, float *g, float *m, float *v, size_t n,
                const struct adamw_config *c, double lr, long step, float gscale)
{
    struct opt_job J = {.p = p, .g = g, .m = m, .v = v, .s = adamw_scalars(c, lr, step), .gscale = gscale};
    pool_for_range(n, 1, OPT_MIN_WORK, adamw_step_range, &J);
}

double grad_norm(const float *const *g, const size_t *n, int nbuf)
{
    double total = 0.0;
    for (int b = 0; b < nbuf; b++) {
        double part[64];   // pool_chunks returns at most 64
        struct opt_job J = {.x = g[b], .part = part, .n = n[b], .nchunks = pool_chunks(n[b], OPT_MIN_WORK)};
        pool_for(J.nchunks, sumsq_chunk, &J);
        for (int c = 0; c < J.nchunks; c++) total += part[c];   // in chunk order: deterministic
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
    struct opt_job J = {.g = g, .gscale = s};
    pool_for_range(n, 1, OPT_MIN_WORK, scale_range, &J);
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
