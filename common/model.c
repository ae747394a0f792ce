// model.c — see model.h for the contract.
#include "model.h"
#include "json.h"
#include "pool.h"
#include "runstate.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

// Sanity caps: far above any 0.5B-class model, low enough that sizes cannot overflow.
#define CAP_V (1 << 22)
#define CAP_C (1 << 16)
#define CAP_FF (1 << 18)
#define CAP_L 1024
#define CAP_NH 1024
#define CAP_HS 1024
#define CAP_POS (1 << 24)
#define CAP_PARAMS (1ull << 34)

// ---------------------------------------------------------------------------------------------
// the size table: one row per parameter kind, in flat-buffer (and per-layer canonical) order

enum kind_init { INIT_NORMAL, INIT_ZEROS, INIT_ONES };

static const struct kind_def {
    const char *name;          // HF name; per-layer names follow "model.layers.{l}."
    int per_layer;
    enum kind_init init;
} kind_defs[MODEL_NKIND] = {
    [MODEL_EMBED] = {"model.embed_tokens.weight", 0, INIT_NORMAL},
    [MODEL_QW] = {"self_attn.q_proj.weight", 1, INIT_NORMAL},
    [MODEL_QB] = {"self_attn.q_proj.bias", 1, INIT_ZEROS},
    [MODEL_KW] = {"self_attn.k_proj.weight", 1, INIT_NORMAL},
    [MODEL_KB] = {"self_attn.k_proj.bias", 1, INIT_ZEROS},
    [MODEL_VW] = {"self_attn.v_proj.weight", 1, INIT_NORMAL},
    [MODEL_VB] = {"self_attn.v_proj.bias", 1, INIT_ZEROS},
    [MODEL_OW] = {"self_attn.o_proj.weight", 1, INIT_NORMAL},
    [MODEL_OB] = {"self_attn.o_proj.bias", 1, INIT_ZEROS},
    [MODEL_QNW] = {"self_attn.q_norm.weight", 1, INIT_ONES},
    [MODEL_KNW] = {"self_attn.k_norm.weight", 1, INIT_ONES},
    [MODEL_GATEW] = {"mlp.gate_proj.weight", 1, INIT_NORMAL},
    [MODEL_UPW] = {"mlp.up_proj.weight", 1, INIT_NORMAL},
    [MODEL_DOWNW] = {"mlp.down_proj.weight", 1, INIT_NORMAL},
    [MODEL_LN1W] = {"input_layernorm.weight", 1, INIT_ONES},
    [MODEL_LN2W] = {"post_attention_layernorm.weight", 1, INIT_ONES},
    [MODEL_NORMW] = {"model.norm.weight", 0, INIT_ONES},
    [MODEL_LMW] = {"lm_head.weight", 0, INIT_NORMAL},
};

// Per-tensor shape of a kind (one layer), or 0 dims if the config does not have the kind.
static int kind_shape(const struct model_config *c, enum model_kind k, int64_t shape[2])
{
    int64_t q = (int64_t)c->NH * c->hs, kv = (int64_t)c->NKV * c->hs;
    int64_t r = 0, cols = 0;   // cols == 0: a vector
    switch (k) {
    case MODEL_EMBED: r = c->V, cols = c->C; break;
    case MODEL_QW: r = q, cols = c->C; break;
    case MODEL_QB: r = c->qkv_bias ? q : 0; break;
    case MODEL_KW: case MODEL_VW: r = kv, cols = c->C; break;
    case MODEL_KB: case MODEL_VB: r = c->qkv_bias ? kv : 0; break;
    case MODEL_OW: r = c->C, cols = q; break;
    case MODEL_OB: r = c->o_bias ? c->C : 0; break;
    case MODEL_QNW: case MODEL_KNW: r = c->qk_norm ? c->hs : 0; break;
    case MODEL_GATEW: case MODEL_UPW: r = c->FF, cols = c->C; break;
    case MODEL_DOWNW: r = c->C, cols = c->FF; break;
    case MODEL_LN1W: case MODEL_LN2W: case MODEL_NORMW: r = c->C; break;
    case MODEL_LMW: r = c->tied ? 0 : c->V, cols = c->C; break;
    case MODEL_NKIND: ASSERT(0);
    }
    if (r == 0) return 0;
    shape[0] = r;
    shape[1] = cols;
    return cols ? 2 : 1;
}

static void layout_init(struct model_config *c)
{
    size_t off = 0;
    c->n_layer_kinds = 0;
    for (int k = 0; k < MODEL_NKIND; k++) {
        int64_t sh[2];
        int nd = kind_shape(c, (enum model_kind)k, sh);
        size_t n = nd == 0 ? 0 : (size_t)sh[0] * (nd == 2 ? (size_t)sh[1] : 1);
        if (kind_defs[k].per_layer) {
            n *= (size_t)c->L;
            if (nd) c->layer_kinds[c->n_layer_kinds++] = k;
        }
        c->kind_offset[k] = off;
        c->kind_size[k] = n;
        off += n;
    }
    c->num_params = off;
}

size_t model_tensor_count(const struct model_config *cfg)
{
    return 2 + (size_t)cfg->L * (size_t)cfg->n_layer_kinds + !cfg->tied;
}

void model_tensor_get(const struct model_config *cfg, size_t i, struct model_tensor *t)
{
    size_t per = (size_t)cfg->L * (size_t)cfg->n_layer_kinds;
    ASSERT(i < model_tensor_count(cfg));
    if (i == 0) t->kind = MODEL_EMBED, t->layer = -1;
    else if (i <= per) t->kind = cfg->layer_kinds[(i - 1) % (size_t)cfg->n_layer_kinds],
                       t->layer = (int)((i - 1) / (size_t)cfg->n_layer_kinds);
    else if (i == per + 1) t->kind = MODEL_NORMW, t->layer = -1;
    else t->kind = MODEL_LMW, t->layer = -1;
    t->ndim = kind_shape(cfg, t->kind, t->shape);
    t->numel = (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1);
    t->offset = cfg->kind_offset[t->kind] + (t->layer < 0 ? 0 : (size_t)t->layer * t->numel);
    if (t->layer < 0) snprintf(t->name, sizeof t->name, "%s", kind_defs[t->kind].name);
    else snprintf(t->name, sizeof t->name, "model.layers.%d.%s", t->layer, kind_defs[t->kind].name);
}

void model_params_attach(struct model_params *p, const struct model_config *cfg, float *mem)
{
    float **slot[MODEL_NKIND] = {
        &p->embed, &p->qw, &p->qb, &p->kw, &p->kb, &p->vw, &p->vb, &p->ow, &p->ob, &p->qnw,
        &p->knw, &p->gatew, &p->upw, &p->downw, &p->ln1w, &p->ln2w, &p->normw, &p->lmw,
    };
    for (int k = 0; k < MODEL_NKIND; k++)
        *slot[k] = cfg->kind_size[k] ? mem + cfg->kind_offset[k] : NULL;
    if (cfg->tied) p->lmw = p->embed;
}

float *model_alloc_buffer(const struct model_config *cfg)
{
    void *p = NULL;
    size_t bytes = mul_size(cfg->num_params ? cfg->num_params : 1, sizeof(float), "parameters");
    if (posix_memalign(&p, 64, bytes) != 0)
        die(EX_OSERR, "out of memory allocating %zu bytes for parameters", bytes);
    memset(p, 0, bytes);
    return p;
}

// ---------------------------------------------------------------------------------------------
// config.json

const char *model_arch_name(enum model_arch arch)
{
    static const char *const names[] = {"llama", "qwen2", "qwen3"};
    return names[arch];
}

// A key that is absent or null reads as absent, as in transformers' config classes.
static json_t *get(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_null(v) ? NULL : v;
}

static int get_int(json_t *o, const char *key, long long def, long long min, long long max,
                   const char *what)
{
    json_t *v = get(o, key);
    if (!v) {
        if (def == LLONG_MIN) die(EX_DATAERR, "%s: \"%s\" missing", what, key);
        return (int)def;
    }
    if (!json_is_integer(v)) die(EX_DATAERR, "%s: \"%s\" must be an integer", what, key);
    long long x = json_integer_value(v);
    if (x < min || x > max)
        die(EX_DATAERR, "%s: \"%s\" = %lld out of range [%lld, %lld]", what, key, x, min, max);
    return (int)x;
}

// def NAN: the key is required.
static double get_num(json_t *o, const char *key, double def, double min, double max, const char *what)
{
    json_t *v = get(o, key);
    if (!v) {
        if (isnan(def)) die(EX_DATAERR, "%s: \"%s\" missing", what, key);
        return def;
    }
    if (!json_is_number(v)) die(EX_DATAERR, "%s: \"%s\" must be a number", what, key);
    double x = json_number_value(v);
    if (!(x >= min && x <= max)) die(EX_DATAERR, "%s: \"%s\" = %g out of range [%g, %g]", what, key, x, min, max);
    return x;
}

static int get_bool(json_t *o, const char *key, int def, const char *what)
{
    json_t *v = get(o, key);
    if (!v) return def;
    if (!json_is_boolean(v)) die(EX_DATAERR, "%s: \"%s\" must be true or false", what, key);
    return json_is_true(v);
}

// rope_scaling (transformers 4.x) or rope_parameters (5.x, which also holds rope_theta): plain
// RoPE, "linear" and "llama3" scaling with the keys HF's rope_init_fns read; any other type is
// refused. HF only warns about a llama3 block with high_freq_factor <= low_freq_factor, then
// divides by their difference; srlm refuses it.
static void parse_rope(struct model_config *c, json_t *o, const char *key, const char *what)
{
    json_t *v = get(o, key);
    if (!v) return;
    if (!json_is_object(v)) die(EX_DATAERR, "%s: \"%s\" must be an object or null", what, key);
    json_t *t = json_object_get(v, "rope_type");
    if (!t) t = json_object_get(v, "type");
    const char *s = json_string_value(t);
    if (t && !s) die(EX_DATAERR, "%s: \"%s\": rope type must be a string", what, key);
    if (!s && strcmp(key, "rope_parameters"))
        die(EX_DATAERR, "%s: \"%s\" without a type is not supported", what, key);
    if (!s || !strcmp(s, "default")) return;
    if (c->rope_type != MODEL_ROPE_DEFAULT)
        die(EX_DATAERR, "%s: both rope_scaling and rope_parameters set a rope type", what);
    char w[PATH_MAX + 64];   // messages name the file and the key
    snprintf(w, sizeof w, "%s: \"%s\"", what, key);
    if (!strcmp(s, "linear")) c->rope_type = MODEL_ROPE_LINEAR;
    else if (!strcmp(s, "llama3")) c->rope_type = MODEL_ROPE_LLAMA3;
    else die(EX_DATAERR, "%s of type \"%s\" is not supported (linear, llama3)", w, s);
    c->rope_factor = get_num(v, "factor", NAN, 1e-6, 1e6, w);
    if (c->rope_type == MODEL_ROPE_LLAMA3) {
        c->rope_low_freq_factor = get_num(v, "low_freq_factor", NAN, 1e-6, 1e6, w);
        c->rope_high_freq_factor = get_num(v, "high_freq_factor", NAN, 1e-6, 1e6, w);
        c->rope_original_max_pos = get_num(v, "original_max_position_embeddings", NAN, 1, CAP_POS, w);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            die(EX_DATAERR, "%s: high_freq_factor %g must be greater than low_freq_factor %g", w,
                c->rope_high_freq_factor, c->rope_low_freq_factor);
    }
}

// Features srlm does not implement: refused by name, never silently ignored.
static void check_unsupported(json_t *o, const char *what)
{
    const char *act = json_string_value(get(o, "hidden_act"));
    if (get(o, "hidden_act") && (!act || strcmp(act, "silu")))
        die(EX_DATAERR, "%s: hidden_act \"%s\" is not supported (only silu)", what, act ? act : "?");
    if (get_bool(o, "use_sliding_window", 0, what))
        die(EX_DATAERR, "%s: use_sliding_window true is not supported (full attention only)", what);
    if (get_bool(o, "mlp_bias", 0, what)) die(EX_DATAERR, "%s: mlp_bias true is not supported", what);
    if (get_num(o, "attention_dropout", 0, 0, 1, what) != 0)
        die(EX_DATAERR, "%s: attention_dropout > 0 is not supported", what);
    if (get_num(o, "partial_rotary_factor", 1, 0, 1, what) != 1)
        die(EX_DATAERR, "%s: partial_rotary_factor < 1 is not supported", what);
    if (get(o, "quantization_config")) die(EX_DATAERR, "%s: quantized checkpoints are not supported", what);
    json_t *lt = get(o, "layer_types"), *x;
    size_t i;
    if (lt && !json_is_array(lt)) die(EX_DATAERR, "%s: \"layer_types\" must be an array", what);
    json_array_foreach(lt, i, x)
        if (!json_is_string(x) || strcmp(json_string_value(x), "full_attention"))
            die(EX_DATAERR, "%s: layer_types[%zu] is not \"full_attention\" (not supported)", what, i);
}

static void parse_tokens(struct model_config *c, json_t *o, const char *what)
{
    json_t *b = get(o, "bos_token_id"), *e = get(o, "eos_token_id");
    c->bos_token_id = -1;
    if (b) c->bos_token_id = get_int(o, "bos_token_id", -1, 0, INT_MAX, what);
    c->n_eos = 0;
    if (json_is_array(e)) {
        size_t i;
        json_t *x;
        json_array_foreach(e, i, x) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT_MAX)
                die(EX_DATAERR, "%s: eos_token_id[%zu] must be a non-negative integer", what, i);
            if (c->n_eos == 8) die(EX_DATAERR, "%s: more than 8 eos_token_id values", what);
            c->eos_token_ids[c->n_eos++] = (int)json_integer_value(x);
        }
    } else if (e) {
        c->eos_token_ids[c->n_eos++] = get_int(o, "eos_token_id", -1, 0, INT_MAX, what);
    }
}

static void parse_arch(struct model_config *c, json_t *o, const char *what)
{
    const char *mt = json_string_value(get(o, "model_type"));
    if (!mt) die(EX_DATAERR, "%s: \"model_type\" missing or not a string", what);
    if (!strcmp(mt, "llama")) c->arch = MODEL_ARCH_LLAMA;
    else if (!strcmp(mt, "qwen2")) c->arch = MODEL_ARCH_QWEN2;
    else if (!strcmp(mt, "qwen3")) c->arch = MODEL_ARCH_QWEN3;
    else die(EX_DATAERR, "%s: model_type \"%s\" is not supported (llama, qwen2, qwen3)", what, mt);
    // transformers: Qwen2 always has q/k/v biases and none on o_proj; Llama and Qwen3 put
    // attention_bias on all four projections.
    int ab = get_bool(o, "attention_bias", 0, what);
    c->qkv_bias = c->arch == MODEL_ARCH_QWEN2 ? 1 : ab;
    c->o_bias = c->arch == MODEL_ARCH_QWEN2 ? 0 : ab;
    c->qk_norm = c->arch == MODEL_ARCH_QWEN3;
}

static void parse_sizes(struct model_config *c, json_t *o, const char *what)
{
    c->V = get_int(o, "vocab_size", LLONG_MIN, 1, CAP_V, what);
    c->C = get_int(o, "hidden_size", LLONG_MIN, 1, CAP_C, what);
    c->FF = get_int(o, "intermediate_size", LLONG_MIN, 1, CAP_FF, what);
    c->L = get_int(o, "num_hidden_layers", LLONG_MIN, 1, CAP_L, what);
    c->NH = get_int(o, "num_attention_heads", LLONG_MIN, 1, CAP_NH, what);
    c->NKV = get_int(o, "num_key_value_heads", c->NH, 1, c->NH, what);
    if (c->NH % c->NKV)
        die(EX_DATAERR, "%s: num_attention_heads %d not a multiple of num_key_value_heads %d", what, c->NH, c->NKV);
    // Qwen3's config class defaults head_dim to 128; the others derive it from hidden_size.
    int def_hs = c->arch == MODEL_ARCH_QWEN3 ? 128 : c->C / c->NH;
    if (!get(o, "head_dim") && c->arch != MODEL_ARCH_QWEN3 && c->C % c->NH)
        die(EX_DATAERR, "%s: hidden_size %d not a multiple of num_attention_heads %d", what, c->C, c->NH);
    c->hs = get_int(o, "head_dim", def_hs, 2, CAP_HS, what);
    if (c->hs % 2) die(EX_DATAERR, "%s: head_dim %d must be even (RoPE rotates pairs)", what, c->hs);
    c->max_pos = get_int(o, "max_position_embeddings", c->arch == MODEL_ARCH_LLAMA ? 2048 : 32768,
                         1, CAP_POS, what);
    json_t *rp = get(o, "rope_parameters");
    double theta = get_num(rp ? rp : o, "rope_theta", 10000, 1e-3, 1e12, what);
    c->rope_theta = get_num(o, "rope_theta", theta, 1e-3, 1e12, what);
    parse_rope(c, o, "rope_scaling", what);
    parse_rope(c, o, "rope_parameters", what);
    c->rms_norm_eps = (float)get_num(o, "rms_norm_eps", 1e-6, 1e-12, 0.1, what);
    c->initializer_range = (float)get_num(o, "initializer_range", 0.02, 0, 1, what);
    c->tied = get_bool(o, "tie_word_embeddings", 0, what);
}

void model_config_parse(struct model_config *cfg, json_t *json, const char *what)
{
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(json)) die(EX_DATAERR, "%s: not a JSON object", what);
    parse_arch(cfg, json, what);
    check_unsupported(json, what);
    parse_sizes(cfg, json, what);
    parse_tokens(cfg, json, what);
    const char *dt = json_string_value(get(json, "torch_dtype"));
    if (!dt) dt = json_string_value(get(json, "dtype"));
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt ? dt : "");
    layout_init(cfg);
    if (cfg->num_params > CAP_PARAMS)
        die(EX_DATAERR, "%s: %zu parameters is more than srlm handles", what, cfg->num_params);
    cfg->json = json_incref(json);
}

void model_config_load(struct model_config *cfg, const char *path)
{
    json_t *root = json_read_file(path);
    model_config_parse(cfg, root, path);
    json_decref(root);
}

void model_config_free(struct model_config *cfg)
{
    json_decref(cfg->json);
    cfg->json = NULL;
}

// ---------------------------------------------------------------------------------------------
// presets: config.json objects with the keys the Hugging Face configs of each family carry

const char *const model_preset_names[] = {"tiny", "small", "qwen2.5-0.5b", "qwen3-0.6b", NULL};

static const struct preset {
    const char *name, *arch;
    int V, C, L, NH, NKV, hs, FF, tied, max_pos, bos, eos;
    double theta, eps;
} presets[] = {
    {"tiny", "qwen2", 512, 64, 2, 4, 2, 0, 176, 1, 2048, -1, -1, 10000, 1e-6},
    {"small", "qwen2", 8192, 512, 8, 8, 2, 0, 1408, 1, 4096, -1, -1, 10000, 1e-6},
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 0, 4864, 1, 32768, 151643, 151645, 1e6, 1e-6},
    {"qwen3-0.6b", "qwen3", 151936, 1024, 28, 16, 8, 128, 3072, 1, 40960, 151643, 151645, 1e6, 1e-6},
};

static json_t *token_or_null(int id) { return id < 0 ? json_null() : json_integer(id); }

json_t *model_preset(const char *name, const char *arch, int vocab_size)
{
    const struct preset *p = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) p = &presets[i];
    if (!p) return NULL;
    if (!arch) arch = p->arch;
    const char *cls = !strcmp(arch, "llama") ? "LlamaForCausalLM" : !strcmp(arch, "qwen2") ? "Qwen2ForCausalLM"
                    : !strcmp(arch, "qwen3") ? "Qwen3ForCausalLM" : NULL;
    if (!cls) return NULL;
    int hs = p->hs ? p->hs : p->C / p->NH;
    json_t *o = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:f, s:f, s:f, s:b, s:s, s:b, s:f, s:o, s:o, s:n}",
        "architectures", cls, "model_type", arch, "vocab_size", vocab_size > 0 ? vocab_size : p->V,
        "hidden_size", p->C, "intermediate_size", p->FF, "num_hidden_layers", p->L,
        "num_attention_heads", p->NH, "num_key_value_heads", p->NKV, "hidden_act", "silu",
        "max_position_embeddings", p->max_pos, "rms_norm_eps", p->eps, "rope_theta", p->theta,
        "initializer_range", 0.02, "tie_word_embeddings", p->tied, "torch_dtype", "float32",
        "use_cache", 1, "attention_dropout", 0.0, "bos_token_id", token_or_null(p->bos),
        "eos_token_id", token_or_null(p->eos), "rope_scaling");
    ASSERT(o);
    if (strcmp(arch, "qwen2")) {
        json_object_set_new(o, "head_dim", json_integer(hs));
        json_object_set_new(o, "attention_bias", json_false());
    }
    if (!strcmp(arch, "llama")) {
        json_object_set_new(o, "mlp_bias", json_false());
        json_object_set_new(o, "pretraining_tp", json_integer(1));
    } else {
        json_object_set_new(o, "use_sliding_window", json_false());
        json_object_set_new(o, "sliding_window", json_null());
        json_object_set_new(o, "max_window_layers", json_integer(p->L));
    }
    return o;
}

// ---------------------------------------------------------------------------------------------
// models

void model_init(struct model *m, struct model_config *cfg)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    m->params_memory = model_alloc_buffer(&m->cfg);
    model_params_attach(&m->params, &m->cfg, m->params_memory);
    m->step = -1;
}

void model_free(struct model *m)
{
    free(m->params_memory);
    free(m->bf16_memory);
    model_config_free(&m->cfg);
    memset(m, 0, sizeof *m);
}

// splitmix64 (Steele et al. 2014) as a counter-based generator: the output for a counter value
// does not depend on any other draw, so init is independent of order and thread count.
static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Box-Muller over two independent 53-bit uniforms gives the normals of elements 2k and 2k+1
// (cosine and sine branch); u1 in (0, 1] keeps the log finite.
struct init_job { float *x; size_t n; uint64_t key; double std; };

static void init_normal_range(void *ctx, size_t b, size_t e)
{
    const struct init_job *J = ctx;
    for (size_t k = b; k < e; k++) {
        uint64_t i = 2 * k;
        double u1 = ((double)(splitmix64(J->key + 2 * k) >> 11) + 1.0) * 0x1p-53;
        double u2 = (double)(splitmix64(J->key + 2 * k + 1) >> 11) * 0x1p-53;
        double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        J->x[i] = (float)(J->std * r * cos(a));
        if (i + 1 < J->n) J->x[i + 1] = (float)(J->std * r * sin(a));
    }
}

static void init_normal(float *x, size_t n, uint64_t key, double std)
{
    // Each element is a function of its index only, so threads cannot change the result.
    struct init_job J = {x, n, key, std};
    pool_for_range((n + 1) / 2, 1, 32768, init_normal_range, &J);
}

void model_init_random(struct model *m, uint64_t seed)
{
    const struct model_config *c = &m->cfg;
    size_t n = model_tensor_count(c);
    for (size_t ti = 0; ti < n; ti++) {
        struct model_tensor t;
        model_tensor_get(c, ti, &t);
        float *x = m->params_memory + t.offset;
        uint64_t key = splitmix64(splitmix64(seed) ^ splitmix64(0x5eed0000ull + ti));
        enum kind_init how = kind_defs[t.kind].init;
        if (how == INIT_NORMAL) init_normal(x, t.numel, key, c->initializer_range);
        else for (size_t i = 0; i < t.numel; i++) x[i] = how == INIT_ONES ? 1.0f : 0.0f;
    }
}

void model_round(struct model *m, enum safetensors_dtype dtype)
{
    float *x = m->params_memory;
    for (size_t i = 0; i < m->cfg.num_params; i++)
        x[i] = dtype == SAFETENSORS_BF16 ? bf16_to_f32(f32_to_bf16(x[i]))
             : dtype == SAFETENSORS_F16 ? f16_to_f32(f32_to_f16(x[i])) : x[i];
}

struct bf16_job { const float *x; uint16_t *h; };

static void to_bf16_range(void *ctx, size_t b, size_t e)
{
    const struct bf16_job *J = ctx;
    for (size_t i = b; i < e; i++)
        J->h[i] = f32_to_bf16(J->x[i]);
}

void model_use_bf16(struct model *m)
{
    model_round(m, SAFETENSORS_BF16);
    if (!m->bf16_memory) m->bf16_memory = xmalloc(m->cfg.num_params * sizeof *m->bf16_memory);
    struct bf16_job J = {m->params_memory, m->bf16_memory};
    pool_for_range(m->cfg.num_params, 1, 65536, to_bf16_range, &J);
}

uint64_t model_hash(const struct model *m)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) die(EX_OSERR, "out of memory (xxh3 state)");
    XXH3_64bits_reset(st);
    size_t n = model_tensor_count(&m->cfg);
    for (size_t i = 0; i < n; i++) {
        struct model_tensor t;
        model_tensor_get(&m->cfg, i, &t);
        XXH3_64bits_update(st, m->params_memory + t.offset, t.numel * sizeof(float));
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static void check_finite(const float *x, size_t n, const char *what, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            die(EX_DATAERR, "%s: tensor %s: element %zu is %s (weights must be finite)", what, name, i,
                isnan(x[i]) ? "nan" : "inf");
}

// Tensors that transformers drops when loading: a tied lm_head copy, RoPE's inv_freq buffer.
static int ignorable(const struct model_config *c, const char *name)
{
    size_t n = strlen(name), k = strlen("rotary_emb.inv_freq");
    return (c->tied && !strcmp(name, "lm_head.weight")) || (n >= k && !strcmp(name + n - k, "rotary_emb.inv_freq"));
}

void model_load(struct model *m, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) die(EX_NOINPUT, "open %s:", dir);
    char *cpath = path_join(dir, "config.json");
    struct model_config cfg;
    model_config_load(&cfg, cpath);
    free(cpath);
    model_init(m, &cfg);
    struct safetensors st;
    safetensors_open_dir(&st, dir);
    char *used = xcalloc(st.n ? st.n : 1, 1);
    size_t n = model_tensor_count(&m->cfg);
    for (size_t i = 0; i < n; i++) {
        struct model_tensor t;
        model_tensor_get(&m->cfg, i, &t);
        const struct safetensors_tensor *s = safetensors_find(&st, t.name);
        if (!s) die(EX_DATAERR, "%s: tensor %s missing (config.json describes a %s model that has it)",
                    dir, t.name, model_arch_name(m->cfg.arch));
        safetensors_check_shape(s, t.ndim, t.shape, s->path, "config.json");
        safetensors_read_f32(s, m->params_memory + t.offset);
        check_finite(m->params_memory + t.offset, t.numel, s->path, t.name);
        used[s - st.tensors] = 1;
    }
    size_t extra = 0;
    while (extra < st.n && (used[extra] || ignorable(&m->cfg, st.tensors[extra].name))) extra++;
    free(used);
    if (extra < st.n)
        die(EX_DATAERR, "%s: unexpected tensor %s (not part of the %s model config.json describes)",
            st.tensors[extra].path, st.tensors[extra].name, model_arch_name(m->cfg.arch));
    m->step = safetensors_step(&st, st.files[0].path);
    safetensors_close(&st);
}

void model_save(const struct model *m, const char *dir, enum safetensors_dtype dtype)
{
    make_dirs(dir);
    const struct model_config *c = &m->cfg;
    size_t n = model_tensor_count(c);
    struct model_tensor *t = xmalloc(n * sizeof *t);
    struct safetensors_entry *e = xcalloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        model_tensor_get(c, i, &t[i]);
        e[i] = (struct safetensors_entry){.name = t[i].name, .ndim = t[i].ndim,
                                          .data = m->params_memory + t[i].offset};
        memcpy(e[i].shape, t[i].shape, sizeof t[i].shape);
    }
    char step[32];
    snprintf(step, sizeof step, "%lld", m->step);
    const char *meta[] = {"srlm_step", step, NULL};
    // config.json first: the weights file is what marks a checkpoint as there (trainer.h), so a
    // kill between the two writes must leave the config, not the weights, from the newer save.
    json_t *cj = json_deep_copy(c->json);
    const char *tname = dtype == SAFETENSORS_F32 ? "float32" : dtype == SAFETENSORS_BF16 ? "bfloat16" : "float16";
    json_object_set_new(cj, "torch_dtype", json_string(tname));
    if (json_object_get(cj, "dtype")) json_object_set_new(cj, "dtype", json_string(tname));
    json_write_file(dir, "config.json", cj);
    json_decref(cj);
    char *path = path_join(dir, "model.safetensors");
    safetensors_write(path, e, n, dtype, m->step >= 0 ? meta : NULL);
    free(path);
    free(e);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// tokenizer files

static void copy_file(const char *src, const char *dst)
{
    char *a = realpath(src, NULL), *b = realpath(dst, NULL);
    int same = a && b && !strcmp(a, b);
    free(a);
    free(b);
    if (same) return;
    size_t len;
    char *data = read_file(src, &len);
    atomic_write_file(dst, data, len);
    free(data);
}

void model_copy_tokenizer(const char *src, const char *dir, int required)
{
    static const char *const extra[] = {"tokenizer_config.json", "special_tokens_map.json",
        "generation_config.json", "vocab.json", "merges.txt", "chat_template.jinja", NULL};
    struct stat sb;
    if (stat(src, &sb) != 0) {
        if (required) die(EX_NOINPUT, "open %s:", src);
        return;
    }
    char *sdir, *tok;
    if (S_ISDIR(sb.st_mode)) {
        sdir = xstrdup(src);
        tok = path_join(src, "tokenizer.json");
    } else {
        sdir = xstrdup(src);
        char *slash = strrchr(sdir, '/');
        if (slash) *slash = '\0';
        else strcpy(sdir, ".");
        tok = xstrdup(src);
    }
    if (access(tok, R_OK) != 0) {
        if (required) die(EX_NOINPUT, "open %s:", tok);
    } else {
        make_dirs(dir);
        char *dst = path_join(dir, "tokenizer.json");
        copy_file(tok, dst);
        free(dst);
        for (int i = 0; extra[i]; i++) {
            char *s = path_join(sdir, extra[i]), *d = path_join(dir, extra[i]);
            if (access(s, R_OK) == 0) copy_file(s, d);
            free(s);
            free(d);
        }
    }
    free(tok);
    free(sdir);
}

int model_tokenizer_vocab_size(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    json_error_t err;
    json_t *root = json_load_text(text, len, 0, &err);
    free(text);
    if (!root) die(EX_DATAERR, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
    long long top = -1;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab"), *v, *added = json_object_get(root, "added_tokens");
    const char *key;
    size_t i;
    if (!json_is_object(vocab)) die(EX_DATAERR, "%s: model.vocab missing or not an object", path);
    json_object_foreach(vocab, key, v)
        if (json_is_integer(v) && json_integer_value(v) > top) top = json_integer_value(v);
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (json_is_integer(id) && json_integer_value(id) > top) top = json_integer_value(id);
    }
    json_decref(root);
    if (top < 0 || top >= CAP_V) die(EX_DATAERR, "%s: no usable token ids", path);
    return (int)top + 1;
}

// ---------------------------------------------------------------------------------------------
// run state

// Names "<prefix>.<tensor name>" for every buffer and tensor, in one allocation.
static struct safetensors_entry *state_entries(const struct model_config *c, const struct model_state_buf *bufs,
                                               int nbufs, size_t *count, char **names)
{
    size_t n = model_tensor_count(c), k = 0;
    struct safetensors_entry *e = xcalloc(n * (size_t)nbufs + 1, sizeof *e);
    *names = xmalloc(n * (size_t)nbufs * 160 + 1);
    for (int b = 0; b < nbufs; b++)
        for (size_t i = 0; i < n; i++, k++) {
            struct model_tensor t;
            model_tensor_get(c, i, &t);
            char *name = *names + k * 160;
            snprintf(name, 160, "%s.%s", bufs[b].name, t.name);
            e[k] = (struct safetensors_entry){.name = name, .ndim = t.ndim, .data = bufs[b].data + t.offset};
            memcpy(e[k].shape, t.shape, sizeof t.shape);
        }
    *count = k;
    return e;
}

void model_state_save(const char *dir, const struct model_config *cfg,
                      const struct model_state_buf *bufs, int nbufs, long long step, json_t *state)
{
    size_t n;
    char *names;
    struct safetensors_entry *e = state_entries(cfg, bufs, nbufs, &n, &names);
    run_state_save(dir, e, n, step, state);
    free(names);
    free(e);
}

json_t *model_state_load(const char *dir, const struct model_config *cfg,
                         const struct model_state_buf *bufs, int nbufs, long long expect_step)
{
    size_t n;
    char *names;
    struct safetensors_entry *e = state_entries(cfg, bufs, nbufs, &n, &names);
    json_t *ts = run_state_load(dir, e, n, expect_step, "model");
    free(names);
    free(e);
    return ts;
}

void model_write_generation_config(const struct model_config *cfg, const char *dir)
{
    char *path = path_join(dir, "generation_config.json");
    bool has = access(path, F_OK) == 0;
    free(path);
    if (has) return;
    json_t *o = json_object();
    if (cfg->bos_token_id >= 0) json_object_set_new(o, "bos_token_id", json_integer(cfg->bos_token_id));
    if (cfg->n_eos == 1) json_object_set_new(o, "eos_token_id", json_integer(cfg->eos_token_ids[0]));
    if (cfg->n_eos > 1) {
        json_t *a = json_array();
        for (int i = 0; i < cfg->n_eos && i < 8; i++) json_array_append_new(a, json_integer(cfg->eos_token_ids[i]));
        json_object_set_new(o, "eos_token_id", a);
    }
    if (cfg->n_eos > 0) json_object_set_new(o, "pad_token_id", json_integer(cfg->eos_token_ids[0]));
    json_object_set_new(o, "do_sample", json_true());
    json_object_set_new(o, "temperature", json_real(0.7));
    json_object_set_new(o, "top_p", json_real(1.0));
    json_object_set_new(o, "top_k", json_integer(0));
    json_object_set_new(o, "max_new_tokens", json_integer(160));
    json_write_file(dir, "generation_config.json", o);
    json_decref(o);
}
