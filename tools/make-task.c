// make-task — the embedded arithmetic task: generates seeded GSM8K-style word problems, converts
// GSM8K (or any {question, answer} JSON lines) to the same prompt formats, and trains the
// byte-level BPE tokenizer that goes with the task (docs/task.md).
//
// stdin:  read only with --convert (JSON lines with string fields question and answer; FILE
//         operand or stdin).
// stdout: JSON lines, one problem per line, in --format qa|prompt|chat (nothing with --tokenizer).
// files:  --tokenizer DIR writes DIR/tokenizer.json and DIR/tokenizer_config.json atomically.
//
// Problems are a pure function of (--seed, the difficulty options, their position): see
// common/arith.h. Train and test splits never share a question (a problem's split is a bit of the
// hash of its text), whatever the seeds.
#include "arith.h"
#include "bpetrain.h"
#include "json.h"
#include "util.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    struct arith_options task;
    enum arith_split split;
    enum arith_format format;
    long long n;
    int convert, strip_calc, vocab;
    const char *tokenizer, *id_prefix, *input;
} opt = {
    .task = {.seed = 1337, .min_steps = 2, .max_steps = 4, .max_operand = 10, .max_value = 99},
    .split = ARITH_TRAIN, .format = ARITH_FORMAT_PROMPT, .n = 1000, .vocab = 512, .id_prefix = "ex",
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: make-task [-hqvV] [--split train|test] [--n n] [--seed n] [--steps k|min-max]\n"
        "                 [--max-operand m] [--max-value v] [--format qa|prompt|chat]\n"
        "       make-task --convert [--format qa|prompt|chat] [--id-prefix p] [--strip-calc] [file]\n"
        "       make-task --tokenizer dir [--vocab n] [--n n] [--seed n] [difficulty options]\n"
        "\n"
        "Writes seeded multi-step arithmetic word problems as JSON lines (GSM8K's conventions:\n"
        "the solution ends \"#### <answer>\", so `score --task gsm8k` judges it).\n"
        "\n"
        "  --split S          train (default) or test; the two never share a question\n"
        "  -n, --n N          problems to write (default 1000; with --tokenizer: problems to train on)\n"
        "  -s, --seed N       random seed (default 1337)\n"
        "  --steps K|A-B      operation sentences per problem, fixed or uniform in [A, B] (default 2-4)\n"
        "  --max-operand M    largest amount added, taken or grouped (default 10)\n"
        "  --max-value V      every intermediate result stays in [1, V] (default 99)\n"
        "  -f, --format F     qa: {id,question,answer}; prompt (default): {id,prompt,completion,answer}\n"
        "                     with prompt \"Q: <question>\\nA:\" and completion \" <answer>\"; chat:\n"
        "                     {id,messages,answer}, the user turn ending with the instruction\n"
        "                     \"" ARITH_INSTRUCTION "\"\n"
        "  --convert          read {question, answer} JSON lines (GSM8K) from FILE or stdin and\n"
        "                     write them in --format; ids are the input's id or <prefix>-<line>\n"
        "  --id-prefix P      id prefix for --convert (default ex)\n"
        "  --strip-calc       --convert: drop GSM8K's calculator annotations <<...>>\n"
        "  --tokenizer DIR    train a byte-level BPE tokenizer on --n train problems (in --format)\n"
        "                     and write DIR/tokenizer.json + DIR/tokenizer_config.json\n"
        "  --vocab N          tokenizer vocabulary size: 256 bytes + merges + <|endoftext|> (default 512)\n"
        "  -q, -v             quieter, more verbose;  -h help;  -V version\n"
        "\n"
        "Exit status: 0 ok, 64 usage (bad option, problem space exhausted), 65 bad --convert input,\n"
        "66 missing --convert file, 73 cannot create the tokenizer directory, 74 I/O error.\n"
        "See docs/task.md.\n");
}

static void parse_steps(const char *s)
{
    const char *dash = strchr(s, '-');
    if (!dash) {
        opt.task.min_steps = opt.task.max_steps = (int)parse_int(s, 1, ARITH_MAX_STEPS, "--steps");
        return;
    }
    char lo[32];
    size_t n = (size_t)(dash - s);
    if (n == 0 || n >= sizeof lo) usage_error("--steps: expected K or A-B, got \"%s\"", s);
    memcpy(lo, s, n);
    lo[n] = '\0';
    opt.task.min_steps = (int)parse_int(lo, 1, ARITH_MAX_STEPS, "--steps");
    opt.task.max_steps = (int)parse_int(dash + 1, 1, ARITH_MAX_STEPS, "--steps");
    if (opt.task.min_steps > opt.task.max_steps) usage_error("--steps: %s is an empty range", s);
}

static void parse_args(int argc, char **argv)
{
    enum { O_SPLIT = 256, O_STEPS, O_MAXOP, O_MAXVAL, O_CONVERT, O_PREFIX, O_STRIP, O_TOK, O_VOCAB };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"split", required_argument, 0, O_SPLIT}, {"n", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'}, {"steps", required_argument, 0, O_STEPS},
        {"max-operand", required_argument, 0, O_MAXOP}, {"max-value", required_argument, 0, O_MAXVAL},
        {"format", required_argument, 0, 'f'}, {"convert", no_argument, 0, O_CONVERT},
        {"id-prefix", required_argument, 0, O_PREFIX}, {"strip-calc", no_argument, 0, O_STRIP},
        {"tokenizer", required_argument, 0, O_TOK}, {"vocab", required_argument, 0, O_VOCAB},
        {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hVqvn:s:f:", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("make-task %s\n", VERSION); tool_exit(0);
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level++; break;
        case O_SPLIT:
            if (!strcmp(optarg, "train")) opt.split = ARITH_TRAIN;
            else if (!strcmp(optarg, "test")) opt.split = ARITH_TEST;
            else usage_error("--split: \"%s\" is not train or test", optarg);
            break;
        case 'n': opt.n = parse_int(optarg, 0, 100000000, "--n"); break;
        case 's': opt.task.seed = (uint64_t)parse_int(optarg, 0, LLONG_MAX, "--seed"); break;
        case O_STEPS: parse_steps(optarg); break;
        case O_MAXOP: opt.task.max_operand = (int)parse_int(optarg, 2, 1000000, "--max-operand"); break;
        case O_MAXVAL: opt.task.max_value = (int)parse_int(optarg, 2, 1000000000, "--max-value"); break;
        case 'f':
            if (!arith_format_parse(optarg, &opt.format)) usage_error("--format: \"%s\" is not qa, prompt or chat", optarg);
            break;
        case O_CONVERT: opt.convert = 1; break;
        case O_PREFIX: opt.id_prefix = optarg; break;
        case O_STRIP: opt.strip_calc = 1; break;
        case O_TOK: opt.tokenizer = optarg; break;
        case O_VOCAB: opt.vocab = (int)parse_int(optarg, 258, 1 << 20, "--vocab"); break;
        case ':': usage_error("option '%s' needs an argument", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        if (!opt.convert) usage_error("unexpected argument \"%s\" (only --convert reads a file)", argv[optind]);
        opt.input = argv[optind++];
        if (optind < argc) usage_error("unexpected argument \"%s\"", argv[optind]);
    }
    if (opt.convert && opt.tokenizer) usage_error("--convert and --tokenizer do not go together");
    const char *err = arith_options_check(&opt.task);
    if (err) usage_error("%s", err);
}

// ---------------------------------------------------------------------------------------------

static void write_line(json_t *o)
{
    if (json_write_line(stdout, o) != 0) die(EX_IOERR, "write <stdout>:");
}

static void generate(void)
{
    struct arith_gen g;
    struct arith_problem p;
    arith_gen_init(&g, &opt.task, opt.split);
    const char *split = opt.split == ARITH_TEST ? "test" : "train";
    for (long long i = 0; i < opt.n; i++) {
        if (!arith_gen_next(&g, &p))
            die(EX_USAGE, "only %lld distinct %s problems found with these options; ask for fewer or "
                "widen --steps/--max-operand/--max-value", i, split);
        char id[64];
        snprintf(id, sizeof id, "%s-%016" PRIx64, split, p.hash);
        json_t *o = arith_record(opt.format, id, p.question, p.solution);
        ASSERT(o);
        write_line(o);
        json_decref(o);
    }
    arith_gen_free(&g);
}

static void convert(void)
{
    const char *name;
    FILE *fp = open_input_path(opt.input, &name);
    struct jsonl_reader r;
    jsonl_open(&r, fp, name, 0);
    json_t *in;
    while ((in = jsonl_next(&r))) {
        const char *q = json_string_value(json_object_get(in, "question"));
        const char *a = json_string_value(json_object_get(in, "answer"));
        if (!q || !a) jsonl_fail(&r, "expected string fields \"question\" and \"answer\"");
        char id[512], *ans = xstrdup(a);
        json_t *jid = json_object_get(in, "id");
        if (json_is_string(jid)) snprintf(id, sizeof id, "%s", json_string_value(jid));
        else if (json_is_integer(jid)) snprintf(id, sizeof id, "%" JSON_INTEGER_FORMAT, json_integer_value(jid));
        else snprintf(id, sizeof id, "%s-%zu", opt.id_prefix, r.line);
        if (opt.strip_calc) arith_strip_calc(ans);
        json_t *o = arith_record(opt.format, id, q, ans);
        ASSERT(o);   // jsonl_next accepted the strings, so they are valid UTF-8
        write_line(o);
        json_decref(o);
        json_decref(in);
        free(ans);
    }
    jsonl_close(&r);
    close_input(fp);
}

// Trains the tokenizer on the text of --n train problems, every string field as --format writes it.
static void train_tokenizer(void)
{
    struct bpe_trainer *t = bpe_trainer_new();
    struct arith_gen g;
    struct arith_problem p;
    arith_gen_init(&g, &opt.task, ARITH_TRAIN);
    long long n = 0;
    for (; n < opt.n && arith_gen_next(&g, &p); n++) {
        json_t *o = arith_record(opt.format, "", p.question, p.solution);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            if (json_is_string(v) && strcmp(k, "id")) bpe_trainer_add(t, json_string_value(v), json_string_length(v));
            if (json_is_array(v))   // chat messages
                for (size_t i = 0; i < json_array_size(v); i++) {
                    json_t *c = json_object_get(json_array_get(v, i), "content");
                    bpe_trainer_add(t, json_string_value(c), json_string_length(c));
                }
        }
        json_decref(o);
    }
    arith_gen_free(&g);
    int merges = bpe_trainer_train(t, opt.vocab - 257, 2);
    bpe_trainer_save(t, opt.tokenizer, "<|endoftext|>", 1024);
    log_info("problems=%lld merges=%d vocab=%d wrote %s/tokenizer.json", n, merges,
             bpe_trainer_vocab_size(t), opt.tokenizer);
    if (bpe_trainer_vocab_size(t) < opt.vocab)
        log_info("the text ran out of pairs seen twice: vocabulary %d < --vocab %d", bpe_trainer_vocab_size(t), opt.vocab);
    bpe_trainer_delete(t);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    parse_args(argc, argv);
    if (opt.tokenizer) train_tokenizer();
    else if (opt.convert) convert();
    else generate();
    tool_exit(0);
}
