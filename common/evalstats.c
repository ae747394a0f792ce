// evalstats.c — see evalstats.h.
#include "evalstats.h"

#include "reward.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

double eval_pass_at_k(long n, long c, long k)
{
    ASSERT(0 <= c && c <= n && 1 <= k && k <= n);
    if (n - c < k) return 1.0;
    double prod = 1.0;
    for (long i = n - c + 1; i <= n; i++) prod *= 1.0 - (double)k / (double)i;
    return 1.0 - prod;
}

void eval_wilson(long s, long n, double z, double *lo, double *hi)
{
    ASSERT(n > 0 && 0 <= s && s <= n);
    double p = (double)s / (double)n, z2 = z * z, N = (double)n;
    double denom = 1.0 + z2 / N;
    double center = (p + z2 / (2 * N)) / denom;
    double half = z * sqrt(p * (1 - p) / N + z2 / (4 * N * N)) / denom;
    *lo = center - half < 0 ? 0 : center - half;
    *hi = center + half > 1 ? 1 : center + half;
    if (s == 0) *lo = 0;   // exact at the edges (rounding could leave 1e-17)
    if (s == n) *hi = 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int B, double q)
{
    double h = (double)(B - 1) * q;
    int i = (int)floor(h);
    if (i >= B - 1) return sorted[B - 1];
    return sorted[i] + (h - i) * (sorted[i + 1] - sorted[i]);
}

void eval_bootstrap(const double *v, size_t P, int B, uint64_t seed, double level, double *lo, double *hi)
{
    ASSERT(P > 0 && B > 0);
    double *means = xmalloc((size_t)B * sizeof *means);
    for (int b = 0; b < B; b++) {
        double sum = 0;
        for (size_t j = 0; j < P; j++) {
            size_t idx = (size_t)(rng_uniform(rng_key(seed, (uint64_t)b, j, 0)) * (double)P);
            sum += v[idx < P ? idx : P - 1];
        }
        means[b] = sum / (double)P;
    }
    qsort(means, (size_t)B, sizeof *means, cmp_double);
    *lo = quantile(means, B, (1 - level) / 2);
    *hi = quantile(means, B, (1 + level) / 2);
    free(means);
}

void eval_majority_prefix(const char *const *pred, long n, long *winner)
{
    size_t cap = (size_t)(n > 0 ? n : 1);
    long *first = xmalloc(cap * sizeof *first), *count = xmalloc(cap * sizeof *count);
    long ng = 0, best = -1, bc = 0;
    for (long i = 0; i < n; i++) {
        if (pred[i]) {
            long g = 0;
            while (g < ng && !reward_equivalent(pred[first[g]], pred[i])) g++;
            if (g == ng) first[ng] = i, count[ng++] = 0;
            count[g]++;
            // counts only grow, so the leader changes only to the group just incremented: when it
            // now has more votes, or as many and an earlier first member
            if (count[g] > bc || (count[g] == bc && first[g] < best)) bc = count[g], best = first[g];
        }
        winner[i] = best;
    }
    free(first);
    free(count);
}

long eval_majority(const char *const *pred, long k)
{
    if (k <= 0) return -1;
    long *w = xmalloc((size_t)k * sizeof *w);
    eval_majority_prefix(pred, k, w);
    long r = w[k - 1];
    free(w);
    return r;
}
