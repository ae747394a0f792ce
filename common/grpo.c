// grpo.c — see grpo.h (formulas and references there and in docs/rl.md).
#include "grpo.h"
#include "dist.h"
#include "nn.h"
#include "util.h"

#include <math.h>
#include <string.h>

void grpo_config_default(struct grpo_config *c)
{
    memset(c, 0, sizeof *c);
    c->eps_low = 0.2;        // the usual PPO epsilon (Schulman et al. 2017, §6)
    c->eps_high = 0.2;       // DAPO raises it to 0.28
    c->beta = 0.0;
    c->kl = GRPO_KL_K3;
    c->agg = GRPO_AGG_TOKEN;
    c->scale_std = true;
    c->adv_eps = 1e-4;       // TRL GRPOTrainer's value
}

static const char *const agg_names[] = {"token", "seq", "const"};
static const char *const kl_names[] = {"k1", "k2", "k3"};

int grpo_agg_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, agg_names[i])) return i;
    return -1;
}

int grpo_kl_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, kl_names[i])) return i;
    return -1;
}

const char *grpo_agg_name(enum grpo_agg a) { return agg_names[a]; }
const char *grpo_kl_name(enum grpo_kl k) { return kl_names[k]; }

// ---------------------------------------------------------------------------------------------
// advantages and weights

bool grpo_advantages(const struct grpo_config *c, const double *reward, int G, float *adv)
{
    ASSERT(G >= 1);
    bool equal = true;
    double mean = 0;
    for (int i = 0; i < G; i++) {
        mean += reward[i];
        if (reward[i] != reward[0]) equal = false;
    }
    mean /= G;
    if (equal) {
        // A = 0 exactly (no division of rounding noise by a tiny std); with drop_equal the group
        // leaves the batch (DAPO keeps sampling until groups have mixed rewards; we just filter).
        for (int i = 0; i < G; i++) adv[i] = 0.0f;
        return !c->drop_equal;
    }
    double scale = 1.0;
    if (c->scale_std) {
        double ss = 0;   // sample std (Bessel), as torch.Tensor.std(): G >= 2 here
        for (int i = 0; i < G; i++) ss += (reward[i] - mean) * (reward[i] - mean);
        scale = 1.0 / (sqrt(ss / (G - 1)) + c->adv_eps);
    }
    for (int i = 0; i < G; i++) adv[i] = (float)((reward[i] - mean) * scale);
    return true;
}

long grpo_seq_weights(const struct grpo_config *c, const int *len, const bool *use, int nseq, float *w)
{
    long tokens = 0;
    int n = 0, lmax = 0;
    for (int i = 0; i < nseq; i++) {
        if (!use[i] || len[i] == 0) continue;
        tokens += len[i];
        n++;
        if (len[i] > lmax) lmax = len[i];
    }
    int L = c->max_len > 0 ? c->max_len : lmax;
    for (int i = 0; i < nseq; i++) {
        if (!use[i] || len[i] == 0) { w[i] = 0.0f; continue; }
        switch (c->agg) {
        case GRPO_AGG_TOKEN: w[i] = (float)(1.0 / (double)tokens); break;
        case GRPO_AGG_SEQ: w[i] = (float)(1.0 / ((double)n * len[i])); break;
        case GRPO_AGG_CONST: w[i] = (float)(1.0 / ((double)n * L)); break;
        }
    }
    return tokens;
}

// ---------------------------------------------------------------------------------------------
// the per-token objective

// KL(pi || pi_ref) estimate from one token sampled from pi, and its derivative in logp.
// d = ref_logp - logp (Schulman 2020): k1 = -d, k2 = d^2/2, k3 = e^d - d - 1.
static double kl_term(enum grpo_kl k, double d, double *dk)
{
    switch (k) {
    case GRPO_KL_K1: *dk = 1.0; return -d;
    case GRPO_KL_K2: *dk = -d; return 0.5 * d * d;
    case GRPO_KL_K3: default: {
        double e = exp(d);
        *dk = 1.0 - e;       // d/dlogp (e^d - d - 1) with dd/dlogp = -1
        return e - d - 1.0;
    }
    }
}

double grpo_token_loss(const struct grpo_config *c, double logp, double old_logp, double ref_logp,
                       double adv, double *dlogp)
{
    double rho = exp(logp - old_logp);
    double lo = 1.0 - c->eps_low, hi = 1.0 + c->eps_high;
    double rc = rho < lo ? lo : rho > hi ? hi : rho;
    double u = rho * adv, v = rc * adv;
    // min(u, v): where the clipped term is strictly smaller it is a constant (rho is outside the
    // range, on the side where clipping binds), so the gradient vanishes; otherwise d(rho A) = rho A.
    double obj, dobj;
    if (v < u) obj = v, dobj = 0.0;
    else obj = u, dobj = u;
    double l = -obj, dl = -dobj;
    if (c->beta != 0.0) {
        double dk, k = kl_term(c->kl, ref_logp - logp, &dk);
        l += c->beta * k;
        dl += c->beta * dk;
    }
    *dlogp = dl;
    return l;
}

void grpo_stats_zero(struct grpo_stats *s)
{
    memset(s, 0, sizeof *s);
    s->ratio_min = INFINITY;
    s->ratio_max = -INFINITY;
}

double grpo_loss(const struct grpo_config *c, const float *logp, const float *old_logp,
                 const float *ref_logp, const float *adv, const float *weight, int M,
                 float *dlogp, struct grpo_stats *stats)
{
    ASSERT(c->beta == 0.0 || ref_logp);
    double sum = 0;
    for (int t = 0; t < M; t++) {
        if (weight[t] == 0.0f) { dlogp[t] = 0.0f; continue; }
        double dl, l = grpo_token_loss(c, logp[t], old_logp[t], ref_logp ? ref_logp[t] : 0.0, adv[t], &dl);
        sum += (double)weight[t] * l;
        dlogp[t] = (float)((double)weight[t] * dl);
        if (!stats) continue;
        double rho = exp((double)logp[t] - old_logp[t]);
        stats->tokens += 1;
        stats->ratio_sum += rho;
        if (rho < stats->ratio_min) stats->ratio_min = rho;
        if (rho > stats->ratio_max) stats->ratio_max = rho;
        // clip fractions as TRL / verl report them: tokens whose gradient the clip removed
        if (adv[t] < 0 && rho < 1.0 - c->eps_low) stats->clip_low += 1;
        if (adv[t] > 0 && rho > 1.0 + c->eps_high) stats->clip_high += 1;
        if (ref_logp) {
            double dk;
            stats->kl_sum += kl_term(c->kl, (double)ref_logp[t] - logp[t], &dk);
            stats->has_kl = true;
        }
    }
    return sum;
}

// ---------------------------------------------------------------------------------------------
// batch statistics

void grpo_batch_stats(struct grpo_batch_stats *b, const double *reward, const float *adv,
                      const int *len, const bool *truncated, const bool *kept, int nseq, int groups,
                      int groups_dropped)
{
    memset(b, 0, sizeof *b);
    b->groups = groups;
    b->groups_dropped = groups_dropped;
    b->seqs = nseq;
    if (nseq == 0) return;
    double rs = 0, ls = 0;
    for (int i = 0; i < nseq; i++) {
        rs += reward[i];
        ls += len[i];
        if (len[i] > b->len_max) b->len_max = len[i];
        b->truncated += truncated[i];
    }
    b->reward_mean = rs / nseq;
    b->len_mean = ls / nseq;
    double rv = 0;
    for (int i = 0; i < nseq; i++) rv += (reward[i] - b->reward_mean) * (reward[i] - b->reward_mean);
    b->reward_std = sqrt(rv / nseq);   // population std of the batch (a figure, not an estimator)
    int nk = 0;
    double as = 0;
    for (int i = 0; i < nseq; i++)
        if (kept[i]) {
            nk++, as += adv[i];
            if (fabs(adv[i]) > b->adv_abs_max) b->adv_abs_max = fabs(adv[i]);
        }
    if (nk == 0) return;
    b->adv_mean = as / nk;
    double av = 0;
    for (int i = 0; i < nseq; i++)
        if (kept[i]) av += (adv[i] - b->adv_mean) * (adv[i] - b->adv_mean);
    b->adv_std = sqrt(av / nk);
}

// ---------------------------------------------------------------------------------------------
// rollout batches

void grpo_batch_init(struct grpo_batch *b)
{
    memset(b, 0, sizeof *b);
}

void grpo_batch_clear(struct grpo_batch *b)
{
    for (int i = 0; i < b->nseq; i++) {
        struct grpo_sample *s = &b->s[i];
        free(s->id), free(s->tokens), free(s->mask), free(s->old_logp), free(s->ref_logp);
    }
    b->nseq = 0;
    b->groups = 0;
    b->groups_dropped = 0;
}

void grpo_batch_free(struct grpo_batch *b)
{
    grpo_batch_clear(b);
    free(b->s);
    free(b->group_start);
    memset(b, 0, sizeof *b);
}

static bool str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && !memcmp(o->via.str.ptr, s, n);
}

// One sample record into s (all fields checked against docs/stream.md).
// The numeric entries of rec's "rewards" map into s->comp, naming new components in b.
static void read_components(struct grpo_batch *b, const msgpack_object *rec, struct grpo_sample *s)
{
    const msgpack_object *m = rec_get(rec, "rewards");
    if (!m || m->type != MSGPACK_OBJECT_MAP) return;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        double x;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size >= sizeof b->comp_name[0]) continue;
        if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) x = v->via.f64;
        else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) x = (double)v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) x = (double)v->via.i64;
        else continue;
        if (!isfinite(x)) continue;
        int c = 0;
        while (c < b->ncomp && (strlen(b->comp_name[c]) != k->via.str.size ||
                                memcmp(b->comp_name[c], k->via.str.ptr, k->via.str.size)))
            c++;
        if (c == b->ncomp) {
            if (b->ncomp == GRPO_MAX_COMPONENTS) continue;
            memcpy(b->comp_name[c], k->via.str.ptr, k->via.str.size);
            b->comp_name[c][k->via.str.size] = '\0';
            b->ncomp++;
        }
        s->comp[c] = x;
        s->comp_set |= 1u << c;
    }
}

static void read_sample(struct rec_reader *r, const msgpack_object *rec, struct grpo_sample *s, int V,
                        int max_tokens)
{
    memset(s, 0, sizeof *s);
    if (!str_is(rec_get(rec, "kind"), "sample"))
        rec_fail(r, "expected a sample record (kind \"sample\")");
    if (!rec_get(rec, "reward"))
        rec_fail(r, "field \"reward\" missing: rl-step reads scored samples (run score before rl-step)");
    s->reward = rec_get_num(r, rec, "reward");
    if (!isfinite(s->reward)) rec_fail(r, "field \"reward\": not finite");
    s->n = (int)rec_get_i32_array(r, rec, "tokens", 0, V - 1, &s->tokens);
    if (s->n < 2) rec_fail(r, "field \"tokens\": %d tokens (a sample needs a prompt and a completion)", s->n);
    if (s->n > max_tokens)
        rec_fail(r, "sample of %d tokens exceeds --max-tokens %d", s->n, max_tokens);
    size_t nm = rec_get_i32_array(r, rec, "mask", 0, 1, &s->mask);
    if ((int)nm != s->n) rec_fail(r, "field \"mask\": %zu values for %d tokens", nm, s->n);
    s->prompt_len = (int)rec_get_int(r, rec, "prompt_len", 1, s->n);
    for (int t = 0; t < s->n; t++) {
        if (s->mask[t] && t < s->prompt_len)
            rec_fail(r, "field \"mask\": token %d is in the prompt (prompt_len %d) but marked trained", t, s->prompt_len);
        s->len += s->mask[t];
    }
    int64_t shape[4];
    int ndim;
    size_t nl = rec_get_f32_tensor(r, rec, "logprobs", true, &s->old_logp, shape, &ndim);
    if (ndim != 1 || (int)nl != s->n - s->prompt_len)
        rec_fail(r, "field \"logprobs\": %zu values for %d completion tokens", nl, s->n - s->prompt_len);
    for (size_t i = 0; i < nl; i++)
        if (s->old_logp[i] > 0.0f) rec_fail(r, "field \"logprobs\"[%zu]: %g is not a log-probability", i, s->old_logp[i]);
    const msgpack_object *fr = rec_need(r, rec, "finish_reason");
    if (!str_is(fr, "eos") && !str_is(fr, "stop") && !str_is(fr, "length"))
        rec_fail(r, "field \"finish_reason\": expected \"eos\", \"stop\" or \"length\"");
    s->truncated = str_is(fr, "length");
    s->id = rec_get_str(r, rec, "id");
}

int grpo_batch_read(struct grpo_batch *b, struct rec_reader *r, int groups, int V, int max_tokens)
{
    grpo_batch_clear(b);
    msgpack_object rec;
    int k = 0, G = 0;          // position inside the current group, its size
    while (b->groups < groups) {
        if (!rec_reader_next_data(r, &rec)) {
            if (k > 0)
                die(EX_DATAERR, "%s: the stream ends inside group \"%s\" (%d of %d samples)", r->name,
                    b->s[b->nseq - 1].id, k, G);
            break;
        }
        int64_t idx = rec_get_int(r, &rec, "sample", 0, INT32_MAX);
        int64_t gs = rec_get_int(r, &rec, "group_size", 1, 1 << 20);
        if (b->nseq == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 64;
            b->s = xrealloc(b->s, (size_t)b->cap * sizeof *b->s);
        }
        struct grpo_sample *s = &b->s[b->nseq];
        read_sample(r, &rec, s, V, max_tokens);
        read_components(b, &rec, s);
        b->nseq++;
        if (k == 0) {
            if (idx != 0)
                rec_fail(r, "broken group \"%s\": sample %lld comes first (groups are contiguous, in sample order 0..G-1)",
                         s->id, (long long)idx);
            G = (int)gs;
            if (b->groups + 2 > b->gcap) {
                b->gcap = b->gcap ? 2 * b->gcap : 16;
                b->group_start = xrealloc(b->group_start, (size_t)b->gcap * sizeof(int));
            }
            b->group_start[b->groups] = b->nseq - 1;
        } else {
            const struct grpo_sample *first = &b->s[b->group_start[b->groups]];
            if (strcmp(s->id, first->id) || gs != G || idx != k)
                rec_fail(r, "broken group \"%s\": expected sample %d of %d, got sample %lld of group \"%s\" (size %lld)",
                         first->id, k, G, (long long)idx, s->id, (long long)gs);
        }
        if (++k == G) {
            k = 0;
            b->groups++;
            b->group_start[b->groups] = b->nseq;
        }
    }
    return b->groups;
}

void grpo_batch_prepare(const struct grpo_config *c, struct grpo_batch *b)
{
    b->groups_dropped = 0;
    for (int g = 0; g < b->groups; g++) {
        int i0 = b->group_start[g], G = b->group_start[g + 1] - i0;
        double rw[G > 0 ? G : 1];
        float adv[G > 0 ? G : 1];
        for (int i = 0; i < G; i++) rw[i] = b->s[i0 + i].reward;
        bool kept = grpo_advantages(c, rw, G, adv);
        b->groups_dropped += !kept;
        for (int i = 0; i < G; i++) {
            struct grpo_sample *s = &b->s[i0 + i];
            s->adv = adv[i];
            s->kept = kept;
            s->use = kept && s->len > 0 && !(c->mask_truncated && s->truncated);
        }
    }
}

int grpo_batch_compact(struct grpo_batch *b)
{
    // stable partition: kept samples first (a group is never split, so groups stay contiguous)
    struct grpo_sample *tmp = xmalloc((size_t)(b->nseq ? b->nseq : 1) * sizeof *tmp);
    int n = 0;
    for (int i = 0; i < b->nseq; i++) if (b->s[i].kept) tmp[n++] = b->s[i];
    int kept = n;
    for (int i = 0; i < b->nseq; i++) if (!b->s[i].kept) tmp[n++] = b->s[i];
    memcpy(b->s, tmp, (size_t)b->nseq * sizeof *tmp);
    free(tmp);
    return kept;
}

void grpo_batch_figures(const struct grpo_batch *b, struct grpo_batch_stats *st)
{
    int n = b->nseq ? b->nseq : 1;
    double *rw = xmalloc((size_t)n * sizeof *rw);
    float *adv = xmalloc((size_t)n * sizeof *adv);
    int *len = xmalloc((size_t)n * sizeof *len);
    bool *tr = xmalloc((size_t)n * sizeof *tr), *kept = xmalloc((size_t)n * sizeof *kept);
    for (int i = 0; i < b->nseq; i++) {
        const struct grpo_sample *s = &b->s[i];
        rw[i] = s->reward, adv[i] = s->adv, len[i] = s->n - s->prompt_len, tr[i] = s->truncated, kept[i] = s->kept;
    }
    grpo_batch_stats(st, rw, adv, len, tr, kept, b->nseq, b->groups, b->groups_dropped);
    // groups are runs of consecutive samples with one id (grpo_batch_read keeps them contiguous)
    for (int i = 0; i < b->nseq;) {
        int j = i + 1;
        bool equal = true;
        while (j < b->nseq && !strcmp(b->s[j].id, b->s[i].id)) equal &= b->s[j].reward == b->s[i].reward, j++;
        st->groups_zero_std += equal;
        i = j;
    }
    st->ncomp = b->ncomp;
    for (int c = 0; c < b->ncomp; c++) {
        double sum = 0, sq = 0;
        int cnt = 0;
        for (int i = 0; i < b->nseq; i++)
            if (b->s[i].comp_set & (1u << c)) sum += b->s[i].comp[c], cnt++;
        double mean = cnt ? sum / cnt : 0;
        for (int i = 0; i < b->nseq; i++)
            if (b->s[i].comp_set & (1u << c)) sq += (b->s[i].comp[c] - mean) * (b->s[i].comp[c] - mean);
        st->comp_mean[c] = mean;
        st->comp_std[c] = cnt ? sqrt(sq / cnt) : 0;
    }
    free(rw), free(adv), free(len), free(tr), free(kept);
}

// ---------------------------------------------------------------------------------------------
// the objective on a model

void grpo_ws_init(struct grpo_ws *w, const struct model_config *cfg, int N_max)
{
    memset(w, 0, sizeof *w);
    w->N_max = N_max;
    loss_ws_init(&w->lw, cfg, N_max);
    size_t N = (size_t)N_max;
    w->tokens = xmalloc(N * sizeof(int));
    w->cu = xmalloc((N + 1) * sizeof(int));
    w->seq = xmalloc(N * sizeof(int));
    w->entropy = xmalloc(N * sizeof(float));
    w->old = xmalloc(N * sizeof(float));
    w->ref = xmalloc(N * sizeof(float));
    w->adv = xmalloc(N * sizeof(float));
    w->w = xmalloc(N * sizeof(float));
}

void grpo_ws_free(struct grpo_ws *w)
{
    loss_ws_free(&w->lw);
    free(w->tokens), free(w->cu), free(w->seq), free(w->entropy), free(w->old), free(w->ref);
    free(w->adv), free(w->w);
    memset(w, 0, sizeof *w);
}

// Packs the samples of [*next, end) that are in use into one micro-batch of at most N_max tokens
// and lists its targets (rows, ids, and the per-target old/ref log-probs, advantages, weights).
// Returns the number of targets M; *nseq/*N describe the packing; *next advances.
static int pack_micro(struct grpo_ws *w, const struct grpo_batch *b, int *next, int end, int *nseq, int *N)
{
    int ns = 0, n = 0, M = 0;
    w->cu[0] = 0;
    while (*next < end) {
        const struct grpo_sample *s = &b->s[*next];
        if (!s->use) { (*next)++; continue; }
        if (n + s->n > w->N_max) break;   // read-time check guarantees s->n <= N_max
        for (int t = 0; t < s->n; t++) {
            w->tokens[n + t] = s->tokens[t];
            if (!s->mask[t]) continue;
            int j = t - s->prompt_len;
            w->lw.rows[M] = n + t - 1;
            w->lw.ids[M] = s->tokens[t];
            w->old[M] = s->old_logp[j];
            w->ref[M] = s->ref_logp ? s->ref_logp[j] : 0.0f;
            w->adv[M] = s->adv;
            w->w[M] = s->weight;
            M++;
        }
        w->seq[ns++] = *next;
        n += s->n;
        w->cu[ns] = n;
        (*next)++;
    }
    *nseq = ns, *N = n;
    return M;
}

// Under MPI each rank computed the reference log-probs of its micro-batches; every rank needs
// them all. A sum over ranks is the gather: each value is one rank's, the others hold 0, and
// x + 0 = x exactly.
static void share_ref_logprobs(struct grpo_batch *b, int first, int count)
{
    if (dist_size() == 1) return;
    size_t n = 0;
    for (int i = first; i < first + count; i++)
        if (b->s[i].use) n += (size_t)(b->s[i].n - b->s[i].prompt_len);
    float *buf = xmalloc((n ? n : 1) * sizeof(float)), *p = buf;
    for (int i = first; i < first + count; i++)
        if (b->s[i].use) {
            size_t k = (size_t)(b->s[i].n - b->s[i].prompt_len);
            memcpy(p, b->s[i].ref_logp, k * sizeof(float)), p += k;
        }
    dist_sum_f32(buf, n);
    p = buf;
    for (int i = first; i < first + count; i++)
        if (b->s[i].use) {
            size_t k = (size_t)(b->s[i].n - b->s[i].prompt_len);
            memcpy(b->s[i].ref_logp, p, k * sizeof(float)), p += k;
        }
    free(buf);
}

void grpo_ref_logprobs(const struct model *ref, struct lm_acts *a, struct grpo_ws *w,
                       struct grpo_batch *b, int first, int count)
{
    const struct model_config *c = &ref->cfg;
    for (int i = first; i < first + count; i++) {
        struct grpo_sample *s = &b->s[i];
        if (s->use && !s->ref_logp) s->ref_logp = xcalloc((size_t)(s->n - s->prompt_len), sizeof(float));
    }
    int next = first;
    for (long long mb = 0; next < first + count; mb++) {
        int nseq, N;
        int M = pack_micro(w, b, &next, first + count, &nseq, &N);
        if (nseq == 0 || !dist_mine(mb)) continue;   // under MPI, rank mb mod N takes micro-batch mb
        const float *hN = lm_forward(ref, a, w->tokens, w->cu, nseq, N);
        logsoftmax_gather_forward(w->lw.logp, w->lw.lse, NULL, NULL, NULL, 0, hN, lm_head_weight(ref),
                                  w->lw.rows, w->lw.ids, M, 1, c->C, c->V, 1.0f, w->lw.scratch, w->lw.scratch_size);
        int m = 0;   // targets come in sequence order: scatter them back
        for (int q = 0; q < nseq; q++) {
            struct grpo_sample *s = &b->s[w->seq[q]];
            for (int t = s->prompt_len; t < s->n; t++)
                if (s->mask[t]) s->ref_logp[t - s->prompt_len] = w->lw.logp[m++];
        }
        ASSERT(m == M);
    }
    share_ref_logprobs(b, first, count);
}

double grpo_minibatch_grad(const struct grpo_config *c, const struct grpo_policy *p,
                           struct lm_acts *a, struct grpo_ws *w, struct grpo_batch *b,
                           int first, int count, struct grpo_stats *st, long *tokens)
{
    const struct model *m = p->m;
    const struct model_config *mc = &m->cfg;
    int *len = xmalloc((size_t)(count ? count : 1) * sizeof(int));
    bool *use = xmalloc((size_t)(count ? count : 1) * sizeof(bool));
    float *wseq = xmalloc((size_t)(count ? count : 1) * sizeof(float));
    for (int i = 0; i < count; i++) len[i] = b->s[first + i].len, use[i] = b->s[first + i].use;
    *tokens = grpo_seq_weights(c, len, use, count, wseq);
    for (int i = 0; i < count; i++) b->s[first + i].weight = wseq[i];
    free(len), free(use), free(wseq);

    const float *wlm = lm_head_weight(m);
    double loss = 0;
    int next = first;
    long long mb = 0;
    for (; next < first + count; mb++) {
        int nseq, N;
        int M = pack_micro(w, b, &next, first + count, &nseq, &N);
        if (nseq == 0 || !dist_mine(mb)) continue;   // under MPI, rank mb mod N takes micro-batch mb
        const float *hN = lm_forward(m, a, w->tokens, w->cu, nseq, N);
        logsoftmax_gather_forward(w->lw.logp, w->lw.lse, w->entropy, NULL, NULL, 0, hN, wlm, w->lw.rows,
                                  w->lw.ids, M, 1, mc->C, mc->V, 1.0f, w->lw.scratch, w->lw.scratch_size);
        bool has_ref = b->s[w->seq[0]].ref_logp != NULL;
        loss += grpo_loss(c, w->lw.logp, w->old, has_ref ? w->ref : NULL, w->adv, w->w, M, w->lw.dlogp, st);
        for (int t = 0; t < M; t++) st->entropy_sum += w->entropy[t];
        memset(w->lw.dh, 0, (size_t)N * mc->C * sizeof(float));
        logsoftmax_gather_backward(w->lw.dh, p->lm_grads->lmw, w->lw.dlogp, NULL, hN, wlm, w->lw.rows, w->lw.ids,
                                   w->lw.lse, NULL, M, 1, mc->C, mc->V, 1.0f, w->lw.scratch, w->lw.scratch_size);
        p->backward(p->ctx, a, w->lw.dh);
    }
    static bool warned;
    if (dist_size() > 1 && count > 0 && mb < dist_size() && !warned) {
        warned = true;
        log_warn("a minibatch packs into %lld forwards of at most --max-tokens tokens, fewer than the %d "
                 "ranks: the others sit idle (lower --max-tokens)", mb, dist_size());
    }
    return loss;
}
