// generate.c — srlm sampling throughput with the KV cache (lm_prefill + lm_decode, lm.h): the
// work of bench/torch_generate.py. B random prompts of --prompt-len tokens are prefilled together
// (packed), then every step samples one token per sequence from softmax(logits / temperature)
// and runs lm_decode on the B new tokens together (batch B = B sequences decoded at once).
//
//   build/bench/generate --shape tiny|small|qwen0.5b [--threads T] [--batch B] [--new-tokens 64]
//                        [--prompt-len 32] [--temperature 1] [--config config.json] [--dtype f32|bf16]
//
// --dtype bf16 decodes from bf16 weights (model_use_bf16: what `rollout --dtype bf16` does).
//
// One JSON line: tok_per_s = B·new_tokens / decode time (sampling included, as torch counts it),
// ms_per_step, prefill_tok_per_s, gbytes_per_s (weight bytes (f32 or bf16) streamed per decode step / step
// time: the bound at batch 1, where every step reads all the weights once), peak_rss_mb.
// Shapes: bench/shapes.h, as bench/train.c.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "blas.h"
#include "lm.h"
#include "model.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

#include "shapes.h"

// Draws one id from softmax(z / temp) with the keyed uniform u (inverse CDF over the ids).
static int sample_row(const float *z, int V, float temp, double u)
{
    float mx = z[0];
    for (int j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    double sum = 0;
    for (int j = 0; j < V; j++) sum += expf((z[j] - mx) / temp);
    double target = u * sum, acc = 0;
    for (int j = 0; j < V; j++) {
        acc += expf((z[j] - mx) / temp);
        if (acc > target) return j;
    }
    return V - 1;
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    const char *shape = "small", *config = NULL;
    int threads = 1, B = 1, new_tokens = 64, plen = 32;
    double temp = 1.0;
    bool bf16 = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage_error("%s: missing value", o);
        if (!strcmp(o, "--shape")) shape = v;
        else if (!strcmp(o, "--config")) config = v;
        else if (!strcmp(o, "--threads")) threads = (int)parse_int(v, 1, 256, o);
        else if (!strcmp(o, "--batch")) B = (int)parse_int(v, 1, 4096, o);
        else if (!strcmp(o, "--new-tokens")) new_tokens = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--prompt-len")) plen = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--temperature")) temp = parse_float(v, 1e-6, 1e6, o);
        else if (!strcmp(o, "--dtype") && (!strcmp(v, "f32") || !strcmp(v, "bf16"))) bf16 = !strcmp(v, "bf16");
        else usage_error("unknown option %s", o);
        i++;
    }
    blas_init(threads);

    struct model_config cfg;
    load_shape(&cfg, shape, config);
    struct model m;
    model_init(&m, &cfg);
    model_init_random(&m, 1337);
    if (bf16) model_use_bf16(&m);
    const struct model_config *c = &m.cfg;

    int N = B * plen, T_max = plen + new_tokens;
    struct lm_acts acts;
    lm_acts_init(&acts, c, N, plen);
    struct lm_cache cache;
    lm_cache_init(&cache, c, B, T_max);
    int *tokens = xmalloc((size_t)N * sizeof(int)), *cu = xmalloc((size_t)(B + 1) * sizeof(int));
    int *slot = xmalloc((size_t)B * sizeof(int)), *next = xmalloc((size_t)B * sizeof(int));
    float *logits = xmalloc((size_t)B * c->V * sizeof(float));
    float *hlast = xmalloc((size_t)B * c->C * sizeof(float));
    for (int s = 0; s <= B; s++) cu[s] = s * plen;
    for (int b = 0; b < B; b++) slot[b] = b;
    for (int i = 0; i < N; i++)
        tokens[i] = (int)(rng_uniform(rng_key(1337, 0, (uint64_t)i, 1)) * c->V);

    double t0 = now_seconds();
    const float *hN = lm_prefill(&m, &acts, &cache, tokens, cu, B, slot);
    for (int b = 0; b < B; b++)
        memcpy(hlast + (size_t)b * c->C, hN + (size_t)(cu[b + 1] - 1) * c->C, (size_t)c->C * sizeof(float));
    matmul_forward(logits, hlast, lm_head_weight(&m), NULL, B, c->C, c->V);
    double t_prefill = now_seconds() - t0;

    double step_best = 1e30;
    t0 = now_seconds();
    for (int s = 0; s < new_tokens; s++) {
        double ts = now_seconds();
        for (int b = 0; b < B; b++)
            next[b] = sample_row(logits + (size_t)b * c->V, c->V, (float)temp,
                                 rng_uniform(rng_key(1337, (uint64_t)b, (uint64_t)s, 2)));
        lm_decode(&m, &cache, next, slot, B, logits);
        double dt = now_seconds() - ts;
        if (dt < step_best) step_best = dt;
    }
    double t_decode = now_seconds() - t0;

    // bytes of f32 weights one decode step reads (the embedding rows read are negligible; a tied
    // lm_head is the embedding, read once)
    double qd = (double)c->NH * c->hs, kd = (double)c->NKV * c->hs;
    double w = c->L * (qd * c->C + 2 * kd * c->C + c->C * qd + 3.0 * c->FF * c->C) + (double)c->V * c->C;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"tool\":\"srlm\",\"bench\":\"generate\",\"shape\":\"%s\",\"threads\":%d,\"batch\":%d,"
           "\"dtype\":\"%s\",\"prompt_len\":%d,\"new_tokens\":%d,\"params\":%zu,\"tok_per_s\":%.2f,\"tok_per_s_best\":%.2f,"
           "\"ms_per_step\":%.2f,\"ms_per_step_min\":%.2f,\"prefill_tok_per_s\":%.1f,\"gbytes_per_s\":%.1f,"
           "\"peak_rss_mb\":%.1f,\"arch\":\"%s\"}\n",
           config ? config : shape, threads, B, bf16 ? "bf16" : "f32", plen, new_tokens, c->num_params,
           (double)B * new_tokens / t_decode, B / step_best, 1000 * t_decode / new_tokens, 1000 * step_best,
           N / t_prefill, (bf16 ? 2.0 : 4.0) * w * new_tokens / t_decode * 1e-9, ru.ru_maxrss / 1024.0, blas_arch_name());
    free(tokens), free(cu), free(slot), free(next), free(logits), free(hlast);
    lm_cache_free(&cache);
    lm_acts_free(&acts);
    model_free(&m);
    return 0;
}
