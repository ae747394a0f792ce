// test-lm — the model computation (lm.c) on tiny random models of every architecture.
//
// With no arguments: self-checks that need no outside reference — finite differences of the
// whole model's cross-entropy against lm_backward for parameters of every kind, the KV-cache
// decode against the training forward, and packed batches against separate sequences.
// With arguments it is the C side of the PyTorch comparison (tests/cli/lm-torch.sh):
//   test-lm forward MODEL_DIR BATCH.json OUT.safetensors   logits, logprobs, loss, grad.<name>
//   test-lm adamw MODEL_DIR BATCH.json OUT_DIR LR WD CLIP STEPS EPS   AdamW steps (betas 0.9/0.999)
//   test-lm generate MODEL_DIR PROMPTS.json NEW_TOKENS     greedy continuations with the KV cache
// BATCH.json is {"seqs": [[ids]...], "mask": [[0/1]...]}, as tests/oracle/ref_model.py reads it.
#include "blas.h"
#include "lm.h"
#include "loss.h"
#include "model.h"
#include "nn.h"
#include "optim.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

#include <jansson.h>
#include <string.h>

#include "batch.h"

// CE over the batch's targets; accumulates gradients into grads when given. Returns the mean loss.
static double ce_step(struct model *m, struct lm_acts *a, struct loss_ws *w, struct model_params *grads,
                      const struct batch *b)
{
    const float *hN = lm_forward(m, a, b->tokens, b->cu, b->nseq, b->N);
    int M = loss_targets(w, b->tokens, b->mask, b->cu, b->nseq);
    double sum = loss_ce(m, grads, w, hN, b->N, M, M);
    if (grads) lm_backward(m, grads, a, w->dh);
    return sum / M;
}

// ---------------------------------------------------------------------------------------------
// modes used by the PyTorch comparison

static int mode_forward(const char *dir, const char *batch_path, const char *out)
{
    struct model m;
    model_load(&m, dir);
    struct batch b;
    batch_load(&b, batch_path, m.cfg.V);
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, batch_tmax(&b));
    loss_ws_init(&w, &m.cfg, b.N);
    float *gmem = model_alloc_buffer(&m.cfg);
    struct model_params g;
    model_params_attach(&g, &m.cfg, gmem);
    float loss = (float)ce_step(&m, &a, &w, &g, &b);
    // full logits and per-token log-probs, from the same forward (recomputed: the loss does not keep them)
    const float *hN = lm_forward(&m, &a, b.tokens, b.cu, b.nseq, b.N);
    float *logits = xmalloc((size_t)b.N * m.cfg.V * sizeof(float)), *logprobs = xcalloc((size_t)b.N, sizeof(float));
    matmul_forward(logits, hN, lm_head_weight(&m), NULL, b.N, m.cfg.C, m.cfg.V);
    for (int s = 0; s < b.nseq; s++)
        for (int t = b.cu[s] + 1; t < b.cu[s + 1]; t++) {
            const float *z = logits + (size_t)(t - 1) * m.cfg.V;
            double mx = z[0], sum = 0;
            for (int j = 1; j < m.cfg.V; j++) mx = z[j] > mx ? z[j] : mx;
            for (int j = 0; j < m.cfg.V; j++) sum += exp(z[j] - mx);
            logprobs[t] = (float)(z[b.tokens[t]] - mx - log(sum));
        }
    size_t nt = model_tensor_count(&m.cfg);
    struct safetensors_entry *e = xcalloc(nt + 3, sizeof *e);
    char (*names)[112] = xcalloc(nt, sizeof *names);
    e[0] = (struct safetensors_entry){"logits", 2, {b.N, m.cfg.V}, logits};
    e[1] = (struct safetensors_entry){"logprobs", 1, {b.N}, logprobs};
    e[2] = (struct safetensors_entry){"loss", 1, {1}, &loss};
    for (size_t i = 0; i < nt; i++) {
        struct model_tensor t;
        model_tensor_get(&m.cfg, i, &t);
        snprintf(names[i], sizeof names[i], "grad.%s", t.name);
        e[3 + i] = (struct safetensors_entry){names[i], t.ndim, {t.shape[0], t.shape[1]}, gmem + t.offset};
    }
    safetensors_write(out, e, nt + 3, SAFETENSORS_F32, NULL);
    free(e), free(names), free(logits), free(logprobs), free(gmem);
    loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), model_free(&m);
    return 0;
}

static int mode_adamw(char **argv)
{
    struct model m;
    model_load(&m, argv[0]);
    struct batch b;
    batch_load(&b, argv[1], m.cfg.V);
    struct adamw_config ac = {parse_float(argv[3], 0, 10, "lr"), 0.9, 0.999, parse_float(argv[7], 0, 1, "eps"),
                             parse_float(argv[4], 0, 10, "wd")};
    double clip = parse_float(argv[5], 0, 1e9, "clip");
    int steps = (int)parse_int(argv[6], 1, 1000, "steps");
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, batch_tmax(&b));
    loss_ws_init(&w, &m.cfg, b.N);
    float *gmem = model_alloc_buffer(&m.cfg), *mm = model_alloc_buffer(&m.cfg), *vv = model_alloc_buffer(&m.cfg);
    struct model_params g;
    model_params_attach(&g, &m.cfg, gmem);
    for (int step = 1; step <= steps; step++) {
        memset(gmem, 0, m.cfg.num_params * sizeof(float));
        double loss = ce_step(&m, &a, &w, &g, &b);
        const float *bufs[1] = {gmem};
        size_t ns[1] = {m.cfg.num_params};
        double norm = grad_norm(bufs, ns, 1);
        scale_buffer(gmem, m.cfg.num_params, clip_scale(norm, clip));
        adamw_update(m.params_memory, gmem, mm, vv, m.cfg.num_params, &ac, ac.lr, step);
        printf("{\"step\": %d, \"loss\": %.9g, \"grad_norm\": %.9g}\n", step, loss, norm);
    }
    model_save(&m, argv[2], SAFETENSORS_F32);
    free(gmem), free(mm), free(vv);
    loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), model_free(&m);
    return 0;
}

static int argmax(const float *z, int V)
{
    int best = 0;
    for (int j = 1; j < V; j++) if (z[j] > z[best]) best = j;
    return best;
}

// Greedy continuation of one prompt with the KV cache; out gets n tokens.
static void greedy_cached(struct model *m, const int *prompt, int T, int n, int *out)
{
    struct lm_acts a;
    struct lm_cache c;
    lm_acts_init_forward(&a, &m->cfg, T, T);   // as rollout's prefill (generate.c)
    lm_cache_init(&c, &m->cfg, 1, T + n);
    int cu[2] = {0, T}, slot = 0;
    const float *hN = lm_prefill(m, &a, &c, prompt, cu, 1, &slot);
    float *logits = xmalloc((size_t)m->cfg.V * sizeof(float));
    matmul_forward(logits, hN + (size_t)(T - 1) * m->cfg.C, lm_head_weight(m), NULL, 1, m->cfg.C, m->cfg.V);
    for (int i = 0; i < n; i++) {
        out[i] = argmax(logits, m->cfg.V);
        if (i + 1 < n) lm_decode(m, &c, &out[i], &slot, 1, logits);
    }
    free(logits);
    lm_cache_free(&c);
    lm_acts_free(&a);
}

static int mode_generate(const char *dir, const char *prompts, int n)
{
    struct model m;
    model_load(&m, dir);
    struct batch b;
    batch_load(&b, prompts, m.cfg.V);
    printf("{\"tokens\": [");
    int *out = xmalloc((size_t)n * sizeof(int));
    for (int s = 0; s < b.nseq; s++) {
        greedy_cached(&m, b.tokens + b.cu[s], b.cu[s + 1] - b.cu[s], n, out);
        printf("%s[", s ? ", " : "");
        for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", out[i]);
        printf("]");
    }
    printf("]}\n");
    free(out), batch_free(&b), model_free(&m);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// self-checks

static void tiny_model(struct model *m, const char *arch, int tied, int seed)
{
    json_t *j = model_preset("tiny", arch, 53);
    json_object_set_new(j, "hidden_size", json_integer(32));
    json_object_set_new(j, "num_attention_heads", json_integer(4));
    json_object_set_new(j, "num_key_value_heads", json_integer(2));
    json_object_set_new(j, "intermediate_size", json_integer(48));
    json_object_set_new(j, "num_hidden_layers", json_integer(2));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(tied));
    // Weights large enough that attention is far from uniform and every path carries gradient.
    json_object_set_new(j, "initializer_range", json_real(0.3));
    if (!strcmp(arch, "qwen3")) json_object_set_new(j, "head_dim", json_integer(8));
    struct model_config cfg;
    model_config_parse(&cfg, j, arch);
    json_decref(j);                          // the config holds its own reference
    model_init(m, &cfg);
    model_init_random(m, (uint64_t)seed);
    // Random norms and biases too, so that a mistake in their handling shows.
    for (size_t i = 0; i < m->cfg.num_params; i++) m->params_memory[i] += 0.05f * (float)((i * 2654435761u) % 1000) / 1000.0f;
}

static void fill_batch(struct batch *b, int V)
{
    static const int lens[3] = {7, 3, 11};
    b->nseq = 3, b->N = 21;
    b->cu = xmalloc(4 * sizeof(int));
    b->tokens = xmalloc(21 * sizeof(int));
    b->mask = xmalloc(21 * sizeof(int));
    b->cu[0] = 0;
    for (int s = 0; s < 3; s++) b->cu[s + 1] = b->cu[s] + lens[s];
    for (int t = 0; t < 21; t++) b->tokens[t] = (t * 17 + 5) % V, b->mask[t] = (t % 4) != 0;
}

static void check_gradients(const char *arch, int tied)
{
    struct model m;
    tiny_model(&m, arch, tied, 7);
    struct batch b;
    fill_batch(&b, m.cfg.V);
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, 11);
    loss_ws_init(&w, &m.cfg, b.N);
    float *gmem = model_alloc_buffer(&m.cfg);
    struct model_params g;
    model_params_attach(&g, &m.cfg, gmem);
    ce_step(&m, &a, &w, &g, &b);
    // For each tensor: the element with the largest gradient, by central differences (f32 model:
    // eps 1e-3, tolerance 1% + 1e-4; exact agreement is the PyTorch test's job).
    size_t nt = model_tensor_count(&m.cfg);
    int bad = 0;
    for (size_t i = 0; i < nt; i++) {
        struct model_tensor t;
        model_tensor_get(&m.cfg, i, &t);
        size_t best = t.offset;
        for (size_t k = t.offset; k < t.offset + t.numel; k++) if (fabsf(gmem[k]) > fabsf(gmem[best])) best = k;
        float keep = m.params_memory[best], h = 1e-3f;
        m.params_memory[best] = keep + h;
        double lp = ce_step(&m, &a, &w, NULL, &b);
        m.params_memory[best] = keep - h;
        double lm_ = ce_step(&m, &a, &w, NULL, &b);
        m.params_memory[best] = keep;
        double fd = (lp - lm_) / (2 * h);
        if (fabs(fd - gmem[best]) > 0.01 * fabs(fd) + 1e-4) {
            bad++;
            fprintf(stderr, "%s tied=%d %s: analytic %.6g, finite difference %.6g\n", arch, tied, t.name, gmem[best], fd);
        }
    }
    CHECK_MSG(bad == 0, "%s tied=%d: %d tensors' gradients disagree with finite differences", arch, tied, bad);
    free(gmem), loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), model_free(&m);
}

// Decoding with the cache gives the training forward's logits at every position; with bf16
// decoding (model_use_bf16), the logits of the training forward on the rounded weights.
static void check_decode(const char *arch, bool bf16)
{
    struct model m;
    tiny_model(&m, arch, 0, 11);
    if (bf16) {
        float w0 = m.params.qw[1];
        model_use_bf16(&m);
        CHECK_MSG(m.params.qw[1] == bf16_to_f32(f32_to_bf16(w0)) && m.params.qw[1] != w0,
                  "%s: model_use_bf16 rounds the f32 weights", arch);
    }
    int V = m.cfg.V, C = m.cfg.C, T = 9, P = 4;
    int toks[9];
    for (int t = 0; t < T; t++) toks[t] = (t * 7 + 3) % V;
    struct lm_acts a;
    lm_acts_init(&a, &m.cfg, T, T);
    int cu[2] = {0, T};
    const float *hN = lm_forward(&m, &a, toks, cu, 1, T);
    float *full = xmalloc((size_t)T * V * sizeof(float)), *dec = xmalloc((size_t)V * sizeof(float));
    matmul_forward(full, hN, lm_head_weight(&m), NULL, T, C, V);
    struct lm_cache c;
    lm_cache_init(&c, &m.cfg, 2, T);
    int cp[2] = {0, P}, slot = 1;
    lm_prefill(&m, &a, &c, toks, cp, 1, &slot);
    lm_cache_copy(&c, &m.cfg, 0, 1);
    slot = 0;
    double worst = 0;
    for (int t = P; t < T; t++) {
        lm_decode(&m, &c, &toks[t], &slot, 1, dec);
        for (int j = 0; j < V; j++) worst = fmax(worst, fabs(dec[j] - full[(size_t)t * V + j]));
    }
    CHECK_MSG(worst < 1e-4, "%s%s: cached decode differs from the full forward by %g", arch,
              bf16 ? " (bf16 weights)" : "", worst);
    free(full), free(dec), lm_cache_free(&c), lm_acts_free(&a), model_free(&m);
}

// A packed batch gives each sequence the loss it has alone (no attention across sequences).
static void check_packing(const char *arch)
{
    struct model m;
    tiny_model(&m, arch, 1, 5);
    struct batch b;
    fill_batch(&b, m.cfg.V);
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, 11);
    loss_ws_init(&w, &m.cfg, b.N);
    const float *hN = lm_forward(&m, &a, b.tokens, b.cu, b.nseq, b.N);
    float *packed = xmalloc((size_t)b.N * m.cfg.C * sizeof(float));
    memcpy(packed, hN, (size_t)b.N * m.cfg.C * sizeof(float));
    double worst = 0;
    for (int s = 0; s < b.nseq; s++) {
        int T = b.cu[s + 1] - b.cu[s], cu[2] = {0, T};
        const float *h1 = lm_forward(&m, &a, b.tokens + b.cu[s], cu, 1, T);
        for (size_t i = 0; i < (size_t)T * m.cfg.C; i++)
            worst = fmax(worst, fabs(h1[i] - packed[(size_t)b.cu[s] * m.cfg.C + i]));
    }
    CHECK_MSG(worst < 1e-5, "%s: packed and separate sequences differ by %g", arch, worst);
    free(packed), loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), model_free(&m);
}

// A forward-only arena (layers share their buffers) gives the training arena's hidden states and
// prefilled keys/values bit for bit with the training products, also with a longer batch planned
// than used; with its own row-invariant products (the default) each sequence's hidden states are
// bitwise those it gets alone, and within float rounding of the training forward's.
static void check_forward_only(const char *arch)
{
    struct model m;
    tiny_model(&m, arch, 1, 8);
    struct batch b;
    fill_batch(&b, m.cfg.V);
    struct lm_acts tr, fo;
    lm_acts_init(&tr, &m.cfg, b.N, 11);
    lm_acts_init_forward(&fo, &m.cfg, b.N + 5, 16);
    CHECK(fo.row_invariant && !tr.row_invariant);
    fo.row_invariant = false;
    struct lm_cache ct, cf;
    lm_cache_init(&ct, &m.cfg, b.nseq, 16);
    lm_cache_init(&cf, &m.cfg, b.nseq, 16);
    int slot[16];
    ASSERT(b.nseq <= 16);
    for (int s = 0; s < b.nseq; s++) slot[s] = b.nseq - 1 - s;
    size_t n = (size_t)b.N * m.cfg.C;
    const float *h1 = lm_prefill(&m, &tr, &ct, b.tokens, b.cu, b.nseq, slot);
    const float *h2 = lm_prefill(&m, &fo, &cf, b.tokens, b.cu, b.nseq, slot);
    CHECK_MSG(!memcmp(h1, h2, n * sizeof(float)), "%s: forward-only hN differs from the training arena's", arch);
    size_t kv = (size_t)m.cfg.L * b.nseq * 16 * m.cfg.NKV * m.cfg.hs;
    bool same = true;
    for (int s = 0; s < b.nseq; s++) same &= ct.len[s] == cf.len[s];
    for (int l = 0; l < m.cfg.L; l++)   // compare only the stored positions (the rest is uninitialised)
        for (int s = 0; s < b.nseq; s++) {
            size_t off = (((size_t)l * b.nseq + s) * 16) * m.cfg.NKV * m.cfg.hs, len = (size_t)ct.len[s] * m.cfg.NKV * m.cfg.hs;
            ASSERT(off + len <= kv);
            same &= !memcmp(ct.k + off, cf.k + off, len * sizeof(float)) && !memcmp(ct.v + off, cf.v + off, len * sizeof(float));
        }
    CHECK_MSG(same, "%s: forward-only prefill stores other keys/values", arch);
    // row-invariant: the packed batch against each sequence alone, bit for bit
    fo.row_invariant = true;
    float *packed = xmalloc(n * sizeof(float));
    memcpy(packed, lm_forward(&m, &fo, b.tokens, b.cu, b.nseq, b.N), n * sizeof(float));
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(packed[i] - h1[i]));
    CHECK_MSG(worst < 1e-4, "%s: row-invariant forward differs from the training forward by %g", arch, worst);
    bool alone = true;
    for (int s = 0; s < b.nseq; s++) {
        int cu[2] = {0, b.cu[s + 1] - b.cu[s]};
        const float *h = lm_forward(&m, &fo, b.tokens + b.cu[s], cu, 1, cu[1]);
        alone &= !memcmp(h, packed + (size_t)b.cu[s] * m.cfg.C, (size_t)cu[1] * m.cfg.C * sizeof(float));
    }
    CHECK_MSG(alone, "%s: a sequence's row-invariant hidden states depend on the batch around it", arch);
    free(packed);
    lm_cache_free(&ct), lm_cache_free(&cf), lm_acts_free(&tr), lm_acts_free(&fo), batch_free(&b), model_free(&m);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    blas_init(1);
    if (argc == 5 && !strcmp(argv[1], "forward")) return mode_forward(argv[2], argv[3], argv[4]);
    if (argc == 10 && !strcmp(argv[1], "adamw")) return mode_adamw(argv + 2);
    if (argc == 5 && !strcmp(argv[1], "generate")) return mode_generate(argv[2], argv[3], (int)parse_int(argv[4], 1, 4096, "new tokens"));
    if (argc != 1) die(EX_USAGE, "usage: test-lm [forward|adamw|generate ...] (see the file's header)");
    const char *arch[] = {"llama", "qwen2", "qwen3"};
    for (int i = 0; i < 3; i++) {
        check_gradients(arch[i], 0);
        check_gradients(arch[i], 1);
        check_decode(arch[i], false);
        check_decode(arch[i], true);
        check_packing(arch[i]);
        check_forward_only(arch[i]);
    }
    return test_finish("test-lm");
}
