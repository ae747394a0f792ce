// shapes.h — the benchmark model shapes shared by bench/train.c and bench/generate.c: the
// dictionaries of bench/torch_train.py (SHAPES), as config.json objects. --config FILE takes any
// other config.json instead (bench/run.sh hands both programs torch_train.py's own output).
#ifndef SRLM_BENCH_SHAPES_H
#define SRLM_BENCH_SHAPES_H

#include <jansson.h>
#include <string.h>

#include "model.h"
#include "util.h"

static const struct { const char *name, *json; } SHAPES[] = {
    {"tiny", "{\"model_type\":\"qwen2\",\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":512,"
             "\"hidden_size\":256,\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
             "\"intermediate_size\":688,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
             "\"tie_word_embeddings\":false,\"max_position_embeddings\":4096}"},
    {"small", "{\"model_type\":\"qwen2\",\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":8192,"
              "\"hidden_size\":512,\"num_hidden_layers\":8,\"num_attention_heads\":8,\"num_key_value_heads\":2,"
              "\"intermediate_size\":1408,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
              "\"tie_word_embeddings\":false,\"max_position_embeddings\":4096}"},
    {"qwen0.5b", "{\"model_type\":\"qwen2\",\"architectures\":[\"Qwen2ForCausalLM\"],\"vocab_size\":151936,"
                 "\"hidden_size\":896,\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                 "\"intermediate_size\":4864,\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,"
                 "\"tie_word_embeddings\":true,\"max_position_embeddings\":32768}"},
};

static void load_shape(struct model_config *cfg, const char *shape, const char *config_path)
{
    if (config_path) {
        model_config_load(cfg, config_path);
        return;
    }
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, shape)) {
            json_error_t err;
            json_t *j = json_loads(SHAPES[i].json, 0, &err);
            ASSERT(j);
            model_config_parse(cfg, j, shape);
            json_decref(j);
            return;
        }
    usage_error("unknown --shape %s (tiny, small, qwen0.5b)", shape);
}

#endif
