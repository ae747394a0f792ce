// sampler.h — one token id from a row of V logits, llama2.c style: the random draw u ∈ [0, 1) is
// passed in, so a token is a pure function of (logits, params, u). docs/generation.md.
//
// Semantics (Hugging Face generate's warpers, in HF's order; vLLM agrees):
//   greedy          argmax of the logits; ties go to the smallest id. temperature and the filters
//                   are ignored.
//   temperature T   p ∝ exp(z / T), T > 0.
//   top_k K         keep every token whose logit is >= the K-th largest logit (HF TopKLogitsWarper:
//                   tokens tied with the K-th are all kept). 0 = off.
//   top_p P         on the distribution left by top_k, keep the smallest set of most likely tokens
//                   whose probability sums to >= P: a token is kept iff the tokens ranked before it
//                   sum to < P (HF TopPLogitsWarper; ranking by probability, ties by smaller id).
//                   The most likely token is always kept. 1 = off.
//   min_p M         keep tokens with p >= M · p_max (HF MinPLogitsWarper), after top_p. 0 = off.
//   draw            the kept tokens are renormalised and walked in increasing id order; the result
//                   is the first whose cumulative probability exceeds u · (kept mass). Walking in
//                   id order (not probability order) makes top_p = 1 / top_k = 0 exactly the same
//                   draw as no filter, and needs no sort on the unfiltered path.
// Probabilities and sums are computed in double.
//
// A struct sampler holds scratch for rows of up to V logits; it is not shared between threads
// (one per thread). sampler_probs exposes the filtered distribution for tests and callers.
#ifndef SRLM_SAMPLER_H
#define SRLM_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>

struct sampler_params {
    bool greedy;          // argmax; everything below is ignored
    float temperature;    // > 0
    int top_k;            // 0 = off
    float top_p;          // (0, 1]; 1 = off
    float min_p;          // [0, 1); 0 = off
};

struct sampler {
    int V;                // capacity (logits per row)
    double *w;            // (V) unnormalised probabilities exp((z - zmax) / T)
    float *tmp;           // (V) quickselect scratch for top_k
    int *ids;             // (V) kept ids
    int *order;           // (V) candidates ranked for top_p
};

void sampler_init(struct sampler *s, int V);
void sampler_free(struct sampler *s);

// Index of the largest of logits[0..V), smallest index on ties.
int sampler_argmax(const float *logits, int V);
// The token for draw u ∈ [0, 1). logits is not modified.
int sampler_sample(struct sampler *s, const struct sampler_params *p, const float *logits, int V, double u);
// The filtered, renormalised distribution: writes the kept ids (increasing) to ids and their
// probabilities to probs (both of capacity V); returns how many were kept (>= 1).
int sampler_probs(struct sampler *s, const struct sampler_params *p, const float *logits, int V,
                  int *ids, double *probs);
// log softmax(logits)[id] at temperature 1 over all V logits (max-subtracted, summed in double):
// the log-probability of the unmodified policy, as the training forward computes it.
double sampler_logprob(const float *logits, int V, int id);

#endif
