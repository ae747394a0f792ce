// test-lora — LoRA adapters (lora.c) and their path through the model (lm.c).
//
// With no arguments: self-checks that need no outside reference — target parsing, the layout and
// PEFT names, PEFT's initialisation (bounds, B = 0, keyed draws), an attached zero adapter changing
// nothing, finite differences of the whole model's cross-entropy against lm_backward_lora for every
// adapter tensor (and for the base weights of the adapted model, which checks that the input
// gradient carries both paths), frozen-base gradients equal to full ones, merge == adapted forward,
// cached decoding with adapters == the training forward, save/load round trips (adapter and
// optimizer state).
// With arguments it is the C side of the PyTorch comparison (tests/cli/lora-torch.sh):
//   test-lora forward MODEL ADAPTER BATCH.json OUT.safetensors   logits, logprobs, loss, grad.<PEFT name>
//   test-lora adamw MODEL ADAPTER BATCH.json OUT_ADAPTER LR WD CLIP STEPS EPS   AdamW on the adapter
//   test-lora init MODEL OUT_ADAPTER R ALPHA TARGETS SEED RSLORA   a fresh adapter, saved (f32)
#include "blas.h"
#include "lm.h"
#include "lora.h"
#include "loss.h"
#include "model.h"
#include "nn.h"
#include "optim.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"

// CE over the batch's targets with whatever adapter is attached to a. When lg is given, adapter
// gradients accumulate into it; when grads is given, base gradients (lm_head included) too.
// Returns the mean loss.
static double ce_step(struct model *m, struct lm_acts *a, struct loss_ws *w, struct model_params *grads,
                      float *lg, const struct batch *b)
{
    const float *hN = lm_forward(m, a, b->tokens, b->cu, b->nseq, b->N);
    int M = loss_targets(w, b->tokens, b->mask, b->cu, b->nseq);
    struct model_params frozen = {0};
    int backward = grads || lg;
    double sum = loss_ce(m, backward ? (grads ? grads : &frozen) : NULL, w, hN, b->N, M, M);
    if (backward) lm_backward_lora(m, grads, lg, a, w->dh);
    return sum / M;
}

// ---------------------------------------------------------------------------------------------
// modes used by the PyTorch comparison

static int mode_forward(char **argv)
{
    struct model m;
    model_load(&m, argv[0]);
    struct lora lo;
    lora_load(&lo, &m.cfg, argv[1]);
    struct batch b;
    batch_load(&b, argv[2], m.cfg.V);
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, batch_tmax(&b));
    lm_acts_set_lora(&a, &lo);
    loss_ws_init(&w, &m.cfg, b.N);
    float *lg = lora_alloc_buffer(&lo);
    float loss = (float)ce_step(&m, &a, &w, NULL, lg, &b);
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
    size_t nt = lo.ntensors;
    struct safetensors_entry *e = xcalloc(nt + 3, sizeof *e);
    char (*names)[128] = xcalloc(nt, sizeof *names);
    e[0] = (struct safetensors_entry){"logits", 2, {b.N, m.cfg.V}, logits};
    e[1] = (struct safetensors_entry){"logprobs", 1, {b.N}, logprobs};
    e[2] = (struct safetensors_entry){"loss", 1, {1}, &loss};
    for (size_t i = 0; i < nt; i++) {
        const struct lora_tensor *t = &lo.tensors[i];
        snprintf(names[i], sizeof names[i], "grad.%s", t->name);
        e[3 + i] = (struct safetensors_entry){names[i], 2, {t->shape[0], t->shape[1]}, lg + t->offset};
    }
    safetensors_write(argv[3], e, nt + 3, SAFETENSORS_F32, NULL);
    free(e), free(names), free(logits), free(logprobs), free(lg);
    loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), lora_free(&lo), model_free(&m);
    return 0;
}

static int mode_adamw(char **argv)
{
    struct model m;
    model_load(&m, argv[0]);
    struct lora lo;
    lora_load(&lo, &m.cfg, argv[1]);
    struct batch b;
    batch_load(&b, argv[2], m.cfg.V);
    struct adamw_config ac = {parse_float(argv[4], 0, 10, "lr"), 0.9, 0.999, parse_float(argv[8], 0, 1, "eps"),
                             parse_float(argv[5], 0, 10, "wd")};
    double clip = parse_float(argv[6], 0, 1e9, "clip");
    int steps = (int)parse_int(argv[7], 1, 1000, "steps");
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, batch_tmax(&b));
    lm_acts_set_lora(&a, &lo);
    loss_ws_init(&w, &m.cfg, b.N);
    float *g = lora_alloc_buffer(&lo), *m1 = lora_alloc_buffer(&lo), *m2 = lora_alloc_buffer(&lo);
    for (int step = 1; step <= steps; step++) {
        memset(g, 0, lo.num_params * sizeof(float));
        double loss = ce_step(&m, &a, &w, NULL, g, &b);
        const float *bufs[1] = {g};
        size_t ns[1] = {lo.num_params};
        double norm = grad_norm(bufs, ns, 1);
        if (clip > 0) scale_buffer(g, lo.num_params, clip_scale(norm, clip));
        adamw_update(lo.params, g, m1, m2, lo.num_params, &ac, ac.lr, step);
        printf("{\"step\": %d, \"loss\": %.9g, \"grad_norm\": %.9g}\n", step, loss, norm);
    }
    lo.step = steps;
    lora_save(&lo, argv[3], SAFETENSORS_F32);
    free(g), free(m1), free(m2);
    loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), lora_free(&lo), model_free(&m);
    return 0;
}

static int mode_init(char **argv)
{
    struct model m;
    model_load(&m, argv[0]);
    struct lora_config lc = {.r = (int)parse_int(argv[2], 1, 4096, "r"), .alpha = parse_float(argv[3], -1e6, 1e6, "alpha"),
                             .rslora = (int)parse_int(argv[6], 0, 1, "rslora"), .base_model = argv[0]};
    if (lora_targets_parse(argv[4], &lc.targets)) die(EX_USAGE, "bad targets \"%s\"", argv[4]);
    struct lora lo;
    lora_init(&lo, &m.cfg, &lc);
    lora_init_random(&lo, (uint64_t)parse_int(argv[5], 0, 1LL << 62, "seed"));
    lora_save(&lo, argv[1], SAFETENSORS_F32);
    lora_free(&lo), model_free(&m);
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
    json_object_set_new(j, "initializer_range", json_real(0.3));
    if (!strcmp(arch, "qwen3")) json_object_set_new(j, "head_dim", json_integer(8));
    struct model_config cfg;
    model_config_parse(&cfg, j, arch);
    json_decref(j);
    model_init(m, &cfg);
    model_init_random(m, (uint64_t)seed);
    for (size_t i = 0; i < m->cfg.num_params; i++) m->params_memory[i] += 0.05f * (float)((i * 2654435761u) % 1000) / 1000.0f;
}

// An adapter whose B is not zero (so that every path carries gradient): PEFT init, then B random.
static void tiny_adapter(struct lora *lo, const struct model *m, unsigned targets, int r, double alpha, int seed)
{
    struct lora_config lc = {.r = r, .alpha = alpha, .targets = targets};
    lora_init(lo, &m->cfg, &lc);
    lora_init_random(lo, (uint64_t)seed);
    for (size_t k = 0; k < lo->ntensors; k++) {
        const struct lora_tensor *t = &lo->tensors[k];
        if (!t->is_b) continue;
        for (size_t e = 0; e < t->numel; e++)
            lo->params[t->offset + e] = 0.3f * (float)((((e + 31 * k) * 2654435761u) % 2001) / 1000.0 - 1.0);
    }
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

static void check_parse(void)
{
    unsigned m = 0;
    CHECK(lora_targets_parse("q,v", &m) == 0 && m == ((1u << LORA_Q) | (1u << LORA_V)));
    CHECK(lora_targets_parse("q_proj,k_proj,down_proj", &m) == 0 && m == ((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_DOWN)));
    CHECK(lora_targets_parse("all", &m) == 0 && m == LORA_ALL);
    CHECK(lora_targets_parse("all-linear", &m) == 0 && m == LORA_ALL);
    CHECK(lora_targets_parse("attn", &m) == 0 && m == 0xfu);
    CHECK(lora_targets_parse("mlp,self_attn.o_proj", &m) == 0 && m == 0x78u);
    m = 12345;
    CHECK(lora_targets_parse("q,,v", &m) == -1 && m == 12345);
    CHECK(lora_targets_parse("", &m) == -1);
    CHECK(lora_targets_parse("qq", &m) == -1);
    CHECK(lora_targets_parse("lm_head", &m) == -1);
    CHECK(!strcmp(lora_target_name(LORA_GATE), "gate_proj"));
}

static void check_layout_and_init(void)
{
    struct model m;
    tiny_model(&m, "qwen3", 1, 3);   // q out 4*8 = 32 != C? (C 32, NH*hs 32); k out 16, FF 48
    struct lora lo;
    struct lora_config lc = {.r = 4, .alpha = 8, .targets = LORA_ALL};
    lora_init(&lo, &m.cfg, &lc);
    CHECK(lo.ntensors == (size_t)m.cfg.L * 14);
    CHECK_NEAR(lo.scaling, 2.0, 0);
    size_t off = 0, expect = 0;
    int C = m.cfg.C, qd = m.cfg.NH * m.cfg.hs, kd = m.cfg.NKV * m.cfg.hs, FF = m.cfg.FF;
    int in[7] = {C, C, C, qd, C, C, FF}, out[7] = {qd, kd, kd, C, FF, FF, C};
    for (int t = 0; t < 7; t++) expect += (size_t)m.cfg.L * 4 * (size_t)(in[t] + out[t]);
    CHECK(lo.num_params == expect);
    int ok = 1;
    for (size_t k = 0; k < lo.ntensors; k++) {
        const struct lora_tensor *t = &lo.tensors[k];
        ok &= t->offset == off;
        off += t->numel;
        ok &= t->shape[0] == (t->is_b ? out[t->target] : 4) && t->shape[1] == (t->is_b ? 4 : in[t->target]);
        ok &= t->layer == (int)(k / 14) && (int)t->target == (int)(k % 14) / 2 && t->is_b == (int)(k % 2);
        ok &= (t->is_b ? lora_b_offset(&lo, t->layer, t->target) : lora_a_offset(&lo, t->layer, t->target)) == t->offset;
    }
    CHECK_MSG(ok, "tensor table inconsistent");
    CHECK(!strcmp(lo.tensors[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    CHECK(!strcmp(lo.tensors[14 + 13].name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    // PEFT init: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, keyed by (seed, tensor, element).
    lora_init_random(&lo, 42);
    int inb = 1, bzero = 1;
    double s1 = 0, s2 = 0;
    size_t na = 0;
    for (size_t k = 0; k < lo.ntensors; k++) {
        const struct lora_tensor *t = &lo.tensors[k];
        double bound = 1.0 / sqrt((double)t->shape[1]);
        for (size_t e = 0; e < t->numel; e++) {
            float x = lo.params[t->offset + e];
            if (t->is_b) { bzero &= x == 0.0f; continue; }
            inb &= fabs(x) <= bound;
            s1 += x / bound, s2 += (x / bound) * (x / bound), na++;
        }
    }
    CHECK(bzero);
    CHECK(inb);
    CHECK_NEAR(s1 / na, 0.0, 0.03);              // U(-1, 1) after dividing by the bound: mean 0
    CHECK_NEAR(s2 / na, 1.0 / 3.0, 0.03);        // variance 1/3
    // Keys do not depend on which other targets are adapted.
    struct lora lq;
    struct lora_config lcq = {.r = 4, .alpha = 8, .targets = (1u << LORA_O)};
    lora_init(&lq, &m.cfg, &lcq);
    lora_init_random(&lq, 42);
    CHECK(!memcmp(lq.params + lora_a_offset(&lq, 1, LORA_O), lo.params + lora_a_offset(&lo, 1, LORA_O),
                  (size_t)4 * qd * sizeof(float)));
    CHECK(lora_a_offset(&lq, 1, LORA_Q) == LORA_ABSENT);
    uint64_t h = lora_hash(&lq);
    lora_init_random(&lq, 43);
    CHECK(lora_hash(&lq) != h);
    lora_free(&lq);
    // rslora scaling
    struct lora_config lcr = {.r = 16, .alpha = 8, .rslora = 1, .targets = 1};
    lora_init(&lq, &m.cfg, &lcr);
    CHECK_NEAR(lq.scaling, 2.0, 1e-7);
    lora_free(&lq);
    lora_free(&lo), model_free(&m);
}

// A freshly initialised adapter (B = 0) leaves the model's output unchanged, bit for bit.
static void check_zero_adapter(void)
{
    struct model m;
    tiny_model(&m, "qwen2", 0, 9);
    struct batch b;
    fill_batch(&b, m.cfg.V);
    struct lm_acts a;
    lm_acts_init(&a, &m.cfg, b.N, 11);
    size_t n = (size_t)b.N * m.cfg.C;
    float *h0 = xmalloc(n * sizeof(float));
    memcpy(h0, lm_forward(&m, &a, b.tokens, b.cu, b.nseq, b.N), n * sizeof(float));
    struct lora lo;
    struct lora_config lc = {.r = 3, .alpha = 16, .targets = LORA_ALL};
    lora_init(&lo, &m.cfg, &lc);
    lora_init_random(&lo, 1);
    lm_acts_set_lora(&a, &lo);
    const float *h1 = lm_forward(&m, &a, b.tokens, b.cu, b.nseq, b.N);
    CHECK_MSG(!memcmp(h0, h1, n * sizeof(float)), "a B = 0 adapter changed the output");
    lm_acts_set_lora(&a, NULL);
    free(h0), lora_free(&lo), lm_acts_free(&a), batch_free(&b), model_free(&m);
}

// Finite differences of the adapted model's loss for the element of largest gradient of every
// adapter tensor, and of every base tensor (computed with the adapter attached).
static void check_gradients(const char *arch, int tied, unsigned targets)
{
    struct model m;
    tiny_model(&m, arch, tied, 7);
    struct lora lo;
    tiny_adapter(&lo, &m, targets, 3, 6.0, 5);
    struct batch b;
    fill_batch(&b, m.cfg.V);
    struct lm_acts a;
    struct loss_ws w;
    lm_acts_init(&a, &m.cfg, b.N, 11);
    lm_acts_set_lora(&a, &lo);
    loss_ws_init(&w, &m.cfg, b.N);
    float *gmem = model_alloc_buffer(&m.cfg), *lg = lora_alloc_buffer(&lo), *lg2 = lora_alloc_buffer(&lo);
    struct model_params g;
    model_params_attach(&g, &m.cfg, gmem);
    ce_step(&m, &a, &w, &g, lg, &b);
    ce_step(&m, &a, &w, NULL, lg2, &b);   // frozen base: same adapter gradients
    CHECK_MSG(!memcmp(lg, lg2, lo.num_params * sizeof(float)), "%s: frozen-base adapter gradients differ", arch);
    int bad = 0;
    for (size_t i = 0; i < lo.ntensors; i++) {
        const struct lora_tensor *t = &lo.tensors[i];
        size_t best = t->offset;
        for (size_t k = t->offset; k < t->offset + t->numel; k++) if (fabsf(lg[k]) > fabsf(lg[best])) best = k;
        float keep = lo.params[best], h = 1e-3f;
        lo.params[best] = keep + h;
        double lp = ce_step(&m, &a, &w, NULL, NULL, &b);
        lo.params[best] = keep - h;
        double lm_ = ce_step(&m, &a, &w, NULL, NULL, &b);
        lo.params[best] = keep;
        double fd = (lp - lm_) / (2 * h);
        if (fabs(fd - lg[best]) > 0.01 * fabs(fd) + 1e-4 || fabs(fd) < 1e-6) {
            bad++;
            fprintf(stderr, "%s tied=%d %s: analytic %.6g, finite difference %.6g\n", arch, tied, t->name, lg[best], fd);
        }
    }
    CHECK_MSG(bad == 0, "%s tied=%d: %d adapter tensors' gradients disagree with finite differences", arch, tied, bad);
    bad = 0;
    size_t nt = model_tensor_count(&m.cfg);
    for (size_t i = 0; i < nt; i++) {
        struct model_tensor t;
        model_tensor_get(&m.cfg, i, &t);
        size_t best = t.offset;
        for (size_t k = t.offset; k < t.offset + t.numel; k++) if (fabsf(gmem[k]) > fabsf(gmem[best])) best = k;
        float keep = m.params_memory[best], h = 1e-3f;
        m.params_memory[best] = keep + h;
        double lp = ce_step(&m, &a, &w, NULL, NULL, &b);
        m.params_memory[best] = keep - h;
        double lm_ = ce_step(&m, &a, &w, NULL, NULL, &b);
        m.params_memory[best] = keep;
        double fd = (lp - lm_) / (2 * h);
        if (fabs(fd - gmem[best]) > 0.01 * fabs(fd) + 1e-4) {
            bad++;
            fprintf(stderr, "%s tied=%d base %s: analytic %.6g, finite difference %.6g\n", arch, tied, t.name, gmem[best], fd);
        }
    }
    CHECK_MSG(bad == 0, "%s tied=%d: %d base tensors' gradients (adapted model) disagree", arch, tied, bad);
    free(gmem), free(lg), free(lg2), loss_ws_free(&w), lm_acts_free(&a), batch_free(&b), lora_free(&lo), model_free(&m);
}

static double max_rel(const float *x, const float *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs(x[i] - ref[i])), r = fmax(r, fabs(ref[i]));
    return d / fmax(r, 1e-30);
}

// The merged model's logits equal the adapted model's; cached decoding with the adapter equals
// the adapted training forward.
static void check_merge_and_decode(const char *arch)
{
    struct model m, mm;
    tiny_model(&m, arch, 0, 11);
    tiny_model(&mm, arch, 0, 11);
    struct lora lo;
    tiny_adapter(&lo, &m, LORA_ALL, 4, 8.0, 3);
    int V = m.cfg.V, C = m.cfg.C, T = 9, P = 4;
    int toks[9];
    for (int t = 0; t < T; t++) toks[t] = (t * 7 + 3) % V;
    struct lm_acts a;
    lm_acts_init(&a, &m.cfg, T, T);
    lm_acts_set_lora(&a, &lo);
    int cu[2] = {0, T};
    float *full = xmalloc((size_t)T * V * sizeof(float)), *merged = xmalloc((size_t)T * V * sizeof(float));
    float *dec = xmalloc((size_t)V * sizeof(float)), *base = xmalloc((size_t)T * V * sizeof(float));
    matmul_forward(full, lm_forward(&m, &a, toks, cu, 1, T), lm_head_weight(&m), NULL, T, C, V);
    lora_merge(&mm, &lo);
    struct lm_acts a2;
    lm_acts_init(&a2, &m.cfg, T, T);
    matmul_forward(merged, lm_forward(&mm, &a2, toks, cu, 1, T), lm_head_weight(&mm), NULL, T, C, V);
    matmul_forward(base, lm_forward(&m, &a2, toks, cu, 1, T), lm_head_weight(&m), NULL, T, C, V);
    double rel = max_rel(merged, full, (size_t)T * V);
    CHECK_MSG(rel < 1e-5, "%s: merged model's logits differ from the adapted model's by %g (relative)", arch, rel);
    CHECK_MSG(max_rel(base, full, (size_t)T * V) > 1e-2, "%s: the test adapter barely changes the logits", arch);
    struct lm_cache c;
    lm_cache_init(&c, &m.cfg, 2, T);
    lm_cache_set_lora(&c, &lo);
    int cp[2] = {0, P}, slot = 1;
    lm_prefill(&m, &a, &c, toks, cp, 1, &slot);
    lm_cache_copy(&c, &m.cfg, 0, 1);
    slot = 0;
    double worst = 0;
    for (int t = P; t < T; t++) {
        lm_decode(&m, &c, &toks[t], &slot, 1, dec);
        for (int j = 0; j < V; j++) worst = fmax(worst, fabs(dec[j] - full[(size_t)t * V + j]));
    }
    CHECK_MSG(worst < 1e-4, "%s: cached decode with the adapter differs from the full forward by %g", arch, worst);
    free(full), free(merged), free(dec), free(base);
    lm_cache_free(&c), lm_acts_free(&a), lm_acts_free(&a2), lora_free(&lo), model_free(&m), model_free(&mm);
}

static void check_files(void)
{
    char dir[] = "/tmp/test-lora.XXXXXX";
    ASSERT(mkdtemp(dir));
    struct model m;
    tiny_model(&m, "llama", 1, 2);
    struct lora lo, back;
    tiny_adapter(&lo, &m, (1u << LORA_Q) | (1u << LORA_V) | (1u << LORA_DOWN), 2, 5.5, 8);
    lo.step = 17;
    lora_save(&lo, dir, SAFETENSORS_F32);
    lora_load(&back, &m.cfg, dir);
    CHECK(back.r == 2 && back.alpha == 5.5 && back.targets == lo.targets && back.step == 17 && !back.rslora);
    CHECK(back.num_params == lo.num_params && !memcmp(back.params, lo.params, lo.num_params * sizeof(float)));
    CHECK(lora_hash(&back) == lora_hash(&lo));
    lora_free(&back);
    lo.step = -1;
    lora_save(&lo, dir, SAFETENSORS_BF16);
    lora_load(&back, &m.cfg, dir);
    int same = back.step == -1;
    for (size_t i = 0; i < lo.num_params; i++) same &= back.params[i] == bf16_to_f32(f32_to_bf16(lo.params[i]));
    CHECK_MSG(same, "bf16 adapter round trip");
    lora_free(&back);
    // optimizer state
    float *m1 = lora_alloc_buffer(&lo), *m2 = lora_alloc_buffer(&lo), *r1 = lora_alloc_buffer(&lo), *r2 = lora_alloc_buffer(&lo);
    for (size_t i = 0; i < lo.num_params; i++) m1[i] = (float)i * 0.5f, m2[i] = 1.0f / (float)(i + 1);
    struct model_state_buf bufs[2] = {{"exp_avg", m1}, {"exp_avg_sq", m2}}, rb[2] = {{"exp_avg", r1}, {"exp_avg_sq", r2}};
    json_t *st = json_pack("{s:s}", "note", "x");
    lora_state_save(dir, &lo, bufs, 2, 9, st);
    json_decref(st);
    st = lora_state_load(dir, &lo, rb, 2, 9);
    CHECK(json_integer_value(json_object_get(st, "step")) == 9);
    CHECK(!strcmp(json_string_value(json_object_get(st, "note")), "x"));
    CHECK(!memcmp(m1, r1, lo.num_params * sizeof(float)) && !memcmp(m2, r2, lo.num_params * sizeof(float)));
    json_decref(st);
    free(m1), free(m2), free(r1), free(r2);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    lora_free(&lo), model_free(&m);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    blas_init(1);
    if (argc == 6 && !strcmp(argv[1], "forward")) return mode_forward(argv + 2);
    if (argc == 11 && !strcmp(argv[1], "adamw")) return mode_adamw(argv + 2);
    if (argc == 9 && !strcmp(argv[1], "init")) return mode_init(argv + 2);
    if (argc != 1) die(EX_USAGE, "usage: test-lora [forward|adamw|init ...] (see the file's header)");
    check_parse();
    check_layout_and_init();
    check_zero_adapter();
    const char *arch[] = {"llama", "qwen2", "qwen3"};
    for (int i = 0; i < 3; i++) {
        check_gradients(arch[i], i != 1, LORA_ALL);
        check_merge_and_decode(arch[i]);
    }
    check_gradients("qwen2", 1, (1u << LORA_Q) | (1u << LORA_V));   // the common q,v choice
    check_files();
    return test_finish("test-lora");
}
