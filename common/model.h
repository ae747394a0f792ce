// model.h — model configuration (Hugging Face config.json), the parameter layout (one flat f32
// buffer + named pointers, llm.c style), and checkpoint I/O (model, optimizer state, trainer state).
//
// Architectures: llama, qwen2 (q/k/v bias), qwen3 (q/k RMSNorm, explicit head_dim); RoPE plain or
// with "linear" or "llama3" (Llama 3.1/3.2) scaling. Anything the config asks for that srlm does
// not implement (other rope scalings, sliding windows, mlp_bias, an activation other than silu,
// another model_type) is refused with exit 65 naming the key, never ignored. See docs/models.md.
//
// Layout. Every parameter kind (enum model_kind) is one contiguous block of the flat buffer, all
// layers together: qw is (L, NH*hs, C), layer l at qw + l*NH*hs*C. Gradients and optimizer moments
// use the same layout in their own flat buffers: model_params_attach() points a struct
// model_params at any such buffer. A kind the config does not have (biases, q/k norms, an untied
// lm_head) has size 0 and a NULL pointer; with tied embeddings lmw == embed.
// The Hugging Face tensors (one per layer and kind) are enumerated by model_tensor_get() in the
// canonical order, the order of transformers' named_parameters(): embed_tokens; per layer
// q, q bias, k, k bias, v, v bias, o, o bias, q_norm, k_norm, gate, up, down, input_layernorm,
// post_attention_layernorm; norm; lm_head. That order defines model_hash().
//
// Ownership. struct model owns its config (with the parsed config.json kept for saving) and its
// parameter buffer; model_free() releases both. model_alloc_buffer() returns a zeroed flat buffer
// of the model's size (gradients, moments) that the caller frees with free().
//
// Errors: a missing file is exit 66; a bad config, checkpoint, or state file is exit 65 naming the
// file and the tensor or key; a write failure is 73/74 and leaves the previous file intact (each
// file is replaced atomically, see safetensors.h).
#ifndef SRLM_MODEL_H
#define SRLM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "safetensors.h"

enum model_arch { MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3 };

// Parameter kinds, in flat-buffer order.
enum model_kind {
    MODEL_EMBED,      // (V, C)            model.embed_tokens.weight
    MODEL_QW,         // (L, NH*hs, C)     model.layers.{l}.self_attn.q_proj.weight
    MODEL_QB,         // (L, NH*hs)        .q_proj.bias     qwen2, or attention_bias
    MODEL_KW,         // (L, NKV*hs, C)    .k_proj.weight
    MODEL_KB,         // (L, NKV*hs)       .k_proj.bias
    MODEL_VW,         // (L, NKV*hs, C)    .v_proj.weight
    MODEL_VB,         // (L, NKV*hs)       .v_proj.bias
    MODEL_OW,         // (L, C, NH*hs)     .o_proj.weight
    MODEL_OB,         // (L, C)            .o_proj.bias     llama/qwen3 with attention_bias only
    MODEL_QNW,        // (L, hs)           .q_norm.weight   qwen3
    MODEL_KNW,        // (L, hs)           .k_norm.weight   qwen3
    MODEL_GATEW,      // (L, FF, C)        mlp.gate_proj.weight
    MODEL_UPW,        // (L, FF, C)        mlp.up_proj.weight
    MODEL_DOWNW,      // (L, C, FF)        mlp.down_proj.weight
    MODEL_LN1W,       // (L, C)            input_layernorm.weight
    MODEL_LN2W,       // (L, C)            post_attention_layernorm.weight
    MODEL_NORMW,      // (C)               model.norm.weight
    MODEL_LMW,        // (V, C)            lm_head.weight   untied only
    MODEL_NKIND
};

enum model_rope { MODEL_ROPE_DEFAULT, MODEL_ROPE_LINEAR, MODEL_ROPE_LLAMA3 };

struct model_config {
    enum model_arch arch;
    int V;                    // vocab_size = embedding rows (may exceed the tokenizer's ids)
    int C;                    // hidden_size
    int FF;                   // intermediate_size
    int L;                    // num_hidden_layers
    int NH;                   // num_attention_heads
    int NKV;                  // num_key_value_heads (default NH)
    int hs;                   // head_dim (default C / NH)
    int max_pos;              // max_position_embeddings
    double rope_theta;
    enum model_rope rope_type;       // rope_scaling (or rope_parameters) "rope_type"
    double rope_factor;              // linear, llama3: "factor"
    double rope_low_freq_factor;     // llama3
    double rope_high_freq_factor;    // llama3
    double rope_original_max_pos;    // llama3: "original_max_position_embeddings"
    float rms_norm_eps;
    float initializer_range;  // std of the normal init (default 0.02)
    int tied;                 // tie_word_embeddings
    int qkv_bias;             // q/k/v projections have biases
    int o_bias;               // o_proj has a bias
    int qk_norm;              // qwen3 q_norm / k_norm
    int bos_token_id;         // -1 if none
    int n_eos;
    int eos_token_ids[8];
    char torch_dtype[16];     // as stored ("" if absent)
    // derived layout
    size_t kind_size[MODEL_NKIND];    // floats per kind (all layers), 0 if absent
    size_t kind_offset[MODEL_NKIND];  // offset of each kind in the flat buffer
    size_t num_params;
    int n_layer_kinds;                // kinds present per layer, canonical order
    int layer_kinds[MODEL_NKIND];
    json_t *json;             // config.json as read (owned), written back on save
};

struct model_params {
    float *embed;   // (V, C)
    float *qw;      // (L, NH*hs, C)
    float *qb;      // (L, NH*hs) or NULL
    float *kw;      // (L, NKV*hs, C)
    float *kb;      // (L, NKV*hs) or NULL
    float *vw;      // (L, NKV*hs, C)
    float *vb;      // (L, NKV*hs) or NULL
    float *ow;      // (L, C, NH*hs)
    float *ob;      // (L, C) or NULL
    float *qnw;     // (L, hs) or NULL
    float *knw;     // (L, hs) or NULL
    float *gatew;   // (L, FF, C)
    float *upw;     // (L, FF, C)
    float *downw;   // (L, C, FF)
    float *ln1w;    // (L, C)
    float *ln2w;    // (L, C)
    float *normw;   // (C)
    float *lmw;     // (V, C); == embed when tied
};

struct model {
    struct model_config cfg;
    struct model_params params;
    float *params_memory;     // cfg.num_params floats
    long long step;           // checkpoint metadata "srlm_step"; -1 if none
    uint16_t *bf16_memory;    // NULL, or a bf16 mirror of params_memory for decoding (model_use_bf16)
};

// One Hugging Face tensor of the layout.
struct model_tensor {
    char name[96];
    enum model_kind kind;
    int layer;                // -1 for embed, norm, lm_head
    int ndim;
    int64_t shape[2];
    size_t numel;
    size_t offset;            // in floats, into any flat buffer of this layout
};

// ---------------------------------------------------------------------------------------------
// configuration

// Parses and validates a config.json object (a reference is taken). what names it in messages.
// Exit 65 on anything unsupported or out of range.
void model_config_parse(struct model_config *cfg, json_t *json, const char *what);
void model_config_load(struct model_config *cfg, const char *path);
void model_config_free(struct model_config *cfg);
const char *model_arch_name(enum model_arch arch);
// A config.json object (new reference) for a preset: "tiny", "small", "qwen2.5-0.5b",
// "qwen3-0.6b". arch overrides model_type (NULL: the preset's); vocab_size > 0 overrides V.
// Returns NULL for an unknown name or arch.
json_t *model_preset(const char *name, const char *arch, int vocab_size);
extern const char *const model_preset_names[];   // NULL-terminated

// ---------------------------------------------------------------------------------------------
// layout

size_t model_tensor_count(const struct model_config *cfg);
void model_tensor_get(const struct model_config *cfg, size_t i, struct model_tensor *t);
// Points p's named pointers into mem, a flat buffer of cfg->num_params floats.
void model_params_attach(struct model_params *p, const struct model_config *cfg, float *mem);
// Zeroed, 64-byte aligned flat buffer of cfg->num_params floats; free() it.
float *model_alloc_buffer(const struct model_config *cfg);

// ---------------------------------------------------------------------------------------------
// models

// Takes the config (moves it: cfg is zeroed) and allocates zeroed parameters.
void model_init(struct model *m, struct model_config *cfg);
// HF initialisation: normal(0, initializer_range) for linear and embedding weights, zeros for
// biases, ones for norms. Element i of tensor t depends on (seed, t, i) only.
void model_init_random(struct model *m, uint64_t seed);
// Reads config.json and the weights (any of F32/BF16/F16, single file or sharded) as f32. Every
// tensor must be present with the config's shape and finite values; unexpected tensors are an
// error (except a tied lm_head.weight and rotary inv_freq buffers, which transformers ignores).
void model_load(struct model *m, const char *dir);
// Writes dir/model.safetensors and dir/config.json (torch_dtype set to dtype), each atomically,
// creating dir if needed. m->step >= 0 is recorded as metadata "srlm_step".
void model_save(const struct model *m, const char *dir, enum safetensors_dtype dtype);
void model_free(struct model *m);
// Rounds the weights in memory to what a save in dtype stores (no-op for F32).
void model_round(struct model *m, enum safetensors_dtype dtype);
// Decoding from bf16 weights: rounds the weights to bf16 (model_round) and keeps a bf16 copy
// beside them, which lm_decode's matrix products then read (half the bytes per token). Every
// other path (prefill, training forward) computes with the rounded f32 weights, so all of them
// see one model. Exact for a checkpoint stored in bf16, whose weights are already bf16 values.
void model_use_bf16(struct model *m);
// The bf16 copy of the f32 tensor at w (a pointer into m->params_memory).
static inline const uint16_t *model_bf16_at(const struct model *m, const float *w)
{
    return m->bf16_memory + (w - m->params_memory);
}
// xxh3-64 over the f32 parameter bytes, tensor by tensor in canonical order ("model_xxh3").
uint64_t model_hash(const struct model *m);
// Copies tokenizer.json (required) and, when present, tokenizer_config.json,
// special_tokens_map.json, generation_config.json, vocab.json, merges.txt, chat_template.jinja
// from src (a directory, or the path of a tokenizer.json) into dir, atomically. Exit 66 when
// tokenizer.json is missing and required is set.
void model_copy_tokenizer(const char *src, const char *dir, int required);
// Writes dir/generation_config.json unless dir has one, as transformers' save_pretrained does:
// bos_token_id / eos_token_id (one id or a list) / pad_token_id (the first EOS) from the config,
// and the sampling defaults the study uses (do_sample, temperature 0.7, top_p 1.0, top_k 0,
// max_new_tokens 160), so transformers' generate() and llama.cpp's converter take the directory
// as it is. Atomic; exit 73 on failure.
void model_write_generation_config(const struct model_config *cfg, const char *dir);
// Highest token id + 1 of a tokenizer.json (model.vocab and added_tokens).
int model_tokenizer_vocab_size(const char *path);

// ---------------------------------------------------------------------------------------------
// run state (resuming a run)

struct model_state_buf {
    const char *name;         // tensor name prefix, e.g. "m" -> "m.model.embed_tokens.weight"
    float *data;              // flat buffer in the model's layout
};
// Writes dir/optimizer.safetensors (every buffer, f32, with metadata srlm_step = step) and then
// dir/trainer_state.json (state with "step" set), each atomically. trainer_state.json is written
// last, so a run killed in between is detected on load by the step mismatch.
void model_state_save(const char *dir, const struct model_config *cfg,
                      const struct model_state_buf *bufs, int nbufs, long long step, json_t *state);
// Reads them back into bufs (every tensor present, right shape, no extras) and returns the state
// object (new reference). Exit 65 if the two files' steps differ, or if expect_step >= 0
// differs from theirs (the model checkpoint's step).
json_t *model_state_load(const char *dir, const struct model_config *cfg,
                       const struct model_state_buf *bufs, int nbufs, long long expect_step);

#endif
