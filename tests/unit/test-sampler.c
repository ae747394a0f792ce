// test-sampler.c — common/sampler.c: greedy ties, temperature, top-k (HF: ties with the k-th
// kept), top-p (HF TopPLogitsWarper, checked against a literal re-implementation on random rows),
// min-p, their composition, the id-order draw, and empirical frequencies over a fixed key
// sequence within statistical bounds.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "sampler.h"
#include "test.h"
#include "util.h"

#define VMAX 4096

static struct sampler smp;

static struct sampler_params P(float t, int k, float p, float minp)
{
    return (struct sampler_params){false, t, k, p, minp};
}

// The kept set as a bitmask string "0110..." for readable checks.
static void kept(const struct sampler_params *p, const float *z, int V, char *out)
{
    static int ids[VMAX];
    static double pr[VMAX];
    int n = sampler_probs(&smp, p, z, V, ids, pr);
    memset(out, '0', (size_t)V);
    out[V] = '\0';
    for (int k = 0; k < n; k++) out[ids[k]] = '1';
}

static void logits_of(float *z, const double *probs, int V)
{
    for (int i = 0; i < V; i++) z[i] = (float)log(probs[i]);
}

static const double *hf_pr;
// ascending by probability, larger id first on ties (so smaller ids rank as more likely)
static int hf_ascending(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (hf_pr[x] != hf_pr[y]) return hf_pr[x] < hf_pr[y] ? -1 : 1;
    return (y > x) - (y < x);
}

// HF TopPLogitsWarper, literally (double): sort ascending, cumsum, remove cum <= 1 - p, keep the
// last (most likely) token always. Softmax at temperature t first.
static void hf_top_p(const float *z, int V, double t, double p, char *out)
{
    static int idx[VMAX];
    static double pr[VMAX];
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, z[i] / t);
    for (int i = 0; i < V; i++) sum += pr[i] = exp(z[i] / t - mx);
    for (int i = 0; i < V; i++) pr[i] /= sum, idx[i] = i;
    hf_pr = pr;
    qsort(idx, (size_t)V, sizeof(int), hf_ascending);
    memset(out, '1', (size_t)V);
    out[V] = '\0';
    double cum = 0;
    for (int i = 0; i < V - 1; i++) {
        cum += pr[idx[i]];
        if (cum <= 1 - p) out[idx[i]] = '0';
    }
}

static void test_argmax(void)
{
    float z[] = {1, 5, 2, 5, 5, -1};
    CHECK(sampler_argmax(z, 6) == 1);
    struct sampler_params g = {true, 1, 0, 1, 0};
    for (int i = 0; i < 10; i++) CHECK(sampler_sample(&smp, &g, z, 6, i / 10.0) == 1);
    float w[] = {-INFINITY, -3, -3};
    CHECK(sampler_argmax(w, 3) == 1);
}

static void test_temperature(void)
{
    float z[] = {0.5f, -1, 2, 0};
    int ids[4];
    double pr[4];
    for (double t = 0.25; t <= 4; t *= 2) {
        struct sampler_params p = P((float)t, 0, 1, 0);
        int n = sampler_probs(&smp, &p, z, 4, ids, pr);
        CHECK(n == 4);
        double s = 0;
        for (int i = 0; i < 4; i++) s += exp(z[i] / t);
        for (int i = 0; i < 4; i++) CHECK_NEAR(pr[i], exp(z[i] / t) / s, 1e-6);
    }
}

static void test_top_k(void)
{
    char s[16];
    float z[] = {1, 3, 2, 3, 0};
    struct sampler_params p = P(1, 1, 1, 0);
    kept(&p, z, 5, s); CHECK(!strcmp(s, "01010"));     // k=1 with a tie at the top keeps both
    p.top_k = 2; kept(&p, z, 5, s); CHECK(!strcmp(s, "01010"));
    p.top_k = 3; kept(&p, z, 5, s); CHECK(!strcmp(s, "01110"));
    p.top_k = 5; kept(&p, z, 5, s); CHECK(!strcmp(s, "11111"));
    p.top_k = 99; kept(&p, z, 5, s); CHECK(!strcmp(s, "11111"));
    float y[] = {1, 2, 2, 2, 0};                          // HF: ties with the k-th are kept
    p.top_k = 2; kept(&p, y, 5, s); CHECK(!strcmp(s, "01110"));
    // probabilities are renormalised over the kept tokens
    int ids[5];
    double pr[5];
    p.top_k = 2;
    int n = sampler_probs(&smp, &p, z, 5, ids, pr);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 3);
    CHECK_NEAR(pr[0], 0.5, 1e-12);
    // quickselect against a sort, with many duplicates
    for (int trial = 0; trial < 200; trial++) {
        int V = 1 + trial % 97;
        float r[128];
        for (int i = 0; i < V; i++) r[i] = (float)(int)(rng_uniform(rng_key(3, (uint64_t)trial, (uint64_t)i, 0)) * 7);
        int k = 1 + (int)(rng_uniform(rng_key(4, (uint64_t)trial, 0, 0)) * V);
        struct sampler_params q = P(1, k, 1, 0);
        char got[129], want[129];
        kept(&q, r, V, got);
        float sorted[128];
        memcpy(sorted, r, (size_t)V * sizeof(float));
        for (int i = 1; i < V; i++)
            for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) { float x = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = x; }
        for (int i = 0; i < V; i++) want[i] = r[i] >= sorted[k - 1] ? '1' : '0';
        want[V] = '\0';
        CHECK_MSG(!strcmp(got, want), "trial %d V %d k %d: %s vs %s", trial, V, k, got, want);
    }
}

static void test_top_p(void)
{
    char s[16];
    double probs[] = {0.3, 0.5, 0.05, 0.15};   // ranked 1, 0, 3, 2
    float z[4];
    logits_of(z, probs, 4);
    struct sampler_params p = P(1, 0, 0.49f, 0);
    kept(&p, z, 4, s); CHECK(!strcmp(s, "0100"));
    p.top_p = 0.51f; kept(&p, z, 4, s); CHECK(!strcmp(s, "1100"));
    p.top_p = 0.79f; kept(&p, z, 4, s); CHECK(!strcmp(s, "1100"));
    p.top_p = 0.81f; kept(&p, z, 4, s); CHECK(!strcmp(s, "1101"));
    p.top_p = 0.96f; kept(&p, z, 4, s); CHECK(!strcmp(s, "1111"));
    p.top_p = 1; kept(&p, z, 4, s); CHECK(!strcmp(s, "1111"));
    p.top_p = 1e-9f; kept(&p, z, 4, s); CHECK(!strcmp(s, "0100"));   // the top token always
    // ties in probability: ranked by smaller id
    float u[] = {0, 0, 0, 0};
    p.top_p = 0.3f; kept(&p, u, 4, s); CHECK(!strcmp(s, "1100"));
    p.top_p = 0.2f; kept(&p, u, 4, s); CHECK(!strcmp(s, "1000"));
    // temperature before top-p: at T = 0.5 the top token has 0.5² / Σp² = 0.25/0.365 > 0.6
    p = P(0.5f, 0, 0.6f, 0);
    kept(&p, z, 4, s); CHECK(!strcmp(s, "0100"));
    // top-k, then top-p on the renormalised survivors: {1: 0.625, 0: 0.375}
    p = P(1, 2, 0.6f, 0);
    kept(&p, z, 4, s); CHECK(!strcmp(s, "0100"));
    p = P(1, 2, 0.7f, 0);
    kept(&p, z, 4, s); CHECK(!strcmp(s, "1100"));

    // against HF's algorithm on random rows (the pre-filter bound must never drop a kept token)
    static float r[VMAX];
    static char got[VMAX + 1], want[VMAX + 1];
    int mism = 0, trials = 0;
    for (int trial = 0; trial < 300; trial++) {
        int V = trial < 200 ? 2 + trial % 60 : 1000 + 10 * trial;
        if (V > VMAX) V = VMAX;
        double scale = 0.5 + 4 * rng_uniform(rng_key(5, (uint64_t)trial, 1, 0));
        for (int i = 0; i < V; i++) r[i] = (float)(scale * rng_normal(rng_key(5, (uint64_t)trial, (uint64_t)i, 2)));
        double pp = rng_uniform(rng_key(5, (uint64_t)trial, 3, 0)), t = 0.3 + 2 * rng_uniform(rng_key(5, (uint64_t)trial, 4, 0));
        struct sampler_params q = P((float)t, 0, (float)pp, 0);
        kept(&q, r, V, got);
        hf_top_p(r, V, (double)(float)t, (double)(float)pp, want);
        mism += strcmp(got, want) != 0;
        trials++;
    }
    CHECK_MSG(mism == 0, "%d of %d random rows differ from HF's top-p", mism, trials);
}

static void test_min_p(void)
{
    char s[16];
    double probs[] = {0.3, 0.5, 0.05, 0.15};
    float z[4];
    logits_of(z, probs, 4);
    struct sampler_params p = P(1, 0, 1, 0.2f);   // p >= 0.1
    kept(&p, z, 4, s); CHECK(!strcmp(s, "1101"));
    p.min_p = 0.5f; kept(&p, z, 4, s); CHECK(!strcmp(s, "1100"));
    p.min_p = 0.99f; kept(&p, z, 4, s); CHECK(!strcmp(s, "0100"));
    // after top-p
    p = P(1, 0, 0.81f, 0.4f); kept(&p, z, 4, s); CHECK(!strcmp(s, "1100"));
}

// The draw walks the kept ids in increasing order: u = 0 gives the first, u -> 1 the last, and
// the boundaries sit at the cumulative probabilities.
static void test_draw(void)
{
    double probs[] = {0.25, 0.5, 0.125, 0.125};
    float z[4];
    logits_of(z, probs, 4);
    struct sampler_params p = P(1, 0, 1, 0);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.0) == 0);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.24) == 0);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.26) == 1);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.74) == 1);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.76) == 2);
    CHECK(sampler_sample(&smp, &p, z, 4, 0.876) == 3);
    CHECK(sampler_sample(&smp, &p, z, 4, 1.0 - 0x1p-53) == 3);
    // top_p = 1 and top_k = V are the same draw as no filter, for every u
    struct sampler_params q = P(1, 4, 1, 0);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= sampler_sample(&smp, &p, z, 4, i / 1000.0) == sampler_sample(&smp, &q, z, 4, i / 1000.0);
    CHECK(same);
    // only ids [0, V) are considered: a padded tail beyond V is never drawn
    float y[] = {0, 0, 100, 100};
    for (int i = 0; i < 10; i++) CHECK(sampler_sample(&smp, &p, y, 2, i / 10.0) < 2);
}

// Frequencies of N draws with keys rng_key(seed, 0, i, 0): every count within 5 standard
// deviations of N·p, and tokens outside the kept set never drawn.
static void check_freq(const struct sampler_params *p, const float *z, int V, uint64_t seed)
{
    enum { N = 100000 };
    int ids[16], cnt[16] = {0};
    double pr[16], want[16] = {0};
    int n = sampler_probs(&smp, p, z, V, ids, pr);
    for (int k = 0; k < n; k++) want[ids[k]] = pr[k];
    for (int i = 0; i < N; i++) cnt[sampler_sample(&smp, p, z, V, rng_uniform(rng_key(seed, 0, (uint64_t)i, 0)))]++;
    for (int i = 0; i < V; i++) {
        double mu = N * want[i], sd = sqrt(N * want[i] * (1 - want[i]));
        CHECK_MSG(fabs(cnt[i] - mu) <= 5 * sd + 1e-9, "T %g k %d p %g id %d: %d draws, expected %.1f ± %.1f",
                  p->temperature, p->top_k, p->top_p, i, cnt[i], mu, sd);
    }
}

static void test_frequencies(void)
{
    float z[] = {0.1f, 1.2f, -0.5f, 0.7f, 2.0f, -1.5f, 0.0f, 0.9f};
    struct sampler_params ps[] = {P(1, 0, 1, 0), P(0.5f, 0, 1, 0), P(2, 0, 1, 0), P(1, 3, 1, 0),
                                  P(1, 0, 0.8f, 0), P(0.7f, 5, 0.9f, 0), P(1, 0, 1, 0.3f)};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) check_freq(&ps[i], z, 8, 100 + i);
    // the exact temperature-1 distribution: chi-square over 8 ids (7 dof), generous bound
    enum { N = 200000 };
    int cnt[8] = {0};
    struct sampler_params p = P(1, 0, 1, 0);
    for (int i = 0; i < N; i++) cnt[sampler_sample(&smp, &p, z, 8, rng_uniform(rng_key(9, 1, (uint64_t)i, 2)))]++;
    double s = 0, chi = 0;
    for (int i = 0; i < 8; i++) s += exp(z[i]);
    for (int i = 0; i < 8; i++) {
        double e = N * exp(z[i]) / s;
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    CHECK_MSG(chi < 30, "chi-square %.2f (7 dof)", chi);   // p < 1e-4 under the null
}

static void test_logprob(void)
{
    float z[] = {0.1f, 1.2f, -0.5f, 30.0f, -80.0f};
    double mx = 30, s = 0;
    for (int i = 0; i < 5; i++) s += exp((double)z[i] - mx);
    for (int i = 0; i < 5; i++) CHECK_NEAR(sampler_logprob(z, 5, i), (double)z[i] - mx - log(s), 1e-12);
}

int main(void)
{
    sampler_init(&smp, VMAX);
    test_argmax();
    test_temperature();
    test_top_k();
    test_top_p();
    test_min_p();
    test_draw();
    test_frequencies();
    test_logprob();
    sampler_free(&smp);
    return test_finish("test-sampler");
}
