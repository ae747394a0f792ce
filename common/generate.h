// generate.h — the generation engine of rollout: G sampled completions for each prompt, with
// per-token log-probs, under continuous batching. docs/generation.md.
//
// The caller submits prompts in order (gen_submit), advances the engine (gen_step) and takes the
// finished groups back in submission order (gen_done / gen_release). Up to max_batch sequences
// (KV-cache slots) decode together; a prompt enters as soon as G slots are free: it is prefilled
// (lm_prefill, packed with the other prompts entering at that step, at most GEN_PREFILL_TOKENS
// tokens or one prompt per forward), its KV cache is copied to its G slots, and its first tokens
// are sampled from its last position. Every step then decodes one token for every active
// sequence (lm_decode with B rows). With `static_batches`, prompts enter only when no sequence is
// active, max_prompts at a time: the classic static batch, for comparison.
// A sample ends at an EOS / end-of-turn id (the token is kept: finish "eos"), when its decoded
// completion contains a stop string (finish "stop"), or after max_new_tokens tokens ("length").
//
// Same bits whatever the batching (issue 13). A sequence's logits depend on the model, its own
// tokens and nothing else: the prefill runs row-invariant products (lm_acts_init_forward,
// blas.h sgemm_rm_rowinv), the decoder the fixed-order dot kernel for every batch size
// (sgemm_nt_parts), attention and norms are per row, and no loop's result depends on the thread
// count (pool.h). The draw for the token at completion position t of sample s of the prompt with
// id `id` is rng_uniform(rng_key(seed, rng_hash_str(id), s, t)). So a completion and its
// log-probs are bitwise the same under static or continuous batching, any max_batch, max_prompts
// and thread count, and any order of prompts (tests/cli/rollout.sh asserts it).
//
// Log-probs. logprobs[t] = log softmax(z)[token] of the RAW logits z (temperature 1, before
// top-k/top-p/min-p, over all V rows of the embedding): the unmodified policy's log-probability,
// which rl-step recomputes with the training forward. Sampling itself uses the modified
// distribution.
//
// Padded vocabularies: ids >= vocab_limit (the tokenizer's vocabulary when the embedding has
// more rows) are never sampled; the log-prob still normalises over all V logits.
//
// Memory. The KV cache holds max_batch slots of (longest prompt so far + max_new_tokens)
// positions, grown when a longer prompt arrives; each submitted group holds G × max_new_tokens
// tokens and log-probs until released. The caller bounds how many groups it submits ahead.
// Ownership: the generator borrows the model and the tokenizer (they must outlive it).
#ifndef SRLM_GENERATE_H
#define SRLM_GENERATE_H

#include <stdbool.h>
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
    int max_batch;            // sequences decoding together (KV-cache slots), >= G
    int max_prompts;          // static_batches: prompts per batch
    bool static_batches;      // admit prompts only into an empty batch (the pre-issue-13 engine)
    uint64_t seed;
    int vocab_limit;          // ids >= this are never sampled; in [1, V]
    int neos;                 // ids that end a sample (kept in the completion)
    int32_t eos[GEN_MAX_EOS];
    int nstop;                // stop strings, matched in the decoded completion (special tokens
    const char *stop[GEN_MAX_STOP];   // written out); borrowed for the generator's life
    // Benchmarks only (bench/rollout.c): when set, sample s of the prompt with id `id` ends with
    // finish "length" after length(ctx, id, s) tokens (at most max_new_tokens), replaying a
    // measured length distribution on random weights. NULL in the tools.
    int (*length)(void *ctx, const char *id, int sample);
    void *length_ctx;
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
    long long prefill_tokens, new_tokens, decode_steps, decode_rows;
    double prefill_seconds, decode_seconds;
};

struct generator;

// eos/stop/vocab_limit come from cfg (the caller merges the model config's and the tokenizer's
// eos ids). blas_init must have been called: its thread count also runs the sampling loop.
struct generator *generator_new(const struct model *m, const struct tokenizer *tok, const struct gen_config *cfg);
void generator_free(struct generator *g);
// Queues a prompt (its id and tokens are copied).
void gen_submit(struct generator *g, const struct gen_prompt *p);
// Groups submitted and not yet released.
int gen_pending(const struct generator *g);
// Admits queued prompts into free slots, then decodes one token for every active sequence.
// Returns false (and does nothing) when no sequence is active or waiting.
bool gen_step(struct generator *g);
// The G samples of the oldest unreleased group once all are finished, else NULL. Valid until
// gen_release, which drops that group.
const struct gen_sample *gen_done(const struct generator *g);
void gen_release(struct generator *g);
const struct gen_stats *generator_stats(const struct generator *g);
const char *gen_finish_name(enum gen_finish f);

#endif
