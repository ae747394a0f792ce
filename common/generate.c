// generate.c — see generate.h.
#include "generate.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lm.h"
#include "nn.h"
#include "rng.h"
#include "util.h"

struct generator {
    const struct model *m;
    const struct tokenizer *tok;
    struct gen_config cfg;
    int slots, V, C;
    struct lm_acts acts;          // prefill activations, grown on demand
    int acts_N, acts_T;           // 0 = not allocated
    struct lm_cache cache;        // slots × cache_T
    int cache_T;
    struct gen_sample *out;       // (slots)
    int32_t *tok_buf;             // (slots, max_new_tokens)
    float *lp_buf;                // (slots, max_new_tokens)
    float *logits;                // (slots, V)
    float *hlast;                 // (max_prompts, C) last hidden state of each prompt
    uint64_t *idkey;              // (max_prompts) rng_hash_str of the prompt ids
    int *active, *dec_tok, *dec_slot;   // (slots)
    int *pf_tok, pf_cap, *pf_cu, *pf_slot;   // prefill batch
    struct sampler *samplers;     // one per OpenMP thread
    int nsamplers;
    size_t max_stop_len;
    struct gen_stats stats;
};

const char *gen_finish_name(enum gen_finish f)
{
    switch (f) {
    case GEN_FINISH_EOS: return "eos";
    case GEN_FINISH_STOP: return "stop";
    case GEN_FINISH_LENGTH: return "length";
    }
    return "?";
}

struct generator *generator_new(const struct model *m, const struct tokenizer *tok, const struct gen_config *cfg)
{
    ASSERT(cfg->G >= 1 && cfg->max_new_tokens >= 1 && cfg->max_prompts >= 1);
    ASSERT(cfg->vocab_limit >= 1 && cfg->vocab_limit <= m->cfg.V);
    ASSERT(cfg->neos >= 0 && cfg->neos <= GEN_MAX_EOS && cfg->nstop >= 0 && cfg->nstop <= GEN_MAX_STOP);
    ASSERT(cfg->sp.greedy || cfg->sp.temperature > 0);
    struct generator *g = xcalloc(1, sizeof *g);
    g->m = m, g->tok = tok, g->cfg = *cfg;
    g->V = m->cfg.V, g->C = m->cfg.C;
    g->slots = (int)mul_size((size_t)cfg->max_prompts, (size_t)cfg->G, "--batch-prompts × -G");
    size_t S = (size_t)g->slots, T = (size_t)cfg->max_new_tokens;
    g->out = xcalloc(S, sizeof *g->out);
    g->tok_buf = xmalloc(mul_size(S, T, "samples") * sizeof(int32_t));
    g->lp_buf = xmalloc(S * T * sizeof(float));
    for (size_t r = 0; r < S; r++) g->out[r].tokens = g->tok_buf + r * T, g->out[r].logprobs = g->lp_buf + r * T;
    g->logits = xmalloc(mul_size(S, (size_t)g->V, "logits") * sizeof(float));
    g->hlast = xmalloc((size_t)cfg->max_prompts * g->C * sizeof(float));
    g->idkey = xmalloc((size_t)cfg->max_prompts * sizeof(uint64_t));
    g->active = xmalloc(S * sizeof(int));
    g->dec_tok = xmalloc(S * sizeof(int));
    g->dec_slot = xmalloc(S * sizeof(int));
    g->pf_cu = xmalloc(((size_t)cfg->max_prompts + 1) * sizeof(int));
    g->pf_slot = xmalloc((size_t)cfg->max_prompts * sizeof(int));
    g->nsamplers = omp_get_max_threads();
    g->samplers = xcalloc((size_t)g->nsamplers, sizeof *g->samplers);
    for (int i = 0; i < g->nsamplers; i++) sampler_init(&g->samplers[i], g->V);
    for (int i = 0; i < cfg->nstop; i++) {
        size_t L = strlen(cfg->stop[i]);
        ASSERT(L > 0);
        if (L > g->max_stop_len) g->max_stop_len = L;
    }
    return g;
}

void generator_free(struct generator *g)
{
    if (!g) return;
    if (g->acts_N) lm_acts_free(&g->acts);
    if (g->cache_T) lm_cache_free(&g->cache);
    for (int i = 0; i < g->nsamplers; i++) sampler_free(&g->samplers[i]);
    free(g->samplers);
    free(g->out), free(g->tok_buf), free(g->lp_buf), free(g->logits), free(g->hlast), free(g->idkey);
    free(g->active), free(g->dec_tok), free(g->dec_slot), free(g->pf_tok), free(g->pf_cu), free(g->pf_slot);
    free(g);
}

const struct gen_stats *generator_stats(const struct generator *g) { return &g->stats; }

// Grows the prefill activations and the KV cache to what this call needs.
static void reserve(struct generator *g, const struct gen_prompt *pr, int n)
{
    int longest = 0, chunk = 0, chunk_max = 0;
    for (int p = 0; p < n; p++) {
        if (chunk > 0 && chunk + pr[p].len > GEN_PREFILL_TOKENS) chunk = 0;
        chunk += pr[p].len;
        if (chunk > chunk_max) chunk_max = chunk;
        if (pr[p].len > longest) longest = pr[p].len;
    }
    if (chunk_max > g->acts_N || longest > g->acts_T) {
        int N = chunk_max > g->acts_N ? chunk_max : g->acts_N, T = longest > g->acts_T ? longest : g->acts_T;
        if (g->acts_N) lm_acts_free(&g->acts);
        lm_acts_init_forward(&g->acts, &g->m->cfg, N, T);
        g->acts_N = N, g->acts_T = T;
        free(g->pf_tok);
        g->pf_tok = xmalloc((size_t)N * sizeof(int));
        g->pf_cap = N;
    }
    if ((long long)longest + g->cfg.max_new_tokens > 1 << 30)
        die(EX_DATAERR, "prompt of %d tokens + %d new tokens is too long", longest, g->cfg.max_new_tokens);
    int T = longest + g->cfg.max_new_tokens;
    if (T > g->cache_T) {
        if (g->cache_T) lm_cache_free(&g->cache);
        lm_cache_init(&g->cache, &g->m->cfg, g->slots, T);
        g->cache_T = T;
    }
}

// Prefills prompts [p0, p1) packed into one forward; stores each prompt's last hidden state.
static void prefill_chunk(struct generator *g, const struct gen_prompt *pr, int p0, int p1)
{
    int N = 0, G = g->cfg.G;
    g->pf_cu[0] = 0;
    for (int p = p0; p < p1; p++) {
        for (int t = 0; t < pr[p].len; t++) g->pf_tok[N + t] = pr[p].tokens[t];
        N += pr[p].len;
        g->pf_cu[p - p0 + 1] = N;
        g->pf_slot[p - p0] = p * G;
    }
    const float *hN = lm_prefill(g->m, &g->acts, &g->cache, g->pf_tok, g->pf_cu, p1 - p0, g->pf_slot);
    for (int p = p0; p < p1; p++)
        memcpy(g->hlast + (size_t)p * g->C, hN + (size_t)(g->pf_cu[p - p0 + 1] - 1) * g->C, (size_t)g->C * sizeof(float));
}

// Samples the next token of row r (sample r % G of prompt r / G) from logits z. Returns false if
// the logits are not finite.
static bool sample_row(struct generator *g, struct sampler *smp, int r, const float *z)
{
    struct gen_sample *o = &g->out[r];
    int G = g->cfg.G, t = o->n;
    double u = rng_uniform(rng_key(g->cfg.seed, g->idkey[r / G], (uint64_t)(r % G), (uint64_t)t));
    int x = sampler_sample(smp, &g->cfg.sp, z, g->cfg.vocab_limit, u);
    double lp = sampler_logprob(z, g->V, x);
    o->tokens[t] = x;
    o->logprobs[t] = (float)lp;
    o->n = t + 1;
    return isfinite(lp);
}

// Samples rows[0..B) from logits rows (row b of logits, or row rows[b] / G when per_prompt).
static void sample_rows(struct generator *g, const int *rows, int B, bool per_prompt)
{
    int bad = 0;
    // threads only pay off on big rows (a team start costs more than sampling 64 small rows)
    #pragma omp parallel for schedule(static) reduction(+ : bad) if ((size_t)B * g->V >= 65536)
    for (int b = 0; b < B; b++) {
        int r = rows[b];
        size_t zrow = per_prompt ? (size_t)(r / g->cfg.G) : (size_t)b;
        bad += !sample_row(g, &g->samplers[omp_get_thread_num()], r, g->logits + zrow * g->V);
    }
    if (bad) die(EX_SOFTWARE, "the model produced non-finite logits");
}

// Whether row r is done after its latest token; sets its finish reason.
static bool finished(struct generator *g, int r)
{
    struct gen_sample *o = &g->out[r];
    int32_t x = o->tokens[o->n - 1];
    for (int i = 0; i < g->cfg.neos; i++)
        if (x == g->cfg.eos[i]) { o->finish = GEN_FINISH_EOS; return true; }
    if (g->cfg.nstop) {
        // Every token decodes to at least one byte (ids without a string, never sampled in
        // practice, to none), so a stop string that the latest token completes lies in the
        // last max_stop_len tokens; two more keep a cut UTF-8 character away from it.
        int w = (int)g->max_stop_len + 2, n0 = o->n > w ? o->n - w : 0;
        size_t len;
        char *text = tokenizer_decode(g->tok, o->tokens + n0, (size_t)(o->n - n0), false, &len);
        bool hit = false;
        for (int i = 0; i < g->cfg.nstop && !hit; i++)
            hit = memmem(text, len, g->cfg.stop[i], strlen(g->cfg.stop[i])) != NULL;
        free(text);
        if (hit) { o->finish = GEN_FINISH_STOP; return true; }
    }
    if (o->n >= g->cfg.max_new_tokens) { o->finish = GEN_FINISH_LENGTH; return true; }
    return false;
}

// Drops finished rows from g->active[0..B); returns the new count.
static int compact(struct generator *g, int B)
{
    int k = 0;
    for (int b = 0; b < B; b++)
        if (!finished(g, g->active[b])) g->active[k++] = g->active[b];
    return k;
}

const struct gen_sample *generate(struct generator *g, const struct gen_prompt *pr, int n)
{
    ASSERT(n >= 1 && n <= g->cfg.max_prompts);
    int G = g->cfg.G, R = n * G;
    for (int p = 0; p < n; p++) {
        ASSERT(pr[p].len >= 1);
        g->idkey[p] = rng_hash_str(pr[p].id, pr[p].id_len);
    }
    reserve(g, pr, n);
    for (int r = 0; r < R; r++) g->out[r].n = 0;

    // prefill: packed chunks, then each prompt's slot copied to its other G-1 samples
    double t0 = now_seconds();
    for (int p0 = 0; p0 < n;) {
        int p1 = p0, N = 0;
        while (p1 < n && (p1 == p0 || N + pr[p1].len <= GEN_PREFILL_TOKENS)) N += pr[p1++].len;
        prefill_chunk(g, pr, p0, p1);
        g->stats.prefill_tokens += N;
        p0 = p1;
    }
    for (int p = 0; p < n; p++)
        for (int s = 1; s < G; s++) lm_cache_copy(&g->cache, &g->m->cfg, p * G + s, p * G);
    matmul_forward(g->logits, g->hlast, lm_head_weight(g->m), NULL, n, g->C, g->V);
    for (int r = 0; r < R; r++) g->active[r] = r;
    sample_rows(g, g->active, R, true);
    int B = compact(g, R);
    double t1 = now_seconds();
    g->stats.prefill_seconds += t1 - t0;

    // decode: one token for every active sample per step
    while (B > 0) {
        for (int b = 0; b < B; b++) {
            const struct gen_sample *o = &g->out[g->active[b]];
            g->dec_tok[b] = o->tokens[o->n - 1];
            g->dec_slot[b] = g->active[b];
        }
        lm_decode(g->m, &g->cache, g->dec_tok, g->dec_slot, B, g->logits);
        sample_rows(g, g->active, B, false);
        B = compact(g, B);
    }
    g->stats.decode_seconds += now_seconds() - t1;
    for (int r = 0; r < R; r++) g->stats.new_tokens += g->out[r].n;
    return g->out;
}
