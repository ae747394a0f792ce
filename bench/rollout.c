// rollout.c — rollout's generation engine (common/generate.c) on a long-tailed workload: static
// against continuous batching, the work of `rollout` without the streams. Random weights of a
// bench shape; P random prompts of --prompt-len tokens, G samples each; sample s of prompt i ends
// after a length drawn from --lengths (one token count per line: bench/rollout.sh writes GSM8K
// reference solutions tokenized with the Qwen tokenizer) times --scale, capped at --max-new.
// The draw is keyed by (i, s), so both modes decode exactly the same sequences.
//
//   build/bench/rollout --shape small|qwen0.5b [--dtype f32|bf16] [--threads T] [--max-batch B]
//                       [--batching continuous|static] [-G 4] [--prompts P] [--prompt-len 64]
//                       --lengths FILE [--scale 1] [--max-new 512]
//
// One JSON line: tok_per_s = new tokens / wall time (prefill included), decode_tok_per_s,
// mean_batch = the average number of sequences per decode step, seconds, and the workload.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "blas.h"
#include "generate.h"
#include "model.h"
#include "rng.h"
#include "shapes.h"
#include "util.h"

struct lengths { int *v, n, max_new; double scale; };

static int draw_length(void *ctx, const char *id, int sample)
{
    const struct lengths *L = ctx;
    uint64_t k = rng_key(7, rng_hash_str(id, strlen(id)), (uint64_t)sample, 3);
    int x = (int)(L->v[k % (uint64_t)L->n] * L->scale + 0.5);
    return x < 1 ? 1 : x > L->max_new ? L->max_new : x;
}

static void read_lengths(struct lengths *L, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) die(EX_NOINPUT, "%s: cannot open", path);
    int cap = 1024, x;
    L->v = xmalloc((size_t)cap * sizeof(int));
    L->n = 0;
    while (fscanf(f, "%d", &x) == 1) {
        if (L->n == cap) cap *= 2, L->v = xrealloc(L->v, (size_t)cap * sizeof(int));
        L->v[L->n++] = x;
    }
    fclose(f);
    if (!L->n) die(EX_DATAERR, "%s: no lengths", path);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    const char *shape = "small", *config = NULL, *lpath = NULL;
    int threads = 1, max_batch = 32, G = 4, P = 0, plen = 64;
    bool bf16 = false, stat = false;
    struct lengths L = {NULL, 0, 512, 1.0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage_error("%s: missing value", o);
        if (!strcmp(o, "--shape")) shape = v;
        else if (!strcmp(o, "--config")) config = v;
        else if (!strcmp(o, "--threads")) threads = (int)parse_int(v, 1, 256, o);
        else if (!strcmp(o, "--max-batch")) max_batch = (int)parse_int(v, 1, 4096, o);
        else if (!strcmp(o, "-G")) G = (int)parse_int(v, 1, 4096, o);
        else if (!strcmp(o, "--prompts")) P = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--prompt-len")) plen = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--lengths")) lpath = v;
        else if (!strcmp(o, "--scale")) L.scale = parse_float(v, 1e-3, 1e3, o);
        else if (!strcmp(o, "--max-new")) L.max_new = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--dtype") && (!strcmp(v, "f32") || !strcmp(v, "bf16"))) bf16 = !strcmp(v, "bf16");
        else if (!strcmp(o, "--batching") && (!strcmp(v, "static") || !strcmp(v, "continuous"))) stat = !strcmp(v, "static");
        else usage_error("unknown option %s", o);
        i++;
    }
    if (!lpath) usage_error("--lengths FILE is required");
    if (max_batch < G) usage_error("--max-batch below -G");
    if (!P) P = 2 * max_batch / G;
    read_lengths(&L, lpath);
    blas_init(threads);

    struct model_config cfg;
    load_shape(&cfg, shape, config);
    struct model m;
    model_init(&m, &cfg);
    model_init_random(&m, 1337);
    if (bf16) model_use_bf16(&m);

    struct gen_config gc;
    memset(&gc, 0, sizeof gc);
    gc.sp = (struct sampler_params){false, 1.0f, 0, 1.0f, 0.0f};
    gc.G = G, gc.max_new_tokens = L.max_new, gc.max_batch = max_batch, gc.max_prompts = max_batch / G;
    gc.static_batches = stat, gc.seed = 1337, gc.vocab_limit = m.cfg.V;
    gc.length = draw_length, gc.length_ctx = &L;
    struct generator *g = generator_new(&m, NULL, &gc);

    int32_t *toks = xmalloc((size_t)plen * sizeof(int32_t));
    char id[32];
    long long expect = 0;
    int window = stat ? max_batch / G : 2 * (max_batch / G), next = 0, done = 0;
    double t0 = now_seconds();
    while (done < P) {
        while (next < P && gen_pending(g) < window) {
            snprintf(id, sizeof id, "p%d", next);
            for (int t = 0; t < plen; t++) toks[t] = (int32_t)(rng_uniform(rng_key(1337, (uint64_t)next, (uint64_t)t, 1)) * m.cfg.V);
            struct gen_prompt gp = {id, strlen(id), toks, plen};
            gen_submit(g, &gp);
            for (int s = 0; s < G; s++) expect += draw_length(&L, id, s);
            next++;
        }
        while (gen_done(g)) gen_release(g), done++;
        if (done < P && !gen_step(g) && !gen_done(g)) die(EX_SOFTWARE, "stalled");
    }
    double dt = now_seconds() - t0;
    const struct gen_stats *st = generator_stats(g);
    if (st->new_tokens != expect) die(EX_SOFTWARE, "decoded %lld tokens, expected %lld", st->new_tokens, expect);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"bench\":\"rollout\",\"shape\":\"%s\",\"dtype\":\"%s\",\"batching\":\"%s\",\"threads\":%d,"
           "\"max_batch\":%d,\"G\":%d,\"prompts\":%d,\"prompt_len\":%d,\"scale\":%g,\"max_new\":%d,"
           "\"new_tokens\":%lld,\"seconds\":%.3f,\"tok_per_s\":%.2f,\"decode_tok_per_s\":%.2f,"
           "\"prefill_seconds\":%.3f,\"mean_batch\":%.2f,\"decode_steps\":%lld,\"peak_rss_mb\":%.0f}\n",
           shape, bf16 ? "bf16" : "f32", stat ? "static" : "continuous", threads, max_batch, G, P, plen, L.scale,
           L.max_new, st->new_tokens, dt, st->new_tokens / dt,
           st->decode_seconds > 0 ? st->new_tokens / st->decode_seconds : 0.0, st->prefill_seconds,
           st->decode_steps ? (double)st->decode_rows / st->decode_steps : 0.0, st->decode_steps, ru.ru_maxrss / 1024.0);
    generator_free(g);
    model_free(&m);
    free(toks), free(L.v);
    return 0;
}
