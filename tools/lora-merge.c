// lora-merge — fold a LoRA adapter into its base model: W' = W + scaling·B·A for every adapted
// projection (PEFT merge_and_unload), written as a plain Hugging Face model directory.
//
// stdin:  not read.
// stdout: nothing (a summary line goes to stderr: adapter, targets, model_xxh3 of the result).
// files:  reads --model DIR (config.json + model.safetensors, f32/bf16/f16, single or sharded)
//         and --adapter DIR (adapter_config.json + adapter_model.safetensors, PEFT layout, see
//         docs/lora.md). Writes --out DIR/config.json and DIR/model.safetensors, each replaced
//         atomically, plus the base model's tokenizer files when it has them.
// Exit: 64 usage, 65 bad config/checkpoint/adapter (or an adapter made for another shape), 66 a
// missing input, 73 cannot create the output, 74 write error.
#include "blas.h"
#include "lora.h"
#include "model.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

struct options {
    const char *model, *adapter, *out;
    enum safetensors_dtype dtype;
    int threads;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: lora-merge [-hqvV] [--dtype f32|bf16] [--threads n] --model dir --adapter dir --out dir\n"
        "\n"
        "Adds scaling * B @ A of every adapted projection to the base model's weights and writes the\n"
        "merged model (loadable by every srlm tool and by transformers without peft).\n"
        "\n"
        "  -m, --model DIR        base model directory\n"
        "  -a, --adapter DIR      adapter directory (adapter_config.json, adapter_model.safetensors)\n"
        "  -o, --out DIR          output model directory (created if missing)\n"
        "  -d, --dtype T          f32 (default) or bf16 weights on disk\n"
        "  -t, --threads N        threads for the products (default: BLIS_NUM_THREADS, else\n"
        "                         OMP_NUM_THREADS, else the CPUs this process may use)\n"
        "  -q, --quiet            warnings and errors only\n"
        "  -v, --verbose          more detail\n"
        "  -h, --help             this help\n"
        "  -V, --version          print the version\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad config, checkpoint or adapter (or an adapter made for\n"
        "another shape), 66 missing input, 73 cannot create --out, 74 I/O error. See docs/lora.md.\n");
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},
        {"out", required_argument, 0, 'o'}, {"dtype", required_argument, 0, 'd'},
        {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    *o = (struct options){.dtype = SAFETENSORS_F32};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:a:o:d:t:qvhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'a': o->adapter = optarg; break;
        case 'o': o->out = optarg; break;
        case 'd':
            if (safetensors_dtype_parse(optarg, &o->dtype) || o->dtype == SAFETENSORS_F16)
                usage_error("--dtype: \"%s\" is not f32 or bf16", optarg);
            break;
        case 't': o->threads = (int)parse_int(optarg, 1, 1024, "--threads"); break;
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level = LOG_LEVEL_DEBUG; break;
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("lora-merge %s\n", VERSION); tool_exit(0);
        case ':': usage_error("option '%s' needs an argument", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->model) usage_error("--model DIR is required");
    if (!o->adapter) usage_error("--adapter DIR is required");
    if (!o->out) usage_error("--out DIR is required");
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct options o;
    parse_args(argc, argv, &o);
    blas_init(o.threads);
    struct model m;
    model_load(&m, o.model);
    struct lora lo;
    lora_load(&lo, &m.cfg, o.adapter);
    lora_merge(&m, &lo);
    m.step = lo.step;
    model_round(&m, o.dtype);
    model_save(&m, o.out, o.dtype);
    model_copy_tokenizer(o.model, o.out, 0);
    model_write_generation_config(&m.cfg, o.out);
    char targets[64] = "", hex[17];
    for (int t = 0; t < LORA_NTARGET; t++)
        if (lo.targets & (1u << t)) {
            if (*targets) strcat(targets, ",");
            strncat(targets, lora_target_name((enum lora_target)t), sizeof targets - strlen(targets) - 1);
        }
    hash_hex(model_hash(&m), hex);
    log_info("merged %s into %s: r=%d alpha=%g scaling=%g targets=%s -> %s dtype=%s model_xxh3=%s", o.adapter,
             o.model, lo.r, lo.alpha, (double)lo.scaling, targets, o.out, safetensors_dtype_name(o.dtype), hex);
    lora_free(&lo);
    model_free(&m);
    tool_exit(0);
}
