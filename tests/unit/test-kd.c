// test-kd.c — the distillation losses of common/kd.c: values against a double-precision
// re-implementation written from the definitions (KL(P‖Q), KL(Q‖P), GKD's JSD(β) with
// M = βP + (1−β)Q), and gradients with respect to the student's hidden states and lm_head
// (through logsoftmax_gather, temperature included) against central finite differences of that
// double reference. Every divergence, β 0.1/0.5/0.9, loss temperatures 0.7/1/2, teacher
// temperatures 1/2.
#include "blas.h"
#include "kd.h"
#include "model.h"
#include "nn.h"
#include "rng.h"
#include "test.h"
#include "util.h"

#include <string.h>

enum { V = 23, C = 8, M = 5, K = 6 };

static double h[M * C], wl[V * C];     // student hidden rows and lm_head (double masters)
static int ids[M * K];
static float tl[M * K];                // teacher log-probs at temperature tau

static double uni(uint64_t a, uint64_t b) { return 2.0 * rng_uniform(rng_key(7, a, b, 0)) - 1.0; }

// Definition-level reference: scale · Σ_m D(P_m, Q_m) in double.
static double ref_loss(const struct kd_config *c, double tscale, double scale)
{
    double total = 0.0;
    for (int m = 0; m < M; m++) {
        double z[V], mx = -1e300, s = 0.0;
        for (int v = 0; v < V; v++) {
            z[v] = 0.0;
            for (int i = 0; i < C; i++) z[v] += h[m * C + i] * wl[v * C + i];
            z[v] /= c->temperature;
            if (z[v] > mx) mx = z[v];
        }
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        double lse = mx + log(s);
        double q[K], p[K], qs = 0.0, ps = 0.0;
        for (int k = 0; k < K; k++) {
            q[k] = exp(z[ids[m * K + k]] - lse);          // full-vocabulary probability
            p[k] = exp((double)tl[m * K + k] * tscale);
            qs += q[k], ps += p[k];
        }
        double D = 0.0;
        for (int k = 0; k < K; k++) {
            double pk = p[k] / ps, qk = q[k] / qs, mk = c->beta * pk + (1 - c->beta) * qk;
            if (c->div == KD_FKL) D += pk * log(pk / qk);
            else if (c->div == KD_RKL) D += qk * log(qk / pk);
            else D += c->beta * pk * log(pk / mk) + (1 - c->beta) * qk * log(qk / mk);
        }
        total += D;
    }
    return scale * total;
}

static void run_case(struct model *mo, const struct kd_config *c, double tau, const char *name)
{
    const double tscale = tau / c->temperature, scale = 0.37;
    // teacher: log softmax of random logits at temperature tau, at K distinct ids per row
    for (int m = 0; m < M; m++) {
        double zt[V], mx = -1e300, s = 0.0;
        for (int v = 0; v < V; v++) {
            zt[v] = 3.0 * uni(100 + m, v);
            if (zt[v] / tau > mx) mx = zt[v] / tau;
        }
        for (int v = 0; v < V; v++) s += exp(zt[v] / tau - mx);
        for (int k = 0; k < K; k++) tl[m * K + k] = (float)(zt[ids[m * K + k]] / tau - mx - log(s));
    }
    float *hf = xmalloc(sizeof(float) * M * C), *dh = xcalloc(M * C, sizeof(float));
    float *dw = xcalloc(V * C, sizeof(float));
    for (int i = 0; i < M * C; i++) hf[i] = (float)h[i];
    for (int i = 0; i < V * C; i++) mo->params.lmw[i] = (float)wl[i];
    struct kd_ws w;
    kd_ws_init(&w, &mo->cfg, M, K);
    memcpy(w.ids, ids, sizeof ids);
    memcpy(w.tl, tl, sizeof tl);
    double got = kd_model_loss(c, mo, dw, dh, &w, hf, NULL, M, tscale, scale);
    double want = ref_loss(c, tscale, scale);
    CHECK_MSG(fabs(scale * got - want) <= 1e-5 * fmax(1e-3, fabs(want)), "%s: loss %.9g vs reference %.9g", name, scale * got, want);
    CHECK_MSG(got >= -1e-6, "%s: divergence %g < 0", name, got);
    // dD/dsl sums to zero per position (the K-restricted softmax is shift invariant)
    double worst = 0.0;
    for (int m = 0; m < M; m++) {
        double s = 0.0;
        for (int k = 0; k < K; k++) s += w.dsl[m * K + k];
        worst = fmax(worst, fabs(s));
    }
    CHECK_MSG(worst < 1e-6, "%s: sum of dD/dsl = %g", name, worst);
    // finite differences of the double reference
    const double eps = 1e-5;
    double err = 0.0, big = 0.0;
    for (int i = 0; i < M * C; i++) {
        double x = h[i];
        h[i] = x + eps; double lp = ref_loss(c, tscale, scale);
        h[i] = x - eps; double lm = ref_loss(c, tscale, scale);
        h[i] = x;
        double fd = (lp - lm) / (2 * eps);
        err = fmax(err, fabs(fd - dh[i])), big = fmax(big, fabs(fd));
    }
    CHECK_MSG(err <= 1e-4 * fmax(big, 1e-2), "%s: dh max error %g (max |grad| %g)", name, err, big);
    err = 0.0, big = 0.0;
    for (int i = 0; i < V * C; i++) {
        double x = wl[i];
        wl[i] = x + eps; double lp = ref_loss(c, tscale, scale);
        wl[i] = x - eps; double lm = ref_loss(c, tscale, scale);
        wl[i] = x;
        double fd = (lp - lm) / (2 * eps);
        err = fmax(err, fabs(fd - dw[i])), big = fmax(big, fabs(fd));
    }
    CHECK_MSG(err <= 1e-4 * fmax(big, 1e-2), "%s: dwlm max error %g (max |grad| %g)", name, err, big);
    kd_ws_free(&w);
    free(hf), free(dh), free(dw);
}

// D = 0 and a zero gradient when the student equals the teacher on the K ids.
static void test_zero(void)
{
    float sl[K], t[K], d[K];
    for (int k = 0; k < K; k++) sl[k] = (float)(-1.0 - 0.3 * k);
    for (int dv = KD_FKL; dv <= KD_JSD; dv++) {
        struct kd_config c = {(enum kd_div)dv, 0.5, 2.0};
        // teacher at tau = 1, loss at T = 2: tl·(1/2) must equal sl up to a constant
        for (int k = 0; k < K; k++) t[k] = 2.0f * sl[k] - 0.25f;
        double D = kd_divergence(&c, sl, t, K, 0.5, d, 1.0);
        CHECK_MSG(fabs(D) < 1e-7, "%s: D = %g for equal distributions", kd_div_name(c.div), D);
        for (int k = 0; k < K; k++) CHECK(fabs(d[k]) < 1e-7);
    }
}

int main(void)
{
    blas_init(1);
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:s}", "model_type", "llama",
                          "hidden_size", C, "intermediate_size", 8, "num_hidden_layers", 1,
                          "num_attention_heads", 2, "vocab_size", V, "max_position_embeddings", 16,
                          "tie_word_embeddings", 0, "hidden_act", "silu");
    struct model_config cfg;
    model_config_parse(&cfg, j, "test config");
    json_decref(j);
    struct model mo;
    model_init(&mo, &cfg);
    for (int i = 0; i < M * C; i++) h[i] = uni(1, i);
    for (int i = 0; i < V * C; i++) wl[i] = 0.8 * uni(2, i);
    for (int m = 0; m < M; m++)            // K distinct ids per row
        for (int k = 0; k < K; k++) ids[m * K + k] = (m * 7 + k * 5) % V;

    CHECK(kd_div_parse("fkl") == KD_FKL && kd_div_parse("rkl") == KD_RKL && kd_div_parse("jsd") == KD_JSD);
    CHECK(kd_div_parse("kl") == KD_FKL && kd_div_parse("tvd") == -1);
    test_zero();

    static const double temps[] = {0.7, 1.0, 2.0}, taus[] = {1.0, 2.0}, betas[] = {0.1, 0.5, 0.9};
    char name[64];
    for (int ti = 0; ti < 3; ti++)
        for (int ui = 0; ui < 2; ui++) {
            for (int dv = KD_FKL; dv <= KD_RKL; dv++) {
                struct kd_config c = {(enum kd_div)dv, 0.5, temps[ti]};
                snprintf(name, sizeof name, "%s T=%g tau=%g", kd_div_name(c.div), temps[ti], taus[ui]);
                run_case(&mo, &c, taus[ui], name);
            }
            for (int bi = 0; bi < 3; bi++) {
                struct kd_config c = {KD_JSD, betas[bi], temps[ti]};
                snprintf(name, sizeof name, "jsd(%g) T=%g tau=%g", betas[bi], temps[ti], taus[ui]);
                run_case(&mo, &c, taus[ui], name);
            }
        }
    model_free(&mo);
    return test_finish("test-kd");
}
