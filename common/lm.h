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
// lm_acts_init_forward() makes an arena for forwards without a backward (teacher logits, prompt
// prefill, a frozen reference model): the layers share one set of activation buffers, each
// overwriting the one before, and keep only their keys and values (for lm_prefill). At the
// Qwen2.5-0.5B shape that is about 110 KB per token instead of 2 MB. Same results, bit for bit.
// All buffers are owned by their struct and released by the matching _free().
//
// LoRA (lora.h, docs/lora.md). Adapters are attached, not passed: lm_acts_set_lora(a, lo) makes
// every lm_forward / lm_prefill through `a` compute each targeted projection as
// x·Wᵀ (+b) + scaling·(x·Aᵀ)·Bᵀ, and keeps the (N, r) products x·Aᵀ·scaling for the backward;
// lm_cache_set_lora(c, lo) does the same for lm_decode. With nothing attached (the default after
// _init) every function computes exactly what it did before adapters existed, so existing callers
// are unaffected. lm_backward_lora() is lm_backward() plus adapter gradients: it accumulates the
// gradient of every A and B into lora_grads (a flat buffer in the adapter's layout, zeroed by the
// caller once per step) and takes grads == NULL to mean "base model frozen": no base gradient is
// computed (matmul_backward gets NULL weight gradients, so that work is skipped, as is the
// embedding's), while the gradient flowing back through every projection still includes both the
// base and the adapter path. lm_backward(m, grads, a, dhN) is lm_backward_lora(m, grads, NULL, a,
// dhN): with an adapter attached it gives the base gradients of the adapted model.
// The adapter is borrowed: it must outlive the attachment and not change between a forward and
// its backward (update it after lm_backward_lora, as one updates weights).
#ifndef SRLM_LM_H
#define SRLM_LM_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"

struct lora;   // lora.h

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
    // LoRA (NULL unless lm_acts_set_lora attached an adapter)
    const struct lora *lora; // borrowed
    float *lora_t;           // (L, adapted targets, N_max, r) scaling·x·Aᵀ per adapted projection
    float *lora_dt;          // (N_max, r) backward temporary
    bool row_invariant;      // lm_acts_init_forward: row-invariant products (blas.h sgemm_rm_rowinv)
};

void lm_acts_init(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max);
void lm_acts_init_forward(struct lm_acts *a, const struct model_config *cfg, int N_max, int T_max);
void lm_acts_free(struct lm_acts *a);
// tokens must already be checked to lie in [0, V) (done where they enter, at the stream).
const float *lm_forward(const struct model *m, struct lm_acts *a, const int *tokens,
                        const int *cu_seqlens, int nseq, int N);
// dhN (N, C): gradient of the loss with respect to hN. It is consumed (used as scratch).
void lm_backward(const struct model *m, struct model_params *grads, struct lm_acts *a, float *dhN);
// Attaches adapter lo (made for this model's config) to a, or detaches with NULL. Allocates the
// adapter activations for N_max tokens (small: L·targets·N_max·r floats).
void lm_acts_set_lora(struct lm_acts *a, const struct lora *lo);
// lm_backward plus adapter gradients (see the top of this file). grads may be NULL (frozen base);
// lora_grads may be NULL (no adapter gradients) and is required to be NULL when no adapter is
// attached. Accumulates (+=) into both.
void lm_backward_lora(const struct model *m, struct model_params *grads, float *lora_grads, struct lm_acts *a,
                      float *dhN);
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
    const struct lora *lora; // borrowed; NULL unless lm_cache_set_lora
    float *lora_t;           // (slots, r) decode scratch
    struct lm_panels *panels; // the model's product weights packed for decoding (lm.c), built at the
                             // first lm_decode; freed with the cache
};

void lm_cache_init(struct lm_cache *c, const struct model_config *cfg, int slots, int T_max);
void lm_cache_free(struct lm_cache *c);
// Runs nseq packed prompts (tokens, cu_seqlens) with the training forward of `a` and stores their
// keys/values in slot[s] (its length becomes the prompt's). Returns hN of the prompts (N, C).
const float *lm_prefill(const struct model *m, struct lm_acts *a, struct lm_cache *c,
                        const int *tokens, const int *cu_seqlens, int nseq, const int *slot);
// Attaches adapter lo to the decoder (NULL detaches). lm_prefill requires the acts it runs on to
// carry the same adapter (ASSERTed), so prompt keys/values and decoded ones come from one model.
void lm_cache_set_lora(struct lm_cache *c, const struct lora *lo);
void lm_cache_copy(struct lm_cache *c, const struct model_config *cfg, int dst, int src);
// Grows every slot to T_max positions (no-op if it already has them), keeping what they hold:
// the decoder's cache follows the longest prompt seen (continuous batching, generate.c).
void lm_cache_grow(struct lm_cache *c, const struct model_config *cfg, int T_max);
// Appends token[b] to slot[b] for b < B (slots distinct) and writes the next-token logits (B, V).
void lm_decode(const struct model *m, struct lm_cache *c, const int *token, const int *slot, int B,
               float *logits);

#endif
