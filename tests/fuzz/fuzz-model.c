// fuzz-model.c — the checkpoint readers (common/safetensors.c, common/model.c) on mutated files.
//
// Input: byte 0 picks the target, the rest is the file.
//   0: model.safetensors alone: safetensors_open + safetensors_read_f32 of every tensor
//   1: config.json alone: model_config_load (every architecture check)
//   2: model.safetensors beside a fixed valid config.json (tests/fuzz/model-config.json,
//      embedded below): model_load, which also checks names, shapes and finiteness
//   3: a config.json, then after the first NUL byte a model.safetensors: model_load
// Expected outcomes: return, or exit 65/66 (trapped; 64..74 accepted). Anything else is a crash.
#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "trap.h"

// the tiny qwen2 of tests/fuzz/corpus/model (vocab 16, hidden 8, 1 layer, tied)
static const char fixed_config[] =
    "{\"model_type\":\"qwen2\",\"vocab_size\":16,\"hidden_size\":8,\"intermediate_size\":8,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"hidden_act\":\"silu\",\"max_position_embeddings\":32,\"rms_norm_eps\":1e-06,"
    "\"rope_theta\":10000.0,\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\"}";

static char dir[128], st_path[160], cfg_path[160];
static int mode;

static void run(void *arg)
{
    if (mode == 0) {
        struct safetensors st;
        safetensors_open(&st, st_path);
        for (size_t i = 0; i < st.n; i++) {
            const struct safetensors_tensor *t = &st.tensors[i];
            if (t->numel > (1u << 20)) continue;
            float *buf = malloc((t->numel ? t->numel : 1) * sizeof *buf);
            safetensors_read_f32(t, buf);
            free(buf);
            if (safetensors_find(&st, t->name) == NULL) FUZZ_FAIL("tensor %s not found by name", t->name);
        }
        (void)safetensors_metadata(&st, "format");
        safetensors_close(&st);
    } else if (mode == 1) {
        struct model_config cfg;
        model_config_load(&cfg, cfg_path);
        (void)model_tensor_count(&cfg);
        model_config_free(&cfg);
    } else {
        struct model m;
        model_load(&m, dir);
        (void)model_hash(&m);
        model_free(&m);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-model");
    snprintf(dir, sizeof dir, "%s", fuzz_tmpdir());
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    mode = data[0] & 3;
    data++, size--;
    unlink(st_path);
    unlink(cfg_path);
    if (mode == 0) fuzz_write_file(st_path, data, size);
    else if (mode == 1) fuzz_write_file(cfg_path, data, size);
    else if (mode == 2) {
        fuzz_write_file(cfg_path, fixed_config, sizeof fixed_config - 1);
        fuzz_write_file(st_path, data, size);
    } else {
        const uint8_t *nul = memchr(data, 0, size);
        size_t n = nul ? (size_t)(nul - data) : size;
        fuzz_write_file(cfg_path, data, n);
        if (nul) fuzz_write_file(st_path, nul + 1, size - n - 1);
    }
    trap_check(trap_run(run, NULL), "model load");
    return 0;
}
