// score — adds verifiable rewards to sample records.
//
// stdin (or FILE): a srlm.samples stream (from rollout; srlm.examples is accepted too, for scoring gold
//         or hand-written completions). Each record needs the completion text (--text-field,
//         default "text") and, for the correctness reward, the gold answer (--gold-field,
//         default "answer": a GSM8K solution ending "#### 72", or a bare answer).
// stdout: the same stream, each record with `reward` (the weighted sum), `rewards` (every
//         component by name) and `pred` (the extracted answer) added; all other fields pass through.
// files:  reads FILE when given; --exec CMD runs an external verifier (protocol in common/verifier.h).
//
// Components: correct (1 if the extracted answer is equivalent to the gold one, else 0), format
// (1 for "<think>...</think> answer"), length (DAPO soft overlong penalty, needs --max-len), exec
// (the external verifier's reward). Weights: --reward correct=1,format=0.1 (default correct=1, or
// exec=1 with --exec).
#include "rec.h"
#include "reward.h"
#include "util.h"
#include "verifier.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C_CORRECT, C_FORMAT, C_LENGTH, C_EXEC, NCOMP };
static const char *comp_name[NCOMP] = {"correct", "format", "length", "exec"};

static struct {
    const char *task, *text_field, *gold_field, *exec, *reward_spec;
    double weight[NCOMP];
    bool used[NCOMP];
    long max_len, overlong_buffer, exec_batch;
    double exec_timeout;
    size_t max_record_bytes;
} opt = {"gsm8k", "text", "answer", NULL, NULL, {0}, {0}, 0, 0, 16, 10.0, 0};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: score [-hqvV] [--task gsm8k|none] [--reward name=w,...] [--text-field name]\n"
        "             [--gold-field name] [--max-len n] [--overlong-buffer n] [--exec cmd]\n"
        "             [--exec-timeout s] [--exec-batch n] [--max-record-bytes n] [file]\n"
        "\n"
        "Adds verifiable rewards to a srlm.samples stream (file, or stdin when none or \"-\").\n"
        "  --task T              gsm8k (default): correctness against --gold-field; none: no gold\n"
        "  --reward SPEC         component weights, e.g. correct=1,format=0.1,length=1\n"
        "                        (components: correct format length exec; default correct=1)\n"
        "  --text-field NAME     completion text field (default text)\n"
        "  --gold-field NAME     gold answer field (default answer)\n"
        "  --max-len N           completion tokens at which the length penalty reaches -1\n"
        "  --overlong-buffer N   tokens before --max-len where the penalty starts (default max-len/4)\n"
        "  --exec CMD            external verifier: JSON lines in, one reward per line out\n"
        "  --exec-timeout S      seconds allowed per sample (default 10)\n"
        "  --exec-batch N        samples per verifier run (default 16)\n"
        "  --max-record-bytes N  largest input record (default 64M)\n"
        "  -q, -v                quieter, more verbose;  -h help;  -V version\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad input (a record without its text or gold answer),\n"
        "66 missing file, 70 the --exec verifier failed, 74 I/O error. See docs/rl.md.\n");
}

static void parse_reward_spec(const char *spec)
{
    char *s = xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) usage_error("--reward: expected name=weight, got \"%s\"", tok);
        *eq = '\0';
        int c = -1;
        for (int i = 0; i < NCOMP; i++)
            if (!strcmp(tok, comp_name[i])) c = i;
        if (c < 0) usage_error("--reward: unknown component \"%s\" (correct, format, length, exec)", tok);
        opt.weight[c] = parse_float(eq + 1, -1e6, 1e6, "--reward");
        opt.used[c] = true;
    }
    free(s);
}

// Leaves optind at the FILE operand, if any (main opens it).
static void parse_args(int argc, char **argv)
{
    enum { O_TASK = 256, O_REWARD, O_TEXT, O_GOLD, O_MAXLEN, O_BUF, O_EXEC, O_ETIME, O_EBATCH, O_MAXREC };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"task", required_argument, 0, O_TASK}, {"reward", required_argument, 0, O_REWARD},
        {"text-field", required_argument, 0, O_TEXT}, {"gold-field", required_argument, 0, O_GOLD},
        {"max-len", required_argument, 0, O_MAXLEN}, {"overlong-buffer", required_argument, 0, O_BUF},
        {"exec", required_argument, 0, O_EXEC}, {"exec-timeout", required_argument, 0, O_ETIME},
        {"exec-batch", required_argument, 0, O_EBATCH}, {"max-record-bytes", required_argument, 0, O_MAXREC},
        {0, 0, 0, 0}};
    long buffer = -1;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hVqv", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("score %s\n", VERSION); tool_exit(0);
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level++; break;
        case O_TASK: opt.task = optarg; break;
        case O_REWARD: opt.reward_spec = optarg; break;
        case O_TEXT: opt.text_field = optarg; break;
        case O_GOLD: opt.gold_field = optarg; break;
        case O_MAXLEN: opt.max_len = parse_int(optarg, 1, 1 << 24, "--max-len"); break;
        case O_BUF: buffer = parse_int(optarg, 0, 1 << 24, "--overlong-buffer"); break;
        case O_EXEC: opt.exec = optarg; break;
        case O_ETIME: opt.exec_timeout = parse_float(optarg, 0.001, 86400, "--exec-timeout"); break;
        case O_EBATCH: opt.exec_batch = parse_int(optarg, 1, 4096, "--exec-batch"); break;
        case O_MAXREC: opt.max_record_bytes = parse_size(optarg, 1024, (size_t)1 << 32, "--max-record-bytes"); break;
        default:
            if (optopt) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (strcmp(opt.task, "gsm8k") && strcmp(opt.task, "none"))
        usage_error("--task: unknown task \"%s\" (gsm8k, none)", opt.task);
    if (opt.reward_spec) parse_reward_spec(opt.reward_spec);
    else {
        if (opt.exec) opt.used[C_EXEC] = true, opt.weight[C_EXEC] = 1;
        else opt.used[C_CORRECT] = strcmp(opt.task, "none") != 0, opt.weight[C_CORRECT] = 1;
    }
    if (opt.used[C_EXEC] && !opt.exec) usage_error("--reward uses exec but no --exec CMD was given");
    if (opt.exec && !opt.used[C_EXEC]) opt.used[C_EXEC] = true, opt.weight[C_EXEC] = 1;
    if (opt.used[C_CORRECT] && !strcmp(opt.task, "none")) usage_error("--reward correct needs --task gsm8k");
    if (opt.used[C_LENGTH] && !opt.max_len) usage_error("--reward length needs --max-len");
    opt.overlong_buffer = buffer >= 0 ? buffer : opt.max_len / 4;
    if (opt.overlong_buffer > opt.max_len) usage_error("--overlong-buffer %ld exceeds --max-len %ld", opt.overlong_buffer, opt.max_len);
}

// ---------------------------------------------------------------------------------------------

static void pack_options(struct rec_writer *w, void *ctx)
{
    rec_pack_key(w, "options");
    int n = 0;
    for (int i = 0; i < NCOMP; i++) n += opt.used[i];
    rec_pack_map(w, 5);
    rec_pack_key(w, "task"); rec_pack_str(w, opt.task);
    rec_pack_key(w, "text_field"); rec_pack_str(w, opt.text_field);
    rec_pack_key(w, "gold_field"); rec_pack_str(w, opt.gold_field);
    rec_pack_key(w, "exec"); if (opt.exec) rec_pack_str(w, opt.exec); else rec_pack_nil(w);
    rec_pack_key(w, "reward");
    rec_pack_map(w, (uint32_t)n);
    for (int i = 0; i < NCOMP; i++)
        if (opt.used[i]) { rec_pack_key(w, comp_name[i]); rec_pack_double(w, opt.weight[i]); }
}

// Gold answer as text: a string field, or a number written back as text.
static char *gold_text(const struct rec_reader *r, const msgpack_object *rec)
{
    const msgpack_object *g = rec_need(r, rec, opt.gold_field);
    char buf[64];
    if (g->type == MSGPACK_OBJECT_STR) return rec_get_str(r, rec, opt.gold_field);
    if (g->type == MSGPACK_OBJECT_POSITIVE_INTEGER) snprintf(buf, sizeof buf, "%llu", (unsigned long long)g->via.u64);
    else if (g->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) snprintf(buf, sizeof buf, "%lld", (long long)g->via.i64);
    else if (g->type == MSGPACK_OBJECT_FLOAT64 || g->type == MSGPACK_OBJECT_FLOAT32) snprintf(buf, sizeof buf, "%.17g", g->via.f64);
    else rec_fail(r, "field \"%s\": expected str or number, got %s", opt.gold_field, rec_type_name(g->type));
    return xstrdup(buf);
}

// Completion length in tokens: the trained tokens of the record (0 if it carries no tokens).
static long completion_len(const struct rec_reader *r, const msgpack_object *rec)
{
    const msgpack_object *m = rec_get(rec, "mask");
    if (!m) return 0;
    int32_t *mask;
    size_t n = rec_get_i32_array(r, rec, "mask", 0, 1, &mask);
    long k = 0;
    for (size_t i = 0; i < n; i++) k += mask[i];
    free(mask);
    return k;
}

// One record's rewards, held until the batch's external verifier (if any) has answered.
struct scored {
    msgpack_sbuffer raw;                 // the record, re-packed: the borrowed object dies soon
    double comp[NCOMP];
    char pred[256];
    bool has_pred;
    struct verifier_result exec;
};

// The completion text. A model may generate a NUL byte (byte-level tokenizers have a token for
// it); it carries no answer, so it reads as a space rather than failing the whole stream.
static char *completion_text(const struct rec_reader *r, const msgpack_object *rec)
{
    const msgpack_object *v = rec_need(r, rec, opt.text_field);
    if (v->type != MSGPACK_OBJECT_STR)
        rec_fail(r, "field \"%s\": expected str, got %s", opt.text_field, rec_type_name(v->type));
    char *text = xmalloc(v->via.str.size + 1);
    for (uint32_t i = 0; i < v->via.str.size; i++) text[i] = v->via.str.ptr[i] ? v->via.str.ptr[i] : ' ';
    text[v->via.str.size] = '\0';
    return text;
}

static void score_local(const struct rec_reader *r, const msgpack_object *rec, struct scored *s, json_t *line)
{
    char *text = completion_text(r, rec);
    s->has_pred = reward_extract(text, s->pred, sizeof s->pred);
    if (opt.used[C_CORRECT]) {
        char *gold = gold_text(r, rec), g[256];
        if (!reward_extract(gold, g, sizeof g)) rec_fail(r, "field \"%s\": no answer found in the gold text", opt.gold_field);
        s->comp[C_CORRECT] = s->has_pred && reward_equivalent(s->pred, g) ? 1.0 : 0.0;
        if (line) json_object_set_new(line, "gold", json_string(g));
        free(gold);
    }
    if (opt.used[C_FORMAT]) s->comp[C_FORMAT] = reward_format(text);
    if (opt.used[C_LENGTH]) s->comp[C_LENGTH] = reward_overlong(completion_len(r, rec), opt.max_len, opt.overlong_buffer);
    if (line) {
        const msgpack_object *id = rec_get(rec, "id"), *k = rec_get(rec, "sample");
        if (id && id->type == MSGPACK_OBJECT_STR) json_object_set_new(line, "id", json_stringn(id->via.str.ptr, id->via.str.size));
        if (k && k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) json_object_set_new(line, "sample", json_integer((json_int_t)k->via.u64));
        json_t *t = json_string(text);
        if (!t) rec_fail(r, "field \"%s\": invalid UTF-8", opt.text_field);
        json_object_set_new(line, "text", t);
    }
    free(text);
}

static void write_scored(struct rec_writer *w, struct scored *s)
{
    static const char *skip[] = {"reward", "rewards", "pred", NULL};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    ASSERT(msgpack_unpack_next(&u, s->raw.data, s->raw.size, &off) == MSGPACK_UNPACK_SUCCESS);
    double total = 0;
    int ncomp = 0;
    for (int i = 0; i < NCOMP; i++) {
        if (!opt.used[i]) continue;
        if (i == C_EXEC) s->comp[i] = s->exec.reward;
        total += opt.weight[i] * s->comp[i];
        ncomp++;
    }
    rec_record_begin(w, rec_count_passthrough(&u.data, skip) + 2 + s->has_pred);
    rec_pack_passthrough(w, &u.data, skip);
    rec_pack_key(w, "reward");
    rec_pack_double(w, total);
    rec_pack_key(w, "rewards");
    rec_pack_map(w, (uint32_t)(ncomp + s->exec.nextra));
    for (int i = 0; i < NCOMP; i++)
        if (opt.used[i]) { rec_pack_key(w, comp_name[i]); rec_pack_double(w, s->comp[i]); }
    for (int i = 0; i < s->exec.nextra; i++) {
        char name[48];
        snprintf(name, sizeof name, "exec.%s", s->exec.extra_name[i]);
        rec_pack_key(w, name);
        rec_pack_double(w, s->exec.extra_value[i]);
    }
    if (s->has_pred) { rec_pack_key(w, "pred"); rec_pack_str(w, s->pred); }
    rec_record_end(w);
    msgpack_unpacked_destroy(&u);
}

// Runs the verifier over a batch (when --exec), writes the batch, and resets it.
static void flush_batch(struct rec_writer *w, struct scored *b, size_t n, char *input, size_t input_len)
{
    if (n == 0) return;
    if (opt.exec) {
        struct verifier_result res[4096];
        char err[256];
        if (!verifier_run(opt.exec, input, input_len, n, opt.exec_timeout, res, err, sizeof err))
            die(EX_SOFTWARE, "verifier `%s`: %s", opt.exec, err);
        for (size_t i = 0; i < n; i++) b[i].exec = res[i];
    }
    for (size_t i = 0; i < n; i++) {
        write_scored(w, &b[i]);
        msgpack_sbuffer_destroy(&b[i].raw);
    }
    rec_flush(w);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    parse_args(argc, argv);
    static const char *schemas[] = {"srlm.samples", "srlm.examples", NULL};
    struct rec_reader r;
    struct rec_writer w;
    const char *name;
    FILE *fp = open_input_operand(argc, argv, optind, &name);
    rec_reader_open(&r, fp, name, opt.max_record_bytes);
    const msgpack_object *hdr = rec_read_header(&r, schemas, "score reads the output of rollout (or tokenize)");
    const msgpack_object *schema = rec_get(hdr, "schema");
    char *schema_name = xmalloc(schema->via.str.size + 1);
    memcpy(schema_name, schema->via.str.ptr, schema->via.str.size);
    schema_name[schema->via.str.size] = '\0';
    rec_writer_open(&w, stdout);
    rec_write_header(&w, schema_name, hdr, 1, pack_options, NULL);

    size_t batch = opt.exec ? (size_t)opt.exec_batch : 1, n = 0, nrec = 0, input_len = 0, input_cap = 0;
    struct scored *b = xcalloc(batch, sizeof *b);
    char *input = NULL;
    double sum = 0;
    msgpack_object rec;
    while (rec_reader_next_data(&r, &rec)) {
        struct scored *s = &b[n];
        memset(s, 0, sizeof *s);
        json_t *line = opt.exec ? json_object() : NULL;
        score_local(&r, &rec, s, line);
        msgpack_sbuffer_init(&s->raw);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &s->raw, msgpack_sbuffer_write);
        if (msgpack_pack_object(&pk, rec) != 0) die(EX_OSERR, "out of memory");
        if (line) {
            char *js = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
            size_t L = strlen(js);
            if (input_len + L + 2 > input_cap) input = xrealloc(input, input_cap = 2 * (input_len + L + 2));
            memcpy(input + input_len, js, L);
            input_len += L;
            input[input_len++] = '\n';
            free(js);
            json_decref(line);
        }
        sum += s->comp[C_CORRECT];
        nrec++;
        if (++n == batch) { flush_batch(&w, b, n, input, input_len); n = 0, input_len = 0; }
    }
    flush_batch(&w, b, n, input, input_len);
    rec_write_end(&w);
    if (opt.used[C_CORRECT]) log_info("records=%zu correct=%.4f", nrec, nrec ? sum / (double)nrec : 0.0);
    free(b);
    free(input);
    free(schema_name);
    rec_reader_close(&r);
    close_input(fp);
    tool_exit(0);
}
