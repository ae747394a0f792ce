// evaluate — summarises a scored sample stream: pass@k (unbiased estimator), maj@k (majority vote
// over extracted answers) and greedy accuracy, each with a 95% confidence interval (docs/eval.md).
//
// input:  the FILE operand or stdin: a scored srlm.samples stream (rollout | score), or a scored
//         srlm.examples stream: groups
//         of samples per prompt, contiguous, identified by `id`. Per record it reads
//         `rewards.correct` (else `reward`), `pred` (the extracted answer, for maj@k), and when
//         present `sample` / `group_size` (checked) and `reward` (its mean is reported).
// stdout: a srlm.metrics stream holding one record of kind "eval" (default), or the same record
//         as one JSON line (--json), or CSV rows (--csv). A table goes to stderr (not with -q).
// files:  none (no model: evaluate reads the rewards score wrote).
#include "progress.h"
#include "evalstats.h"
#include "json.h"
#include "rec.h"
#include "rng.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_K 32

static struct {
    long k[MAX_K];
    int nk;
    double threshold;
    int bootstrap, greedy, format;   // format: 0 msgpack, 1 json, 2 csv
    uint64_t seed;
    const char *label, *input;
    size_t max_record_bytes;
} opt = {.threshold = 0.5, .bootstrap = 1000, .seed = 1337, .max_record_bytes = REC_DEFAULT_MAX_BYTES};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: evaluate [-hqvV] [--json | --csv] [--greedy] [--k k1,k2,...] [--threshold t]\n"
        "                [--bootstrap n] [--seed n] [--label name] [--max-record-bytes n] [FILE]\n"
        "\n"
        "Summarises a scored srlm.samples stream (G samples per prompt; FILE, or stdin when FILE\n"
        "is absent or -) as pass@k, maj@k and greedy accuracy with 95%% confidence intervals.\n"
        "  --k LIST             k values (default 1, 2, 4, ... up to the smallest group, and that size)\n"
        "  --greedy             the stream is greedy decoding: one sample per prompt, reported as\n"
        "                       greedy pass@1\n"
        "  --threshold T        a sample is correct when rewards.correct (else reward) >= T (default 0.5)\n"
        "  --bootstrap N        bootstrap resamples for intervals of fractional metrics (default 1000)\n"
        "  -s, --seed N         bootstrap seed (default 1337)\n"
        "  --label NAME         a name for the run, copied into the output\n"
        "  --json               write the eval record as one JSON line instead of a stream\n"
        "  --csv                write CSV: label,metric,k,value,ci_low,ci_high,ci,prompts,samples\n"
        "  --max-record-bytes N largest input record (default 64M)\n"
        "  --progress-every S   seconds between progress lines when stderr is not a terminal\n"
        "                       (default 30; 0: every group); -q: none\n"
        "  -q, -v               quieter (no table), more verbose;  -h help;  -V version\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad input (a malformed stream, unscored samples, groups\n"
        "out of order or of the wrong size, a k above a group's size), 66 missing FILE,\n"
        "74 I/O error.\n");
}

static void parse_ks(const char *s)
{
    char *dup = xstrdup(s), *save = NULL;
    opt.nk = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (opt.nk == MAX_K) usage_error("--k: at most %d values", MAX_K);
        long k = (long)parse_int(tok, 1, 1 << 20, "--k");
        for (int i = 0; i < opt.nk; i++)
            if (opt.k[i] == k) usage_error("--k: %ld given twice", k);
        opt.k[opt.nk++] = k;
    }
    free(dup);
    if (!opt.nk) usage_error("--k: expected a list such as 1,4,8");
}

static void parse_args(int argc, char **argv)
{
    enum { O_K = 256, O_GREEDY, O_THRESH, O_BOOT, O_LABEL, O_JSON, O_CSV, O_MAXREC, O_PROGRESS };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"k", required_argument, 0, O_K}, {"greedy", no_argument, 0, O_GREEDY},
        {"threshold", required_argument, 0, O_THRESH}, {"bootstrap", required_argument, 0, O_BOOT},
        {"seed", required_argument, 0, 's'}, {"label", required_argument, 0, O_LABEL},
        {"json", no_argument, 0, O_JSON}, {"csv", no_argument, 0, O_CSV},
        {"max-record-bytes", required_argument, 0, O_MAXREC},
        {"progress-every", required_argument, 0, O_PROGRESS}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hVqvs:", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("evaluate %s\n", VERSION); tool_exit(0);
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level++; break;
        case O_K: parse_ks(optarg); break;
        case O_GREEDY: opt.greedy = 1; break;
        case O_THRESH: opt.threshold = parse_float(optarg, -1e9, 1e9, "--threshold"); break;
        case O_BOOT: opt.bootstrap = (int)parse_int(optarg, 1, 1000000, "--bootstrap"); break;
        case 's': opt.seed = (uint64_t)parse_int(optarg, 0, LLONG_MAX, "--seed"); break;
        case O_LABEL: opt.label = optarg; break;
        case O_PROGRESS: progress_parse_every(optarg); break;
        case O_JSON: case O_CSV:
            if (opt.format && opt.format != (c == O_JSON ? 1 : 2)) usage_error("--json and --csv do not go together");
            opt.format = c == O_JSON ? 1 : 2;
            break;
        case O_MAXREC: opt.max_record_bytes = parse_size(optarg, 1024, (size_t)1 << 32, "--max-record-bytes"); break;
        case ':': usage_error("option '%s' needs an argument", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) opt.input = argv[optind];
    if (opt.greedy && opt.nk && (opt.nk > 1 || opt.k[0] != 1)) usage_error("--greedy reports pass@1 only; drop --k");
}

// ---------------------------------------------------------------------------------------------
// reading groups

struct prompt {             // one prompt's result
    long n, c;
    unsigned char *maj_ok;  // maj_ok[k-1]: the majority answer of the first k samples is correct
};

struct state {
    struct prompt *p;
    size_t P, cap;
    char *id;               // current group
    long declared;          // its group_size (0: none)
    char **pred;            // its samples' answers (NULL: none) ...
    unsigned char *ok;      // ... and correctness
    long n, gcap;
    uint64_t *ids;          // hashes of finished groups' ids (open addressing, 0 = empty)
    size_t ids_cap;
    size_t samples, no_answer, reward_n;
    double reward_sum;
};

static bool id_seen_insert(struct state *s, const char *id)
{
    if (2 * (s->P + 1) > s->ids_cap) {
        uint64_t *old = s->ids;
        size_t oc = s->ids_cap;
        s->ids_cap = s->ids_cap ? 2 * s->ids_cap : 1024;
        s->ids = xcalloc(s->ids_cap, sizeof *s->ids);
        for (size_t i = 0; i < oc; i++) {
            if (!old[i]) continue;
            size_t j = (size_t)old[i] & (s->ids_cap - 1);
            while (s->ids[j]) j = (j + 1) & (s->ids_cap - 1);
            s->ids[j] = old[i];
        }
        free(old);
    }
    uint64_t h = rng_hash_str(id, strlen(id));
    if (!h) h = 1;
    size_t j = (size_t)h & (s->ids_cap - 1);
    for (; s->ids[j]; j = (j + 1) & (s->ids_cap - 1))
        if (s->ids[j] == h) return false;
    s->ids[j] = h;
    return true;
}

static void close_group(struct state *s, const char *stream)
{
    if (!s->id) return;
    if (s->declared && s->n != s->declared)
        die(EX_DATAERR, "%s: prompt \"%s\": %ld samples, but group_size is %ld", stream, s->id, s->n, s->declared);
    if (!id_seen_insert(s, s->id))
        die(EX_DATAERR, "%s: prompt \"%s\": its samples are not contiguous (a second group)", stream, s->id);
    if (s->P == s->cap) s->p = xrealloc(s->p, (s->cap = s->cap ? 2 * s->cap : 256) * sizeof *s->p);
    struct prompt *p = &s->p[s->P++];
    p->n = s->n, p->c = 0;
    for (long i = 0; i < s->n; i++) p->c += s->ok[i];
    long *win = xmalloc((size_t)s->n * sizeof *win);
    eval_majority_prefix((const char *const *)s->pred, s->n, win);
    p->maj_ok = xmalloc((size_t)s->n);
    for (long k = 0; k < s->n; k++) p->maj_ok[k] = win[k] >= 0 && s->ok[win[k]];
    free(win);
    for (long i = 0; i < s->n; i++) free(s->pred[i]);
    free(s->id);
    s->id = NULL;
    s->n = 0;
}

// The correctness value of a record: rewards.correct, else reward.
static double correct_value(const struct rec_reader *r, const msgpack_object *rec)
{
    const msgpack_object *rw = rec_get(rec, "rewards");
    if (rw && rw->type == MSGPACK_OBJECT_MAP && rec_get(rw, "correct")) return rec_get_num(r, rw, "correct");
    if (rw && rw->type != MSGPACK_OBJECT_MAP) rec_fail(r, "field \"rewards\": expected map, got %s", rec_type_name(rw->type));
    if (!rec_get(rec, "reward")) rec_fail(r, "no \"rewards.correct\" or \"reward\" field (run score first)");
    return rec_get_num(r, rec, "reward");
}

static void add_sample(struct state *s, const struct rec_reader *r, const msgpack_object *rec)
{
    char *id = rec_get_str(r, rec, "id");
    long declared = rec_get(rec, "group_size") ? (long)rec_get_int(r, rec, "group_size", 1, 1 << 24) : 0;
    if (!s->id || strcmp(id, s->id)) {
        close_group(s, r->name);
        s->id = id, s->declared = declared;
    } else {
        free(id);
        if (declared != s->declared) rec_fail(r, "field \"group_size\": %ld, but earlier samples of \"%s\" say %ld", declared, s->id, s->declared);
    }
    if (s->declared && s->n >= s->declared) rec_fail(r, "prompt \"%s\": more than group_size=%ld samples", s->id, s->declared);
    if (rec_get(rec, "sample")) {
        long k = (long)rec_get_int(r, rec, "sample", 0, 1 << 24);
        if (k != s->n) rec_fail(r, "field \"sample\": %ld, expected %ld (a group's samples come in order)", k, s->n);
    }
    double v = correct_value(r, rec);
    if (!isfinite(v)) rec_fail(r, "correctness value is not finite");
    if (s->n == s->gcap) {
        s->gcap = s->gcap ? 2 * s->gcap : 16;
        s->pred = xrealloc(s->pred, (size_t)s->gcap * sizeof *s->pred);
        s->ok = xrealloc(s->ok, (size_t)s->gcap);
    }
    const msgpack_object *pr = rec_get(rec, "pred");
    s->pred[s->n] = pr && pr->type != MSGPACK_OBJECT_NIL ? rec_get_str(r, rec, "pred") : NULL;
    s->ok[s->n] = v >= opt.threshold;
    s->no_answer += !s->pred[s->n];
    if (rec_get(rec, "reward")) {
        double rw = rec_get_num(r, rec, "reward");
        if (!isfinite(rw)) rec_fail(r, "field \"reward\": not finite");
        s->reward_sum += rw, s->reward_n++;
    }
    s->n++, s->samples++;
}

// ---------------------------------------------------------------------------------------------
// metrics

struct metric {
    char name[32];
    long k;
    double value, lo, hi;
    const char *ci;           // "wilson" or "bootstrap"
};

// Mean of per-prompt values with its interval: Wilson when every value is 0 or 1 by construction
// (binary), else the percentile bootstrap over prompts.
static void summarise(struct metric *m, const double *v, size_t P, bool binary)
{
    double sum = 0;
    for (size_t i = 0; i < P; i++) sum += v[i];
    m->value = sum / (double)P;
    if (binary) {
        eval_wilson(lround(sum), (long)P, EVAL_Z95, &m->lo, &m->hi);
        m->ci = "wilson";
    } else {
        eval_bootstrap(v, P, opt.bootstrap, opt.seed, 0.95, &m->lo, &m->hi);
        m->ci = "bootstrap";
    }
}

static const char *in_name = "<stdin>";   // the input's name, for messages

static int compute(const struct state *s, struct metric *out, long *min_n, long *max_n)
{
    size_t P = s->P;
    *min_n = LONG_MAX, *max_n = 0;
    size_t arg = 0;
    for (size_t i = 0; i < P; i++) {
        if (s->p[i].n < *min_n) *min_n = s->p[i].n, arg = i;
        if (s->p[i].n > *max_n) *max_n = s->p[i].n;
    }
    if (opt.greedy && *max_n > 1) die(EX_DATAERR, "%s: --greedy, but prompts have up to %ld samples", in_name, *max_n);
    long ks[MAX_K];
    int nk = 0;
    if (opt.nk) {
        for (int i = 0; i < opt.nk; i++) {
            if (opt.k[i] > *min_n)
                die(EX_DATAERR, "%s: --k %ld: prompt #%zu has only %ld samples", in_name, opt.k[i], arg + 1, *min_n);
            ks[nk++] = opt.k[i];
        }
    } else {
        for (long k = 1; k <= *min_n && nk < MAX_K - 1; k *= 2) ks[nk++] = k;
        if (ks[nk - 1] != *min_n) ks[nk++] = *min_n;
    }
    double *v = xmalloc(P * sizeof *v);
    int nm = 0;
    for (int j = 0; j < nk; j++) {
        bool binary = true;
        for (size_t i = 0; i < P; i++) {
            v[i] = eval_pass_at_k(s->p[i].n, s->p[i].c, ks[j]);
            binary &= s->p[i].n == ks[j];
        }
        struct metric *m = &out[nm++];
        snprintf(m->name, sizeof m->name, "pass@%ld", ks[j]);
        m->k = ks[j];
        summarise(m, v, P, binary);
    }
    for (int j = 0; j < nk; j++) {
        if (ks[j] < 2) continue;
        for (size_t i = 0; i < P; i++) v[i] = s->p[i].maj_ok[ks[j] - 1];
        struct metric *m = &out[nm++];
        snprintf(m->name, sizeof m->name, "maj@%ld", ks[j]);
        m->k = ks[j];
        summarise(m, v, P, true);
    }
    free(v);
    opt.nk = nk;   // the effective k values, for the output header
    memcpy(opt.k, ks, (size_t)nk * sizeof *ks);
    return nm;
}

// ---------------------------------------------------------------------------------------------
// output

struct summary {
    const struct state *s;
    const struct metric *m;
    int nm;
    long min_n, max_n;
};

static void pack_options(struct rec_writer *w, void *ctx)
{
    (void)ctx;
    rec_pack_key(w, "options");
    rec_pack_map(w, 6);
    rec_pack_key(w, "k");
    rec_pack_array(w, (uint32_t)opt.nk);
    for (int i = 0; i < opt.nk; i++) rec_pack_int(w, opt.k[i]);
    rec_pack_key(w, "threshold"); rec_pack_double(w, opt.threshold);
    rec_pack_key(w, "bootstrap"); rec_pack_int(w, opt.bootstrap);
    rec_pack_key(w, "seed"); rec_pack_uint(w, opt.seed);
    rec_pack_key(w, "greedy"); rec_pack_bool(w, opt.greedy);
    rec_pack_key(w, "label"); if (opt.label) rec_pack_str(w, opt.label); else rec_pack_nil(w);
}

// The eval record as JSON (the msgpack record is packed from it, so the two never differ).
static json_t *eval_json(const struct summary *u)
{
    const struct state *s = u->s;
    json_t *o = json_object(), *ms = json_object();
    json_object_set_new(o, "kind", json_string("eval"));
    json_object_set_new(o, "label", opt.label ? json_string(opt.label) : json_null());
    json_object_set_new(o, "prompts", json_integer((json_int_t)s->P));
    json_object_set_new(o, "samples", json_integer((json_int_t)s->samples));
    json_object_set_new(o, "group_size", json_integer(u->min_n));
    json_object_set_new(o, "group_size_max", json_integer(u->max_n));
    json_object_set_new(o, "greedy", json_boolean(opt.greedy));
    json_object_set_new(o, "reward_mean", s->reward_n ? json_real(s->reward_sum / (double)s->reward_n) : json_null());
    json_object_set_new(o, "no_answer_frac", json_real((double)s->no_answer / (double)s->samples));
    json_object_set_new(o, "confidence", json_real(0.95));
    for (int i = 0; i < u->nm; i++) {
        const struct metric *m = &u->m[i];
        json_t *x = json_object();
        json_object_set_new(x, "k", json_integer(m->k));
        json_object_set_new(x, "value", json_real(m->value));
        json_object_set_new(x, "ci_low", json_real(m->lo));
        json_object_set_new(x, "ci_high", json_real(m->hi));
        json_object_set_new(x, "ci", json_string(m->ci));
        json_object_set_new(ms, m->name, x);
    }
    json_object_set_new(o, "metrics", ms);
    return o;
}


static void write_output(const struct summary *u, const msgpack_object *hdr)
{
    json_t *o = eval_json(u);
    if (opt.format == 1) {
        if (json_write_line(stdout, o) != 0) die(EX_IOERR, "write <stdout>:");
    } else if (opt.format == 2) {
        printf("label,metric,k,value,ci_low,ci_high,ci,prompts,samples\n");
        for (int i = 0; i < u->nm; i++) {
            const struct metric *m = &u->m[i];
            csv_field(stdout, opt.label ? opt.label : "");
            printf(",%s,%ld,%.17g,%.17g,%.17g,%s,%zu,%zu\n", m->name, m->k, m->value, m->lo, m->hi, m->ci,
                   u->s->P, u->s->samples);
        }
    } else {
        struct rec_writer w;
        rec_writer_open(&w, stdout);
        rec_write_header(&w, "srlm.metrics", hdr, 1, pack_options, NULL);
        rec_record_begin(&w, (uint32_t)json_object_size(o));
        json_pack_members(&w, o);
        rec_record_end(&w);
        rec_write_end(&w);
    }
    json_decref(o);
}

static void print_table(const struct summary *u)
{
    const struct state *s = u->s;
    char g[64];
    if (u->min_n == u->max_n) snprintf(g, sizeof g, "%ld", u->min_n);
    else snprintf(g, sizeof g, "%ld-%ld", u->min_n, u->max_n);
    log_info("%s%sprompts=%zu samples=%zu G=%s no_answer=%.4f%s", opt.label ? opt.label : "", opt.label ? ": " : "",
             s->P, s->samples, g, (double)s->no_answer / (double)s->samples, opt.greedy ? " greedy" : "");
    if (s->reward_n) log_info("reward_mean=%.4f", s->reward_sum / (double)s->reward_n);
    log_info("%-16s %-8s %-20s %s", "metric", "value", "95% CI", "method");
    for (int i = 0; i < u->nm; i++) {
        const struct metric *m = &u->m[i];
        char name[48], ci[48];
        snprintf(name, sizeof name, "%.31s%s", m->name, opt.greedy ? " (greedy)" : "");
        snprintf(ci, sizeof ci, "[%.4f, %.4f]", m->lo, m->hi);
        log_info("%-16s %-8.4f %-20s %s", name, m->value, ci, m->ci);
    }
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    parse_args(argc, argv);
    static const char *schemas[] = {"srlm.samples", "srlm.examples", NULL};
    struct rec_reader r;
    FILE *in = open_input_path(opt.input, &in_name);
    rec_reader_open(&r, in, in_name, opt.max_record_bytes);
    const msgpack_object *hdr = rec_read_header(&r, schemas, "evaluate reads the output of score (rollout | score)");
    struct state s = {0};
    msgpack_object rec;
    struct progress pg;
    progress_init(&pg, "samples", -1);
    while (rec_reader_next_data(&r, &rec)) add_sample(&s, &r, &rec), progress_add(&pg, 1, 0);
    progress_end(&pg);
    close_group(&s, r.name);
    if (!s.P) die(EX_DATAERR, "%s: no samples to evaluate", in_name);
    struct metric m[2 * MAX_K + 4];
    struct summary u = {.s = &s, .m = m};
    u.nm = compute(&s, m, &u.min_n, &u.max_n);
    print_table(&u);
    write_output(&u, hdr);
    for (size_t i = 0; i < s.P; i++) free(s.p[i].maj_ok);
    free(s.p), free(s.pred), free(s.ok), free(s.ids);
    rec_reader_close(&r);
    close_input(in);
    tool_exit(0);
}
