// init-model — make a randomly initialised model, or convert a checkpoint, as a Hugging Face
// model directory.
//
// stdin:  not read.
// stdout: nothing (a summary line goes to stderr: parameters and model_xxh3).
// files:  reads --config FILE (a config.json), or a preset, or --from DIR (config.json +
//         model.safetensors or a sharded index); reads --tokenizer PATH (tokenizer.json or its
//         directory). Writes DIR/config.json, DIR/model.safetensors (and, with --tokenizer or
//         --from, the tokenizer files), each file replaced atomically.
//
// Initialisation follows transformers' _init_weights: normal(0, initializer_range) for linear
// and embedding weights, zeros for biases, ones for RMSNorm weights. Element i of tensor t is a
// function of (seed, t, i) only (counter-based splitmix64), see model_init_random().
#include "json.h"
#include "model.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct options {
    const char *config, *preset, *from, *out, *tokenizer, *arch;
    long long seed;
    int vocab_size, dry_run;
    enum safetensors_dtype dtype;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: init-model [-hnqvV] [--seed n] [--dtype f32|bf16] [--tokenizer path]\n"
        "                  [--arch llama|qwen2|qwen3] [--vocab-size n]\n"
        "                  (--config file | --preset name | --from dir) (--out dir | --dry-run)\n"
        "\n"
        "Writes a Hugging Face model directory (config.json, model.safetensors) with random weights\n"
        "(--config or --preset), or converts the checkpoint in --from (f32/bf16/f16, single or sharded).\n"
        "\n"
        "  -c, --config FILE      config.json to instantiate (llama, qwen2, qwen3)\n"
        "  -p, --preset NAME      tiny | small | qwen2.5-0.5b | qwen3-0.6b\n"
        "  -f, --from DIR         load this checkpoint and write it again (tokenizer files are copied)\n"
        "  -o, --out DIR          output directory (created if missing)\n"
        "  -s, --seed N           random seed (default 1337)\n"
        "  -d, --dtype T          f32 (default) or bf16 weights on disk\n"
        "  -t, --tokenizer PATH   tokenizer.json or its directory: copied beside the model; with\n"
        "                         --preset tiny it also sets the vocabulary size\n"
        "      --arch NAME        model_type for a preset (default: the preset's)\n"
        "      --vocab-size N     vocabulary size for a preset\n"
        "  -n, --dry-run          check the config (and with --from the checkpoint), print the\n"
        "                         summary, write nothing\n"
        "  -q, --quiet            warnings and errors only\n"
        "  -v, --verbose          more detail\n"
        "  -h, --help             this help\n"
        "  -V, --version          print the version\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad config or checkpoint, 66 missing input, 73 cannot\n"
        "create --out, 74 I/O error. See docs/models.md.\n");
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longs[] = {
        {"config", required_argument, 0, 'c'}, {"preset", required_argument, 0, 'p'},
        {"from", required_argument, 0, 'f'}, {"out", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'}, {"dtype", required_argument, 0, 'd'},
        {"tokenizer", required_argument, 0, 't'}, {"arch", required_argument, 0, 'A'},
        {"vocab-size", required_argument, 0, 'N'}, {"dry-run", no_argument, 0, 'n'},
        {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    *o = (struct options){.seed = 1337, .dtype = SAFETENSORS_F32};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":c:p:f:o:s:d:t:nqvhV", longs, NULL)) != -1) {
        switch (c) {
        case 'c': o->config = optarg; break;
        case 'p': o->preset = optarg; break;
        case 'f': o->from = optarg; break;
        case 'o': o->out = optarg; break;
        case 's': o->seed = parse_int(optarg, 0, LLONG_MAX, "--seed"); break;
        case 'd':
            if (safetensors_dtype_parse(optarg, &o->dtype) || o->dtype == SAFETENSORS_F16)
                usage_error("--dtype: \"%s\" is not f32 or bf16", optarg);
            break;
        case 't': o->tokenizer = optarg; break;
        case 'A': o->arch = optarg; break;
        case 'N': o->vocab_size = (int)parse_int(optarg, 1, 1 << 22, "--vocab-size"); break;
        case 'n': o->dry_run = 1; break;
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level = LOG_LEVEL_DEBUG; break;
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("init-model %s\n", VERSION); tool_exit(0);
        case ':': usage_error("option '%s' needs an argument", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (!!o->config + !!o->preset + !!o->from != 1) usage_error("give exactly one of --config, --preset, --from");
    if (!o->out && !o->dry_run) usage_error("--out DIR is required");
    if ((o->arch || o->vocab_size) && !o->preset) usage_error("--arch and --vocab-size go with --preset");
    if (o->arch && strcmp(o->arch, "llama") && strcmp(o->arch, "qwen2") && strcmp(o->arch, "qwen3"))
        usage_error("--arch: \"%s\" is not llama, qwen2 or qwen3", o->arch);
}

// The config.json object the options describe (new reference).
static json_t *config_json(const struct options *o)
{
    if (o->config) return json_read_file(o->config);   // 66 missing, 65 not JSON
    int V = o->vocab_size;
    if (!V && o->tokenizer && !strcmp(o->preset, "tiny")) {
        char *tok = xmalloc(strlen(o->tokenizer) + 16);
        sprintf(tok, "%s", o->tokenizer);
        if (!strstr(tok, ".json")) strcat(tok, "/tokenizer.json");
        V = model_tokenizer_vocab_size(tok);
        free(tok);
    }
    json_t *j = model_preset(o->preset, o->arch, V);
    if (!j) usage_error("--preset: unknown preset \"%s\" (tiny, small, qwen2.5-0.5b, qwen3-0.6b)", o->preset);
    return j;
}

static void summary(const struct model_config *c, const char *verb, const char *what,
                    enum safetensors_dtype dtype, const char *hex)
{
    log_info("%s %s: %s L=%d C=%d NH=%d NKV=%d hs=%d FF=%d V=%d%s params=%zu dtype=%s%s%s", verb, what,
             model_arch_name(c->arch), c->L, c->C, c->NH, c->NKV, c->hs, c->FF, c->V,
             c->tied ? " tied" : "", c->num_params, safetensors_dtype_name(dtype),
             hex ? " model_xxh3=" : "", hex ? hex : "");
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct options o;
    parse_args(argc, argv, &o);
    struct model m;
    if (o.from) {
        model_load(&m, o.from);
    } else {
        json_t *j = config_json(&o);
        struct model_config cfg;
        model_config_parse(&cfg, j, o.config ? o.config : o.preset);
        json_decref(j);
        if (o.dry_run) {
            summary(&cfg, "checked", o.config ? o.config : o.preset, o.dtype, NULL);
            model_config_free(&cfg);
            tool_exit(0);
        }
        model_init(&m, &cfg);
        model_init_random(&m, (uint64_t)o.seed);
    }
    // The summary's hash is of the weights as stored, which a later model_load computes too.
    model_round(&m, o.dtype);
    if (!o.dry_run) {
        model_save(&m, o.out, o.dtype);
        if (o.tokenizer) model_copy_tokenizer(o.tokenizer, o.out, 1);
        else if (o.from) model_copy_tokenizer(o.from, o.out, 0);
        model_write_generation_config(&m.cfg, o.out);   // unless the tokenizer's dir had one
    }
    char hex[17];
    hash_hex(model_hash(&m), hex);
    summary(&m.cfg, o.dry_run ? "checked" : "wrote", o.dry_run ? o.from : o.out, o.dtype, hex);
    model_free(&m);
    tool_exit(0);
}
