// teacher-logits — adds a teacher model's top-K log-probabilities at every trained position of
// example (or sample) records, for distillation (docs/generation.md).
//
// input:  a srlm.examples or srlm.samples stream (tokenize, rollout, score), from the FILE operand
//         or stdin. Records need tokens and mask.
// stdout: the same stream and schema, each record with two fields added (replacing any earlier
//         ones): for the P positions t with mask[t] = 1, in order,
//           teacher_ids       i32 tensor [P, K]  the teacher's K most likely next tokens
//                                                given tokens[0..t-1], most likely first
//           teacher_logprobs  f32 tensor [P, K]  their log softmax(z / τ), normalised over all
//                                                of the teacher's V logits
//         Ids at or beyond the tokenizer's vocabulary (padding rows of the embedding, e.g.
//         Qwen2.5-7B's 152064 vs 151936 for 0.5B vs 151665 tokenizer ids) are never among the K.
//         The header adds teacher: {model_xxh3, tokenizer_xxh3, vocab_size, top_k, temperature}
//         and options, and nests the input header as upstream.
// files:  reads the teacher model directory (config.json, weights, tokenizer.json) and, with
//         --adapter, a PEFT LoRA adapter directory: the teacher is then base + adapter, merged
//         into the loaded weights once (lora_merge); teacher.model_xxh3 is
//         lora_policy_hash(base, adapter), with base_model_xxh3 and adapter_xxh3 beside it.
//
// Records are packed into forwards of up to --batch-tokens tokens (a longer record runs alone).
// Under mpirun (docs/scaling.md) batch b runs on rank b mod N and rank 0 writes the batches in
// order: the same bytes for any number of ranks.
#include <getopt.h>
#include <math.h>
#include <string.h>

#include "progress.h"
#include "blas.h"
#include "dist.h"
#include "lm.h"
#include "lora.h"
#include "model.h"
#include "nn.h"
#include "rec.h"
#include "tokenizer.h"
#include "util.h"

#define TOPK_MAX 4096
#define LSG_CHUNK 128

static struct {
    const char *model, *adapter, *input;
    int top_k, batch_tokens, threads;
    double temperature;
    size_t max_record_bytes;
} opt = {NULL, NULL, NULL, 0, 1024, 0, 1.0, REC_DEFAULT_MAX_BYTES};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: teacher-logits [-hqvV] [--temperature t] [--batch-tokens n] [--threads n]\n"
        "                      [--max-record-bytes n] [--adapter dir] --model dir --top-k k\n"
        "                      [FILE] > examples\n"
        "\n"
        "Adds the teacher's top-k log-probs (teacher_ids, teacher_logprobs) at every trained\n"
        "position (mask = 1) of a srlm.examples or srlm.samples stream (FILE, or stdin when FILE\n"
        "is absent or -).\n"
        "\n"
        "  -m, --model DIR          teacher model directory (config.json, weights, tokenizer.json)\n"
        "      --adapter DIR        a PEFT LoRA adapter for --model (sft-step --lora-rank): the\n"
        "                           teacher is --model + the adapter\n"
        "  -k, --top-k K            token ids kept per position (1..%d, at most the vocabulary)\n"
        "      --temperature T      log softmax(z / T) (default 1)\n"
        "      --batch-tokens N     tokens per teacher forward (default 1024; memory grows with it)\n"
        "      --threads N          compute threads (default: BLIS_NUM_THREADS / OMP_NUM_THREADS, else\n"
        "                           the CPUs this process may use)\n"
        "      --max-record-bytes N largest input record (default 64M)\n"
        "      --progress-every S   seconds between progress lines when stderr is not a terminal\n"
        "                           (default 30; 0: every batch); -q: none\n"
        "  -q, --quiet              warnings and errors only\n"
        "  -v, --verbose            more detail\n"
        "  -h, --help               print this help and exit\n"
        "  -V, --version            print the version and exit\n"
        "\n"
        "Ids beyond the tokenizer's vocabulary (padded embedding rows) are never in the top k.\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad input (stream, or an adapter that does not fit\n"
        "--model), 66 missing input, model or adapter, 70 non-finite logits, 74 I/O error.\n",
        TOPK_MAX);
}

static void parse_args(int argc, char **argv)
{
    enum { O_TEMP = 256, O_BATCH, O_THREADS, O_MAXREC, O_ADAPTER, O_PROGRESS };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"model", required_argument, 0, 'm'}, {"top-k", required_argument, 0, 'k'},
        {"temperature", required_argument, 0, O_TEMP}, {"batch-tokens", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, O_THREADS}, {"max-record-bytes", required_argument, 0, O_MAXREC},
        {"adapter", required_argument, 0, O_ADAPTER},
        {"progress-every", required_argument, 0, O_PROGRESS}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hVqvm:k:", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("teacher-logits %s\n", VERSION); tool_exit(0);
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level++; break;
        case 'm': opt.model = optarg; break;
        case O_ADAPTER: opt.adapter = optarg; break;
        case O_PROGRESS: progress_parse_every(optarg); break;
        case 'k': opt.top_k = (int)parse_int(optarg, 1, TOPK_MAX, "--top-k"); break;
        case O_TEMP: opt.temperature = parse_float(optarg, 1e-4, 1e4, "--temperature"); break;
        case O_BATCH: opt.batch_tokens = (int)parse_int(optarg, 1, 1 << 24, "--batch-tokens"); break;
        case O_THREADS: opt.threads = (int)parse_int(optarg, 1, 1024, "--threads"); break;
        case O_MAXREC: opt.max_record_bytes = parse_size(optarg, 1024, (size_t)1 << 32, "--max-record-bytes"); break;
        default:
            if (optopt) usage_error("unknown option or missing value '-%c'", optopt);
            usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) opt.input = argv[optind];
    if (!opt.model) usage_error("--model DIR is required");
    if (!opt.top_k) usage_error("--top-k K is required");
}

// ---------------------------------------------------------------------------------------------

struct teacher {
    struct model m;
    struct tokenizer *tok;
    char model_hex[17];            // the teacher: the weights, or lora_policy_hash(base, adapter)
    char base_hex[17], adapter_hex[17];
    int Vt;                        // ids [0, Vt) may be in the top k: min(V, tokenizer vocabulary)
    const msgpack_object *hdr;     // the input header (the reader's)
    struct lm_acts acts;
    int acts_N, acts_T;
    float *scratch;
    size_t scratch_size;
};

// Header: teacher and options only. The input's provenance (tokenizer_xxh3, vocab_size, a
// rollout's model_xxh3 with its options) stays in the upstream chain, where consumers look it up
// (rl-step pairs a model_xxh3 with the options of the same header, so it must not be copied here).
static void pack_header(struct rec_writer *w, void *p)
{
    const struct teacher *t = p;
    rec_pack_key(w, "teacher");
    rec_pack_map(w, opt.adapter ? 7 : 5);
    rec_pack_key(w, "model_xxh3"); rec_pack_str(w, t->model_hex);
    if (opt.adapter) {
        rec_pack_key(w, "base_model_xxh3"); rec_pack_str(w, t->base_hex);
        rec_pack_key(w, "adapter_xxh3"); rec_pack_str(w, t->adapter_hex);
    }
    rec_pack_key(w, "tokenizer_xxh3"); rec_pack_str(w, tokenizer_hash_hex(t->tok));
    rec_pack_key(w, "vocab_size"); rec_pack_int(w, t->m.cfg.V);
    rec_pack_key(w, "top_k"); rec_pack_int(w, opt.top_k);
    rec_pack_key(w, "temperature"); rec_pack_double(w, opt.temperature);
    rec_pack_key(w, "options");
    rec_pack_map(w, opt.adapter ? 6 : 5);
    rec_pack_key(w, "model"); rec_pack_str(w, opt.model);
    if (opt.adapter) { rec_pack_key(w, "adapter"); rec_pack_str(w, opt.adapter); }
    rec_pack_key(w, "top_k"); rec_pack_int(w, opt.top_k);
    rec_pack_key(w, "temperature"); rec_pack_double(w, opt.temperature);
    rec_pack_key(w, "batch_tokens"); rec_pack_int(w, opt.batch_tokens);
    rec_pack_key(w, "vocab_limit"); rec_pack_int(w, t->Vt);
}

// One record of the batch: its bytes (re-read when writing) and its tokens and mask.
struct item {
    msgpack_sbuffer raw;
    int32_t *tokens, *mask;
    int n, P;
};

static void read_item(const struct rec_reader *r, const msgpack_object *rec, const struct teacher *t, struct item *it)
{
    size_t n = rec_get_i32_array(r, rec, "tokens", 0, INT32_MAX, &it->tokens);
    for (size_t i = 0; i < n; i++)
        if (it->tokens[i] >= t->m.cfg.V)
            rec_fail(r, "field \"tokens\"[%zu]: token id %d is beyond the teacher's vocabulary of %d ids (%s)",
                     i, it->tokens[i], t->m.cfg.V, opt.model);
    size_t nm = rec_get_i32_array(r, rec, "mask", 0, 1, &it->mask);
    if (nm != n) rec_fail(r, "field \"mask\": %zu values for %zu tokens", nm, n);
    if (n > 0 && it->mask[0]) rec_fail(r, "field \"mask\"[0]: the first token cannot be trained (nothing predicts it)");
    if (n > (size_t)INT32_MAX / 2) rec_fail(r, "field \"tokens\": %zu tokens is too many", n);
    it->n = (int)n;
    it->P = 0;
    for (size_t i = 0; i < n; i++) it->P += it->mask[i];
    msgpack_sbuffer_init(&it->raw);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &it->raw, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *rec) != 0) die(EX_OSERR, "out of memory");
}

static void reserve_acts(struct teacher *t, int N, int T)
{
    if (N <= t->acts_N && T <= t->acts_T) return;
    if (N < t->acts_N) N = t->acts_N;
    if (T < t->acts_T) T = t->acts_T;
    if (t->acts_N) lm_acts_free(&t->acts);
    lm_acts_init_forward(&t->acts, &t->m.cfg, N, T);
    t->acts_N = N, t->acts_T = T;
}

// Runs the teacher over the batch and writes its records with the teacher fields.
static void run_batch(struct teacher *t, struct rec_writer *w, struct item *b, int nb, long long *ntok)
{
    static const char *skip[] = {"teacher_ids", "teacher_logprobs", NULL};
    const struct model_config *cfg = &t->m.cfg;
    int N = 0, T = 1, M = 0, nseq = 0, K = opt.top_k;
    for (int i = 0; i < nb; i++) {
        N += b[i].n, M += b[i].P;
        if (b[i].n > T) T = b[i].n;
    }
    int *tokens = xmalloc(((size_t)N + 1) * sizeof(int)), *cu = xmalloc(((size_t)nb + 1) * sizeof(int));
    int *rows = xmalloc(((size_t)M + 1) * sizeof(int));
    int *top_ids = xmalloc(((size_t)M * K + 1) * sizeof(int));
    float *top_lp = xmalloc(((size_t)M * K + 1) * sizeof(float));
    float *lse = xmalloc(((size_t)M + 1) * sizeof(float)), *lse_pad = xmalloc(((size_t)M + 1) * sizeof(float));
    int g = 0, m = 0;
    cu[0] = 0;
    for (int i = 0; i < nb; i++) {
        if (b[i].n == 0) continue;   // nothing to run (and nothing trained)
        for (int j = 0; j < b[i].n; j++) {
            tokens[g + j] = b[i].tokens[j];
            if (b[i].mask[j]) rows[m++] = g + j - 1;   // position j is predicted by row j-1
        }
        g += b[i].n;
        cu[++nseq] = g;
    }
    ASSERT(g == N && m == M);
    if (M > 0) {
        reserve_acts(t, N, T);
        const float *hN = lm_forward(&t->m, &t->acts, tokens, cu, nseq, N);
        const float *wlm = lm_head_weight(&t->m);
        float tau = (float)opt.temperature;
        // top-k over the tokenizer's ids [0, Vt), normalised there...
        logsoftmax_gather_forward(NULL, lse, NULL, top_ids, top_lp, K, hN, wlm, rows, NULL, M, 0,
                                  cfg->C, t->Vt, tau, t->scratch, t->scratch_size);
        // ...then renormalised over all V logits: log p = z - lse_V, lse_V = logaddexp(lse, lse_pad)
        if (t->Vt < cfg->V) {
            logsoftmax_gather_forward(NULL, lse_pad, NULL, NULL, NULL, 0, hN, wlm + (size_t)t->Vt * cfg->C,
                                      rows, NULL, M, 0, cfg->C, cfg->V - t->Vt, tau, t->scratch, t->scratch_size);
            for (int r = 0; r < M; r++) {
                double a = lse[r], c = lse_pad[r], hi = a > c ? a : c;
                float shift = (float)(hi + log(exp(a - hi) + exp(c - hi)) - a);
                for (int k = 0; k < K; k++) top_lp[(size_t)r * K + k] -= shift;
            }
        }
        for (size_t i = 0; i < (size_t)M * K; i++)
            if (!isfinite(top_lp[i])) die(EX_SOFTWARE, "the teacher produced non-finite log-probs");
    }
    *ntok += N;
    // write: record i's rows are the next P of the batch
    m = 0;
    for (int i = 0; i < nb; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        ASSERT(msgpack_unpack_next(&u, b[i].raw.data, b[i].raw.size, &off) == MSGPACK_UNPACK_SUCCESS);
        rec_record_begin(w, rec_count_passthrough(&u.data, skip) + 2);
        rec_pack_passthrough(w, &u.data, skip);
        int64_t shape[2] = {b[i].P, K};
        int32_t *ids32 = (int32_t *)(top_ids + (size_t)m * K);   // int is int32_t on every target
        rec_pack_key(w, "teacher_ids"); rec_pack_i32_tensor(w, ids32, shape, 2);
        rec_pack_key(w, "teacher_logprobs"); rec_pack_f32_tensor(w, top_lp + (size_t)m * K, shape, 2);
        rec_record_end(w);
        m += b[i].P;
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&b[i].raw);
        free(b[i].tokens), free(b[i].mask);
    }
    rec_flush(w);
    free(tokens), free(cu), free(rows), free(top_ids), free(top_lp), free(lse), free(lse_pad);
}

// Batch number ib: computed by its rank (ib mod ranks under MPI, dist.h), written in order.
static void deal_batch(struct teacher *t, long long ib, struct item *b, int nb, long long *ntok)
{
    if (dist_mine(ib)) {
        run_batch(t, dist_item_begin(), b, nb, ntok);
        dist_item_end(ib);
        return;
    }
    for (int i = 0; i < nb; i++) msgpack_sbuffer_destroy(&b[i].raw), free(b[i].tokens), free(b[i].mask);
}

int main(int argc, char **argv)
{
    _Static_assert(sizeof(int) == sizeof(int32_t), "int is 32 bits");
    tool_init(argv[0]);
    dist_init(argc, argv);
    parse_args(argc, argv);
    blas_init(opt.threads);
    struct teacher t;
    memset(&t, 0, sizeof t);
    model_load(&t.m, opt.model);
    t.tok = tokenizer_new(opt.model);
    uint64_t base_hash = model_hash(&t.m);
    if (opt.adapter) {
        struct lora lo;
        lora_load(&lo, &t.m.cfg, opt.adapter);
        uint64_t ah = lora_hash(&lo);
        hash_hex(base_hash, t.base_hex), hash_hex(ah, t.adapter_hex);
        hash_hex(lora_policy_hash(base_hash, ah), t.model_hex);
        lora_merge(&t.m, &lo);   // into our private weights (docs/generation.md "Adapters")
        lora_free(&lo);
    } else {
        hash_hex(base_hash, t.model_hex);
    }
    int tv = tokenizer_vocab_size(t.tok);
    t.Vt = tv < t.m.cfg.V ? tv : t.m.cfg.V;
    if (opt.top_k > t.Vt) usage_error("--top-k %d exceeds the teacher's vocabulary of %d ids", opt.top_k, t.Vt);
    t.scratch_size = logsoftmax_gather_scratch_size(LSG_CHUNK, t.m.cfg.C, t.m.cfg.V);
    t.scratch = xmalloc(t.scratch_size * sizeof(float));

    static const char *schemas[] = {"srlm.examples", "srlm.samples", NULL};
    struct rec_reader r;
    struct rec_writer w;
    const char *in_name;
    FILE *in = dist_open_input(opt.input, &in_name);
    rec_reader_open(&r, in, in_name, opt.max_record_bytes);
    t.hdr = rec_read_header(&r, schemas, "teacher-logits reads the output of tokenize or rollout");
    rec_check_tokenizer(&r, t.hdr, tokenizer_hash_hex(t.tok), tokenizer_path(t.tok), "the teacher's");
    const msgpack_object *schema = rec_get(t.hdr, "schema");
    char *schema_name = xmalloc(schema->via.str.size + 1);
    memcpy(schema_name, schema->via.str.ptr, schema->via.str.size);
    schema_name[schema->via.str.size] = '\0';
    rec_writer_open(&w, stdout);
    rec_write_header(&w, schema_name, t.hdr, 2, pack_header, &t);
    rec_flush(&w);
    dist_out_open(&w);
    long long nbatch = 0;

    size_t cap = 16, nb = 0, nrec = 0;
    struct item *b = xmalloc(cap * sizeof *b);
    long long btok = 0, ntok = 0;
    double t0 = now_seconds();
    msgpack_object rec;
    struct progress pg;
    progress_init(&pg, "records", -1);
    while (rec_reader_next_data(&r, &rec)) {
        struct item it;
        read_item(&r, &rec, &t, &it);
        nrec++;
        if (nb > 0 && btok + it.n > opt.batch_tokens) {
            long long before = ntok;
            deal_batch(&t, nbatch++, b, (int)nb, &ntok);
            progress_add(&pg, (long long)nb, ntok - before);
            nb = 0, btok = 0;
        }
        if (nb == cap) b = xrealloc(b, (cap *= 2) * sizeof *b);
        b[nb++] = it;
        btok += it.n;
    }
    if (nb) deal_batch(&t, nbatch++, b, (int)nb, &ntok);
    progress_end(&pg);
    dist_out_close(nbatch);
    rec_write_end(&w);
    double dt = now_seconds() - t0, tok = (double)ntok;
    dist_sum_f64(&tok, 1), dist_max_f64(&dt, 1);   // the job's tokens, the slowest rank's time
    ntok = (long long)tok;
    log_info("records=%zu tokens=%lld tok/s=%.1f seconds=%.2f", nrec, ntok, dt > 0 ? ntok / dt : 0.0, dt);
    free(b);
    free(schema_name);
    free(t.scratch);
    if (t.acts_N) lm_acts_free(&t.acts);
    rec_reader_close(&r);
    close_input(in);
    tokenizer_delete(t.tok);
    model_free(&t.m);
    tool_exit(0);
}
