// lora.c — see lora.h.
#include "lora.h"
#include "blas.h"
#include "rng.h"
#include "json.h"
#include "runstate.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static const char *const target_hf[LORA_NTARGET] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};
static const char *const target_short[LORA_NTARGET] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *lora_target_name(enum lora_target t)
{
    ASSERT(t >= 0 && t < LORA_NTARGET);
    return target_hf[t];
}

// Target of a module name: "q", "q_proj", or a dotted path ending in "q_proj"; -1 if none.
static int target_of(const char *s, size_t n)
{
    for (int t = 0; t < LORA_NTARGET; t++) {
        size_t k = strlen(target_hf[t]);
        if ((n == strlen(target_short[t]) && !strncmp(s, target_short[t], n)) ||
            (n == k && !strncmp(s, target_hf[t], n)) ||
            (n > k && s[n - k - 1] == '.' && !strncmp(s + n - k, target_hf[t], k)))
            return t;
    }
    return -1;
}

int lora_targets_parse(const char *s, unsigned *mask)
{
    unsigned m = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) return -1;
        int t = target_of(p, n);
        if (t >= 0) m |= 1u << t;
        else if ((n == 3 && !strncmp(p, "all", 3)) || (n == 10 && !strncmp(p, "all-linear", 10))) m |= LORA_ALL;
        else if (n == 4 && !strncmp(p, "attn", 4)) m |= (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);
        else if (n == 3 && !strncmp(p, "mlp", 3)) m |= (1u << LORA_GATE) | (1u << LORA_UP) | (1u << LORA_DOWN);
        else return -1;
        if (!e) break;
        p = e + 1;
    }
    *mask = m;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// layout

void lora_init(struct lora *lo, const struct model_config *mc, const struct lora_config *cfg)
{
    ASSERT(cfg->r >= 1 && cfg->targets && !(cfg->targets & ~LORA_ALL) && isfinite(cfg->alpha));
    memset(lo, 0, sizeof *lo);
    lo->r = cfg->r, lo->alpha = cfg->alpha, lo->rslora = cfg->rslora, lo->targets = cfg->targets;
    lo->scaling = (float)(cfg->rslora ? cfg->alpha / sqrt((double)cfg->r) : cfg->alpha / cfg->r);
    lo->base_model = cfg->base_model ? xstrdup(cfg->base_model) : NULL;
    lo->step = -1;
    lo->L = mc->L;
    int qd = mc->NH * mc->hs, kd = mc->NKV * mc->hs;
    const int in[LORA_NTARGET] = {mc->C, mc->C, mc->C, qd, mc->C, mc->C, mc->FF};
    const int out[LORA_NTARGET] = {qd, kd, kd, mc->C, mc->FF, mc->FF, mc->C};
    memcpy(lo->in, in, sizeof in), memcpy(lo->out, out, sizeof out);
    int nt = __builtin_popcount(cfg->targets);
    lo->ntensors = (size_t)mc->L * nt * 2;
    lo->tensors = xcalloc(lo->ntensors, sizeof *lo->tensors);
    lo->a_off = xmalloc((size_t)mc->L * LORA_NTARGET * sizeof(size_t));
    lo->b_off = xmalloc((size_t)mc->L * LORA_NTARGET * sizeof(size_t));
    size_t off = 0, k = 0;
    for (int l = 0; l < mc->L; l++)
        for (int t = 0; t < LORA_NTARGET; t++) {
            size_t idx = (size_t)l * LORA_NTARGET + t;
            lo->a_off[idx] = lo->b_off[idx] = LORA_ABSENT;
            if (!(cfg->targets & (1u << t))) continue;
            for (int b = 0; b < 2; b++, k++) {
                struct lora_tensor *x = &lo->tensors[k];
                snprintf(x->name, sizeof x->name, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l,
                         t <= LORA_O ? "self_attn" : "mlp", target_hf[t], b ? 'B' : 'A');
                x->layer = l, x->target = (enum lora_target)t, x->is_b = b;
                x->shape[0] = b ? out[t] : cfg->r;
                x->shape[1] = b ? cfg->r : in[t];
                x->numel = (size_t)x->shape[0] * (size_t)x->shape[1];
                x->offset = off;
                *(b ? &lo->b_off[idx] : &lo->a_off[idx]) = off;
                off += x->numel;
            }
        }
    ASSERT(k == lo->ntensors);
    lo->num_params = off;
    lo->params = lora_alloc_buffer(lo);
}

float *lora_alloc_buffer(const struct lora *lo)
{
    size_t bytes = mul_size(lo->num_params ? lo->num_params : 1, sizeof(float), "adapter size");
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) die(EX_OSERR, "out of memory (%zu bytes for adapter parameters)", bytes);
    memset(p, 0, bytes);
    return p;
}

void lora_init_random(struct lora *lo, uint64_t seed)
{
    for (size_t k = 0; k < lo->ntensors; k++) {
        const struct lora_tensor *t = &lo->tensors[k];
        float *x = lo->params + t->offset;
        if (t->is_b) {
            memset(x, 0, t->numel * sizeof(float));
            continue;
        }
        // kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound = gain·sqrt(3/fan_in) = 1/sqrt(in)
        double bound = 1.0 / sqrt((double)t->shape[1]);
        uint64_t tid = (uint64_t)t->layer * LORA_NTARGET + (uint64_t)t->target;
        for (size_t e = 0; e < t->numel; e++)
            x[e] = (float)(bound * (2.0 * rng_uniform(rng_key(seed, tid, e, 0x10a)) - 1.0));
    }
}

void lora_free(struct lora *lo)
{
    free(lo->params), free(lo->tensors), free(lo->a_off), free(lo->b_off), free(lo->base_model);
    memset(lo, 0, sizeof *lo);
}

uint64_t lora_hash(const struct lora *lo)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) die(EX_OSERR, "out of memory (xxh3 state)");
    XXH3_64bits_reset(st);
    int32_t r = lo->r;
    float s = lo->scaling;
    XXH3_64bits_update(st, &r, sizeof r);
    XXH3_64bits_update(st, &s, sizeof s);
    for (size_t k = 0; k < lo->ntensors; k++)
        XXH3_64bits_update(st, lo->params + lo->tensors[k].offset, lo->tensors[k].numel * sizeof(float));
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

bool lora_is_identity(const struct lora *lo)
{
    for (size_t k = 0; k < lo->ntensors; k++) {
        if (!lo->tensors[k].is_b) continue;
        const float *b = lo->params + lo->tensors[k].offset;
        for (size_t i = 0; i < lo->tensors[k].numel; i++)
            if (b[i] != 0.0f) return false;
    }
    return true;
}

uint64_t lora_policy_hash(uint64_t base_hash, uint64_t adapter_hash)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(adapter_hash >> (8 * i));
    return XXH3_64bits_withSeed(b, sizeof b, base_hash);
}

// ---------------------------------------------------------------------------------------------
// merge

void lora_merge(struct model *m, const struct lora *lo)
{
    const struct model_config *c = &m->cfg;
    struct model_params *p = &m->params;
    ASSERT(lo->L == c->L && lo->in[LORA_Q] == c->C && lo->out[LORA_Q] == c->NH * c->hs &&
           lo->out[LORA_K] == c->NKV * c->hs && lo->out[LORA_GATE] == c->FF);
    float *base[LORA_NTARGET] = {p->qw, p->kw, p->vw, p->ow, p->gatew, p->upw, p->downw};
    for (int l = 0; l < c->L; l++)
        for (int t = 0; t < LORA_NTARGET; t++) {
            size_t ao = lora_a_offset(lo, l, t), bo = lora_b_offset(lo, l, t);
            if (ao == LORA_ABSENT) continue;
            int in = lo->in[t], out = lo->out[t];
            float *W = base[t] + (size_t)l * out * in;
            // W(out, in) += scaling · B(out, r) · A(r, in)
            sgemm_rm(false, false, out, in, lo->r, lo->scaling, lo->params + bo, lo->r, lo->params + ao, in,
                     1.0f, W, in);
        }
}

// ---------------------------------------------------------------------------------------------
// files

static json_t *number(double x)
{
    return x == floor(x) && fabs(x) < 1e15 ? json_integer((json_int_t)x) : json_real(x);
}

static json_t *adapter_config(const struct lora *lo)
{
    json_t *tm = json_array();
    for (int t = 0; t < LORA_NTARGET; t++)
        if (lo->targets & (1u << t)) json_array_append_new(tm, json_string(target_hf[t]));
    json_t *o = json_object();
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "r", json_integer(lo->r));
    json_object_set_new(o, "lora_alpha", number(lo->alpha));
    json_object_set_new(o, "target_modules", tm);
    json_object_set_new(o, "lora_dropout", json_real(0.0));
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_false());
    json_object_set_new(o, "use_rslora", json_boolean(lo->rslora));
    json_object_set_new(o, "use_dora", json_false());
    json_object_set_new(o, "init_lora_weights", json_true());
    json_object_set_new(o, "inference_mode", json_true());
    json_object_set_new(o, "modules_to_save", json_null());
    json_object_set_new(o, "layers_to_transform", json_null());
    json_object_set_new(o, "layers_pattern", json_null());
    json_object_set_new(o, "rank_pattern", json_object());
    json_object_set_new(o, "alpha_pattern", json_object());
    json_object_set_new(o, "revision", json_null());
    json_object_set_new(o, "base_model_name_or_path", lo->base_model ? json_string(lo->base_model) : json_null());
    return o;
}

void lora_save(const struct lora *lo, const char *dir, enum safetensors_dtype dtype)
{
    make_dirs(dir);
    struct safetensors_entry *e = xcalloc(lo->ntensors, sizeof *e);
    for (size_t k = 0; k < lo->ntensors; k++) {
        const struct lora_tensor *t = &lo->tensors[k];
        e[k] = (struct safetensors_entry){.name = t->name, .ndim = 2, .shape = {t->shape[0], t->shape[1]},
                                          .data = lo->params + t->offset};
    }
    char step[32];
    snprintf(step, sizeof step, "%lld", lo->step);
    const char *meta[] = {"format", "pt", lo->step >= 0 ? "srlm_step" : NULL, step, NULL};
    // adapter_config.json first: the weights file marks the checkpoint (as in model_save)
    json_t *cj = adapter_config(lo);
    json_write_file(dir, "adapter_config.json", cj);
    json_decref(cj);
    char *path = path_join(dir, "adapter_model.safetensors");
    safetensors_write(path, e, lo->ntensors, dtype, meta);
    free(path);
    free(e);
}

// Fields of adapter_config.json that must hold a given "off" value for plain LoRA.
static int is_off(const json_t *v)
{
    return !v || json_is_null(v) || json_is_false(v) || (json_is_object(v) && json_object_size(v) == 0) ||
           (json_is_array(v) && json_array_size(v) == 0);
}

static void read_adapter_config(const char *path, struct lora_config *lc, char **base_model)
{
    json_t *o = json_read_file(path);   // 66 if missing
    if (!json_is_object(o)) die(EX_DATAERR, "%s: not a JSON object", path);
    json_t *v = json_object_get(o, "peft_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))
        die(EX_DATAERR, "%s: peft_type must be \"LORA\"", path);
    v = json_object_get(o, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
        die(EX_DATAERR, "%s: \"r\" missing or not an integer in [1, 65536]", path);
    lc->r = (int)json_integer_value(v);
    v = json_object_get(o, "lora_alpha");
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        die(EX_DATAERR, "%s: \"lora_alpha\" missing or not a number", path);
    lc->alpha = json_number_value(v);
    v = json_object_get(o, "use_rslora");
    if (v && !json_is_boolean(v)) die(EX_DATAERR, "%s: \"use_rslora\" is not a boolean", path);
    lc->rslora = json_is_true(v);
    v = json_object_get(o, "target_modules");
    lc->targets = 0;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "all-linear"))
            die(EX_DATAERR, "%s: target_modules \"%s\": only a list of module names or \"all-linear\" is supported",
                path, json_string_value(v));
        lc->targets = LORA_ALL;
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            const char *s = json_string_value(x);
            int t = s ? target_of(s, strlen(s)) : -1;
            if (t < 0) die(EX_DATAERR, "%s: target_modules[%zu]: %s%s%s is not one of q_proj, k_proj, v_proj, o_proj, "
                           "gate_proj, up_proj, down_proj", path, i, s ? "\"" : "", s ? s : "not a string", s ? "\"" : "");
            lc->targets |= 1u << t;
        }
    } else {
        die(EX_DATAERR, "%s: \"target_modules\" missing or empty", path);
    }
    v = json_object_get(o, "bias");
    if (v && !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
        die(EX_DATAERR, "%s: bias must be \"none\" (adapter biases are not supported)", path);
    static const char *const unsupported[] = {"fan_in_fan_out", "use_dora", "lora_bias", "rank_pattern",
        "alpha_pattern", "layers_to_transform", "modules_to_save", "use_qalora", "alora_invocation_tokens",
        "trainable_token_indices", "target_parameters", "exclude_modules", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (!is_off(json_object_get(o, unsupported[i])))
            die(EX_DATAERR, "%s: \"%s\" is set; srlm supports plain LoRA only (see docs/lora.md)", path, unsupported[i]);
    v = json_object_get(o, "lora_dropout");
    if (json_is_number(v) && json_number_value(v) > 0)
        log_warn("%s: lora_dropout %g ignored (srlm's LoRA has no dropout)", path, json_number_value(v));
    v = json_object_get(o, "base_model_name_or_path");
    *base_model = json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
    json_decref(o);
}

static void check_tensor_shape(const struct safetensors_tensor *s, const struct lora_tensor *t, const char *path)
{
    if (s->ndim == 2 && s->shape[0] == t->shape[0] && s->shape[1] == t->shape[1]) return;
    char got[64];
    if (s->ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)s->shape[0], (long long)s->shape[1]);
    else snprintf(got, sizeof got, "%d-dimensional", s->ndim);
    die(EX_DATAERR, "%s: tensor %s: shape %s, the model and adapter_config.json need [%lld, %lld]", path, t->name,
        got, (long long)t->shape[0], (long long)t->shape[1]);
}

void lora_load(struct lora *lo, const struct model_config *mc, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) die(EX_NOINPUT, "open %s:", dir);
    if (!S_ISDIR(sb.st_mode)) die(EX_NOINPUT, "open %s: not a directory", dir);
    char *cpath = path_join(dir, "adapter_config.json"), *wpath = path_join(dir, "adapter_model.safetensors");
    struct lora_config lc = {0};
    char *base_model;
    read_adapter_config(cpath, &lc, &base_model);
    lc.base_model = base_model;
    struct safetensors st;
    safetensors_open(&st, wpath);
    // r comes from a file: check it against the first A tensor (whose bytes the file holds)
    // before allocating r-sized buffers, so a corrupt r is exit 65, not a huge allocation.
    int t0 = __builtin_ctz(lc.targets);
    struct lora_tensor first = {.shape = {lc.r, t0 == LORA_O ? mc->NH * mc->hs : t0 == LORA_DOWN ? mc->FF : mc->C}};
    snprintf(first.name, sizeof first.name, "base_model.model.model.layers.0.%s.%s.lora_A.weight",
             t0 <= LORA_O ? "self_attn" : "mlp", target_hf[t0]);
    const struct safetensors_tensor *s0 = safetensors_find(&st, first.name);
    if (!s0) die(EX_DATAERR, "%s: tensor %s missing (adapter_config.json targets %s)", wpath, first.name, target_hf[t0]);
    check_tensor_shape(s0, &first, wpath);
    lora_init(lo, mc, &lc);
    free(base_model);
    unsigned char *used = xcalloc(st.n ? st.n : 1, 1);
    for (size_t k = 0; k < lo->ntensors; k++) {
        const struct lora_tensor *t = &lo->tensors[k];
        const struct safetensors_tensor *s = safetensors_find(&st, t->name);
        if (!s) die(EX_DATAERR, "%s: tensor %s missing (adapter_config.json targets %s)", wpath, t->name, target_hf[t->target]);
        check_tensor_shape(s, t, wpath);
        float *x = lo->params + t->offset;
        safetensors_read_f32(s, x);
        for (size_t i = 0; i < t->numel; i++)
            if (!isfinite(x[i]))
                die(EX_DATAERR, "%s: tensor %s: element %zu is %s (weights must be finite)", wpath, t->name, i,
                    isnan(x[i]) ? "nan" : "inf");
        used[s - st.tensors] = 1;
    }
    for (size_t i = 0; i < st.n; i++)
        if (!used[i])
            die(EX_DATAERR, "%s: unexpected tensor %s (not an adapter tensor adapter_config.json and the model's "
                "config.json describe)", wpath, st.tensors[i].name);
    free(used);
    lo->step = safetensors_step(&st, wpath);
    safetensors_close(&st);
    free(cpath);
    free(wpath);
}

// ---------------------------------------------------------------------------------------------
// optimizer state

static struct safetensors_entry *state_entries(const struct lora *lo, const struct model_state_buf *bufs, int nbufs,
                                               size_t *count, char **names)
{
    size_t n = lo->ntensors, k = 0;
    struct safetensors_entry *e = xcalloc(n * (size_t)nbufs + 1, sizeof *e);
    *names = xmalloc(n * (size_t)nbufs * 176 + 1);
    for (int b = 0; b < nbufs; b++)
        for (size_t i = 0; i < n; i++, k++) {
            const struct lora_tensor *t = &lo->tensors[i];
            char *name = *names + k * 176;
            snprintf(name, 176, "%s.%s", bufs[b].name, t->name);
            e[k] = (struct safetensors_entry){.name = name, .ndim = 2, .shape = {t->shape[0], t->shape[1]},
                                              .data = bufs[b].data + t->offset};
        }
    *count = k;
    return e;
}

void lora_state_save(const char *dir, const struct lora *lo, const struct model_state_buf *bufs, int nbufs,
                     long long step, json_t *state)
{
    size_t n;
    char *names;
    struct safetensors_entry *e = state_entries(lo, bufs, nbufs, &n, &names);
    run_state_save(dir, e, n, step, state);
    free(names), free(e);
}

json_t *lora_state_load(const char *dir, const struct lora *lo, const struct model_state_buf *bufs, int nbufs,
                        long long expect_step)
{
    size_t n;
    char *names;
    struct safetensors_entry *e = state_entries(lo, bufs, nbufs, &n, &names);
    json_t *ts = run_state_load(dir, e, n, expect_step, "adapter");
    free(names), free(e);
    return ts;
}
