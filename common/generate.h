// generate.h — the batched generation engine of rollout and evaluation: G sampled completions
// for each prompt of a batch, with per-token log-probs. docs/generation.md.
//
// Per call of generate():
//   1. the prompts are prefilled once each (lm_prefill, packed, in chunks of at most
//      GEN_PREFILL_TOKENS tokens or one prompt), and each prompt's KV cache slot is copied to
//      its G sample slots (lm_cache_copy);
//   2. every step decodes one token for all still-active samples of the batch together
//      (lm_decode with B rows), then samples each row (sampler.h) and checks it for the end.
// A sample ends at an EOS / end-of-turn id (the token is kept: finish "eos"), when its decoded
// completion contains a stop string (finish "stop"), or after max_new_tokens tokens ("length").
//
// Randomness. The draw for the token at completion position t of sample s of the prompt with id
// `id` is rng_uniform(rng_key(seed, rng_hash_str(id), s, t)): a completion depends on the model,
// the prompt, its id, the seed and the sampling options only, not on the batch it ran in, the
// order of the prompts or the number of threads (up to BLIS's floating-point summation order for
// different batch shapes, which can move a log-prob in its last bits and, in principle, flip a
// draw that falls within rounding of a boundary).
//
// Log-probs. logprobs[t] = log softmax(z)[token] of the RAW logits z (temperature 1, before
// top-k/top-p/min-p, over all V rows of the embedding): the unmodified policy's log-probability,
// which rl-step recomputes with the training forward. Sampling itself uses the modified
// distribution.
//
// Padded vocabularies: ids >= vocab_limit (the tokenizer's vocabulary when the embedding has
// more rows) are never sampled; the log-prob still normalises over all V logits.
//
// Memory. The KV cache holds max_prompts·G slots of (longest prompt of the call + max_new_tokens)
// positions; it and the prefill activations grow (never shrink) to what a call needs.
// Ownership: the generator borrows the model and the tokenizer (they must outlive it). The
// samples generate() returns are owned by the generator and valid until the next call.
#ifndef SRLM_GENERATE_H
#define SRLM_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

#define GEN_MAX_STOP 16
#define GEN_MAX_EOS 16
#define GEN_PREFILL_TOKENS 2048

enum gen_finish { GEN_FINISH_EOS, GEN_FINISH_STOP, GEN_FINISH_LENGTH };

struct gen_config {
    struct sampler_params sp;
    int G;                    // samples per prompt
    int max_new_tokens;       // >= 1
    int max_prompts;          // prompts per generate() call
    uint64_t seed;
    int vocab_limit;          // ids >= this are never sampled; in [1, V]
    int neos;                 // ids that end a sample (kept in the completion)
    int32_t eos[GEN_MAX_EOS];
    int nstop;                // stop strings, matched in the decoded completion (special tokens
    const char *stop[GEN_MAX_STOP];   // written out); borrowed for the generator's life
};

struct gen_prompt {
    const char *id;           // the example id (keys the randomness)
    size_t id_len;
    const int32_t *tokens;    // (len) ids in [0, V), len >= 1
    int len;
};

struct gen_sample {
    int32_t *tokens;          // (n) completion ids
    float *logprobs;          // (n) log-probs under the unmodified policy
    int n;
    enum gen_finish finish;
};

struct gen_stats {
    long long prefill_tokens, new_tokens;
    double prefill_seconds, decode_seconds;
};

struct generator;

// eos/stop/vocab_limit come from cfg (the caller merges the model config's and the tokenizer's
// eos ids). blas_init must have been called: its thread count also runs the sampling loop.
struct generator *generator_new(const struct model *m, const struct tokenizer *tok, const struct gen_config *cfg);
void generator_free(struct generator *g);
// G completions for each of n prompts (1 <= n <= max_prompts): the result has n·G samples,
// sample s of prompt p at index p·G + s. Borrowed until the next call.
const struct gen_sample *generate(struct generator *g, const struct gen_prompt *prompts, int n);
const struct gen_stats *generator_stats(const struct generator *g);
const char *gen_finish_name(enum gen_finish f);

#endif
