// test-grpo.c — the GRPO objective (common/grpo.h): finite differences of the per-token loss and
// of the aggregated loss with respect to logp, for every aggregation mode, KL estimator and clip
// regime (ratio below, inside and above the clip range; positive, negative and zero advantages);
// the loss against a direct transcription of each paper's formula; advantages (std scaling on and
// off, equal-reward groups kept or dropped, a single sample); weights; statistics.
#include "grpo.h"
#include "rng.h"
#include "test.h"
#include "util.h"

#include <math.h>
#include <string.h>

static double uni(uint64_t k, double a, double b) { return a + (b - a) * rng_uniform(rng_key(7, k, 0, 0)); }

// log-ratios well away from the kinks at log(1 - eps_low) and log(1 + eps_high), per regime
static double log_ratio(int regime, uint64_t k)
{
    switch (regime) {
    case 0: return uni(k, -0.9, -0.45);    // rho in [0.41, 0.64]: below 1 - eps_low
    case 1: return uni(k, -0.15, 0.15);    // inside
    default: return uni(k, 0.40, 0.9);     // rho in [1.49, 2.46]: above 1 + eps_high
    }
}

// ---------------------------------------------------------------------------------------------

static void test_token_fd(void)
{
    const double advs[] = {1.3, -0.7, 0.0};
    const double betas[] = {0.0, 0.04, 1.0};
    uint64_t k = 1;
    for (int kl = 0; kl < 3; kl++)
        for (int bi = 0; bi < 3; bi++)
            for (int regime = 0; regime < 3; regime++)
                for (int ai = 0; ai < 3; ai++) {
                    struct grpo_config c;
                    grpo_config_default(&c);
                    c.kl = kl, c.beta = betas[bi], c.eps_low = 0.2, c.eps_high = 0.28;
                    for (int rep = 0; rep < 3; rep++, k++) {
                        double old = uni(k * 3, -4, -0.1);
                        double lp = old + log_ratio(regime, k * 3 + 1);
                        double ref = lp + uni(k * 3 + 2, -1.5, 1.5);
                        double d, dm, dp, h = 1e-6;
                        grpo_token_loss(&c, lp, old, ref, advs[ai], &d);
                        double lpl = grpo_token_loss(&c, lp + h, old, ref, advs[ai], &dp);
                        double lml = grpo_token_loss(&c, lp - h, old, ref, advs[ai], &dm);
                        double fd = (lpl - lml) / (2 * h);
                        CHECK_MSG(fabs(fd - d) <= 1e-6 * fmax(1, fabs(d)),
                                  "kl=%d beta=%g regime=%d adv=%g: fd %.9g analytic %.9g", kl, betas[bi],
                                  regime, advs[ai], fd, d);
                        // the clip regime decides whether the policy term has a gradient
                        double rho = exp(lp - old), dpol = d;
                        if (c.beta != 0) {
                            double dd = ref - lp;
                            dpol -= c.beta * (kl == 0 ? 1.0 : kl == 1 ? -dd : 1 - exp(dd));
                        }
                        bool clipped = (advs[ai] > 0 && regime == 2) || (advs[ai] < 0 && regime == 0);
                        double want = clipped ? 0.0 : -rho * advs[ai];
                        CHECK_NEAR(dpol, want, 1e-12);
                    }
                }
}

// Direct transcriptions of the objectives (double, simple loops) to check grpo_loss's value.
struct batch {
    int nseq, len[6], M;
    bool use[6];
    float logp[64], old[64], ref[64], adv_tok[64], w_tok[64];
    double adv[6];
};

static void make_batch(struct batch *b, uint64_t seed)
{
    static const int lens[6] = {5, 1, 9, 3, 7, 4};
    memset(b, 0, sizeof *b);
    b->nseq = 6;
    int t = 0;
    for (int i = 0; i < 6; i++) {
        b->len[i] = lens[i];
        b->use[i] = i != 4;                       // one sequence left out (a masked truncation)
        b->adv[i] = (i % 3 == 0) ? 0.9 - 0.2 * i : (i % 3 == 1 ? -1.1 + 0.1 * i : 0.0);
        for (int j = 0; j < lens[i]; j++, t++) {
            uint64_t k = seed * 1000 + t;
            b->old[t] = (float)uni(k, -5, -0.05);
            b->logp[t] = (float)(b->old[t] + log_ratio((int)(k % 3), k + 500));
            b->ref[t] = (float)(b->logp[t] + uni(k + 900, -1, 1));
        }
    }
    b->M = t;
}

static double expected_loss(const struct grpo_config *c, const struct batch *b, int L)
{
    double total = 0;
    int n = 0, T = 0;
    for (int i = 0; i < b->nseq; i++) if (b->use[i]) n++, T += b->len[i];
    int t = 0;
    for (int i = 0; i < b->nseq; i++) {
        double s = 0;
        for (int j = 0; j < b->len[i]; j++, t++) {
            double rho = exp((double)b->logp[t] - b->old[t]);
            double rc = fmin(fmax(rho, 1 - c->eps_low), 1 + c->eps_high);
            double l = -fmin(rho * b->adv[i], rc * b->adv[i]);
            double d = (double)b->ref[t] - b->logp[t];
            double kl = c->kl == GRPO_KL_K1 ? -d : c->kl == GRPO_KL_K2 ? 0.5 * d * d : exp(d) - d - 1;
            s += l + c->beta * kl;
        }
        if (!b->use[i]) continue;
        if (c->agg == GRPO_AGG_TOKEN) total += s / T;                 // DAPO §3.3, token level
        else if (c->agg == GRPO_AGG_SEQ) total += s / b->len[i] / n;  // GRPO eq. 3
        else total += s / ((double)n * L);                           // Dr. GRPO §3.1 (sum / (n L))
    }
    return total;
}

static void test_loss_fd(void)
{
    for (int agg = 0; agg < 3; agg++)
        for (int kl = 0; kl < 3; kl++)
            for (int bi = 0; bi < 2; bi++)
                for (int ml = 0; ml < 2; ml++) {
                    if (ml && agg != GRPO_AGG_CONST) continue;
                    struct grpo_config c;
                    grpo_config_default(&c);
                    c.agg = agg, c.kl = kl, c.beta = bi ? 0.1 : 0.0, c.eps_high = 0.28;
                    c.max_len = ml ? 16 : 0;
                    struct batch b;
                    make_batch(&b, 1 + agg * 10 + kl * 3 + bi);
                    float wseq[6];
                    long T = grpo_seq_weights(&c, b.len, b.use, b.nseq, wseq);
                    CHECK(T == 5 + 1 + 9 + 3 + 4);
                    int t = 0;
                    for (int i = 0; i < b.nseq; i++)
                        for (int j = 0; j < b.len[i]; j++, t++) b.adv_tok[t] = (float)b.adv[i], b.w_tok[t] = wseq[i];
                    float dlogp[64];
                    struct grpo_stats st;
                    grpo_stats_zero(&st);
                    const float *ref = c.beta != 0 ? b.ref : NULL;
                    double L = grpo_loss(&c, b.logp, b.old, ref, b.adv_tok, b.w_tok, b.M, dlogp, &st);
                    CHECK_NEAR(L, expected_loss(&c, &b, ml ? 16 : 9), 1e-6);
                    CHECK(st.tokens == T);
                    // central differences on each float input; the step actually taken is measured
                    // in double, so float rounding of logp + h does not enter the quotient
                    int bad = 0;
                    for (t = 0; t < b.M; t++) {
                        float save = b.logp[t], scratch[64];
                        float up = save + 1e-3f, dn = save - 1e-3f;
                        b.logp[t] = up;
                        double Lp = grpo_loss(&c, b.logp, b.old, ref, b.adv_tok, b.w_tok, b.M, scratch, NULL);
                        b.logp[t] = dn;
                        double Lm = grpo_loss(&c, b.logp, b.old, ref, b.adv_tok, b.w_tok, b.M, scratch, NULL);
                        b.logp[t] = save;
                        double fd = (Lp - Lm) / ((double)up - dn);
                        // the loss is a sum of per-token terms, each exp-smooth: the second-order
                        // error of the quotient is ~h^2 |l'''|, below 1e-6 of the weights here
                        if (fabs(fd - dlogp[t]) > 2e-6 + 1e-4 * fabs(dlogp[t])) {
                            bad++;
                            fprintf(stderr, "agg=%s kl=%s beta=%g token %d: fd %.9g analytic %.9g\n",
                                    grpo_agg_name(agg), grpo_kl_name(kl), c.beta, t, fd, dlogp[t]);
                        }
                    }
                    CHECK(bad == 0);
                    // left-out sequence: no gradient
                    for (t = 5 + 1 + 9 + 3; t < 5 + 1 + 9 + 3 + 7; t++) CHECK(dlogp[t] == 0.0f);
                }
}

// ---------------------------------------------------------------------------------------------

static void test_advantages(void)
{
    struct grpo_config c;
    grpo_config_default(&c);
    float a[8];
    double r1[4] = {1, 0, 0, 0};
    CHECK(grpo_advantages(&c, r1, 4, a));
    // mean 0.25, sample std sqrt(0.75/3) = 0.5
    CHECK_NEAR(a[0], 0.75 / (0.5 + 1e-4), 1e-6);
    CHECK_NEAR(a[1], -0.25 / (0.5 + 1e-4), 1e-6);
    CHECK_NEAR(a[0] + a[1] + a[2] + a[3], 0.0, 1e-6);
    c.scale_std = false;                     // Dr. GRPO
    CHECK(grpo_advantages(&c, r1, 4, a));
    CHECK(a[0] == 0.75f && a[3] == -0.25f);

    double eq[3] = {0.5, 0.5, 0.5};
    for (int i = 0; i < 8; i++) a[i] = 9;
    CHECK(grpo_advantages(&c, eq, 3, a));    // kept, all zero
    CHECK(a[0] == 0 && a[1] == 0 && a[2] == 0);
    c.drop_equal = true;
    CHECK(!grpo_advantages(&c, eq, 3, a));   // dropped
    CHECK(a[0] == 0 && a[2] == 0);
    double one[1] = {1.0};
    CHECK(!grpo_advantages(&c, one, 1, a));  // a single sample has no contrast
    c.drop_equal = false, c.scale_std = true;
    CHECK(grpo_advantages(&c, one, 1, a) && a[0] == 0);

    double neg[5] = {-1, 2.5, 0.25, -1, 7};   // mixed signs, repeated values
    CHECK(grpo_advantages(&c, neg, 5, a));
    double m = (-1 + 2.5 + 0.25 - 1 + 7) / 5, ss = 0;
    for (int i = 0; i < 5; i++) ss += (neg[i] - m) * (neg[i] - m);
    double sd = sqrt(ss / 4);
    for (int i = 0; i < 5; i++) CHECK_NEAR(a[i], (neg[i] - m) / (sd + 1e-4), 1e-6);
    CHECK(a[0] == a[3]);
    // tiny differences are kept (not "equal") and stay bounded by 1/adv_eps * diff
    double tiny[2] = {1.0, 1.0 + 1e-9};
    c.drop_equal = true;
    CHECK(grpo_advantages(&c, tiny, 2, a));
    CHECK(fabs(a[0]) < 1e-4 && a[0] < 0 && a[1] > 0);
}

static void test_weights(void)
{
    struct grpo_config c;
    grpo_config_default(&c);
    int len[4] = {4, 0, 2, 6};
    bool use[4] = {true, true, true, false};
    float w[4];
    CHECK(grpo_seq_weights(&c, len, use, 4, w) == 6);
    CHECK_NEAR(w[0], 1.0 / 6, 1e-7); CHECK(w[1] == 0); CHECK_NEAR(w[2], 1.0 / 6, 1e-7); CHECK(w[3] == 0);
    c.agg = GRPO_AGG_SEQ;                    // n = 2 (the empty sequence does not count)
    grpo_seq_weights(&c, len, use, 4, w);
    CHECK_NEAR(w[0], 1.0 / 8, 1e-7); CHECK_NEAR(w[2], 1.0 / 4, 1e-7); CHECK(w[3] == 0);
    c.agg = GRPO_AGG_CONST;                  // L = longest used = 4
    grpo_seq_weights(&c, len, use, 4, w);
    CHECK_NEAR(w[0], 1.0 / 8, 1e-7); CHECK_NEAR(w[2], 1.0 / 8, 1e-7);
    c.max_len = 10;
    grpo_seq_weights(&c, len, use, 4, w);
    CHECK_NEAR(w[0], 1.0 / 20, 1e-7);
    bool none[4] = {0};
    CHECK(grpo_seq_weights(&c, len, none, 4, w) == 0);
    CHECK(w[0] == 0 && w[3] == 0);

    CHECK(grpo_agg_parse("seq") == GRPO_AGG_SEQ && grpo_agg_parse("mean") == -1);
    CHECK(grpo_kl_parse("k2") == GRPO_KL_K2 && grpo_kl_parse("k4") == -1);
}

static void test_stats(void)
{
    struct grpo_config c;
    grpo_config_default(&c);
    c.eps_low = 0.2, c.eps_high = 0.28, c.beta = 0.0;
    // tokens: (rho, adv) = (0.5, -1) clip low; (0.5, +1) not clipped; (1.5, +1) clip high;
    // (1.5, -1) not clipped; (1.0, 0) nothing
    float old[5] = {-1, -1, -1, -1, -1};
    float lp[5] = {(float)(-1 + log(0.5)), (float)(-1 + log(0.5)), (float)(-1 + log(1.5)),
                   (float)(-1 + log(1.5)), -1};
    float ref[5] = {-1, -1, -1, -1, -1};
    float adv[5] = {-1, 1, 1, -1, 0}, w[5] = {0.2f, 0.2f, 0.2f, 0.2f, 0.2f}, d[5];
    struct grpo_stats s;
    grpo_stats_zero(&s);
    double L = grpo_loss(&c, lp, old, ref, adv, w, 5, d, &s);
    CHECK(s.tokens == 5 && s.clip_low == 1 && s.clip_high == 1);
    CHECK_NEAR(s.ratio_min, 0.5, 1e-6);
    CHECK_NEAR(s.ratio_max, 1.5, 1e-6);
    CHECK(s.has_kl);                         // reported even when beta = 0 (a reference was given)
    // terms: -min(.5*-1, .8*-1)=0.8; -min(.5, .8)=-.5; -min(1.5, 1.28)=-1.28; -min(-1.5,-1.28)=1.5; 0
    CHECK_NEAR(L, 0.2 * (0.8 - 0.5 - 1.28 + 1.5), 1e-6);
    CHECK(d[0] == 0 && d[2] == 0);
    CHECK_NEAR(d[1], -0.2 * 0.5, 1e-6);
    CHECK_NEAR(d[3], 0.2 * 1.5, 1e-6);
    // k3 of d: e^d - d - 1 >= 0 always, 0 at d = 0
    double kd;
    c.beta = 1.0;
    CHECK_NEAR(grpo_token_loss(&c, -1, -1, -1, 0, &kd), 0.0, 1e-15);
    CHECK(kd == 0);
    CHECK(grpo_token_loss(&c, -1, -1, -3, 0, &kd) > 0 && grpo_token_loss(&c, -1, -1, 0.5, 0, &kd) > 0);

    struct grpo_batch_stats b;
    double r[4] = {1, 0, 0.5, 0.5};
    float a[4] = {1, -1, 0, 0};
    int len[4] = {3, 5, 2, 10};
    bool tr[4] = {false, true, false, false}, kept[4] = {true, true, false, false};
    grpo_batch_stats(&b, r, a, len, tr, kept, 4, 2, 1);
    CHECK_NEAR(b.reward_mean, 0.5, 1e-12);
    CHECK_NEAR(b.reward_std, sqrt(0.125), 1e-12);
    CHECK_NEAR(b.len_mean, 5.0, 1e-12);
    CHECK(b.len_max == 10 && b.truncated == 1 && b.groups_dropped == 1);
    CHECK_NEAR(b.adv_mean, 0.0, 1e-12);
    CHECK_NEAR(b.adv_std, 1.0, 1e-12);
    CHECK(b.adv_abs_max == 1.0);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    test_token_fd();
    test_loss_fd();
    test_advantages();
    test_weights();
    test_stats();
    return test_finish("test-grpo");
}
