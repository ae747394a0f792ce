// rl-step — GRPO policy-gradient steps on scored rollouts (docs/rl.md).
//
// stdin:  a scored srlm.samples stream (rollout | score): groups of G samples of one prompt,
//         contiguous and in sample order, each with tokens, mask, prompt_len, logprobs (the
//         sampling policy's), finish_reason and reward. The header chain names the sampling
//         policy (model_xxh3), which must be --model's weights unless --allow-stale.
// stdout: a srlm.metrics stream: one "metrics" record per optimizer step (loss, lr, grad_norm,
//         tokens, tokens_per_s and the GRPO figures), one "checkpoint" record per checkpoint.
// files:  reads --model DIR (policy) and --ref DIR (reference, frozen; needed when --beta > 0);
//         writes checkpoints to --out DIR (common/trainer.h: model, optimizer state, resume).
//
// Every --groups-per-step groups form a rollout batch. Groups whose rewards are all equal leave it
// with --drop-equal; the rest are split into --minibatches minibatches, and --epochs passes over
// them make epochs x minibatches optimizer steps (PPO-style reuse). The old log-probs of the
// ratio stay those of the stream; the reference log-probs are computed once per batch. The
// objective is common/grpo.h; the optimizer, checkpoints and the non-finite guard are
// common/trainer.h's. Under mpirun (docs/scaling.md) each minibatch's packed forwards (at most
// --max-tokens tokens each) are dealt to the ranks, and rank 0 alone reads and writes.
#include "dist.h"
#include "grpo.h"
#include "lora.h"
#include "rec.h"
#include "trainer.h"
#include "util.h"

#include <getopt.h>
#include <string.h>

static struct trainer_options topt;
static FILE *input;            // the FILE operand, or stdin
static const char *input_name;
static struct {
    struct grpo_config g;
    const char *ref, *recipe;
    int groups_per_step, epochs, minibatches, max_tokens;   // epochs: --num-iterations
    bool allow_stale;
} opt = {.groups_per_step = 8, .epochs = 1, .minibatches = 1, .max_tokens = 4096};

// Flags set explicitly, so a --recipe fills in only the others.
enum { S_BETA = 1, S_KL = 2, S_EPSL = 4, S_EPSH = 8, S_AGG = 16, S_STD = 32, S_DROP = 64, S_TRUNC = 128 };
static unsigned set_flags;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rl-step [-hqvV] [--ref dir] [--beta b] [--kl k1|k2|k3] [--eps e] [--eps-low e] [--eps-high e]\n"
        "               [--agg token|seq|const] [--max-len n] [--no-std-scale] [--adv-eps e]\n"
        "               [--drop-equal] [--mask-truncated] [--recipe grpo|dapo|dr-grpo]\n"
        "               [--groups-per-step n] [--num-iterations n] [--minibatches n] [--max-tokens n]\n"
        "               [--allow-stale] [training options] --model dir --out dir [FILE] > metrics\n"
        "\n"
        "GRPO steps on a scored srlm.samples stream (rollout | score) from FILE or stdin ('-');\n"
        "writes srlm.metrics.\n"
        "\n"
        "Objective (common/grpo.h, docs/rl.md):\n"
        "      --ref DIR            reference model for the KL penalty (required when --beta > 0;\n"
        "                           with --beta 0 the KL is only reported)\n"
        "      --beta B             KL coefficient (default 0)\n"
        "      --kl K               KL estimator k1 | k2 | k3 (default k3, as GRPO)\n"
        "      --eps E              ratio clip range, both sides: [1 - E, 1 + E] (TRL's epsilon;\n"
        "                           AdamW's epsilon is --adam-eps)\n"
        "      --eps-low E          ratio clip below: 1 - E (default 0.2)\n"
        "      --eps-high E         ratio clip above: 1 + E (default 0.2; DAPO clip-higher: 0.28)\n"
        "      --agg MODE           loss aggregation: token (mean over the batch's tokens, DAPO;\n"
        "                           default), seq (per-sequence mean, then mean: GRPO), const\n"
        "                           (sum / (sequences x --max-len): Dr. GRPO)\n"
        "      --max-len N          const normaliser (default: the rollout's --max-new-tokens, else\n"
        "                           the longest completion of the minibatch)\n"
        "      --no-std-scale       advantages r - mean, not divided by the group's std (Dr. GRPO)\n"
        "      --adv-eps E          added to the std before dividing (default 1e-4)\n"
        "      --drop-equal         drop groups whose rewards are all equal (DAPO dynamic sampling)\n"
        "      --mask-truncated     leave completions cut at the token limit out of the loss\n"
        "      --recipe NAME        defaults of a paper, explicit flags win: grpo (seq, beta 0.04,\n"
        "                           k3), dapo (token, eps 0.2/0.28, drop-equal, mask-truncated),\n"
        "                           dr-grpo (const, no std scaling)\n"
        "Batches:\n"
        "      --groups-per-step N  groups per rollout batch (default 8)\n"
        "      --num-iterations N   passes over each rollout batch (default 1; TRL's num_iterations,\n"
        "                           PPO's epochs)\n"
        "      --minibatches N      optimizer steps per pass (default 1)\n"
        "      --max-tokens N       tokens per packed forward/backward (default 4096); bounds memory\n"
        "                           and the longest sample\n"
        "      --allow-stale        train on samples from other weights than --model (the sampler's\n"
        "                           hash is then reported in every metrics record)\n"
        "\n");
    trainer_usage(f);
    fprintf(f, "  -h, --help               this help;  -V, --version  the version\n"
               "\nExit status: 0 ok, 64 usage, 65 bad input (a broken group, stale samples), 66 missing\n"
               "model, 70 non-finite loss or gradient, 73 cannot write --out, 74 I/O error.\n");
}

static void apply_recipe(void)
{
    struct grpo_config *g = &opt.g;
    if (!opt.recipe) return;
    if (!strcmp(opt.recipe, "grpo")) {             // DeepSeekMath §4.1 / TRL's GRPO defaults
        if (!(set_flags & S_AGG)) g->agg = GRPO_AGG_SEQ;
        if (!(set_flags & S_BETA)) g->beta = 0.04;
    } else if (!strcmp(opt.recipe, "dapo")) {      // Yu et al. 2025 §3
        if (!(set_flags & S_AGG)) g->agg = GRPO_AGG_TOKEN;
        if (!(set_flags & S_EPSH)) g->eps_high = 0.28;
        if (!(set_flags & S_DROP)) g->drop_equal = true;
        if (!(set_flags & S_TRUNC)) g->mask_truncated = true;
    } else if (!strcmp(opt.recipe, "dr-grpo")) {   // Liu et al. 2025 §3.1
        if (!(set_flags & S_AGG)) g->agg = GRPO_AGG_CONST;
        if (!(set_flags & S_STD)) g->scale_std = false;
    } else usage_error("--recipe: unknown recipe \"%s\" (grpo, dapo, dr-grpo)", opt.recipe);
}

static void parse_args(int argc, char **argv)
{
    enum { O_REF = 256, O_BETA, O_KL, O_EPSL, O_EPSH, O_AGG, O_MAXLEN, O_NOSTD, O_ADVEPS, O_DROP,
           O_TRUNC, O_RECIPE, O_GPS, O_EPOCHS, O_MB, O_MAXTOK, O_STALE, O_EPS, O_OLD_EPOCHS };
    static const struct option lo[] = {
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {"quiet", no_argument, 0, 'q'}, {"verbose", no_argument, 0, 'v'},
        TRAINER_LONG_OPTIONS,
        {"ref", required_argument, 0, O_REF}, {"beta", required_argument, 0, O_BETA},
        {"kl", required_argument, 0, O_KL}, {"eps-low", required_argument, 0, O_EPSL},
        {"eps-high", required_argument, 0, O_EPSH}, {"agg", required_argument, 0, O_AGG},
        {"max-len", required_argument, 0, O_MAXLEN}, {"no-std-scale", no_argument, 0, O_NOSTD},
        {"adv-eps", required_argument, 0, O_ADVEPS}, {"drop-equal", no_argument, 0, O_DROP},
        {"mask-truncated", no_argument, 0, O_TRUNC}, {"recipe", required_argument, 0, O_RECIPE},
        {"groups-per-step", required_argument, 0, O_GPS}, {"num-iterations", required_argument, 0, O_EPOCHS},
        {"epochs", required_argument, 0, O_OLD_EPOCHS}, {"eps", required_argument, 0, O_EPS},
        {"minibatches", required_argument, 0, O_MB}, {"max-tokens", required_argument, 0, O_MAXTOK},
        {"allow-stale", no_argument, 0, O_STALE},
        {0, 0, 0, 0}};
    trainer_options_default(&topt);
    grpo_config_default(&opt.g);
    int c, v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hVqv", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); tool_exit(0);
        case 'V': printf("rl-step %s\n", VERSION); tool_exit(0);
        case O_REF: opt.ref = optarg; break;
        case O_BETA: opt.g.beta = parse_float(optarg, 0, 1e6, "--beta"); set_flags |= S_BETA; break;
        case O_KL:
            if ((v = grpo_kl_parse(optarg)) < 0) usage_error("--kl: unknown estimator \"%s\" (k1, k2, k3)", optarg);
            opt.g.kl = v; set_flags |= S_KL; break;
        case O_EPSL: opt.g.eps_low = parse_float(optarg, 0, 1, "--eps-low"); set_flags |= S_EPSL; break;
        case O_EPSH: opt.g.eps_high = parse_float(optarg, 0, 1e6, "--eps-high"); set_flags |= S_EPSH; break;
        case O_AGG:
            if ((v = grpo_agg_parse(optarg)) < 0) usage_error("--agg: unknown mode \"%s\" (token, seq, const)", optarg);
            opt.g.agg = v; set_flags |= S_AGG; break;
        case O_MAXLEN: opt.g.max_len = (int)parse_int(optarg, 1, 1 << 24, "--max-len"); break;
        case O_NOSTD: opt.g.scale_std = false; set_flags |= S_STD; break;
        case O_ADVEPS: opt.g.adv_eps = parse_float(optarg, 0, 1, "--adv-eps"); break;
        case O_DROP: opt.g.drop_equal = true; set_flags |= S_DROP; break;
        case O_TRUNC: opt.g.mask_truncated = true; set_flags |= S_TRUNC; break;
        case O_RECIPE: opt.recipe = optarg; break;
        case O_GPS: opt.groups_per_step = (int)parse_int(optarg, 1, 1 << 20, "--groups-per-step"); break;
        case O_EPOCHS: opt.epochs = (int)parse_int(optarg, 1, 1000, "--num-iterations"); break;
        case O_OLD_EPOCHS:
            usage_error("--epochs: rl-step's passes over each rollout batch are --num-iterations (TRL's "
                        "name); passes over a whole input are sft-step's --epochs");
        case O_EPS:
            opt.g.eps_low = parse_float(optarg, 0, 1, "--eps");
            opt.g.eps_high = opt.g.eps_low;
            set_flags |= S_EPSL | S_EPSH;
            break;
        case O_MB: opt.minibatches = (int)parse_int(optarg, 1, 1 << 20, "--minibatches"); break;
        case O_MAXTOK: opt.max_tokens = (int)parse_int(optarg, 16, 1 << 24, "--max-tokens"); break;
        case O_STALE: opt.allow_stale = true; break;
        default:
            if (trainer_parse_option(&topt, c, optarg)) break;
            if (optopt) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    input = dist_rank() == 0 ? open_input_operand(argc, argv, optind, &input_name)
                             : dist_open_input(optind < argc ? argv[optind] : NULL, &input_name);
    apply_recipe();
    trainer_options_check(&topt);
    if (opt.g.beta > 0 && !opt.ref) usage_error("--beta %g needs a reference model (--ref DIR)", opt.g.beta);
}

// ---------------------------------------------------------------------------------------------

static void pack_options(struct rec_writer *w, void *ctx)
{
    const struct grpo_config *g = &opt.g;
    rec_pack_key(w, "ref"); if (opt.ref) rec_pack_str(w, opt.ref); else rec_pack_nil(w);
    rec_pack_key(w, "beta"); rec_pack_double(w, g->beta);
    rec_pack_key(w, "kl"); rec_pack_str(w, grpo_kl_name(g->kl));
    rec_pack_key(w, "eps_low"); rec_pack_double(w, g->eps_low);
    rec_pack_key(w, "eps_high"); rec_pack_double(w, g->eps_high);
    rec_pack_key(w, "agg"); rec_pack_str(w, grpo_agg_name(g->agg));
    rec_pack_key(w, "max_len"); rec_pack_int(w, g->max_len);
    rec_pack_key(w, "std_scale"); rec_pack_bool(w, g->scale_std);
    rec_pack_key(w, "adv_eps"); rec_pack_double(w, g->adv_eps);
    rec_pack_key(w, "drop_equal"); rec_pack_bool(w, g->drop_equal);
    rec_pack_key(w, "mask_truncated"); rec_pack_bool(w, g->mask_truncated);
    rec_pack_key(w, "recipe"); if (opt.recipe) rec_pack_str(w, opt.recipe); else rec_pack_nil(w);
    rec_pack_key(w, "groups_per_step"); rec_pack_int(w, opt.groups_per_step);
    rec_pack_key(w, "num_iterations"); rec_pack_int(w, opt.epochs);
    rec_pack_key(w, "minibatches"); rec_pack_int(w, opt.minibatches);
    rec_pack_key(w, "max_tokens"); rec_pack_int(w, opt.max_tokens);
    rec_pack_key(w, "allow_stale"); rec_pack_bool(w, opt.allow_stale);
}
#define NOPTIONS 17

// ---------------------------------------------------------------------------------------------
// the sampling policy named by the input's header chain

struct sample_source {
    char hex[17];              // model_xxh3 of the policy that sampled ("" if the chain has none)
    int max_new_tokens;        // its options.max_new_tokens (0 if unknown)
    long long vocab_size;      // its vocab_size (-1 if unknown)
};

// The nearest header of the chain (the input's own, then its upstream, ...) with a model_xxh3.
static void find_sample_source(const msgpack_object *h, struct sample_source *s)
{
    memset(s, 0, sizeof *s);
    s->vocab_size = -1;
    for (int depth = 0; h && h->type == MSGPACK_OBJECT_MAP && depth < 16; depth++) {
        const msgpack_object *x = rec_get(h, "model_xxh3");
        if (x && x->type == MSGPACK_OBJECT_STR && x->via.str.size == 16) {
            memcpy(s->hex, x->via.str.ptr, 16);
            const msgpack_object *v = rec_get(h, "vocab_size"), *o = rec_get(h, "options");
            if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) s->vocab_size = (long long)v->via.u64;
            const msgpack_object *mn = o && o->type == MSGPACK_OBJECT_MAP ? rec_get(o, "max_new_tokens") : NULL;
            if (mn && mn->type == MSGPACK_OBJECT_POSITIVE_INTEGER && mn->via.u64 < (1u << 24))
                s->max_new_tokens = (int)mn->via.u64;
            return;
        }
        h = rec_get(h, "upstream");
    }
}

// ---------------------------------------------------------------------------------------------
// the run

struct run {
    struct trainer t;
    struct rec_reader r;
    struct rec_writer w;
    struct model ref;
    bool has_ref;
    struct lm_acts a, ref_a_own, *ref_a;
    struct grpo_ws ws, ref_ws_own, *ref_ws;
    struct grpo_batch b;
    struct grpo_policy policy;
    struct sample_source smp;
    char policy_hex[17];
    bool stale;
    long lag_base;             // t.step when the run started on this stream
    long batch_index;          // rollout batches read (0-based index of the current one)
    // the current step's figures, for the metrics record
    struct grpo_batch_stats bs;
    struct grpo_stats st;
    int ppo_epoch, minibatch, mb_seqs;
};

static void backward_cb(void *ctx, struct lm_acts *a, float *dhN) { trainer_backward(ctx, a, dhN); }

static bool same_shape(const struct model_config *x, const struct model_config *y)
{
    return x->arch == y->arch && x->V == y->V && x->C == y->C && x->FF == y->FF && x->L == y->L &&
           x->NH == y->NH && x->NKV == y->NKV && x->hs == y->hs && x->rope_theta == y->rope_theta &&
           x->qkv_bias == y->qkv_bias && x->o_bias == y->o_bias && x->qk_norm == y->qk_norm;
}

static void pack_metrics(struct rec_writer *w, void *ctx)
{
    struct run *R = ctx;
    const struct grpo_batch_stats *b = &R->bs;
    const struct grpo_stats *s = &R->st;
    double T = s->tokens > 0 ? s->tokens : 1;
    // TRL's GRPOTrainer names where TRL logs the quantity (docs/metrics.md maps each to its formula)
    struct { const char *k; double v; } f[] = {
        {"reward", b->reward_mean}, {"reward_std", b->reward_std},
        {"frac_reward_zero_std", b->groups ? (double)b->groups_zero_std / b->groups : 0},
        {"adv_mean", b->adv_mean}, {"adv_std", b->adv_std}, {"adv_abs_max", b->adv_abs_max},
        {"clip_ratio/low_mean", s->clip_low / T}, {"clip_ratio/high_mean", s->clip_high / T},
        {"ratio_mean", s->ratio_sum / T}, {"ratio_min", s->ratio_min}, {"ratio_max", s->ratio_max},
        {"entropy", s->entropy_sum / T}, {"completions/mean_length", b->len_mean},
        {"completions/clipped_ratio", b->seqs ? (double)b->truncated / b->seqs : 0},
        {"groups_dropped_frac", b->groups ? (double)b->groups_dropped / b->groups : 0},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) { rec_pack_key(w, f[i].k); rec_pack_double(w, f[i].v); }
    rec_pack_key(w, "completions/max_length"); rec_pack_int(w, b->len_max);
    rec_pack_key(w, "groups"); rec_pack_int(w, b->groups);
    rec_pack_key(w, "sequences"); rec_pack_int(w, R->mb_seqs);
    rec_pack_key(w, "rollout_batch"); rec_pack_int(w, R->batch_index + 1);
    rec_pack_key(w, "ppo_epoch"); rec_pack_int(w, R->ppo_epoch + 1);
    rec_pack_key(w, "minibatch"); rec_pack_int(w, R->minibatch + 1);
    rec_pack_key(w, "policy_lag"); rec_pack_int(w, R->t.step - 1 - R->lag_base);   // t.step is already s here
    rec_pack_key(w, "stale"); rec_pack_bool(w, R->stale);
    for (int c = 0; c < b->ncomp; c++) {
        char k[64];
        snprintf(k, sizeof k, "rewards/%s/mean", R->b.comp_name[c]);
        rec_pack_key(w, k); rec_pack_double(w, b->comp_mean[c]);
        snprintf(k, sizeof k, "rewards/%s/std", R->b.comp_name[c]);
        rec_pack_key(w, k); rec_pack_double(w, b->comp_std[c]);
    }
    if (s->has_kl) { rec_pack_key(w, "kl"); rec_pack_double(w, s->kl_sum / T); }
    if (R->stale) { rec_pack_key(w, "sample_model_xxh3"); rec_pack_str(w, R->smp.hex); }
}
#define NMETRICS_FIXED 23   // fields pack_metrics always writes (15 figures + 8 counters)

// One optimizer step on minibatch [first, first + count) of the current batch. Returns what
// trainer_step returns (0: --steps reached), or 1 without a step when the slice trains nothing.
static int one_step(struct run *R, int first, int count)
{
    grpo_stats_zero(&R->st);
    long tokens;
    double loss = grpo_minibatch_grad(&opt.g, &R->policy, &R->a, &R->ws, &R->b, first, count, &R->st, &tokens);
    // under MPI each rank has its micro-batches' share: the step's figures are their sums (and
    // extremes); trainer_step sums the gradients
    double sums[7] = {loss, R->st.tokens, R->st.kl_sum, R->st.clip_low, R->st.clip_high, R->st.ratio_sum, R->st.entropy_sum};
    dist_sum_f64(sums, 7);
    loss = sums[0], R->st.tokens = sums[1], R->st.kl_sum = sums[2], R->st.clip_low = sums[3];
    R->st.clip_high = sums[4], R->st.ratio_sum = sums[5], R->st.entropy_sum = sums[6];
    dist_min_f64(&R->st.ratio_min, 1);
    dist_max_f64(&R->st.ratio_max, 1);
    if (tokens == 0) {
        log_info("batch %ld epoch %d minibatch %d: no trained tokens, no step", R->batch_index + 1,
                 R->ppo_epoch + 1, R->minibatch + 1);
        return 1;
    }
    R->mb_seqs = 0;
    for (int i = first; i < first + count; i++) R->mb_seqs += R->b.s[i].use;
    char progress[160];
    double T = R->st.tokens;
    snprintf(progress, sizeof progress, "reward=%.4f kl=%.4g clip=%.3f/%.3f ent=%.3f", R->bs.reward_mean,
             R->st.has_kl ? R->st.kl_sum / T : 0.0, R->st.clip_low / T, R->st.clip_high / T, R->st.entropy_sum / T);
    struct trainer_metrics m = {loss, tokens, NMETRICS_FIXED + 2 * R->bs.ncomp + R->st.has_kl + R->stale,
                                pack_metrics, R, progress};
    return trainer_step(&R->t, &m);
}

// Reads one rollout batch and makes its epochs x minibatches steps, skipping the first `skip`
// (resume). Returns 0 at the end of the input or when --steps is reached.
static int run_batch(struct run *R, int skip)
{
    long long start = (long long)R->r.ndata;
    int cap = opt.max_tokens < R->t.model.cfg.max_pos ? opt.max_tokens : R->t.model.cfg.max_pos;
    if (grpo_batch_read(&R->b, &R->r, opt.groups_per_step, R->t.model.cfg.V, cap) == 0) return 0;
    grpo_batch_prepare(&opt.g, &R->b);
    grpo_batch_figures(&R->b, &R->bs);
    int n = grpo_batch_compact(&R->b);
    if (R->has_ref && n > 0) grpo_ref_logprobs(&R->ref, R->ref_a, R->ref_ws, &R->b, 0, n);
    if (n == 0) log_info("batch %ld: all %d groups dropped (equal rewards), no step", R->batch_index + 1, R->b.groups);
    int M = opt.minibatches, total = opt.epochs * M, k = 0;
    for (R->ppo_epoch = 0; R->ppo_epoch < opt.epochs; R->ppo_epoch++)
        for (R->minibatch = 0; R->minibatch < M; R->minibatch++, k++) {
            if (k < skip) continue;
            int first = (int)((long long)R->minibatch * n / M), end = (int)((long long)(R->minibatch + 1) * n / M);
            // a checkpoint taken by this step records where a resumed run picks up
            bool last = k + 1 == total;
            R->t.data_pos = last ? (long long)R->r.ndata : start;
            json_object_set_new(R->t.tool_state, "batch_step", json_integer(last ? 0 : k + 1));
            json_object_set_new(R->t.tool_state, "batch_index", json_integer(R->batch_index + last));
            if (!one_step(R, first, end - first)) return 0;
        }
    R->batch_index++;
    return 1;
}

static long state_int(json_t *st, const char *key)
{
    json_t *v = st ? json_object_get(st, key) : NULL;
    return json_is_integer(v) ? (long)json_integer_value(v) : 0;
}

// The samples must come from the weights being trained: --model's, or on a resumed run the
// weights the run started from on this stream (recorded in the checkpoint's state).
static void check_sampler(struct run *R, const msgpack_object *hdr)
{
    find_sample_source(hdr, &R->smp);
    json_t *st = R->t.tool_state;
    const char *want = R->policy_hex, *saved = json_string_value(json_object_get(st, "sampler_xxh3"));
    if (R->t.start_step > 0 && saved) want = saved;
    R->lag_base = R->t.start_step > 0 && saved ? state_int(st, "lag_base") : R->t.step;
    if (R->smp.vocab_size > R->t.model.cfg.V)
        die(EX_DATAERR, "%s: samples have vocab_size %lld, but --model %s has %d embedding rows", R->r.name,
            R->smp.vocab_size, topt.model_dir, R->t.model.cfg.V);
    if (!R->smp.hex[0] && !opt.allow_stale)
        die(EX_DATAERR, "%s: the header names no sampling policy (model_xxh3): rl-step reads rollout | score "
            "output (or pass --allow-stale)", R->r.name);
    R->stale = strcmp(R->smp.hex, want) != 0;
    // a new LoRA adapter (B = 0) is the base model itself: its first samples come from the base
    char base_hex[17];
    hash_hex(R->t.base_hash, base_hex);
    if (R->stale && R->t.lora && R->t.start_step == 0 && lora_is_identity(R->t.lora) && !strcmp(R->smp.hex, base_hex))
        R->stale = false;
    if (R->stale && !opt.allow_stale)
        die(EX_DATAERR, "%s: samples were drawn by model %s, but the policy being trained is %s (%s): sample "
            "with the current policy, or pass --allow-stale", R->r.name, R->smp.hex, want, topt.model_dir);
    if (R->stale) log_warn("training on stale samples from model %s (policy %s)", R->smp.hex, want);
    json_object_set_new(st, "sampler_xxh3", json_string(R->smp.hex[0] ? R->smp.hex : "unknown"));
    json_object_set_new(st, "lag_base", json_integer(R->lag_base));
    if (opt.g.agg == GRPO_AGG_CONST && opt.g.max_len == 0 && R->smp.max_new_tokens > 0)
        opt.g.max_len = R->smp.max_new_tokens;
}

static void open_ref(struct run *R)
{
    int N = opt.max_tokens, T = N < R->t.model.cfg.max_pos ? N : R->t.model.cfg.max_pos;
    R->ref_a = &R->a, R->ref_ws = &R->ws;
    if (!opt.ref) return;
    model_load(&R->ref, opt.ref);
    R->has_ref = true;
    if (R->ref.cfg.V != R->t.model.cfg.V)
        die(EX_DATAERR, "--ref %s has %d embedding rows, --model %s has %d: the KL needs one vocabulary",
            opt.ref, R->ref.cfg.V, topt.model_dir, R->t.model.cfg.V);
    if (topt.lora_rank == 0 && same_shape(&R->ref.cfg, &R->t.model.cfg)) return;   // share the arena
    if (R->ref.cfg.max_pos < T) T = R->ref.cfg.max_pos;
    lm_acts_init_forward(&R->ref_a_own, &R->ref.cfg, N, T);
    grpo_ws_init(&R->ref_ws_own, &R->ref.cfg, N);
    R->ref_a = &R->ref_a_own, R->ref_ws = &R->ref_ws_own;
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    dist_init(argc, argv);
    parse_args(argc, argv);
    static struct run R;
    trainer_init(&R.t, &topt);
    topt = R.t.opt;   // the options in force: --continue fills in the run's (model, lora_rank, ...)
    // The policy that must have sampled: the weights, or with LoRA base + adapter (lora.h).
    hash_hex(R.t.lora ? lora_policy_hash(R.t.base_hash, R.t.start_hash) : R.t.start_hash, R.policy_hex);
    static const char *const schemas[] = {"srlm.samples", NULL};
    rec_reader_open(&R.r, input, input_name, topt.max_record_bytes);
    const msgpack_object *hdr = rec_read_header(&R.r, schemas, "rl-step reads scored samples: rollout | score | rl-step");
    check_sampler(&R, hdr);
    open_ref(&R);
    rec_writer_open(&R.w, stdout);
    trainer_begin(&R.t, &R.w, hdr, NOPTIONS, pack_options, NULL);
    int N = opt.max_tokens, T = N < R.t.model.cfg.max_pos ? N : R.t.model.cfg.max_pos;
    trainer_acts_init(&R.t, &R.a, N, T);
    grpo_ws_init(&R.ws, &R.t.model.cfg, N);
    R.policy = (struct grpo_policy){&R.t.model, R.t.loss_grads, backward_cb, &R.t};
    grpo_batch_init(&R.b);

    // resume: skip what the checkpoint's steps consumed, then the steps done inside that batch
    msgpack_object rec;
    for (long long i = 0; i < R.t.data_pos; i++)
        if (!rec_reader_next_data(&R.r, &rec))
            die(EX_DATAERR, "%s: --resume: the input ends after %lld records, but the checkpoint consumed %lld",
                R.r.name, i, R.t.data_pos);
    int skip = (int)state_int(R.t.tool_state, "batch_step");
    R.batch_index = state_int(R.t.tool_state, "batch_index");
    while (run_batch(&R, skip)) skip = 0;

    trainer_finish(&R.t);
    grpo_batch_free(&R.b);
    grpo_ws_free(&R.ws), lm_acts_free(&R.a);
    if (R.ref_a != &R.a) grpo_ws_free(&R.ref_ws_own), lm_acts_free(&R.ref_a_own);
    if (R.has_ref) model_free(&R.ref);
    rec_reader_close(&R.r);
    close_input(input);
    tool_exit(0);
}
