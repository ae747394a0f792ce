// lm.h — the language model computation over a struct model (model.h) with the layer kernels of
// nn.h: the training forward and backward over packed sequences, and incremental decoding with a
// KV cache for generation. Flat like llm.c's gpt2_forward: each function is a list of layer calls.
//
// Training. lm_forward() runs the model over N tokens made of nseq packed sequences
// (cu_seqlens, as in nn.h) and keeps every activation the backward needs in the arena; it returns
// the final hidden states hN (N, C) (after the last RMSNorm). Losses are computed on hN with
// logsoftmax_gather_forward (nn.h) against lm_head_weight(); their gradient with respect to hN
// (dhN, and the lm_head gradient, which the loss accumulates itself) is handed to lm_backward(),
// which accumulates (+=) the gradient of every parameter into grads (a struct model_params attached
// to a zeroed flat buffer). lm_forward() may be called again only after lm_backward() or when no
// backward is wanted.
//
// Generation. lm_cache holds keys and values for `slots` sequences of up to T_max tokens.
// lm_prefill() runs prompts through the training forward (same kernels, so log-probs agree with
// training to float rounding) and stores their keys and values in the given slots;
// lm_cache_copy() duplicates a slot (G samples share one prefill); lm_decode() appends one token to
// each of B slots and writes the (B, V) logits of the next token.
//
// Memory. lm_acts_init() sizes the activation arena for at most N_max tokens per forward and
// T_max tokens per sequence; a larger batch is a clear error (exit 65), never a silent realloc.
// All buffers are owned by their struct and released by the matching _free().
#ifndef SRLM_LM_H
#define SRLM_LM_H

#include <stddef.h>

#include "model.h"

struct lm_layer_acts {       // one layer's saved activations, all (N, ...) row-major
    float *x;                // (N, C)       layer input (residual stream)
    float *ln1;              // (N, C)
    float *rstd1;            // (N)
    float *qraw;             // (N, NH*hs)   q_proj output (+bias), before q_norm
    float *kraw;             // (N, NKV*hs)
    float *qrstd;            // (N*NH)       qwen3 q_norm rstd
    float *krstd;            // (N*NKV)
    float *q;                // (N, NH*hs)   after q_norm and RoPE
    float *k;                // (N, NKV*hs)  after k_norm and RoPE
    float *v;                // (N, NKV*hs)
    float *att;              // (N, NH*hs)   attention output
    float *lse;              // (N, NH)
    float *xmid;             // (N, C)       x + o_proj(att)
    float *ln2;              // (N, C)
    float *rstd2;            // (N)
    float *gate;             // (N, FF)
    float *up;               // (N, FF)
    float *act;              // (N, FF)      silu(gate) * up
};

struct lm_acts {
    int N_max, T_max;
    int N, nseq;             // current batch
    int *tokens;             // (N_max)
    int *pos;                // (N_max)
    int *cu_seqlens;         // (N_max + 1)
    struct lm_layer_acts *layer;   // (L)
    float *xL;               // (N, C) last residual
    float *hN;               // (N, C) after the final norm
    float *rstdN;            // (N)
    float *cos_tab, *sin_tab;      // (T_max, hs/2)
    float *scratch;          // attention scratch
    size_t scratch_size;
    float *grad_scratch;     // backward temporaries, see lm.c
    float *memory;           // owns all float buffers above
};

void lm_acts_init(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max);
void lm_acts_free(struct lm_acts *a);
// tokens must already be checked to lie in [0, V) (done where they enter, at the stream).
const float *lm_forward(const struct model *m, struct lm_acts *a, const int *tokens,
                        const int *cu_seqlens, int nseq, int N);
// dhN (N, C): gradient of the loss with respect to hN. It is consumed (used as scratch).
void lm_backward(const struct model *m, struct model_params *grads, struct lm_acts *a, float *dhN);
// The output projection (lm_head, or the embedding when tied).
const float *lm_head_weight(const struct model *m);

// ---------------------------------------------------------------------------------------------
// generation

struct lm_cache {
    int slots, T_max;
    int *len;                // (slots) tokens stored per slot
    float *k, *v;            // (L, slots, T_max, NKV*hs)
    // decode scratch for up to `slots` rows
    float *x, *ln, *q, *kk, *vv, *att, *tmp, *gate, *up, *hN, *rstd, *scores;
    float *cos_tab, *sin_tab;
};

void lm_cache_init(struct lm_cache *c, const struct model_config *cfg, int slots, int T_max);
void lm_cache_free(struct lm_cache *c);
// Runs nseq packed prompts (tokens, cu_seqlens) with the training forward of `a` and stores their
// keys/values in slot[s] (its length becomes the prompt's). Returns hN of the prompts (N, C).
const float *lm_prefill(const struct model *m, struct lm_acts *a, struct lm_cache *c,
                        const int *tokens, const int *cu_seqlens, int nseq, const int *slot);
void lm_cache_copy(struct lm_cache *c, const struct model_config *cfg, int dst, int src);
// Appends token[b] to slot[b] for b < B (slots distinct) and writes the next-token logits (B, V).
void lm_decode(const struct model *m, struct lm_cache *c, const int *token, const int *slot, int B,
               float *logits);

#endif
