// generate.c — see generate.h.
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "lm.h"
#include "nn.h"
#include "pool.h"
#include "rng.h"
#include "util.h"

// One submitted prompt and its G samples.
struct group {
    char *id;
    size_t id_len;
    uint64_t idkey;               // rng_hash_str(id)
    int32_t *prompt;
    int len;
    struct gen_sample *smp;       // (G)
    int32_t *tok;                 // (G, max_new_tokens)
    float *lp;                    // (G, max_new_tokens)
    int *limit;                   // (G) completion lengths (cfg.length), or NULL
    int left;                     // samples still decoding (or not started)
    bool admitted;
};


struct generator {
    const struct model *m;
    const struct tokenizer *tok;
    struct gen_config cfg;
    int V, C;
    // groups in submission order: ring[(head + i) % cap] for i < count; `next` counts the
    // groups already admitted (they are the oldest ones: admission is in order)
    struct group **ring;
    int cap, head, count, next;
    // decoding
    struct lm_cache cache;
    int cache_T;
    struct group **slot_grp;      // (slots) the group a slot decodes for, NULL if free
    int *slot_s;                  // (slots) its sample index
    int *active, nactive;         // the busy slots
    int nfree;
    int *dec_tok, *dec_slot;      // (slots)
    float *logits;                // (slots, V)
    // prefill
    struct lm_acts acts;
    int acts_N, acts_T;
    int *pf_tok, *pf_cu, *pf_slot;
    float *hlast;                 // (slots, C) last hidden state of each prompt entering
    struct sampler *samplers;     // one per pool thread
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
    ASSERT(cfg->G >= 1 && cfg->max_new_tokens >= 1 && cfg->max_batch >= cfg->G && cfg->max_prompts >= 1);
    ASSERT(cfg->vocab_limit >= 1 && cfg->vocab_limit <= m->cfg.V);
    ASSERT(cfg->neos >= 0 && cfg->neos <= GEN_MAX_EOS && cfg->nstop >= 0 && cfg->nstop <= GEN_MAX_STOP);
    ASSERT(cfg->sp.greedy || cfg->sp.temperature > 0);
    struct generator *g = xcalloc(1, sizeof *g);
    g->m = m, g->tok = tok, g->cfg = *cfg;
    g->V = m->cfg.V, g->C = m->cfg.C;
    size_t S = (size_t)cfg->max_batch;
    g->slot_grp = xcalloc(S, sizeof *g->slot_grp);
    g->slot_s = xcalloc(S, sizeof(int));
    g->active = xmalloc(S * sizeof(int));
    g->dec_tok = xmalloc(S * sizeof(int));
    g->dec_slot = xmalloc(S * sizeof(int));
    g->logits = xmalloc(mul_size(S, (size_t)g->V, "logits") * sizeof(float));
    g->hlast = xmalloc(S * g->C * sizeof(float));
    g->pf_cu = xmalloc((S + 1) * sizeof(int));
    g->pf_slot = xmalloc(S * sizeof(int));
    g->nfree = cfg->max_batch;
    g->nsamplers = pool_threads();
    g->samplers = xcalloc((size_t)g->nsamplers, sizeof *g->samplers);
    for (int i = 0; i < g->nsamplers; i++) sampler_init(&g->samplers[i], g->V);
    for (int i = 0; i < cfg->nstop; i++) {
        size_t L = strlen(cfg->stop[i]);
        ASSERT(L > 0);
        if (L > g->max_stop_len) g->max_stop_len = L;
    }
    return g;
}

static void group_free(struct group *q)
{
    free(q->id), free(q->prompt), free(q->smp), free(q->tok), free(q->lp), free(q->limit);
    free(q);
}

void generator_free(struct generator *g)
{
    if (!g) return;
    for (int i = 0; i < g->count; i++) group_free(g->ring[(g->head + i) % g->cap]);
    free(g->ring);
    if (g->acts_N) lm_acts_free(&g->acts);
    if (g->cache_T) lm_cache_free(&g->cache);
    for (int i = 0; i < g->nsamplers; i++) sampler_free(&g->samplers[i]);
    free(g->samplers);
    free(g->slot_grp), free(g->slot_s), free(g->active), free(g->dec_tok), free(g->dec_slot);
    free(g->logits), free(g->hlast), free(g->pf_tok), free(g->pf_cu), free(g->pf_slot);
    free(g);
}

const struct gen_stats *generator_stats(const struct generator *g) { return &g->stats; }
int gen_pending(const struct generator *g) { return g->count; }

static struct group *nth(const struct generator *g, int i) { return g->ring[(g->head + i) % g->cap]; }

void gen_submit(struct generator *g, const struct gen_prompt *p)
{
    ASSERT(p->len >= 1);
    if ((long long)p->len + g->cfg.max_new_tokens > 1 << 30)
        die(EX_DATAERR, "prompt of %d tokens + %d new tokens is too long", p->len, g->cfg.max_new_tokens);
    if (g->count == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        struct group **r = xmalloc((size_t)cap * sizeof *r);
        for (int i = 0; i < g->count; i++) r[i] = nth(g, i);
        free(g->ring);
        g->ring = r, g->cap = cap, g->head = 0;
    }
    int G = g->cfg.G;
    size_t T = (size_t)g->cfg.max_new_tokens;
    struct group *q = xcalloc(1, sizeof *q);
    q->id = xmalloc(p->id_len + 1);
    memcpy(q->id, p->id, p->id_len);
    q->id[p->id_len] = '\0';
    q->id_len = p->id_len;
    q->idkey = rng_hash_str(p->id, p->id_len);
    q->prompt = xmalloc((size_t)p->len * sizeof(int32_t));
    memcpy(q->prompt, p->tokens, (size_t)p->len * sizeof(int32_t));
    q->len = p->len;
    q->smp = xcalloc((size_t)G, sizeof *q->smp);
    q->tok = xmalloc(mul_size((size_t)G, T, "samples") * sizeof(int32_t));
    q->lp = xmalloc((size_t)G * T * sizeof(float));
    for (int s = 0; s < G; s++) q->smp[s].tokens = q->tok + (size_t)s * T, q->smp[s].logprobs = q->lp + (size_t)s * T;
    q->left = G;
    if (g->cfg.length) {
        q->limit = xmalloc((size_t)G * sizeof(int));
        for (int s = 0; s < G; s++) {
            int L = g->cfg.length(g->cfg.length_ctx, q->id, s);
            q->limit[s] = L < 1 ? 1 : L > g->cfg.max_new_tokens ? g->cfg.max_new_tokens : L;
        }
    }
    g->ring[(g->head + g->count++) % g->cap] = q;
}

const struct gen_sample *gen_done(const struct generator *g)
{
    if (!g->count) return NULL;
    struct group *q = nth(g, 0);
    return q->admitted && q->left == 0 ? q->smp : NULL;
}

void gen_release(struct generator *g)
{
    ASSERT(gen_done(g));
    group_free(nth(g, 0));
    g->head = (g->head + 1) % g->cap;
    g->count--, g->next--;
}

// ---------------------------------------------------------------------------------------------
// sampling

// Samples the next token of sample s of group q from logits z. Returns false if the logits are
// not finite.
static bool sample_one(struct generator *g, struct sampler *smp, struct group *q, int s, const float *z)
{
    struct gen_sample *o = &q->smp[s];
    int t = o->n;
    double u = rng_uniform(rng_key(g->cfg.seed, q->idkey, (uint64_t)s, (uint64_t)t));
    int x = sampler_sample(smp, &g->cfg.sp, z, g->cfg.vocab_limit, u);
    double lp = sampler_logprob(z, g->V, x);
    o->tokens[t] = x;
    o->logprobs[t] = (float)lp;
    o->n = t + 1;
    return isfinite(lp);
}

// The rows to sample: (group, sample, logits row).
struct sample_job {
    struct generator *g;
    int n, nchunks;
    struct group **grp;
    const int *s, *zrow;
    int *bad;                     // (nchunks)
};

static void sample_chunk(void *p, int c)
{
    struct sample_job *J = p;
    size_t b0, b1;
    pool_range((size_t)J->n, J->nchunks, c, &b0, &b1);
    struct sampler *smp = &J->g->samplers[pool_thread_id()];
    for (size_t b = b0; b < b1; b++)
        J->bad[c] += !sample_one(J->g, smp, J->grp[b], J->s[b], J->g->logits + (size_t)J->zrow[b] * J->g->V);
}

static void sample_rows(struct generator *g, struct group **grp, const int *s, const int *zrow, int n)
{
    // threads only pay off on big rows (waking them costs more than sampling 64 small rows)
    struct sample_job J = {g, n, pool_chunks((size_t)n * g->V, 65536), grp, s, zrow, NULL};
    if (J.nchunks > n) J.nchunks = n;
    int bad[64] = {0};
    J.bad = bad;
    pool_for(J.nchunks, sample_chunk, &J);
    for (int c = 0; c < J.nchunks; c++)
        if (bad[c]) die(EX_SOFTWARE, "the model produced non-finite logits");
}

// Whether sample s of q is done after its latest token; sets its finish reason.
static bool finished(struct generator *g, struct group *q, int s)
{
    struct gen_sample *o = &q->smp[s];
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
    if (o->n >= (q->limit ? q->limit[s] : g->cfg.max_new_tokens)) { o->finish = GEN_FINISH_LENGTH; return true; }
    return false;
}

// After a token was sampled for every active slot: frees the slots whose sample finished.
static void retire(struct generator *g)
{
    int k = 0;
    for (int b = 0; b < g->nactive; b++) {
        int sl = g->active[b];
        struct group *q = g->slot_grp[sl];
        if (finished(g, q, g->slot_s[sl])) {
            q->left--;
            g->slot_grp[sl] = NULL;
            g->nfree++;
        } else {
            g->active[k++] = sl;
        }
    }
    g->nactive = k;
}

// ---------------------------------------------------------------------------------------------
// admission: prefill of the prompts that enter, their KV copied to G slots each, first tokens

// Grows the prefill activations to a chunk of N tokens whose longest prompt has T tokens.
static void reserve_acts(struct generator *g, int N, int T)
{
    if (N <= g->acts_N && T <= g->acts_T) return;
    if (N < g->acts_N) N = g->acts_N;
    if (T < g->acts_T) T = g->acts_T;
    if (g->acts_N) lm_acts_free(&g->acts);
    lm_acts_init_forward(&g->acts, &g->m->cfg, N, T);
    g->acts_N = N, g->acts_T = T;
    free(g->pf_tok);
    g->pf_tok = xmalloc((size_t)N * sizeof(int));
}

// Prefills the entering groups e[p0..p1) packed into one forward (each into the first of its
// slots, first[p]) and keeps each prompt's last hidden state in hlast[p].
static void prefill_chunk(struct generator *g, struct group **e, const int *first, int p0, int p1)
{
    int N = 0, T = 0;
    for (int p = p0; p < p1; p++) {
        N += e[p]->len;
        if (e[p]->len > T) T = e[p]->len;
    }
    reserve_acts(g, N, T);
    N = 0;
    g->pf_cu[0] = 0;
    for (int p = p0; p < p1; p++) {
        for (int t = 0; t < e[p]->len; t++) g->pf_tok[N + t] = e[p]->prompt[t];
        N += e[p]->len;
        g->pf_cu[p - p0 + 1] = N;
        g->pf_slot[p - p0] = first[p];
    }
    const float *hN = lm_prefill(g->m, &g->acts, &g->cache, g->pf_tok, g->pf_cu, p1 - p0, g->pf_slot);
    for (int p = p0; p < p1; p++)
        memcpy(g->hlast + (size_t)p * g->C, hN + (size_t)(g->pf_cu[p - p0 + 1] - 1) * g->C, (size_t)g->C * sizeof(float));
    g->stats.prefill_tokens += N;
}

// Admits the next queued groups into free slots (static batches: only into an empty batch, at
// most max_prompts): prefill, KV copied to each group's G slots, first tokens sampled. Returns
// the number of groups admitted.
static int admit(struct generator *g)
{
    int G = g->cfg.G, n = 0;
    if (g->cfg.static_batches && g->nactive > 0) return 0;
    int limit = g->cfg.static_batches ? g->cfg.max_prompts : g->cfg.max_batch;
    while (n < limit && (n + 1) * G <= g->nfree && g->next + n < g->count) n++;
    if (!n) return 0;
    double t0 = now_seconds();
    struct group *e[n];
    int first[n], longest = 0;
    for (int p = 0; p < n; p++) {
        e[p] = nth(g, g->next + p);
        if (e[p]->len > longest) longest = e[p]->len;
    }
    int T = longest + g->cfg.max_new_tokens;
    if (!g->cache_T) lm_cache_init(&g->cache, &g->m->cfg, g->cfg.max_batch, T), g->cache_T = T;
    else if (T > g->cache_T) lm_cache_grow(&g->cache, &g->m->cfg, T), g->cache_T = T;
    // G free slots per group, lowest first (which slot a sequence gets does not change its bits)
    int sl = 0, *rows_s = g->dec_tok, *rows_z = g->dec_slot;   // scratch until the decode step
    struct group **rows_g = xmalloc((size_t)n * G * sizeof *rows_g);
    int *newslot = xmalloc((size_t)n * G * sizeof(int));
    for (int p = 0; p < n; p++) {
        for (int s = 0; s < G; s++) {
            while (g->slot_grp[sl]) sl++;
            g->slot_grp[sl] = e[p], g->slot_s[sl] = s;
            if (s == 0) first[p] = sl;
            newslot[p * G + s] = sl;
            rows_g[p * G + s] = e[p], rows_s[p * G + s] = s, rows_z[p * G + s] = p;
        }
        e[p]->admitted = true;
    }
    g->nfree -= n * G;
    g->next += n;
    for (int p0 = 0; p0 < n;) {
        int p1 = p0, N = 0;
        while (p1 < n && (p1 == p0 || N + e[p1]->len <= GEN_PREFILL_TOKENS)) N += e[p1++]->len;
        prefill_chunk(g, e, first, p0, p1);
        p0 = p1;
    }
    for (int i = 0; i < n * G; i++)
        if (newslot[i] != first[i / G]) lm_cache_copy(&g->cache, &g->m->cfg, newslot[i], first[i / G]);
    sgemm_rm_rowinv(false, true, n, g->V, g->C, 1.0f, g->hlast, g->C, lm_head_weight(g->m), g->C, 0.0f,
                    g->logits, g->V);
    sample_rows(g, rows_g, rows_s, rows_z, n * G);
    g->stats.new_tokens += n * G;
    for (int i = 0; i < n * G; i++) {
        struct group *q = rows_g[i];
        if (finished(g, q, rows_s[i])) {
            q->left--;
            g->slot_grp[newslot[i]] = NULL;
            g->nfree++;
        } else {
            g->active[g->nactive++] = newslot[i];
        }
    }
    free(rows_g), free(newslot);
    g->stats.prefill_seconds += now_seconds() - t0;
    return n;
}

bool gen_step(struct generator *g)
{
    int admitted = admit(g);
    if (g->nactive == 0) return admitted > 0;
    double t0 = now_seconds();
    int B = g->nactive;
    struct group **rows_g = xmalloc((size_t)B * sizeof *rows_g);
    int *rows_s = xmalloc((size_t)B * sizeof(int)), *rows_z = xmalloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        int sl = g->active[b];
        const struct gen_sample *o = &g->slot_grp[sl]->smp[g->slot_s[sl]];
        g->dec_tok[b] = o->tokens[o->n - 1];
        g->dec_slot[b] = sl;
        rows_g[b] = g->slot_grp[sl], rows_s[b] = g->slot_s[sl], rows_z[b] = b;
    }
    lm_decode(g->m, &g->cache, g->dec_tok, g->dec_slot, B, g->logits);
    sample_rows(g, rows_g, rows_s, rows_z, B);
    free(rows_g), free(rows_s), free(rows_z);
    g->stats.new_tokens += B;
    g->stats.decode_steps++, g->stats.decode_rows += B;
    retire(g);
    g->stats.decode_seconds += now_seconds() - t0;
    return true;
}
