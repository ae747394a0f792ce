// llama_decode.c — the decode.mjs measurement without node-llama-cpp: plain C on the same prebuilt
// libllama / libggml that node-llama-cpp ships, with a persistent ggml threadpool attached to the
// context, as llama.cpp's own tools (llama-cli, llama-server, llama-bench) do. node-llama-cpp attaches
// none, so ggml creates and joins its T-1 worker threads at every llama_decode.
//
//   llama_decode --model X.gguf [--threads 2] [--batch 8] [--new-tokens 64] [--prompt-len 32]
//                [--seed 1] [--kv f16|f32] [--no-mmap] [--no-threadpool] [--poll N] [--shape NAME] [-v]
//
// Same work as decode.mjs: B prompts of P random ids (the same mulberry32 stream, so the same
// prompts) prefilled in one llama_decode, then N steps that each feed one token per sequence in ONE
// llama_decode of B tokens and pick the next tokens with llama.cpp's greedy sampler. One JSON line.
//
// Build (see run.sh): headers from the llama.cpp source node-llama-cpp bundles (a git bundle in
// node_modules/node-llama-cpp/llama/gitRelease.bundle), libraries from its prebuilt binaries:
//   git clone -q node_modules/node-llama-cpp/llama/gitRelease.bundle SRC
//   cc -O2 -ISRC/include -ISRC/ggml/include -o llama_decode llama_decode.c
//      LIB/libllama.v0.4.0.so LIB/libggml.v0.4.0.so LIB/libggml-base.so -Wl,-rpath,LIB -ldl -lm  (one line)
// (LIB = node_modules/@node-llama-cpp/linux-x64/bins/linux-x64)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static uint32_t mb_state;
static double mulberry32(void)  // as in decode.mjs
{
    uint32_t t = mb_state += 0x6D2B79F5u;
    uint32_t r = (t ^ (t >> 15)) * (1u | t);
    r = (r + (r ^ (r >> 7)) * (61u | r)) ^ r;
    return (double)(r ^ (r >> 14)) / 4294967296.0;
}

static int verbose;
static char backend_log[512];
static int fa_enabled = -1, repacked;
static void log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (strstr(text, "loaded CPU backend")) snprintf(backend_log, sizeof backend_log, "%s", text);
    if (strstr(text, "Flash Attention enabled")) fa_enabled = 1;
    if (strstr(text, "Flash Attention disabled") || strstr(text, "flash_attn            = disabled")) fa_enabled = 0;
    if (strstr(text, "CPU_REPACK model buffer size")) repacked = 1;
    if (verbose || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int find_libdir(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const char *slash = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
    if (slash && strstr(slash, "libllama")) {
        snprintf(data, 4096, "%.*s", (int)(slash - info->dlpi_name), info->dlpi_name);
        return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(const char *msg)
{
    if (msg) fprintf(stderr, "llama_decode: %s\n", msg);
    fprintf(stderr, "usage: llama_decode --model X.gguf [--threads T] [--batch B] [--new-tokens N] [--prompt-len P]\n"
                    "                    [--seed S] [--kv f16|f32] [--no-mmap] [--no-threadpool] [--poll N] [--shape NAME] [-v]\n");
    exit(msg ? 2 : 0);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *shape = NULL, *kv = "f16";
    int T = 2, B = 1, N = 64, P = 32, seed = 1, mmap = 1, use_tp = 1, poll = 50;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (usage("missing value"), ""))
        if (!strcmp(o, "--model")) model_path = VAL();
        else if (!strcmp(o, "--threads")) T = atoi(VAL());
        else if (!strcmp(o, "--batch")) B = atoi(VAL());
        else if (!strcmp(o, "--new-tokens")) N = atoi(VAL());
        else if (!strcmp(o, "--prompt-len")) P = atoi(VAL());
        else if (!strcmp(o, "--seed")) seed = atoi(VAL());
        else if (!strcmp(o, "--kv")) kv = VAL();
        else if (!strcmp(o, "--shape")) shape = VAL();
        else if (!strcmp(o, "--poll")) poll = atoi(VAL());
        else if (!strcmp(o, "--no-mmap")) mmap = 0;
        else if (!strcmp(o, "--no-threadpool")) use_tp = 0;
        else if (!strcmp(o, "-v") || !strcmp(o, "--verbose")) verbose = 1;
        else if (!strcmp(o, "-h") || !strcmp(o, "--help")) usage(NULL);
        else usage("unknown option");
    }
    if (!model_path) usage("--model is required");
    if (T < 1 || B < 1 || N < 1 || P < 1) usage("bad numbers");
    if (strcmp(kv, "f16") && strcmp(kv, "f32")) usage("--kv is f16 or f32");

    llama_log_set(log_cb, NULL);
    // the CPU backend variants sit beside libllama (node-llama-cpp's bins directory)
    char libdir[4096] = ".";
    dl_iterate_phdr(find_libdir, libdir);
    ggml_backend_load_all_from_path(libdir);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    double t0 = now();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) { fprintf(stderr, "llama_decode: cannot load %s\n", model_path); return 1; }
    double load_s = now() - t0;
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int V = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    int per_seq = (P + N + 8 + 255) / 256 * 256;
    cp.n_ctx = (uint32_t)(per_seq * B);
    cp.n_batch = cp.n_ubatch = (uint32_t)(B * P > 512 ? B * P : 512);
    cp.n_seq_max = (uint32_t)B;
    cp.n_threads = cp.n_threads_batch = T;
    cp.type_k = cp.type_v = strcmp(kv, "f32") ? GGML_TYPE_F16 : GGML_TYPE_F32;
    cp.no_perf = false;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "llama_decode: cannot create the context\n"); return 1; }

    struct ggml_threadpool *tp = NULL;
    if (use_tp) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : NULL;
        typedef struct ggml_threadpool *(*tp_new_fn)(struct ggml_threadpool_params *);
        tp_new_fn tp_new = reg ? (tp_new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new") : NULL;
        if (!tp_new) { fprintf(stderr, "llama_decode: no ggml_threadpool_new in the CPU backend\n"); return 1; }
        struct ggml_threadpool_params tpp = ggml_threadpool_params_default(T);
        tpp.poll = (uint32_t)poll;
        tp = tp_new(&tpp);
        llama_attach_threadpool(ctx, tp, NULL);
    }

    struct llama_sampler *smpl = llama_sampler_init_greedy();
    struct llama_batch batch = llama_batch_init(B * P > B ? B * P : B, 0, 1);
    int *next = malloc(sizeof(int) * B), *first = malloc(sizeof(int) * N);
    double *step_ms = malloc(sizeof(double) * N);

    // prefill: B prompts in one llama_decode, logits of each prompt's last token
    mb_state = (uint32_t)seed;
    batch.n_tokens = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < P; j++) {
            int k = batch.n_tokens++;
            batch.token[k] = (llama_token)floor(mulberry32() * (V - 1));
            batch.pos[k] = j;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = b;
            batch.logits[k] = j == P - 1;
        }
    t0 = now();
    if (llama_decode(ctx, batch)) { fprintf(stderr, "llama_decode: prefill failed\n"); return 1; }
    for (int b = 0; b < B; b++) next[b] = llama_sampler_sample(smpl, ctx, b * P + P - 1);
    double prefill_s = now() - t0;
    first[0] = next[0];

    // decode: N steps of B tokens (the last step's sampled tokens are discarded, as in decode.mjs)
    double c0 = cpu_seconds();
    t0 = now();
    for (int s = 0; s < N; s++) {
        double ts = now();
        batch.n_tokens = B;
        for (int b = 0; b < B; b++) {
            batch.token[b] = next[b];
            batch.pos[b] = P + s;
            batch.n_seq_id[b] = 1;
            batch.seq_id[b][0] = b;
            batch.logits[b] = 1;
        }
        if (llama_decode(ctx, batch)) { fprintf(stderr, "llama_decode: decode failed at step %d\n", s); return 1; }
        for (int b = 0; b < B; b++) next[b] = llama_sampler_sample(smpl, ctx, b);
        if (s + 1 < N) first[s + 1] = next[0];
        step_ms[s] = (now() - ts) * 1e3;
    }
    double decode_s = now() - t0;
    double cpu_util = (cpu_seconds() - c0) / decode_s;

    double *sorted = malloc(sizeof(double) * N);
    memcpy(sorted, step_ms, sizeof(double) * N);
    qsort(sorted, N, sizeof(double), cmp_double);
    double med = N % 2 ? sorted[N / 2] : (sorted[N / 2 - 1] + sorted[N / 2]) / 2, mn = sorted[0];

    const char *variant = "unknown";
    static char vbuf[64];
    const char *p = strstr(backend_log, "libggml-cpu-");
    if (p) {
        p += strlen("libggml-cpu-");
        size_t n = strcspn(p, ".");
        snprintf(vbuf, sizeof vbuf, "%.*s", (int)(n < 63 ? n : 63), p);
        variant = vbuf;
    }
    char desc[256];
    llama_model_desc(model, desc, sizeof desc);
    printf("{\"tool\":\"llama.cpp\",\"harness\":\"c\",\"bench\":\"generate\",\"shape\":\"%s\",\"model_desc\":\"%s\","
           "\"threads\":%d,\"batch\":%d,\"prompt_len\":%d,\"new_tokens\":%d,"
           "\"tok_per_s\":%.2f,\"ms_per_step\":%.3f,\"ms_per_step_median\":%.3f,\"ms_per_step_min\":%.3f,"
           "\"tok_per_s_median\":%.2f,\"tok_per_s_best\":%.2f,\"first_step_ms\":%.3f,\"prefill_tok_per_s\":%.1f,"
           "\"decode_s\":%.4f,\"prefill_s\":%.4f,\"load_s\":%.3f,\"cpu_util\":%.2f,\"sampling\":\"greedy\","
           "\"threadpool\":%s,\"poll\":%d,\"flash_attn\":\"%s\",\"kv_cache\":\"%s\",\"mmap\":%s,"
           "\"cpu_backend\":\"%s\",\"weight_repack\":%s,\"first_tokens\":[",
           shape ? shape : model_path, desc, T, B, P, N, B * N / decode_s, decode_s * 1e3 / N, med, mn,
           B * 1e3 / med, B * 1e3 / mn, step_ms[0], B * P / prefill_s, decode_s, prefill_s, load_s, cpu_util,
           use_tp ? "\"persistent\"" : "\"per-graph\"", poll,
           fa_enabled < 0 ? "auto" : fa_enabled ? "auto (enabled)" : "auto (disabled)", kv,
           mmap ? "true" : "false", variant, repacked ? "true" : "false");
    for (int i = 0; i < N && i < 8; i++) printf("%s%d", i ? "," : "", first[i]);
    printf("]}\n");
    if (verbose) {
        fprintf(stderr, "system info: %s\nstep ms:", llama_print_system_info());
        for (int s = 0; s < N; s++) fprintf(stderr, " %.2f", step_ms[s]);
        fprintf(stderr, "\n");
        llama_perf_context_print(ctx);
    }

    llama_batch_free(batch);
    llama_sampler_free(smpl);
    llama_free(ctx);
    if (tp) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        typedef void (*tp_free_fn)(struct ggml_threadpool *);
        tp_free_fn tp_free = (tp_free_fn)ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(dev), "ggml_threadpool_free");
        if (tp_free) tp_free(tp);
    }
    llama_model_free(model);
    llama_backend_free();
    free(next); free(first); free(step_ms); free(sorted);
    return 0;
}
