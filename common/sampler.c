// sampler.c — see sampler.h for the semantics.
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void sampler_init(struct sampler *s, int V)
{
    ASSERT(V > 0);
    s->V = V;
    s->w = xmalloc((size_t)V * sizeof *s->w);
    s->tmp = xmalloc((size_t)V * sizeof *s->tmp);
    s->ids = xmalloc((size_t)V * sizeof *s->ids);
    s->order = xmalloc((size_t)V * sizeof *s->order);
}

void sampler_free(struct sampler *s)
{
    free(s->w), free(s->tmp), free(s->ids), free(s->order);
    memset(s, 0, sizeof *s);
}

int sampler_argmax(const float *logits, int V)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

// The k-th largest value (k >= 1) of a[0..n), by quickselect; a is permuted.
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;   // position in descending order
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) { float t = a[i]; a[i] = a[j]; a[j] = t; i++, j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

// Ranking for top_p: larger probability first, then smaller id.
static int by_prob_desc(const void *a, const void *b, void *ctx)
{
    const double *w = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (w[x] != w[y]) return w[x] > w[y] ? -1 : 1;
    return (x > y) - (x < y);
}

static int by_id(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

// Applies temperature, top_k, top_p and min_p: s->ids[0..n) (increasing) are the kept ids and
// s->w[id] their unnormalised probabilities (the largest is exactly 1); *mass = their sum.
static int filter(struct sampler *s, const struct sampler_params *p, const float *logits, int V, double *mass)
{
    ASSERT(V > 0 && V <= s->V && p->temperature > 0);
    double inv_t = 1.0 / (double)p->temperature;
    float zmax = logits[sampler_argmax(logits, V)];
    float thr = -INFINITY;
    if (p->top_k > 0 && p->top_k < V) {
        memcpy(s->tmp, logits, (size_t)V * sizeof(float));
        thr = kth_largest(s->tmp, V, p->top_k);
    }
    int n = 0;
    double W = 0;
    for (int i = 0; i < V; i++) {
        if (logits[i] < thr) continue;
        double w = exp(((double)logits[i] - zmax) * inv_t);
        s->w[i] = w;
        s->ids[n++] = i;
        W += w;
    }
    if (p->top_p < 1 && n > 1) {
        // Only tokens with w >= W(1-P)/(n-1) can be kept (llama2.c's bound: a token below it has
        // at most n-1 tokens at or below it summing to less than 1-P, so the tokens above it
        // already reach P). Capped at 1 = the largest w, which is always kept.
        double cut = W * (1.0 - (double)p->top_p) / (double)(n - 1);
        if (cut > 1) cut = 1;
        int m = 0;
        for (int k = 0; k < n; k++)
            if (s->w[s->ids[k]] >= cut) s->order[m++] = s->ids[k];
        qsort_r(s->order, (size_t)m, sizeof(int), by_prob_desc, s->w);
        double target = (double)p->top_p * W, cum = 0;
        int k = 0;
        while (k < m && cum < target) cum += s->w[s->order[k++]];
        qsort(s->order, (size_t)k, sizeof(int), by_id);
        memcpy(s->ids, s->order, (size_t)k * sizeof(int));
        n = k, W = cum;
    }
    if (p->min_p > 0) {
        int m = 0;
        W = 0;
        for (int k = 0; k < n; k++)
            if (s->w[s->ids[k]] >= (double)p->min_p) W += s->w[s->ids[m++] = s->ids[k]];
        n = m;
    }
    ASSERT(n >= 1);
    *mass = W;
    return n;
}

int sampler_probs(struct sampler *s, const struct sampler_params *p, const float *logits, int V,
                  int *ids, double *probs)
{
    if (p->greedy) {
        ids[0] = sampler_argmax(logits, V);
        probs[0] = 1;
        return 1;
    }
    double W;
    int n = filter(s, p, logits, V, &W);
    for (int k = 0; k < n; k++) {
        ids[k] = s->ids[k];
        probs[k] = s->w[s->ids[k]] / W;
    }
    return n;
}

int sampler_sample(struct sampler *s, const struct sampler_params *p, const float *logits, int V, double u)
{
    if (p->greedy) return sampler_argmax(logits, V);
    double W;
    int n = filter(s, p, logits, V, &W);
    double target = u * W, acc = 0;
    for (int k = 0; k < n; k++) {
        acc += s->w[s->ids[k]];
        if (acc > target) return s->ids[k];
    }
    return s->ids[n - 1];   // u·W rounded up to the whole mass
}

double sampler_logprob(const float *logits, int V, int id)
{
    ASSERT(id >= 0 && id < V);
    float zmax = logits[sampler_argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - zmax);
    return (double)logits[id] - zmax - log(sum);
}
