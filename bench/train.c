// train.c — srlm training throughput: one optimizer step = lm_forward + cross-entropy (chunked
// log-softmax gather, loss.h) + lm_backward + global-norm clipping + AdamW, exactly the work of
// bench/torch_train.py (same shapes, random weights std 0.02, random tokens, every token but the
// first of each sequence a target, clip 1.0, AdamW lr 1e-4 wd 0.01).
//
//   build/bench/train --shape tiny|small|qwen0.5b [--threads T] [--seq 512] [--batch B]
//                     [--steps S] [--warmup 1] [--peak GFLOPS] [--config config.json]
//
// Prints one JSON line: tok_per_s (B*seq tokens per step over the timed steps, as the torch
// yardstick counts them), step_ms (mean) and step_ms_min, gflops_per_s (model FLOPs, see below),
// frac_peak (gflops_per_s / --peak, the sgemm peak from bench/sgemm at the same thread count; 0 when
// not given), peak_rss_mb (getrusage: parameters + gradients + two AdamW moments + activations),
// and a per-phase split of the best step (forward, loss, backward, optimizer) in ms.
//
// FLOPs counted per step (the useful work, no recomputation):
//   6 · P_mm · tokens   P_mm = parameters that multiply activations: every layer's projections
//                       and the lm_head (V·C; with tied embeddings the one matrix counts once as
//                       lm_head; the input embedding is a lookup and counts nothing)
// + attention: per layer and sequence 4·NH·hs·T(T+1)/2 forward (QKᵀ and PV over the causal
//   triangle), 3x that for forward + backward.
// torch_train.py reports 6·(all params)·tokens; tok_per_s is the figure to compare.
//
// Shapes: bench/shapes.h (the dictionaries of bench/torch_train.py); --config FILE takes
// any config.json instead (bench/run.sh passes `torch_train.py --print-config` output to be sure).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "blas.h"
#include "lm.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "util.h"

#include "shapes.h"

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    const char *shape = "small", *config = NULL;
    int threads = 1, seq = 512, batch = 1, steps = 3, warmup = 1;
    double peak = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage_error("%s: missing value", o);
        if (!strcmp(o, "--shape")) shape = v;
        else if (!strcmp(o, "--config")) config = v;
        else if (!strcmp(o, "--threads")) threads = (int)parse_int(v, 1, 256, o);
        else if (!strcmp(o, "--seq")) seq = (int)parse_int(v, 2, 1 << 20, o);
        else if (!strcmp(o, "--batch")) batch = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--steps")) steps = (int)parse_int(v, 1, 1 << 20, o);
        else if (!strcmp(o, "--warmup")) warmup = (int)parse_int(v, 0, 1 << 20, o);
        else if (!strcmp(o, "--peak")) peak = parse_float(v, 0, 1e9, o);
        else usage_error("unknown option %s", o);
        i++;
    }
    blas_init(threads);

    struct model_config cfg;
    load_shape(&cfg, shape, config);
    struct model m;
    model_init(&m, &cfg);
    model_init_random(&m, 1337);
    const struct model_config *c = &m.cfg;
    size_t P = c->num_params;
    float *gmem = model_alloc_buffer(c), *mom1 = model_alloc_buffer(c), *mom2 = model_alloc_buffer(c);
    struct model_params grads;
    model_params_attach(&grads, c, gmem);

    int N = batch * seq;
    struct lm_acts acts;
    lm_acts_init(&acts, c, N, seq);
    struct loss_ws ws;
    loss_ws_init(&ws, c, N);
    int *tokens = xmalloc((size_t)N * sizeof(int)), *mask = xmalloc((size_t)N * sizeof(int));
    int *cu = xmalloc((size_t)(batch + 1) * sizeof(int));
    for (int s = 0; s <= batch; s++) cu[s] = s * seq;
    for (int i = 0; i < N; i++) mask[i] = 1;
    struct adamw_config ac = { .lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01 };

    // model FLOPs per step
    double qd = (double)c->NH * c->hs, kd = (double)c->NKV * c->hs;
    double p_layer = qd * c->C + 2 * kd * c->C + c->C * qd + 3.0 * c->FF * c->C;
    double p_mm = c->L * p_layer + (double)c->V * c->C;
    double att = 3.0 * c->L * batch * 4.0 * c->NH * c->hs * (seq * (seq + 1.0) / 2.0);
    double flops = 6.0 * p_mm * N + att;

    double total = 0, best = 1e30, ph_best[4] = {0}, loss_first = 0;
    for (int it = 0; it < warmup + steps; it++) {
        for (int i = 0; i < N; i++)
            tokens[i] = (int)(rng_uniform(rng_key(1337, (uint64_t)it, (uint64_t)i, 0)) * c->V);
        double t0 = now_seconds();
        if (it == 0)
            memset(gmem, 0, P * sizeof(float));   // later steps: zeroed by adamw_step
        const float *hN = lm_forward(&m, &acts, tokens, cu, batch, N);
        double t1 = now_seconds();
        int M = loss_targets(&ws, tokens, mask, cu, batch);
        double loss = loss_ce(&m, &grads, &ws, hN, N, M, (double)M) / M;
        double t2 = now_seconds();
        lm_backward(&m, &grads, &acts, ws.dh);
        double t3 = now_seconds();
        // the trainer's optimizer step (trainer.c): the global norm, then one fused pass that
        // clips, updates and zeroes the gradients for the next step
        const float *gb[1] = { gmem };
        size_t gn[1] = { P };
        adamw_step(m.params_memory, gmem, mom1, mom2, P, &ac, ac.lr, it + 1, clip_scale(grad_norm(gb, gn, 1), 1.0));
        double t4 = now_seconds();
        if (it == 0) loss_first = loss;
        if (it >= warmup) {
            double dt = t4 - t0;
            total += dt;
            if (dt < best) {
                best = dt;
                ph_best[0] = t1 - t0, ph_best[1] = t2 - t1, ph_best[2] = t3 - t2, ph_best[3] = t4 - t3;
            }
        }
    }
    double tps = (double)N * steps / total, gf = flops * steps / total * 1e-9;
    printf("{\"tool\":\"srlm\",\"bench\":\"train\",\"shape\":\"%s\",\"threads\":%d,\"seq\":%d,\"batch\":%d,"
           "\"steps\":%d,\"params\":%zu,\"tok_per_s\":%.2f,\"tok_per_s_best\":%.2f,\"step_ms\":%.1f,"
           "\"step_ms_min\":%.1f,\"gflops_per_s\":%.1f,\"gflops_per_s_best\":%.1f,\"peak_gflops\":%.1f,"
           "\"frac_peak\":%.3f,\"frac_peak_best\":%.3f,\"loss_first\":%.4f,\"peak_rss_mb\":%.1f,"
           "\"phase_ms\":{\"forward\":%.1f,\"loss\":%.1f,\"backward\":%.1f,\"optim\":%.1f},\"arch\":\"%s\"}\n",
           config ? config : shape, threads, seq, batch, steps, P, tps, N / best, 1000 * total / steps,
           1000 * best, gf, flops / best * 1e-9, peak, peak > 0 ? gf / peak : 0,
           peak > 0 ? flops / best * 1e-9 / peak : 0, loss_first, peak_rss_mb(),
           1000 * ph_best[0], 1000 * ph_best[1], 1000 * ph_best[2], 1000 * ph_best[3], blas_arch_name());
    free(tokens), free(mask), free(cu), free(gmem), free(mom1), free(mom2);
    loss_ws_free(&ws);
    lm_acts_free(&acts);
    model_free(&m);
    return 0;
}
