// lora.h — LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") on
// the linear projections of a struct model (model.h), stored and initialised as Hugging Face PEFT
// does, so that adapters srlm trains load with peft.PeftModel.from_pretrained and vice versa.
// See docs/lora.md.
//
// What an adapter is. For every targeted projection W (out, in) of every layer, two matrices
// A (r, in) and B (out, r), and the projection becomes
//     y = x·Wᵀ (+ b) + scaling · (x·Aᵀ)·Bᵀ,      scaling = alpha / r   (alpha / sqrt(r) with rslora)
// Targets are any of q, k, v, o (self_attn.{q,k,v,o}_proj) and gate, up, down (mlp.*_proj), on all
// layers. No dropout on the adapter input (PEFT's lora_dropout = 0); no adapter biases; the base
// model's biases (qwen2 q/k/v) stay as they are and frozen.
//
// CONTRACT FOR TRAINERS (sft-step, rl-step). A LoRA run looks like this:
//
//   struct model m;           model_load(&m, base_dir);                 // frozen base
//   struct lora lo;
//   struct lora_config lc = {.r = 16, .alpha = 32, .targets = LORA_ALL};  // or lora_targets_parse()
//   lora_init(&lo, &m.cfg, &lc);  lora_init_random(&lo, seed);          // new adapter (B = 0) ...
//   //   ... or lora_load(&lo, &m.cfg, adapter_dir)                     // resume / evaluate
//   float *g = lora_alloc_buffer(&lo), *m1 = lora_alloc_buffer(&lo), *m2 = lora_alloc_buffer(&lo);
//   struct lm_acts a;  lm_acts_init(&a, &m.cfg, N_max, T_max);
//   lm_acts_set_lora(&a, &lo);                                          // lm_forward now adapts
//   struct model_params frozen = {0};     // every base gradient NULL: base work skipped
//   per step:
//     memset(g, 0, lo.num_params * sizeof(float));
//     per micro-batch:
//       hN = lm_forward(&m, &a, ...);                                   // with adapters
//       loss_ce(&m, &frozen, &w, hN, N, M, denom);                      // -> w.dh, no lm_head grad
//       lm_backward_lora(&m, NULL, g, &a, w.dh);                        // adapter grads only
//     grad_norm / clip over {g, lo.num_params}; adamw_update(lo.params, g, m1, m2, lo.num_params, ...)
//   checkpoint: lo.step = step; lora_save(&lo, out_dir, SAFETENSORS_F32);
//               lora_state_save(out_dir, &lo, bufs {"exp_avg", m1}, {"exp_avg_sq", m2}, 2, step, st);
//   export:     lora_merge(&m, &lo); model_save(&m, dir, dtype)   (or tools/lora-merge)
//   generation with the adapter: lm_cache_set_lora(&cache, &lo) as well as lm_acts_set_lora on the
//   acts used by lm_prefill (lm.h); or merge first.
//
// Layout. All adapter parameters live in one flat f32 buffer lo.params of lo.num_params floats.
// The tensor table lo.tensors lists them layer by layer, targets in the order q k v o gate up down,
// A before B — the order of PEFT's state_dict — each with its PEFT name, shape and offset.
// Gradients and AdamW moments are other flat buffers of the same layout (lora_alloc_buffer), so
// one adamw_update over num_params floats trains every adapter. lora_a_offset/lora_b_offset give
// the offset of (layer, target) in any such buffer (LORA_ABSENT if that target is not adapted).
// Weight decay applies to A and B alike (both are matrices), as transformers' Trainer does.
//
// Initialisation (PEFT init_lora_weights=True, LoraLayer.reset_lora_parameters): A by
// nn.init.kaiming_uniform_(a=sqrt(5)), which is U(-1/sqrt(in), 1/sqrt(in)); B zeros, so the
// adapted model starts equal to the base model. Element e of A for (layer l, target t) is
//   bound · (2·rng_uniform(rng_key(seed, l·LORA_NTARGET + t, e, 0x10a)) - 1)
// (rng.h): a function of (seed, tensor, element) only, independent of the other targets chosen.
//
// Files (PEFT save_pretrained layout, both written atomically, safetensors first):
//   DIR/adapter_model.safetensors   base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight
//                                   (r, in), ...lora_B.weight (out, r); metadata format=pt and,
//                                   when lo.step >= 0, srlm_step
//   DIR/adapter_config.json         peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
//                                   target_modules [q_proj, ...], lora_dropout 0, bias none,
//                                   fan_in_fan_out false, use_rslora, base_model_name_or_path, ...
// lora_load accepts what PEFT writes for plain LoRA on these modules: target_modules as a list of
// names (a dotted suffix like "self_attn.q_proj" is fine) or "all-linear"; tensors F32/BF16/F16.
// Anything it cannot honour — DoRA, lora biases, fan_in_fan_out, rank/alpha patterns,
// layers_to_transform, modules_to_save, another peft_type, a missing, extra, misshapen or
// non-finite tensor — is exit 65 naming the file and the key. A missing directory or file is 66.
// lora_dropout > 0 in a loaded config is accepted with a warning (srlm trains without dropout).
//
// Merging. lora_merge(m, lo) adds scaling·B·A to every targeted weight of m (PEFT merge_and_unload):
// the merged model computes what the adapted one does, up to float rounding.
//
// Ownership: struct lora owns params and its tables; lora_free releases them. Buffers from
// lora_alloc_buffer are the caller's (free()).
#ifndef SRLM_LORA_H
#define SRLM_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "model.h"
#include "safetensors.h"

enum lora_target { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_NTARGET };

#define LORA_ALL ((1u << LORA_NTARGET) - 1)   // every projection ("all-linear" minus lm_head)
#define LORA_ABSENT ((size_t)-1)

struct lora_config {
    int r;                     // rank, >= 1
    double alpha;              // lora_alpha
    int rslora;                // scaling = alpha / sqrt(r) instead of alpha / r
    unsigned targets;          // bit (1u << enum lora_target) per adapted projection; nonzero
    const char *base_model;    // base_model_name_or_path written to adapter_config.json, or NULL
};

struct lora_tensor {
    char name[112];            // PEFT name
    int layer;
    enum lora_target target;
    int is_b;                  // 0: lora_A (r, in); 1: lora_B (out, r)
    int64_t shape[2];
    size_t numel;
    size_t offset;             // in floats, into any flat buffer of this layout
};

struct lora {
    int r;
    double alpha;
    int rslora;
    unsigned targets;
    float scaling;             // alpha / r (or alpha / sqrt(r))
    char *base_model;          // owned, may be NULL
    // model dimensions the adapter was made for
    int L;
    int in[LORA_NTARGET], out[LORA_NTARGET];   // in/out features of each projection
    // layout
    size_t ntensors;
    struct lora_tensor *tensors;   // (ntensors)
    size_t *a_off, *b_off;         // (L * LORA_NTARGET), LORA_ABSENT when not adapted
    size_t num_params;
    float *params;             // (num_params), owned
    long long step;            // "srlm_step" of the file loaded / to write; -1 if none
};

// HF module name of a target: "q_proj", ..., "down_proj"; and short name "q", ..., "down".
const char *lora_target_name(enum lora_target t);
// Parses a comma-separated target list: short names (q,k,v,o,gate,up,down), HF names (q_proj,
// ...), "attn" (q,k,v,o), "mlp" (gate,up,down), "all" / "all-linear". Returns 0 and sets *mask,
// or -1 (nothing set) on an unknown or empty name. For --lora-targets options.
int lora_targets_parse(const char *s, unsigned *mask);

// Builds the layout for model config mc and allocates zeroed parameters (B = 0, A = 0: call
// lora_init_random for PEFT's init). cfg->r >= 1 and cfg->targets != 0 (ASSERTed: validate options
// first). cfg->base_model is copied.
void lora_init(struct lora *lo, const struct model_config *mc, const struct lora_config *cfg);
// PEFT default init: A ~ U(-1/sqrt(in), 1/sqrt(in)) keyed by (seed, tensor, element), B = 0.
void lora_init_random(struct lora *lo, uint64_t seed);
void lora_free(struct lora *lo);
// Zeroed, 64-byte aligned flat buffer of lo->num_params floats (gradients, moments); free() it.
float *lora_alloc_buffer(const struct lora *lo);
// Offset of A / B of (layer, target) in a flat buffer, or LORA_ABSENT.
static inline size_t lora_a_offset(const struct lora *lo, int l, enum lora_target t)
{
    return lo->a_off[(size_t)l * LORA_NTARGET + t];
}
static inline size_t lora_b_offset(const struct lora *lo, int l, enum lora_target t)
{
    return lo->b_off[(size_t)l * LORA_NTARGET + t];
}

// Writes DIR/adapter_model.safetensors (in dtype) and DIR/adapter_config.json, each atomically,
// creating DIR. Exit 73/74 on failure, leaving the previous files intact.
void lora_save(const struct lora *lo, const char *dir, enum safetensors_dtype dtype);
// Reads an adapter directory for the model config mc (see above for what is accepted).
void lora_load(struct lora *lo, const struct model_config *mc, const char *dir);
// m's targeted weights += scaling · B·A (f32). The adapter must have been made for m's config.
void lora_merge(struct model *m, const struct lora *lo);
// xxh3-64 over r, scaling and the f32 parameters in table order ("adapter_xxh3" in headers).
uint64_t lora_hash(const struct lora *lo);
// The identity of a policy made of a base model and an adapter: xxh3-64 of the 8 little-endian
// bytes of adapter_hash, seeded with base_hash. Streams that a base + adapter made (rollout,
// teacher-logits) carry it as "model_xxh3" (with "base_model_xxh3" and "adapter_xxh3" beside it),
// and rl-step compares it with the policy it trains, so the one number names both parts.
uint64_t lora_policy_hash(uint64_t base_hash, uint64_t adapter_hash);
// Whether the adapter changes nothing: every lora_B is exactly zero (PEFT's init), so base +
// adapter computes the base model's function bit for bit (a new adapter's samples may come from
// the base alone).
bool lora_is_identity(const struct lora *lo);

// Optimizer state beside the adapter, as model_state_save/load (model.h) but in the adapter's
// layout: DIR/optimizer.safetensors holds "<buf name>.<PEFT tensor name>" for every buffer (f32,
// metadata srlm_step), then DIR/trainer_state.json (state with "step" set) is written last.
// lora_state_load reads them back into bufs and returns the state (new reference); exit 65 if the
// two files' steps differ, if expect_step >= 0 differs from theirs, or on a missing/extra/misshapen
// tensor.
void lora_state_save(const char *dir, const struct lora *lo, const struct model_state_buf *bufs, int nbufs,
                     long long step, json_t *state);
json_t *lora_state_load(const char *dir, const struct lora *lo, const struct model_state_buf *bufs, int nbufs,
                        long long expect_step);

#endif
