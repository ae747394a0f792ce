// sft-step — supervised fine-tuning and distillation of a model on a stream of examples.
//
// stdin:  a srlm.examples stream (from tokenize; with teacher_ids / teacher_logprobs from
//         teacher-logits for --loss kd), or a srlm.samples stream (samples are examples too);
//         or the FILE operand instead of stdin (needed for --epochs > 1: it is re-read).
// stdout: a srlm.metrics stream: one "metrics" record per optimizer step, one "checkpoint"
//         record per checkpoint (common/trainer.h).
// files:  reads --model DIR (config.json, weights, tokenizer.json); writes checkpoints to
//         --out DIR (model.safetensors, config.json, tokenizer files, state-<step>/ with the
//         optimizer state), each file atomically. --resume continues from --out.
//
// Batching: records are packed without padding into micro-batches of at most --batch-tokens
// tokens, in input order; --grad-accum micro-batches make one optimizer step. A step's records are
// buffered first, so its loss is the mean over ALL trained tokens of the step whatever the split
// (each micro-batch divides by the step's total). Records with no trained token are skipped.
// Losses and their formulas: docs/training.md; common/kd.h for distillation.
// Under mpirun (docs/scaling.md): micro-batch j of each step is computed by rank j mod N, the
// gradients are summed over the ranks, and rank 0 alone reads the input and writes.
#include "dist.h"
#include "kd.h"
#include "lm.h"
#include "loss.h"
#include "rec.h"
#include "trainer.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct trainer_options topt;
static struct {
    const char *input;
    bool kd;                  // --loss kd
    struct kd_config kdc;
    double alpha;             // --kd-alpha: weight of the CE term
    long batch_tokens, grad_accum, max_len, epochs;
    bool truncate;
} opt = {NULL, false, {KD_FKL, 0.5, 1.0}, 0.0, 4096, 1, 0, 1, false};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sft-step [-hqvV] --model DIR --out DIR [options] [FILE]\n"
        "\n"
        "Trains --model on the examples of a srlm.examples (or srlm.samples) stream, from FILE or\n"
        "stdin; writes srlm.metrics records on stdout and checkpoints to --out.\n"
        "\n"
        "  --loss L             ce (default): cross-entropy on the trained tokens;\n"
        "                       kd: distillation from the stream's teacher top-k (teacher-logits);\n"
        "                       fkl | rkl | jsd: --loss kd with that --kd\n"
        "  --kd D               fkl (default) | rkl | jsd   divergence on the teacher's top-k ids\n"
        "  --kd-beta B          JSD interpolation beta in (0, 1) (default 0.5)\n"
        "  --kd-temperature T   distillation temperature (default 1); the KD term is scaled by T^2\n"
        "  --kd-alpha A         loss = A*CE + (1-A)*T^2*KD (default 0)\n"
        "  --batch-tokens N     tokens per micro-batch, packed without padding (default 4096)\n"
        "  --grad-accum M       micro-batches per optimizer step (default 1)\n"
        "  --max-len N          longest record (default min(--batch-tokens, the model's\n"
        "                       max_position_embeddings)); longer is an error unless --truncate\n"
        "  --truncate           cut longer records to --max-len tokens\n"
        "  --epochs N           passes over FILE (a regular file; default 1)\n");
    trainer_usage(f);
    fprintf(f, "  -h, --help  this help;  -V, --version  print the version\n"
               "\nExit status: 0 ok, 64 usage, 65 bad input (malformed stream, wrong schema, token out of\n"
               "range, another tokenizer), 66 missing model or input, 70 non-finite loss or gradient, 71 out\n"
               "of memory, 73 cannot write --out, 74 I/O error.\n");
}

static void parse_args(int argc, char **argv)
{
    enum { O_LOSS = 256, O_KD, O_BETA, O_TEMP, O_ALPHA, O_BT, O_GA, O_MAXLEN, O_TRUNC, O_EPOCHS, O_EPS };
    static const struct option lo[] = {
        TRAINER_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"loss", required_argument, 0, O_LOSS}, {"kd", required_argument, 0, O_KD},
        {"kd-beta", required_argument, 0, O_BETA}, {"kd-temperature", required_argument, 0, O_TEMP},
        {"kd-alpha", required_argument, 0, O_ALPHA}, {"batch-tokens", required_argument, 0, O_BT},
        {"grad-accum", required_argument, 0, O_GA}, {"max-len", required_argument, 0, O_MAXLEN},
        {"truncate", no_argument, 0, O_TRUNC}, {"epochs", required_argument, 0, O_EPOCHS},
        {"eps", required_argument, 0, O_EPS},
        {0, 0, 0, 0}};
    trainer_options_default(&topt);
    bool kd_opts = false, beta = false;
    int c, d;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hVqv", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("sft-step %s\n", VERSION); tool_exit(0);
        case O_LOSS:
            if (!strcmp(optarg, "ce")) opt.kd = false;
            else if (!strcmp(optarg, "kd")) opt.kd = true;
            else if ((d = kd_div_parse(optarg)) >= 0) opt.kd = true, opt.kdc.div = (enum kd_div)d;
            else usage_error("--loss: \"%s\" is not ce, kd, fkl, rkl or jsd", optarg);
            break;
        case O_KD:
            if ((d = kd_div_parse(optarg)) < 0) usage_error("--kd: \"%s\" is not fkl, rkl or jsd", optarg);
            opt.kdc.div = (enum kd_div)d, kd_opts = true;
            break;
        case O_BETA: opt.kdc.beta = parse_float(optarg, 1e-6, 1 - 1e-6, "--kd-beta"), kd_opts = beta = true; break;
        case O_TEMP: opt.kdc.temperature = parse_float(optarg, 1e-3, 1e3, "--kd-temperature"), kd_opts = true; break;
        case O_ALPHA: opt.alpha = parse_float(optarg, 0, 1, "--kd-alpha"), kd_opts = true; break;
        case O_BT: opt.batch_tokens = (long)parse_int(optarg, 2, 1 << 24, "--batch-tokens"); break;
        case O_GA: opt.grad_accum = (long)parse_int(optarg, 1, 1 << 20, "--grad-accum"); break;
        case O_MAXLEN: opt.max_len = (long)parse_int(optarg, 2, 1 << 24, "--max-len"); break;
        case O_TRUNC: opt.truncate = true; break;
        case O_EPS:   // in the GRPO literature and TRL, epsilon is a clip range: say which is which
            usage_error("--eps is ambiguous: AdamW's epsilon is --adam-eps (rl-step's --eps is the "
                        "ratio clip range)");
        case O_EPOCHS: opt.epochs = (long)parse_int(optarg, 1, 1 << 20, "--epochs"); break;
        case ':': usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (trainer_parse_option(&topt, c, optarg)) break;
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) opt.input = argv[optind++];
    if (optind < argc) usage_error("too many operands (one input file at most)");
    trainer_options_check(&topt);
    if (kd_opts && !opt.kd) usage_error("--kd, --kd-beta, --kd-temperature and --kd-alpha need --loss kd");
    if (beta && opt.kdc.div != KD_JSD) usage_error("--kd-beta goes with --kd jsd");
    if (opt.max_len > opt.batch_tokens)
        usage_error("--max-len %ld exceeds --batch-tokens %ld (a record must fit a micro-batch)", opt.max_len, opt.batch_tokens);
}

// ---------------------------------------------------------------------------------------------
// the input

// One example, copied out of its (borrowed) record.
struct example {
    int n, P;                 // tokens, trained positions
    int *tokens, *mask;       // (n)
    int32_t *tids;            // (P, K) teacher ids (kd)
    float *tlp;               // (P, K) teacher log-probs (kd)
};

static void example_free(struct example *e)
{
    free(e->tokens), free(e->mask), free(e->tids), free(e->tlp);
    memset(e, 0, sizeof *e);
}

// What the stream must agree with, from the header and the model.
struct input_ctx {
    const struct trainer *t;
    int V;                    // the model's embedding rows
    long long stream_vocab;   // header vocab_size, or -1
    char stream_tok[17];      // header tokenizer_xxh3, or ""
    int K;                    // teacher top-k (kd), 0 until known
    double tscale;            // teacher temperature / loss temperature
    long max_len;
};

static void hdr_hex(const msgpack_object *v, char out[17])
{
    out[0] = '\0';
    if (v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == 16) {
        memcpy(out, v->via.str.ptr, 16);
        out[16] = '\0';
    }
}

static void check_header(const struct rec_reader *r, const msgpack_object *h, struct input_ctx *in)
{
    const struct trainer *t = in->t;
    char mtok[17] = "";
    if (t->has_tok_hash) hash_hex(t->tok_hash, mtok);
    hdr_hex(rec_header_find(h, "tokenizer_xxh3"), in->stream_tok);
    const msgpack_object *vs = rec_header_find(h, "vocab_size");
    in->stream_vocab = vs && vs->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)vs->via.u64 : -1;
    if (mtok[0] && in->stream_tok[0] && strcmp(mtok, in->stream_tok))
        die(EX_DATAERR, "%s: tokenizer mismatch: the stream was tokenized with tokenizer_xxh3 %s "
            "(vocab_size %lld), but %s/tokenizer.json has xxh3 %s (vocab_size %d)", r->name,
            in->stream_tok, in->stream_vocab, topt.model_dir, mtok, t->tok_vocab);
    if (in->stream_vocab > in->V)
        die(EX_DATAERR, "%s: the stream's vocab_size %lld exceeds the model's %d embedding rows (%s)",
            r->name, in->stream_vocab, in->V, topt.model_dir);
    if (!opt.kd) return;
    const msgpack_object *te = rec_header_find(h, "teacher");
    if (!te || te->type != MSGPACK_OBJECT_MAP)
        die(EX_DATAERR, "%s: --loss kd needs teacher log-probs, but the header has no \"teacher\" "
            "(run teacher-logits before sft-step)", r->name);
    char ttok[17];
    hdr_hex(rec_get(te, "tokenizer_xxh3"), ttok);
    const char *stu = mtok[0] ? mtok : in->stream_tok;
    if (ttok[0] && stu[0] && strcmp(ttok, stu))
        die(EX_DATAERR, "%s: the teacher's tokenizer (tokenizer_xxh3 %s) differs from the student's "
            "(%s: %s)", r->name, ttok, mtok[0] ? topt.model_dir : "the stream's", stu);
    const msgpack_object *k = rec_get(te, "top_k"), *tt = rec_get(te, "temperature");
    if (k && k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) in->K = (int)k->via.u64;
    double tau = 1.0;
    if (tt && (tt->type == MSGPACK_OBJECT_FLOAT64 || tt->type == MSGPACK_OBJECT_FLOAT32)) tau = tt->via.f64;
    else if (tt && tt->type == MSGPACK_OBJECT_POSITIVE_INTEGER) tau = (double)tt->via.u64;
    if (!(tau > 0)) die(EX_DATAERR, "%s: header teacher.temperature %g is not positive", r->name, tau);
    in->tscale = tau / opt.kdc.temperature;
}

// Shape of tensor field key: requires [P, K] (K > 0); returns K.
static int teacher_k(const struct rec_reader *r, const msgpack_object *rec, const char *key, int P)
{
    const msgpack_object *v = rec_need(r, rec, key), *s;
    if (v->type != MSGPACK_OBJECT_MAP || !(s = rec_get(v, "shape")) || s->type != MSGPACK_OBJECT_ARRAY ||
        s->via.array.size != 2 || s->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        s->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        rec_fail(r, "field \"%s\": expected a 2-d tensor [P, K]", key);
    if ((long long)s->via.array.ptr[0].via.u64 != P)
        rec_fail(r, "field \"%s\": %llu rows, but the record has %d trained positions (mask = 1)", key,
                 (unsigned long long)s->via.array.ptr[0].via.u64, P);
    uint64_t K = s->via.array.ptr[1].via.u64;
    if (K < 1 || K > 4096) rec_fail(r, "field \"%s\": top-k %llu not in [1, 4096]", key, (unsigned long long)K);
    return (int)K;
}

static void read_teacher(const struct rec_reader *r, const msgpack_object *rec, struct input_ctx *in,
                         struct example *e, int P_all)
{
    int K = teacher_k(r, rec, "teacher_ids", P_all);
    if (in->K && K != in->K) rec_fail(r, "field \"teacher_ids\": top-k %d, but the stream's is %d", K, in->K);
    in->K = K;
    if (teacher_k(r, rec, "teacher_logprobs", P_all) != K)
        rec_fail(r, "field \"teacher_logprobs\": shape differs from teacher_ids");
    rec_get_i32_array(r, rec, "teacher_ids", 0, INT32_MAX, &e->tids);
    rec_get_f32_tensor(r, rec, "teacher_logprobs", true, &e->tlp, NULL, NULL);
    for (long i = 0; i < (long)e->P * K; i++)
        if (e->tids[i] >= in->V)
            rec_fail(r, "field \"teacher_ids\"[%ld]: id %d out of range: the student (%s) has %d "
                     "embedding rows", i, e->tids[i], topt.model_dir, in->V);
    for (int p = 0; p < e->P; p++)      // the top-k ids of a position must be distinct
        for (int a = 0; a < K; a++)
            for (int b = a + 1; b < K; b++)
                if (e->tids[p * K + a] == e->tids[p * K + b])
                    rec_fail(r, "field \"teacher_ids\": position %d lists id %d twice", p, e->tids[p * K + a]);
}

// Parses and validates one record into e (truncating when allowed).
static void read_example(const struct rec_reader *r, const msgpack_object *rec, struct input_ctx *in,
                         struct example *e)
{
    memset(e, 0, sizeof *e);
    int32_t *tok, *mask;
    size_t n = rec_get_i32_array(r, rec, "tokens", 0, INT32_MAX, &tok);
    size_t nm = rec_get_i32_array(r, rec, "mask", 0, 1, &mask);
    if (n == 0) rec_fail(r, "field \"tokens\": empty");
    if (nm != n) rec_fail(r, "field \"mask\": %zu values for %zu tokens", nm, n);
    if (mask[0]) rec_fail(r, "field \"mask\": mask[0] must be 0 (the first token has no prediction)");
    for (size_t i = 0; i < n; i++)
        if (tok[i] >= in->V)
            rec_fail(r, "field \"tokens\"[%zu]: token id %d out of range: the model (%s) has %d "
                     "embedding rows; the stream says vocab_size %lld (tokenizer_xxh3 %s)", i, tok[i],
                     topt.model_dir, in->V, in->stream_vocab, in->stream_tok[0] ? in->stream_tok : "unknown");
    int P_all = 0;
    for (size_t i = 0; i < n; i++) P_all += mask[i];
    if ((long)n > in->max_len) {
        if (!opt.truncate)
            rec_fail(r, "%zu tokens, longer than --max-len %ld (use --truncate to cut)", n, in->max_len);
        n = (size_t)in->max_len;
    }
    e->n = (int)n;
    e->tokens = xmalloc(n * sizeof(int));
    e->mask = xmalloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) e->tokens[i] = tok[i], e->mask[i] = mask[i], e->P += mask[i];
    free(tok), free(mask);
    if (opt.kd) read_teacher(r, rec, in, e, P_all);   // rows beyond the cut are ignored
}

// ---------------------------------------------------------------------------------------------
// steps

// The records of one optimizer step, in micro-batches: batch j is ex[first[j] .. first[j+1]).
struct step {
    struct example *ex;
    int nex, cap;
    int *first;               // (grad_accum + 1)
    int nmb;                  // micro-batches (the last one open)
    long mb_tokens;           // tokens in the open micro-batch
    long long W;              // trained tokens of the step
    long long ntok;           // tokens of the step
};

// Whether an example of n tokens still goes into this step.
static bool step_fits(const struct step *s, int n)
{
    return s->nex == 0 || s->mb_tokens + n <= opt.batch_tokens || s->nmb < opt.grad_accum;
}

static void step_add(struct step *s, struct example *e)
{
    if (s->nex == 0 || s->mb_tokens + e->n > opt.batch_tokens) {
        s->first[s->nmb++] = s->nex;
        s->mb_tokens = 0;
    }
    if (s->nex == s->cap) s->ex = xrealloc(s->ex, (size_t)(s->cap = 2 * s->cap + 8) * sizeof *s->ex);
    s->ex[s->nex++] = *e;
    s->first[s->nmb] = s->nex;
    s->mb_tokens += e->n;
    s->W += e->P;
    s->ntok += e->n;
}

static void step_clear(struct step *s)
{
    for (int i = 0; i < s->nex; i++) example_free(&s->ex[i]);
    s->nex = s->nmb = 0, s->mb_tokens = 0, s->W = s->ntok = 0;
}

struct work {
    struct trainer *t;
    struct lm_acts acts;
    struct loss_ws ws;
    struct kd_ws kw;
    int *tokens, *mask, *cu;  // (batch_tokens) packed micro-batch
    double ce, kd;            // the step's sums
    long long records, input_tokens;
    int K;
};

static void pack_step_metrics(struct rec_writer *w, void *ctx)
{
    struct work *k = ctx;
    rec_pack_key(w, "ce"); rec_pack_double(w, k->ce);
    if (opt.kd) { rec_pack_key(w, "kd"); rec_pack_double(w, k->kd); }
    rec_pack_key(w, "records"); rec_pack_int(w, k->records);
    rec_pack_key(w, "input_tokens"); rec_pack_int(w, k->input_tokens);
}

// One micro-batch: forward, losses, backward. Adds the unscaled sums to k->ce / k->kd.
static void micro_batch(struct work *k, const struct example *ex, int nex, double W, double tscale)
{
    struct trainer *t = k->t;
    int N = 0, P = 0;
    k->cu[0] = 0;
    for (int i = 0; i < nex; i++) {
        memcpy(k->tokens + N, ex[i].tokens, (size_t)ex[i].n * sizeof(int));
        memcpy(k->mask + N, ex[i].mask, (size_t)ex[i].n * sizeof(int));
        N += ex[i].n;
        k->cu[i + 1] = N;
        if (opt.kd) {     // teacher rows in target order (mask[0] = 0, so targets = mask rows)
            memcpy(k->kw.ids + (size_t)P * k->K, ex[i].tids, (size_t)ex[i].P * k->K * sizeof(int));
            memcpy(k->kw.tl + (size_t)P * k->K, ex[i].tlp, (size_t)ex[i].P * k->K * sizeof(float));
        }
        P += ex[i].P;
    }
    const float *hN = lm_forward(&t->model, &k->acts, k->tokens, k->cu, nex, N);
    int M = loss_targets(&k->ws, k->tokens, k->mask, k->cu, nex);
    ASSERT(M == P);
    double alpha = opt.kd ? opt.alpha : 1.0;
    k->ce += loss_ce(&t->model, alpha > 0 ? t->loss_grads : NULL, &k->ws, hN, N, M, W / alpha);
    if (alpha == 0) memset(k->ws.dh, 0, (size_t)N * t->model.cfg.C * sizeof(float));
    if (opt.kd) {
        double T = opt.kdc.temperature, scale = (1 - opt.alpha) * T * T / W;
        k->kd += kd_model_loss(&opt.kdc, &t->model, t->loss_grads->lmw, k->ws.dh, &k->kw, hN,
                               k->ws.rows, M, tscale, scale);
    }
    trainer_backward(t, &k->acts, k->ws.dh);
}

// Runs a buffered step through the trainer; returns trainer_step's answer.
static int run_step(struct work *k, struct step *s, double tscale)
{
    k->ce = k->kd = 0;
    for (int j = 0; j < s->nmb; j++)   // under MPI, rank j mod N takes micro-batch j (dist.h)
        if (dist_mine(j)) micro_batch(k, s->ex + s->first[j], s->first[j + 1] - s->first[j], (double)s->W, tscale);
    double sums[2] = {k->ce, k->kd};
    dist_sum_f64(sums, 2);   // trainer_step sums the gradients the same way
    k->ce = sums[0], k->kd = sums[1];
    double W = (double)s->W, T = opt.kdc.temperature;
    double loss = opt.kd ? (opt.alpha * k->ce + (1 - opt.alpha) * T * T * k->kd) / W : k->ce / W;
    k->ce /= W, k->kd /= W;
    k->records = s->nex, k->input_tokens = s->ntok;
    char progress[64] = "";
    if (opt.kd) snprintf(progress, sizeof progress, "ce=%.4f kd=%.4f", k->ce, k->kd);
    struct trainer_metrics m = {loss, s->W, opt.kd ? 4 : 3, pack_step_metrics, k, opt.kd ? progress : NULL};
    return trainer_step(k->t, &m);
}

// ---------------------------------------------------------------------------------------------
// main loop

static const char *const schemas[] = {"srlm.examples", "srlm.samples", NULL};
#define HINT "sft-step reads the output of tokenize (or teacher-logits, rollout)"

// Opens the input for one pass (the FILE again, or stdin rewound) and reads its header.
static const msgpack_object *input_start(struct rec_reader *r, FILE **fp, int pass)
{
    const char *name;
    if (pass > 0 && !opt.input) {
        if (lseek(fileno(stdin), 0, SEEK_SET) != 0) die(EX_IOERR, "rewind <stdin>:");
        *fp = stdin, name = "<stdin>";
    } else {
        *fp = dist_open_input(opt.input, &name);
    }
    rec_reader_open(r, *fp, name, topt.max_record_bytes);
    return rec_read_header(r, schemas, HINT);
}

static void input_end(struct rec_reader *r, FILE *fp)
{
    rec_reader_close(r);
    close_input(fp);
}

static bool input_is_regular(void)
{
    struct stat sb;
    if (opt.input && strcmp(opt.input, "-")) return stat(opt.input, &sb) == 0 && S_ISREG(sb.st_mode);
    return fstat(fileno(stdin), &sb) == 0 && S_ISREG(sb.st_mode);
}

// Optimizer steps of the whole run (all epochs), for a schedule: one pass over the file that
// forms the steps exactly as training does. Validates every record on the way.
static long count_steps(struct input_ctx *in)
{
    struct rec_reader r;
    FILE *fp;
    input_start(&r, &fp, 0);
    struct step s = {.first = xmalloc((size_t)(opt.grad_accum + 1) * sizeof(int))};
    long steps = 0;
    msgpack_object rec;
    struct example e;
    while (rec_reader_next_data(&r, &rec)) {
        read_example(&r, &rec, in, &e);
        int n = e.n, P = e.P;
        example_free(&e);
        if (P == 0) continue;
        if (!step_fits(&s, n)) steps++, step_clear(&s);
        struct example stub = {.n = n, .P = P};
        step_add(&s, &stub);
    }
    steps += s.nex > 0;
    step_clear(&s);
    free(s.ex), free(s.first);
    input_end(&r, fp);
    return steps * opt.epochs;
}

static void pack_tool_options(struct rec_writer *w, void *ctx)
{
    const struct input_ctx *in = ctx;
    rec_pack_key(w, "loss"); rec_pack_str(w, opt.kd ? "kd" : "ce");
    rec_pack_key(w, "kd"); rec_pack_str(w, kd_div_name(opt.kdc.div));
    rec_pack_key(w, "kd_beta"); rec_pack_double(w, opt.kdc.beta);
    rec_pack_key(w, "kd_temperature"); rec_pack_double(w, opt.kdc.temperature);
    rec_pack_key(w, "kd_alpha"); rec_pack_double(w, opt.kd ? opt.alpha : 1.0);
    rec_pack_key(w, "batch_tokens"); rec_pack_int(w, opt.batch_tokens);
    rec_pack_key(w, "grad_accum"); rec_pack_int(w, opt.grad_accum);
    rec_pack_key(w, "max_len"); rec_pack_int(w, in->max_len);
    rec_pack_key(w, "truncate"); rec_pack_bool(w, opt.truncate);
    rec_pack_key(w, "epochs"); rec_pack_int(w, opt.epochs);
}

// One pass over the input. Returns 0 when --steps is reached.
static int run_epoch(struct trainer *t, struct work *k, struct input_ctx *in, struct step *s,
                     struct rec_writer *w, int pass)
{
    struct rec_reader r;
    FILE *fp;
    const msgpack_object *hdr = input_start(&r, &fp, pass);
    check_header(&r, hdr, in);
    if (pass == 0) trainer_begin(t, w, hdr, 10, pack_tool_options, in);
    if (t->epoch >= opt.epochs || trainer_done(t)) {   // a finished run resumed: nothing to do
        input_end(&r, fp);
        return 0;
    }
    long long consumed = 0, skip = t->data_pos;
    int more = 1;
    msgpack_object rec;
    struct example e;
    while (more) {
        int got = rec_reader_next_data(&r, &rec);
        if (got) {
            read_example(&r, &rec, in, &e);
            if (++consumed <= skip || e.P == 0) { example_free(&e); continue; }
            if (step_fits(s, e.n)) { step_add(s, &e); continue; }
        }
        if (s->nex) {        // the step is complete (or the input ended): train on it
            if (opt.kd && !k->kw.ids) kd_ws_init(&k->kw, &t->model.cfg, (int)opt.batch_tokens, k->K = in->K);
            t->data_pos = consumed - got;
            more = run_step(k, s, in->tscale);
            step_clear(s);
        }
        if (!got) break;
        if (more) step_add(s, &e);   // e opens the next step
        else example_free(&e);
    }
    input_end(&r, fp);
    return more;
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    dist_init(argc, argv);
    parse_args(argc, argv);
    bool regular = dist_bcast_ll(dist_rank() == 0 && input_is_regular());   // rank 0 has the input
    if (dist_size() > opt.grad_accum)
        log_warn("%d ranks, but --grad-accum %ld: each step has at most %ld micro-batches, so %ld "
                 "ranks sit idle (set --grad-accum to a multiple of the ranks)", dist_size(),
                 opt.grad_accum, opt.grad_accum, dist_size() - opt.grad_accum);
    if (opt.epochs > 1 && !regular)
        usage_error("--epochs %ld needs a regular file as input (FILE or < FILE): a pipe cannot be re-read", opt.epochs);
    struct model_config cfg;   // the shape, before trainer_init (a continued run has --continue's)
    const char *mdir = topt.model_dir ? topt.model_dir : topt.continue_dir;
    char *cpath = xmalloc(strlen(mdir) + 16);
    sprintf(cpath, "%s/config.json", mdir);
    model_config_load(&cfg, cpath);
    free(cpath);
    struct input_ctx in = {.V = cfg.V, .stream_vocab = -1, .tscale = 1.0 / opt.kdc.temperature};
    in.max_len = opt.max_len ? opt.max_len : (opt.batch_tokens < cfg.max_pos ? opt.batch_tokens : cfg.max_pos);
    model_config_free(&cfg);
    if (topt.schedule != LR_CONSTANT && !topt.steps && regular) topt.steps = count_steps(&in);
    in.K = 0;

    struct trainer t;
    trainer_init(&t, &topt);
    topt = t.opt;   // the options in force: --continue fills in the run's (model, lr, ...)
    in.t = &t;
    struct work k = {.t = &t};
    trainer_acts_init(&t, &k.acts, (int)opt.batch_tokens, (int)in.max_len);
    loss_ws_init(&k.ws, &t.model.cfg, (int)opt.batch_tokens);
    k.tokens = xmalloc((size_t)opt.batch_tokens * sizeof(int));
    k.mask = xmalloc((size_t)opt.batch_tokens * sizeof(int));
    k.cu = xmalloc((size_t)(opt.batch_tokens + 1) * sizeof(int));
    struct step s = {.first = xmalloc((size_t)(opt.grad_accum + 1) * sizeof(int))};
    struct rec_writer w;
    rec_writer_open(&w, stdout);

    for (int pass = 0; pass == 0 || t.epoch < opt.epochs; pass++) {
        if (!run_epoch(&t, &k, &in, &s, &w, pass)) break;
        t.epoch++, t.data_pos = 0;
    }
    trainer_finish(&t);
    step_clear(&s);
    free(s.ex), free(s.first), free(k.tokens), free(k.mask), free(k.cu);
    if (k.kw.ids) kd_ws_free(&k.kw);
    loss_ws_free(&k.ws);
    lm_acts_free(&k.acts);
    tool_exit(0);
}
