// test-model.c — unit tests of common/safetensors.c and common/model.c: config parsing of each
// architecture (real Hugging Face config.json files in tests/data/model-configs), parameter counts
// against the published figures, the layout iterator, the f32/bf16/f16 converters on edge values,
// exact save/load round trips, run-state files, and refusals (checked in a forked child, since they
// exit the process).
//
// With arguments it is the helper tests/cli/model-io.sh uses:
//   test-model st-convert IN OUT f32|bf16|f16   every tensor of IN written to OUT in that dtype
#include "model.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/test-model.XXXXXX";
static const char *data_dir = "tests/data/model-configs";

// ---------------------------------------------------------------------------------------------
// helpers

// Runs fn(arg) in a child; returns its exit status (or 128 + signal). stderr goes to err_path.
static int run_child(void (*fn)(const void *), const void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char path[512];
        snprintf(path, sizeof path, "%s/child.err", tmpdir);
        if (!freopen(path, "w", stderr)) _exit(99);
        fn(arg);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The last stderr line of the previous child contains s.
static int child_said(const char *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/child.err", tmpdir);
    size_t n;
    char *text = read_file(path, &n);
    int ok = strstr(text, s) != NULL;
    if (!ok) fprintf(stderr, "child stderr: %s", text);
    free(text);
    return ok;
}

static void parse_string_child(const void *arg)
{
    json_error_t err;
    json_t *j = json_loads(arg, 0, &err);
    if (!j) _exit(98);
    struct model_config c;
    model_config_parse(&c, j, "config.json");
}

static void load_config(struct model_config *c, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    model_config_load(c, path);
}

// ---------------------------------------------------------------------------------------------
// configuration

static void test_configs(void)
{
    struct model_config c;
    load_config(&c, "qwen2.5-0.5b.json");
    CHECK(c.arch == MODEL_ARCH_QWEN2);
    CHECK(c.V == 151936 && c.C == 896 && c.FF == 4864 && c.L == 24);
    CHECK(c.NH == 14 && c.NKV == 2 && c.hs == 64);
    CHECK(c.tied && c.qkv_bias && !c.o_bias && !c.qk_norm);
    CHECK(c.rope_theta == 1e6 && c.rms_norm_eps == 1e-6f && c.max_pos == 32768);
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_token_ids[0] == 151645);
    CHECK(!strcmp(c.torch_dtype, "bfloat16"));
    CHECK_MSG(c.num_params == 494032768u, "%zu", c.num_params);   // published: 494,032,768
    CHECK(model_tensor_count(&c) == 2 + 24 * 12);
    model_config_free(&c);

    load_config(&c, "qwen3-0.6b.json");
    CHECK(c.arch == MODEL_ARCH_QWEN3);
    CHECK(c.C == 1024 && c.NH == 16 && c.NKV == 8 && c.hs == 128);   // NH*hs = 2048 != C
    CHECK(c.qk_norm && !c.qkv_bias && !c.o_bias && c.tied);
    // Independent count: embed V*C; per layer q (NH*hs*C), k, v (NKV*hs*C), o (C*NH*hs),
    // q/k norms (2*hs), two RMSNorms (2*C), MLP (3*FF*C); final norm C.
    size_t per = 2048u * 1024 * 2 + 1024u * 1024 * 2 + 2 * 128 + 2 * 1024 + 3u * 3072 * 1024;
    CHECK_MSG(c.num_params == 151936u * 1024 + 28 * per + 1024, "%zu", c.num_params);
    CHECK(c.num_params == 596049920u);                                  // published figure
    model_config_free(&c);

    load_config(&c, "smollm2-135m.json");
    CHECK(c.arch == MODEL_ARCH_LLAMA && c.hs == 64 && c.NKV == 3 && !c.qkv_bias);
    CHECK(c.rope_theta == 100000 && c.rms_norm_eps == 1e-5f);
    CHECK_MSG(c.num_params == 134515008u, "%zu", c.num_params);        // published: 134,515,008
    model_config_free(&c);

    // Llama 3.2 1B: tied, head_dim given, llama3 rope scaling. Published size: 1,235,814,400.
    load_config(&c, "llama-3.2-1b.json");
    CHECK(c.arch == MODEL_ARCH_LLAMA && c.tied && c.hs == 64 && c.NKV == 8 && c.V == 128256);
    CHECK(c.rope_type == MODEL_ROPE_LLAMA3 && c.rope_factor == 32 && c.rope_low_freq_factor == 1 &&
          c.rope_high_freq_factor == 4 && c.rope_original_max_pos == 8192 && c.rope_theta == 500000);
    CHECK_MSG(c.num_params == 1235814400u, "%zu", c.num_params);
    model_config_free(&c);

    load_config(&c, "qwen2.5-7b.json");
    CHECK(!c.tied && c.V == 152064);   // more embedding rows than the tokenizer has ids
    CHECK_MSG(c.num_params == 7615616512u, "%zu", c.num_params);       // published: 7,615,616,512
    CHECK(model_tensor_count(&c) == 3 + 28 * 12);
    model_config_free(&c);
}

static const struct {
    const char *json, *says;
} refused[] = {
    {"{\"model_type\":\"mistral\"}", "model_type \"mistral\" is not supported"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}",
     "rope_scaling\" of type \"yarn\""},
    {"{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
     "\"rope_scaling\": \"low_freq_factor\" missing"},
    {"{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
     "\"low_freq_factor\":4,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
     "high_freq_factor 4 must be greater than low_freq_factor 4"},
    {"{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"rope_scaling\":{\"type\":\"linear\",\"factor\":0}}",
     "\"factor\" = 0 out of range"},
    {"{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}",
     "of type \"dynamic\" is not supported (linear, llama3)"},
    {"{\"model_type\":\"qwen2\",\"use_sliding_window\":true}", "use_sliding_window"},
    {"{\"model_type\":\"llama\",\"mlp_bias\":true}", "mlp_bias"},
    {"{\"model_type\":\"llama\",\"hidden_act\":\"gelu\"}", "hidden_act \"gelu\""},
    {"{\"model_type\":\"qwen3\",\"hidden_size\":32}", "\"vocab_size\" missing"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":30,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4}", "not a multiple of num_attention_heads"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":3}", "num_key_value_heads 3"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":-5}", "out of range"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":99999999}", "out of range"},
    {"{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":64,"
     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"tie_word_embeddings\":1}", "true or false"},
};

static void test_refusals(void)
{
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK_MSG(run_child(parse_string_child, refused[i].json) == EX_DATAERR, "%s", refused[i].json);
        CHECK_MSG(child_said(refused[i].says), "%s", refused[i].says);
    }
}

// ---------------------------------------------------------------------------------------------
// layout

static void test_layout(void)
{
    const char *arch[] = {"llama", "qwen2", "qwen3"};
    for (int a = 0; a < 3; a++) {
        for (int tied = 0; tied < 2; tied++) {
            json_t *j = model_preset("tiny", arch[a], 100);
            json_object_set_new(j, "tie_word_embeddings", json_boolean(tied));
            struct model_config c;
            model_config_parse(&c, j, "tiny");
            json_decref(j);
            // Every float of the flat buffer belongs to exactly one tensor.
            unsigned char *owner = calloc(c.num_params, 1);
            size_t n = model_tensor_count(&c), total = 0;
            int overlap = 0, dupname = 0;
            for (size_t i = 0; i < n; i++) {
                struct model_tensor t, u;
                model_tensor_get(&c, i, &t);
                total += t.numel;
                for (size_t k = 0; k < t.numel; k++) overlap |= owner[t.offset + k]++;
                if (i) {
                    model_tensor_get(&c, i - 1, &u);
                    dupname |= !strcmp(t.name, u.name);
                }
            }
            CHECK(total == c.num_params && !overlap && !dupname);
            free(owner);
            float *buf = model_alloc_buffer(&c);
            struct model_params p;
            model_params_attach(&p, &c, buf);
            CHECK(p.embed == buf && (tied ? p.lmw == p.embed : p.lmw != p.embed));
            CHECK((p.qb != NULL) == (a == 1) && (p.qnw != NULL) == (a == 2) && p.ob == NULL);
            CHECK(p.qw == buf + c.kind_offset[MODEL_QW]);
            struct model_tensor t;
            model_tensor_get(&c, 0, &t);
            CHECK(!strcmp(t.name, "model.embed_tokens.weight") && t.shape[0] == 100 && t.shape[1] == 64);
            model_tensor_get(&c, 1, &t);
            CHECK(!strcmp(t.name, "model.layers.0.self_attn.q_proj.weight") && t.layer == 0);
            model_tensor_get(&c, n - 1, &t);
            CHECK(!strcmp(t.name, tied ? "model.norm.weight" : "lm_head.weight"));
            free(buf);
            model_config_free(&c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// converters (bit patterns worked out by hand from IEEE 754; the exhaustive comparison with
// torch is in tests/cli/model-io.sh)

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_converters(void)
{
    CHECK(bits(bf16_to_f32(0x3f80)) == 0x3f800000);
    CHECK(bits(bf16_to_f32(0x8001)) == 0x80010000);          // subnormal
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(from_bits(0x3f808000)) == 0x3f80);      // tie, even stays
    CHECK(f32_to_bf16(from_bits(0x3f818000)) == 0x3f82);      // tie, odd rounds up
    CHECK(f32_to_bf16(from_bits(0x3f808001)) == 0x3f81);      // above the tie
    CHECK(f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80);      // max float rounds to inf
    CHECK(f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CHECK(isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001)))));   // a NaN never becomes inf

    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0x7bff) == 65504.0f);
    CHECK(f16_to_f32(0x0001) == 0x1p-24f);                    // smallest subnormal
    CHECK(f16_to_f32(0x03ff) == 0x3ffp-24f);                  // largest subnormal
    CHECK(f16_to_f32(0x0400) == 0x1p-14f);                    // smallest normal
    CHECK(bits(f16_to_f32(0x8000)) == 0x80000000);
    CHECK(f16_to_f32(0x7c00) == INFINITY && f16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(f16_to_f32(0x7c01)) && isnan(f16_to_f32(0xfe00)) && signbit(f16_to_f32(0xfe00)));

    CHECK(f32_to_f16(1.0f) == 0x3c00);
    CHECK(f32_to_f16(65504.0f) == 0x7bff);
    CHECK(f32_to_f16(65519.0f) == 0x7bff);                    // below the halfway point
    CHECK(f32_to_f16(65520.0f) == 0x7c00);                    // tie to even = inf
    CHECK(f32_to_f16(0x1p-24f) == 0x0001);
    CHECK(f32_to_f16(0x1p-25f) == 0x0000);                    // tie to even = 0
    CHECK(f32_to_f16(0x1.8p-25f) == 0x0001);
    CHECK(f32_to_f16(0x1.8p-24f) == 0x0002);                  // 1.5 ulp: tie to even = 2
    CHECK(f32_to_f16(0x1.4p-23f) == 0x0002);                  // 2.5 ulp: tie to even = 2
    CHECK(f32_to_f16(0x3ffp-24f) == 0x03ff);
    CHECK(f32_to_f16(0x7ffp-25f) == 0x0400);                  // rounds up into the normals
    CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);             // tie, even
    CHECK(f32_to_f16(1.0f + 0x3p-11f) == 0x3c02);             // tie, odd rounds up
    CHECK(f32_to_f16(-0.0f) == 0x8000 && f32_to_f16(1e-30f) == 0);
    CHECK(f32_to_f16(INFINITY) == 0x7c00 && f32_to_f16(NAN) == 0x7e00);
    // Every finite f16 survives f16 -> f32 -> f16.
    int all = 1;
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7c00) != 0x7c00 || !(h & 0x3ff)) all &= f32_to_f16(f16_to_f32((uint16_t)h)) == h;
    CHECK(all);
    all = 1;
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7f80) != 0x7f80 || !(h & 0x7f)) all &= f32_to_bf16(bf16_to_f32((uint16_t)h)) == h;
    CHECK(all);
}

// ---------------------------------------------------------------------------------------------
// checkpoints

static void tiny_model(struct model *m, const char *arch, int tied, uint64_t seed, int L)
{
    json_t *j = model_preset("tiny", arch, 96);
    json_object_set_new(j, "tie_word_embeddings", json_boolean(tied));
    json_object_set_new(j, "num_hidden_layers", json_integer(L));
    if (!strcmp(arch, "llama")) json_object_set_new(j, "attention_bias", json_true());
    struct model_config c;
    model_config_parse(&c, j, "tiny");
    json_decref(j);
    model_init(m, &c);
    model_init_random(m, seed);
}

static void test_init(void)
{
    struct model a, b, c;
    tiny_model(&a, "qwen2", 1, 42, 2);
    tiny_model(&b, "qwen2", 1, 42, 3);
    tiny_model(&c, "qwen2", 1, 43, 2);
    // Counter-based: layer 0 of a 2-layer and a 3-layer model get the same values.
    CHECK(!memcmp(a.params.embed, b.params.embed, 96 * 64 * sizeof(float)));
    CHECK(!memcmp(a.params.qw, b.params.qw, 64 * 64 * sizeof(float)));
    CHECK(memcmp(a.params.qw, c.params.qw, 64 * 64 * sizeof(float)) != 0);
    CHECK(model_hash(&a) != model_hash(&c));
    CHECK(a.params.qb[0] == 0 && a.params.ln1w[5] == 1 && a.params.normw[63] == 1);
    double s = 0, s2 = 0;
    size_t n = 96 * 64;
    for (size_t i = 0; i < n; i++) s += a.params.embed[i], s2 += a.params.embed[i] * a.params.embed[i];
    CHECK_NEAR(s / n, 0, 5 * 0.02 / sqrt(n));
    CHECK(fabs(sqrt(s2 / n) - 0.02) < 0.02 * 0.05);
    model_free(&a);
    model_free(&b);
    model_free(&c);
}

static void test_roundtrip(void)
{
    const char *arch[] = {"llama", "qwen2", "qwen3"};
    char dir[600];
    for (int k = 0; k < 3; k++) {
        struct model m, r;
        tiny_model(&m, arch[k], k != 0, 7 + k, 2);
        m.step = 12;
        snprintf(dir, sizeof dir, "%s/rt-%s", tmpdir, arch[k]);
        model_save(&m, dir, SAFETENSORS_F32);
        model_load(&r, dir);
        CHECK(r.cfg.num_params == m.cfg.num_params && r.cfg.arch == m.cfg.arch);
        CHECK(!memcmp(r.params_memory, m.params_memory, m.cfg.num_params * sizeof(float)));
        CHECK(model_hash(&r) == model_hash(&m));
        CHECK(r.step == 12);
        CHECK(!strcmp(r.cfg.torch_dtype, "float32"));
        CHECK((r.params.ob != NULL) == (k == 0));
        model_free(&r);
        // bf16: loading gives exactly the rounded values.
        m.step = -1;
        model_save(&m, dir, SAFETENSORS_BF16);
        model_load(&r, dir);
        model_round(&m, SAFETENSORS_BF16);
        CHECK(!memcmp(r.params_memory, m.params_memory, m.cfg.num_params * sizeof(float)));
        CHECK(r.step == -1 && !strcmp(r.cfg.torch_dtype, "bfloat16"));
        model_free(&r);
        model_free(&m);
    }
}

static void load_child(const void *dir)
{
    struct model m;
    model_load(&m, dir);
}

struct state_args {
    const char *dir;
    const struct model_config *cfg;
    long long expect;
};

static void state_child(const void *arg)
{
    const struct state_args *a = arg;
    float *m = model_alloc_buffer(a->cfg);
    struct model_state_buf b[] = {{"m", m}};
    model_state_load(a->dir, a->cfg, b, 1, a->expect);
}

static void test_state(void)
{
    struct model m;
    tiny_model(&m, "qwen3", 0, 3, 2);
    float *mm = model_alloc_buffer(&m.cfg), *vv = model_alloc_buffer(&m.cfg);
    for (size_t i = 0; i < m.cfg.num_params; i++) mm[i] = (float)i * 1e-3f, vv[i] = 1.0f / (float)(i + 1);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/state", tmpdir);
    json_t *st = json_pack("{s:s, s:i}", "rng", "0123456789abcdef", "data_position", 4096);
    struct model_state_buf bufs[] = {{"m", mm}, {"v", vv}};
    model_state_save(dir, &m.cfg, bufs, 2, 30, st);
    float *m2 = model_alloc_buffer(&m.cfg), *v2 = model_alloc_buffer(&m.cfg);
    struct model_state_buf back[] = {{"m", m2}, {"v", v2}};
    json_t *got = model_state_load(dir, &m.cfg, back, 2, 30);
    CHECK(!memcmp(mm, m2, m.cfg.num_params * 4) && !memcmp(vv, v2, m.cfg.num_params * 4));
    CHECK(json_integer_value(json_object_get(got, "step")) == 30);
    CHECK(json_integer_value(json_object_get(got, "data_position")) == 4096);
    CHECK(!strcmp(json_string_value(json_object_get(got, "rng")), "0123456789abcdef"));
    // The model checkpoint is from another step: refused.
    struct state_args a = {dir, &m.cfg, 31};
    CHECK(run_child(state_child, &a) == EX_DATAERR && child_said("model checkpoint is from step 31"));
    // A run stopped between the two files: optimizer from step 31, trainer_state from 30.
    model_state_save(dir, &m.cfg, bufs, 2, 31, st);
    char ts[700];
    snprintf(ts, sizeof ts, "%s/trainer_state.json", dir);
    const char *old = "{\"step\": 30}\n";
    atomic_write_file(ts, old, strlen(old));
    a.expect = -1;
    CHECK(run_child(state_child, &a) == EX_DATAERR && child_said("a run stopped while saving"));
    // A buffer name the file does not have.
    model_state_save(dir, &m.cfg, bufs + 1, 1, 31, st);
    CHECK(run_child(state_child, &a) == EX_DATAERR && child_said("tensor m.model.embed_tokens.weight missing"));
    json_decref(st);
    json_decref(got);
    free(mm), free(vv), free(m2), free(v2);
    // Loading a missing directory is 66, a directory without weights 66.
    snprintf(dir, sizeof dir, "%s/nope", tmpdir);
    CHECK(run_child(load_child, dir) == EX_NOINPUT);
    model_free(&m);
}

static void test_safetensors_file(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/t.safetensors", tmpdir);
    float a[6] = {1, -2, 3.5f, 1e-30f, 65504, -0.0f}, b[1] = {7};
    struct safetensors_entry e[] = {
        {"zeta", 2, {2, 3}, a},
        {"alpha", 0, {0}, b},
        {"mid", 3, {1, 0, 5}, b},
    };
    const char *meta[] = {"k", "v", NULL};
    safetensors_write(path, e, 3, SAFETENSORS_F32, meta);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    struct safetensors st;
    safetensors_open(&st, path);
    CHECK(st.n == 3 && !strcmp(st.tensors[0].name, "alpha"));
    const struct safetensors_tensor *t = safetensors_find(&st, "zeta");
    CHECK(t && t->ndim == 2 && t->shape[1] == 3 && t->numel == 6 && t->dtype == SAFETENSORS_F32);
    float out[6];
    safetensors_read_f32(t, out);
    CHECK(!memcmp(out, a, sizeof a));
    CHECK(!strcmp(safetensors_metadata(&st, "k"), "v") && !strcmp(safetensors_metadata(&st, "format"), "pt"));
    CHECK(safetensors_find(&st, "mid")->numel == 0 && !safetensors_find(&st, "nope"));
    // Header length + 8 is a multiple of 8, as the reference library writes it.
    uint64_t hlen;
    memcpy(&hlen, st.files[0].base, 8);
    CHECK(hlen % 8 == 0 && st.files[0].base[8] == '{');
    safetensors_close(&st);
    safetensors_write(path, e, 1, SAFETENSORS_F16, NULL);
    safetensors_open(&st, path);
    safetensors_read_f32(&st.tensors[0], out);
    CHECK(out[0] == 1 && out[2] == 3.5f && out[3] == 0 && out[4] == 65504 && signbit(out[5]));
    safetensors_close(&st);
    // No temp file left behind.
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
}

// ---------------------------------------------------------------------------------------------
// helper mode for the CLI tests

static int st_convert(const char *in, const char *out, const char *dt)
{
    enum safetensors_dtype dtype;
    if (safetensors_dtype_parse(dt, &dtype)) usage_error("unknown dtype \"%s\"", dt);
    struct safetensors st;
    safetensors_open(&st, in);
    struct safetensors_entry *e = xcalloc(st.n + 1, sizeof *e);
    for (size_t i = 0; i < st.n; i++) {
        const struct safetensors_tensor *t = &st.tensors[i];
        float *x = xmalloc((t->numel ? t->numel : 1) * sizeof(float));
        safetensors_read_f32(t, x);
        e[i].name = t->name;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        e[i].data = x;
    }
    safetensors_write(out, e, st.n, dtype, NULL);
    for (size_t i = 0; i < st.n; i++) free((float *)e[i].data);
    free(e);
    safetensors_close(&st);
    tool_exit(0);
}

static void remove_tree(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "test-model: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    if (argc == 5 && !strcmp(argv[1], "st-convert")) return st_convert(argv[2], argv[3], argv[4]);
    if (argc != 1) usage_error("usage: test-model [st-convert IN OUT DTYPE]");
    if (!mkdtemp(tmpdir)) die(EX_CANTCREAT, "mkdtemp:");
    test_configs();
    test_refusals();
    test_layout();
    test_converters();
    test_init();
    test_safetensors_file();
    test_roundtrip();
    test_state();
    remove_tree(tmpdir);
    return test_finish("test-model");
}
