// rollout — samples G completions per prompt from a policy model, with per-token log-probs
// (docs/generation.md).
//
// input:  a srlm.examples stream (tokenize), from the FILE operand or stdin. The prompt of a
//         record is tokens[0:prompt_len]; a record that also has a completion contributes only
//         its prompt. Records need an `id` (it keys the randomness).
// stdout: a srlm.samples stream: for each prompt, G records {kind:"sample", id, sample,
//         group_size, tokens (prompt + completion), mask (1 on the completion), prompt_len,
//         logprobs (f32 [n]), text, finish_reason, ...every other prompt field}, contiguous and in
//         sample order, flushed group by group. The header records model_xxh3, tokenizer_xxh3,
//         vocab_size, model_vocab_size, eos_ids, seed and the options, with the input header as
//         upstream.
// files:  reads the model directory (config.json, weights, tokenizer.json and its configs) and,
//         with --adapter, a PEFT LoRA adapter directory: the policy is then base + adapter, merged
//         into the loaded weights once (lora_merge); the header's model_xxh3 is
//         lora_policy_hash(base, adapter), with base_model_xxh3 and adapter_xxh3 beside it.
//
// The logic is in common/generate.c (batched decoding) and common/sampler.c (the draw).
// Under mpirun (docs/scaling.md) prompt i runs on rank i mod N and rank 0 writes the groups in
// input order: the same bytes for any number of ranks.
#include <getopt.h>
#include <string.h>

#include "progress.h"
#include "blas.h"
#include "dist.h"
#include "generate.h"
#include "lora.h"
#include "model.h"
#include "rec.h"
#include "tokenizer.h"
#include "util.h"

static struct {
    const char *model, *adapter, *input;
    int G, top_k, max_new, batch_prompts, max_batch, threads;
    bool static_batches;
    double temperature, top_p, min_p;
    bool greedy;
    int nstop;
    const char *stop[GEN_MAX_STOP];
    long long seed;
    size_t max_record_bytes;
    bool bf16;
} opt = {NULL, NULL, NULL, 1, 0, 256, 8, 0, 0, false, 1.0, 1.0, 0.0, false, 0, {0}, 1337, REC_DEFAULT_MAX_BYTES, false};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rollout [-hqvV] [--greedy] [-G n] [--temperature t] [--top-p p] [--top-k k]\n"
        "               [--min-p p] [--max-new-tokens n] [--stop str]... [--seed s] [--threads n]\n"
        "               [--max-batch n] [--batching continuous|static] [--batch-prompts n]\n"
        "               [--dtype f32|bf16] [--max-record-bytes n]\n"
        "               [--adapter dir] --model dir [FILE] > samples\n"
        "\n"
        "Samples G completions per prompt of a srlm.examples stream (FILE, or stdin when FILE\n"
        "is absent or -); writes srlm.samples on stdout.\n"
        "\n"
        "  -m, --model DIR          policy model directory (config.json, weights, tokenizer.json)\n"
        "      --adapter DIR        a PEFT LoRA adapter for --model (sft-step/rl-step --lora-rank):\n"
        "                           the policy is --model + the adapter (model_xxh3 names both)\n"
        "  -G, --group-size N       completions per prompt (default 1)\n"
        "      --temperature T      sampling temperature, > 0 (default 1); 0 means --greedy\n"
        "      --top-p P            nucleus sampling: smallest set with probability >= P (default 1: off)\n"
        "      --top-k K            keep the K most likely tokens (default 0: off)\n"
        "      --min-p P            keep tokens with p >= P * p_max (default 0: off)\n"
        "      --greedy             argmax decoding (ties: smallest id)\n"
        "      --max-new-tokens N   completion tokens at most (default 256)\n"
        "      --stop STR           end a completion when its text contains STR (repeatable, up to %d)\n"
        "      --seed S             random seed (default 1337)\n"
        "      --threads N          compute threads (default: BLIS_NUM_THREADS / OMP_NUM_THREADS, else\n"
        "                           the CPUs this process may use)\n"
        "      --max-batch N        sequences decoding together, the KV cache's slots (default:\n"
        "                           --batch-prompts x G); at least G\n"
        "      --batching MODE      continuous (default): a finished sequence's slots take the next\n"
        "                           prompt at once; static: prompts enter only an empty batch,\n"
        "                           --batch-prompts at a time. The output is the same bytes either\n"
        "                           way, and under any --max-batch, --batch-prompts and --threads\n"
        "      --batch-prompts N    prompts per static batch, and the default --max-batch (default 8)\n"
        "      --dtype bf16         decode from bf16 weights: the policy rounded to bf16 (exact for a\n"
        "                           bf16 checkpoint), half the memory traffic per token (default f32)\n"
        "      --max-record-bytes N largest input record (default 64M)\n"
        "      --progress-every S   seconds between progress lines when stderr is not a terminal\n"
        "                           (default 30; 0: every batch); -q: none\n"
        "  -q, --quiet              warnings and errors only\n"
        "  -v, --verbose            more detail\n"
        "  -h, --help               print this help and exit\n"
        "  -V, --version            print the version and exit\n"
        "\n"
        "A completion ends at an EOS / end-of-turn id (config.json eos_token_id and the tokenizer's),\n"
        "at a stop string, or after --max-new-tokens: finish_reason eos, stop or length.\n"
        "logprobs are log softmax of the raw logits (temperature 1, before top-k/top-p/min-p).\n"
        "\n"
        "Exit status: 0 ok, 64 usage, 65 bad input (stream, or an adapter that does not fit\n"
        "--model), 66 missing input, model or adapter, 70 non-finite logits, 74 I/O error.\n",
        GEN_MAX_STOP);
}

static void parse_args(int argc, char **argv)
{
    enum { O_TEMP = 256, O_TOPP, O_TOPK, O_MINP, O_GREEDY, O_MAXNEW, O_STOP, O_SEED, O_THREADS, O_BATCH, O_MAXREC, O_DTYPE, O_ADAPTER, O_PROGRESS, O_MAXBATCH, O_BATCHING };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        {"model", required_argument, 0, 'm'}, {"group-size", required_argument, 0, 'G'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-p", required_argument, 0, O_TOPP},
        {"top-k", required_argument, 0, O_TOPK}, {"min-p", required_argument, 0, O_MINP},
        {"greedy", no_argument, 0, O_GREEDY}, {"max-new-tokens", required_argument, 0, O_MAXNEW},
        {"stop", required_argument, 0, O_STOP}, {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS}, {"batch-prompts", required_argument, 0, O_BATCH},
        {"max-record-bytes", required_argument, 0, O_MAXREC}, {"dtype", required_argument, 0, O_DTYPE},
        {"adapter", required_argument, 0, O_ADAPTER},
        {"progress-every", required_argument, 0, O_PROGRESS}, {"max-batch", required_argument, 0, O_MAXBATCH},
        {"batching", required_argument, 0, O_BATCHING}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hVqvm:G:", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("rollout %s\n", VERSION); tool_exit(0);
        case 'q': log_level = LOG_LEVEL_WARN; break;
        case 'v': log_level++; break;
        case 'm': opt.model = optarg; break;
        case O_ADAPTER: opt.adapter = optarg; break;
        case O_PROGRESS: progress_parse_every(optarg); break;
        case 'G': opt.G = (int)parse_int(optarg, 1, 4096, "-G"); break;
        case O_TEMP: opt.temperature = parse_float(optarg, 0, 1e4, "--temperature"); break;
        case O_TOPP: opt.top_p = parse_float(optarg, 1e-9, 1, "--top-p"); break;
        case O_TOPK: opt.top_k = (int)parse_int(optarg, 0, 1 << 30, "--top-k"); break;
        case O_MINP: opt.min_p = parse_float(optarg, 0, 1, "--min-p"); break;
        case O_GREEDY: opt.greedy = true; break;
        case O_MAXNEW: opt.max_new = (int)parse_int(optarg, 1, 1 << 20, "--max-new-tokens"); break;
        case O_STOP:
            if (opt.nstop == GEN_MAX_STOP) usage_error("--stop: at most %d stop strings", GEN_MAX_STOP);
            if (!*optarg) usage_error("--stop: empty stop string");
            opt.stop[opt.nstop++] = optarg;
            break;
        case O_SEED: opt.seed = parse_int(optarg, 0, INT64_MAX, "--seed"); break;
        case O_THREADS: opt.threads = (int)parse_int(optarg, 1, 1024, "--threads"); break;
        case O_BATCH: opt.batch_prompts = (int)parse_int(optarg, 1, 1 << 16, "--batch-prompts"); break;
        case O_MAXBATCH: opt.max_batch = (int)parse_int(optarg, 1, 1 << 20, "--max-batch"); break;
        case O_BATCHING:
            if (strcmp(optarg, "continuous") && strcmp(optarg, "static"))
                usage_error("--batching: continuous or static, not \"%s\"", optarg);
            opt.static_batches = !strcmp(optarg, "static");
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) usage_error("--dtype: f32 or bf16, not \"%s\"", optarg);
            opt.bf16 = !strcmp(optarg, "bf16");
            break;
        case O_MAXREC: opt.max_record_bytes = parse_size(optarg, 1024, (size_t)1 << 32, "--max-record-bytes"); break;
        default:
            if (optopt) usage_error("unknown option or missing value '-%c'", optopt);
            usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) opt.input = argv[optind];
    if (!opt.model) usage_error("--model DIR is required");
    if (opt.temperature == 0) opt.greedy = true;
    if (opt.min_p >= 1) usage_error("--min-p must be below 1");
    if ((long long)opt.batch_prompts * opt.G > 1 << 20)
        usage_error("--batch-prompts x -G = %lld sequences: at most %d", (long long)opt.batch_prompts * opt.G, 1 << 20);
    if (!opt.max_batch || opt.static_batches) {
        if (opt.max_batch && opt.max_batch != opt.batch_prompts * opt.G)
            usage_error("--max-batch: static batches hold --batch-prompts x G = %d sequences", opt.batch_prompts * opt.G);
        opt.max_batch = opt.batch_prompts * opt.G;
    }
    if (opt.max_batch < opt.G) usage_error("--max-batch %d is below -G %d: a prompt's samples decode together", opt.max_batch, opt.G);
}

// ---------------------------------------------------------------------------------------------

struct ctx {
    const struct model *m;
    const struct tokenizer *tok;
    char model_hex[17];              // the policy: the weights, or lora_policy_hash(base, adapter)
    char base_hex[17], adapter_hex[17];   // with --adapter
    const struct gen_config *gc;
};

static void pack_header(struct rec_writer *w, void *p)
{
    const struct ctx *x = p;
    const struct gen_config *gc = x->gc;
    rec_pack_key(w, "model_xxh3"); rec_pack_str(w, x->model_hex);
    if (opt.adapter) {
        rec_pack_key(w, "base_model_xxh3"); rec_pack_str(w, x->base_hex);
        rec_pack_key(w, "adapter_xxh3"); rec_pack_str(w, x->adapter_hex);
    }
    rec_pack_key(w, "tokenizer_xxh3"); rec_pack_str(w, tokenizer_hash_hex(x->tok));
    rec_pack_key(w, "vocab_size"); rec_pack_int(w, tokenizer_vocab_size(x->tok));
    rec_pack_key(w, "model_vocab_size"); rec_pack_int(w, x->m->cfg.V);
    rec_pack_key(w, "eos_ids"); rec_pack_i32_array(w, gc->eos, (size_t)gc->neos);
    rec_pack_key(w, "seed"); rec_pack_int(w, opt.seed);
    rec_pack_key(w, "options");
    rec_pack_map(w, opt.adapter ? 12 : 11);
    rec_pack_key(w, "model"); rec_pack_str(w, opt.model);
    if (opt.adapter) { rec_pack_key(w, "adapter"); rec_pack_str(w, opt.adapter); }
    rec_pack_key(w, "dtype"); rec_pack_str(w, opt.bf16 ? "bf16" : "f32");
    rec_pack_key(w, "group_size"); rec_pack_int(w, opt.G);
    rec_pack_key(w, "greedy"); rec_pack_bool(w, opt.greedy);
    rec_pack_key(w, "temperature"); rec_pack_double(w, opt.temperature);
    rec_pack_key(w, "top_p"); rec_pack_double(w, opt.top_p);
    rec_pack_key(w, "top_k"); rec_pack_int(w, opt.top_k);
    rec_pack_key(w, "min_p"); rec_pack_double(w, opt.min_p);
    rec_pack_key(w, "max_new_tokens"); rec_pack_int(w, opt.max_new);
    rec_pack_key(w, "stop");
    rec_pack_array(w, (uint32_t)opt.nstop);
    for (int i = 0; i < opt.nstop; i++) rec_pack_str(w, opt.stop[i]);
    rec_pack_key(w, "vocab_limit"); rec_pack_int(w, gc->vocab_limit);
}

// The generation settings: sampling options, and the end-of-sequence ids of the model's
// config.json (eos_token_id) and of the tokenizer (eos_token, generation_config.json), deduplicated.
static void make_config(struct gen_config *gc, const struct model *m, const struct tokenizer *tok)
{
    memset(gc, 0, sizeof *gc);
    gc->sp = (struct sampler_params){opt.greedy, (float)opt.temperature, opt.top_k, (float)opt.top_p, (float)opt.min_p};
    gc->G = opt.G, gc->max_new_tokens = opt.max_new, gc->max_prompts = opt.batch_prompts;
    gc->max_batch = opt.max_batch, gc->static_batches = opt.static_batches;
    gc->seed = (uint64_t)opt.seed;
    int tv = tokenizer_vocab_size(tok);
    gc->vocab_limit = tv < m->cfg.V ? tv : m->cfg.V;
    int32_t ids[8 + TOKENIZER_MAX_EOS];
    int n = 0;
    for (int i = 0; i < m->cfg.n_eos && i < 8; i++) ids[n++] = m->cfg.eos_token_ids[i];
    n += (int)tokenizer_eos_ids(tok, ids + n);
    for (int i = 0; i < n; i++) {
        bool dup = ids[i] < 0 || ids[i] >= m->cfg.V;
        for (int j = 0; j < gc->neos && !dup; j++) dup = gc->eos[j] == ids[i];
        if (!dup && gc->neos < GEN_MAX_EOS) gc->eos[gc->neos++] = ids[i];
    }
    if (gc->neos == 0) log_warn("%s: no eos_token_id in config.json or the tokenizer: completions end at a stop string or --max-new-tokens", opt.model);
    gc->nstop = opt.nstop;
    for (int i = 0; i < opt.nstop; i++) gc->stop[i] = opt.stop[i];
}

// One prompt of the current batch: the record's bytes (to pass its fields through) and its prompt.
struct prompt {
    long long idx;            // place in the input (0-based): the group's place in the output
    msgpack_sbuffer raw;
    char *id;
    int32_t *tokens;
    int len;
};

static void prompt_free(struct prompt *p)
{
    msgpack_sbuffer_destroy(&p->raw);
    free(p->id), free(p->tokens);
}

static void read_prompt(const struct rec_reader *r, const msgpack_object *rec, const struct model *m, struct prompt *p)
{
    p->id = rec_get_str(r, rec, "id");
    int32_t *toks;
    size_t n = rec_get_i32_array(r, rec, "tokens", 0, INT32_MAX, &toks);
    for (size_t i = 0; i < n; i++)
        if (toks[i] >= m->cfg.V)
            rec_fail(r, "field \"tokens\"[%zu]: token id %d is beyond the model's vocabulary of %d ids (%s)",
                     i, toks[i], m->cfg.V, opt.model);
    int64_t plen = rec_get_int(r, rec, "prompt_len", 0, (int64_t)n);
    if (plen == 0) rec_fail(r, "empty prompt (prompt_len 0): nothing to generate from");
    p->tokens = toks;
    p->len = (int)plen;
    msgpack_sbuffer_init(&p->raw);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p->raw, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *rec) != 0) die(EX_OSERR, "out of memory");
}

static void write_sample(struct rec_writer *w, const struct tokenizer *tok, const msgpack_object *rec,
                         const struct prompt *p, int s, const struct gen_sample *o, int32_t *seq, int32_t *mask)
{
    static const char *skip[] = {"kind", "id", "sample", "group_size", "tokens", "mask", "prompt_len",
                                 "logprobs", "text", "finish_reason", "teacher_ids", "teacher_logprobs",
                                 "reward", "rewards", "pred", NULL};
    size_t n = (size_t)p->len + (size_t)o->n;
    memcpy(seq, p->tokens, (size_t)p->len * sizeof(int32_t));
    memcpy(seq + p->len, o->tokens, (size_t)o->n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) mask[i] = i >= (size_t)p->len;
    size_t text_len;
    char *text = tokenizer_decode(tok, o->tokens, (size_t)o->n, true, &text_len);
    rec_record_begin(w, 10 + rec_count_passthrough(rec, skip));
    rec_pack_key(w, "kind"); rec_pack_str(w, "sample");
    rec_pack_key(w, "id"); rec_pack_str(w, p->id);
    rec_pack_key(w, "sample"); rec_pack_int(w, s);
    rec_pack_key(w, "group_size"); rec_pack_int(w, opt.G);
    rec_pack_key(w, "tokens"); rec_pack_i32_array(w, seq, n);
    rec_pack_key(w, "mask"); rec_pack_i32_array(w, mask, n);
    rec_pack_key(w, "prompt_len"); rec_pack_int(w, p->len);
    int64_t shape[1] = {o->n};
    rec_pack_key(w, "logprobs"); rec_pack_f32_tensor(w, o->logprobs, shape, 1);
    rec_pack_key(w, "text"); rec_pack_strn(w, text, text_len);
    rec_pack_key(w, "finish_reason"); rec_pack_str(w, gen_finish_name(o->finish));
    rec_pack_passthrough(w, rec, skip);
    rec_record_end(w);
    free(text);
}

// Writes a finished group's G samples and frees its prompt.
static void write_group(struct rec_writer *w, const struct tokenizer *tok, struct prompt *p,
                        const struct gen_sample *out, size_t *finish_count)
{
    int longest = 0;
    for (int s = 0; s < opt.G; s++)
        if (out[s].n > longest) longest = out[s].n;
    size_t cap = (size_t)p->len + (size_t)longest;
    int32_t *seq = xmalloc(cap * sizeof(int32_t)), *mask = xmalloc(cap * sizeof(int32_t));
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    ASSERT(msgpack_unpack_next(&u, p->raw.data, p->raw.size, &off) == MSGPACK_UNPACK_SUCCESS);
    for (int s = 0; s < opt.G; s++) {
        write_sample(w, tok, &u.data, p, s, &out[s], seq, mask);
        finish_count[out[s].finish]++;
    }
    rec_flush(w);
    msgpack_unpacked_destroy(&u);
    prompt_free(p);
    free(seq), free(mask);
}

// The input's prompts, as this rank takes them. One process reads on as prompts are needed.
// Under MPI (dist.h) every rank first reads the whole input (rank 0's bytes), checking every
// record, and keeps the prompts it owns (index mod ranks): reading on demand would tie each
// rank's reads to rank 0's, since every read is a collective.
struct source {
    struct rec_reader *r;
    const struct model *m;
    struct prompt *own;       // (sharded) this rank's prompts, in order
    size_t nown, next;
    long long nread;          // records read
};

static void source_open(struct source *src, struct rec_reader *r, const struct model *m)
{
    memset(src, 0, sizeof *src);
    src->r = r, src->m = m;
    if (dist_size() == 1) return;
    size_t cap = 0;
    msgpack_object rec;
    while (rec_reader_next_data(r, &rec)) {
        struct prompt p;
        read_prompt(r, &rec, m, &p);
        p.idx = src->nread++;
        if (!dist_mine(p.idx)) {
            prompt_free(&p);
            continue;
        }
        if (src->nown == cap) src->own = xrealloc(src->own, (cap = 2 * cap + 16) * sizeof *src->own);
        src->own[src->nown++] = p;
    }
}

// The next prompt of this rank into *p; false at the end.
static bool source_next(struct source *src, struct prompt *p)
{
    if (dist_size() > 1) {
        if (src->next == src->nown) return false;
        *p = src->own[src->next++];
        return true;
    }
    msgpack_object rec;
    if (!rec_reader_next_data(src->r, &rec)) return false;
    read_prompt(src->r, &rec, src->m, p);
    p->idx = src->nread++;
    return true;
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    dist_init(argc, argv);
    parse_args(argc, argv);
    blas_init(opt.threads);
    struct model m;
    model_load(&m, opt.model);
    struct tokenizer *tok = tokenizer_new(opt.model);
    struct gen_config gc;
    make_config(&gc, &m, tok);
    struct ctx x = {&m, tok, "", "", "", &gc};
    // the policy as loaded (before any bf16 rounding), which rl-step trains: the weights, or
    // base + adapter named by lora_policy_hash (lora.h)
    uint64_t base_hash = model_hash(&m);
    if (opt.adapter) {
        struct lora lo;
        lora_load(&lo, &m.cfg, opt.adapter);
        uint64_t ah = lora_hash(&lo);
        hash_hex(base_hash, x.base_hex), hash_hex(ah, x.adapter_hex);
        hash_hex(lora_policy_hash(base_hash, ah), x.model_hex);
        lora_merge(&m, &lo);   // into our private weights: decodes as fast as the base
        lora_free(&lo);        // (docs/generation.md "Adapters" for the rounding measured)
    } else {
        hash_hex(base_hash, x.model_hex);
    }
    if (opt.bf16) model_use_bf16(&m);

    static const char *schemas[] = {"srlm.examples", NULL};
    struct rec_reader r;
    struct rec_writer w;
    const char *in_name;
    FILE *in = dist_open_input(opt.input, &in_name);
    rec_reader_open(&r, in, in_name, opt.max_record_bytes);
    const msgpack_object *hdr = rec_read_header(&r, schemas, "rollout reads prompts from tokenize");
    rec_check_tokenizer(&r, hdr, tokenizer_hash_hex(tok), tokenizer_path(tok), "the model's");
    rec_writer_open(&w, stdout);
    rec_write_header(&w, "srlm.samples", hdr, opt.adapter ? 9 : 7, pack_header, &x);
    rec_flush(&w);
    dist_out_open(&w);
    struct source src;
    source_open(&src, &r, &m);

    struct generator *g = generator_new(&m, tok, &gc);
    // Prompts read ahead: enough to refill every slot twice over, so a slot never waits for
    // input; groups finished behind a longer one wait here (in input order) until it ends.
    int window = opt.static_batches ? opt.batch_prompts : 2 * (opt.max_batch / opt.G);
    if (window < opt.batch_prompts) window = opt.batch_prompts;
    struct prompt *pq = xcalloc((size_t)window, sizeof *pq);   // ring, in step with the generator's
    int head = 0;
    size_t nprompts = 0, finish_count[3] = {0};
    bool eof = false;
    double t0 = now_seconds();
    struct progress pg;
    progress_init(&pg, "prompts", -1);
    long long new_before = 0;
    for (;;) {
        while (!eof && gen_pending(g) < window) {
            struct prompt *p = &pq[(head + gen_pending(g)) % window];
            if (!source_next(&src, p)) { eof = true; break; }
            struct gen_prompt gp = {p->id, strlen(p->id), p->tokens, p->len};
            gen_submit(g, &gp);
            nprompts++;
        }
        const struct gen_sample *out;
        while ((out = gen_done(g))) {
            long long idx = pq[head].idx;
            write_group(dist_item_begin(), tok, &pq[head], out, finish_count);
            dist_item_end(idx);
            gen_release(g);
            head = (head + 1) % window;
            progress_add(&pg, 1, generator_stats(g)->new_tokens - new_before);
            new_before = generator_stats(g)->new_tokens;
        }
        if (gen_pending(g) == 0) {
            if (eof) break;
            continue;   // the window emptied: read on
        }
        if (!gen_step(g) && !gen_done(g)) die(EX_SOFTWARE, "rollout: the generator stalled");
    }
    progress_end(&pg);
    dist_out_close(src.nread);
    rec_write_end(&w);

    // the job's figures: every rank's counts summed, its seconds the slowest rank's
    const struct gen_stats *gs = generator_stats(g);
    double dt = now_seconds() - t0;
    double sum[8] = {(double)nprompts, (double)gs->new_tokens, (double)finish_count[0], (double)finish_count[1],
                     (double)finish_count[2], (double)gs->prefill_tokens, (double)gs->decode_steps, (double)gs->decode_rows};
    double slow[3] = {gs->prefill_seconds, gs->decode_seconds, dt};
    dist_sum_f64(sum, 8), dist_max_f64(slow, 3);
    nprompts = (size_t)sum[0];
    for (int i = 0; i < 3; i++) finish_count[i] = (size_t)sum[2 + i];
    struct gen_stats all = *gs;
    all.new_tokens = (long long)sum[1], all.prefill_tokens = (long long)sum[5];
    all.decode_steps = (long long)sum[6], all.decode_rows = (long long)sum[7];
    all.prefill_seconds = slow[0], all.decode_seconds = slow[1], dt = slow[2];
    const struct gen_stats *st = &all;
    log_info("prompts=%zu samples=%zu new_tokens=%lld eos=%zu stop=%zu length=%zu prefill_tok/s=%.1f "
             "decode_tok/s=%.1f mean_batch=%.1f tok/s=%.1f seconds=%.2f",
             nprompts, nprompts * (size_t)opt.G, st->new_tokens, finish_count[GEN_FINISH_EOS],
             finish_count[GEN_FINISH_STOP], finish_count[GEN_FINISH_LENGTH],
             st->prefill_seconds > 0 ? st->prefill_tokens / st->prefill_seconds : 0.0,
             st->decode_seconds > 0 ? st->new_tokens / st->decode_seconds : 0.0,
             st->decode_steps ? (double)st->decode_rows / st->decode_steps : 0.0, dt > 0 ? st->new_tokens / dt : 0.0, dt);
    free(pq), free(src.own);
    generator_free(g);
    rec_reader_close(&r);
    close_input(in);
    tokenizer_delete(tok);
    model_free(&m);
    tool_exit(0);
}
