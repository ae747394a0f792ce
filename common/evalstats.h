// evalstats.h — the statistics behind `eval` (docs/eval.md): the unbiased pass@k estimator,
// majority voting over extracted answers, and 95% confidence intervals (Wilson score for
// proportions, percentile bootstrap over prompts for means of fractional per-prompt values).
// Pure functions; no I/O. Allocation failure exits 71 (xmalloc).
#ifndef SRLM_EVALSTATS_H
#define SRLM_EVALSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_Z95 1.959963984540054   // Φ⁻¹(0.975)

// pass@k for one prompt with n samples of which c are correct (Chen et al. 2021, "Evaluating Large
// Language Models Trained on Code", eq. 1): 1 − C(n−c, k) / C(n, k), the probability that k samples
// drawn without replacement from the n include a correct one. Computed as the paper's numpy code
// does, 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms a binomial coefficient (no overflow, no
// cancellation between huge numbers); 1 when n − c < k. Requires 0 <= c <= n, 1 <= k <= n.
double eval_pass_at_k(long n, long c, long k);

// Wilson score interval (Wilson 1927) for s successes in n trials at normal quantile z:
// (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n). Stays inside [0, 1] and is sensible at
// p = 0 or 1, unlike the normal (Wald) interval. n > 0.
void eval_wilson(long s, long n, double z, double *lo, double *hi);

// Percentile bootstrap of the mean of v[0..P): B resamples of P values drawn with replacement,
// draw j of resample b taking index floor(P · rng_uniform(rng_key(seed, b, j, 0))); the interval
// is the (1−level)/2 and (1+level)/2 quantiles of the B means (linear interpolation between order
// statistics, numpy's default). Deterministic for a given seed. P > 0, B > 0.
void eval_bootstrap(const double *v, size_t P, int B, uint64_t seed, double level, double *lo, double *hi);

// Majority vote over the first k answers (pred[i] NULL: no answer extracted, no vote). Answers
// are grouped with reward_equivalent() against each group's first member; the largest group wins,
// a tie goes to the group whose first member came first. Returns the index of the winning group's
// first member, or -1 when none of the k has an answer.
long eval_majority(const char *const *pred, long k);
// The same for every prefix at once: winner[k-1] = eval_majority(pred, k) for k = 1..n, in one
// pass (each answer is compared with each distinct answer once).
void eval_majority_prefix(const char *const *pred, long n, long *winner);

#endif
