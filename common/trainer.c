// trainer.c — see trainer.h.
#include "trainer.h"
#include "blas.h"
#include "dist.h"
#include "json.h"
#include "lora.h"
#include "progress.h"
#include "tfevents.h"
#include "util.h"

#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

// ---------------------------------------------------------------------------------------------
// options

void trainer_options_default(struct trainer_options *o)
{
    *o = (struct trainer_options){
        .lr = 1e-5, .min_lr = 0.0, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999,
        .eps = 1e-8, .clip = 1.0, .seed = 1337, .save_dtype = SAFETENSORS_F32,
        .max_record_bytes = REC_DEFAULT_MAX_BYTES, .lora_targets = "all",
    };
}

int trainer_parse_option(struct trainer_options *o, int c, const char *arg)
{
    if (c >= TRAINER_OPT_BASE && c < TRAINER_OPT_BASE + 64) o->set |= 1ull << (c - TRAINER_OPT_BASE);
    switch (c) {
    case 'q': log_level = LOG_LEVEL_WARN; return 1;
    case 'v': log_level = LOG_LEVEL_DEBUG; return 1;
    case TRAINER_O_MODEL: o->model_dir = arg; return 1;
    case TRAINER_O_OUT: o->out_dir = arg; return 1;
    case TRAINER_O_LR: o->lr = parse_float(arg, 0, 10, "--lr"); return 1;
    case TRAINER_O_MIN_LR: o->min_lr = parse_float(arg, 0, 10, "--min-lr"); return 1;
    case TRAINER_O_SCHEDULE: {
        int s = lr_schedule_parse(arg);
        if (s < 0) usage_error("--schedule: \"%s\" is not constant, linear or cosine", arg);
        o->schedule = (enum lr_schedule)s;
        return 1;
    }
    case TRAINER_O_WARMUP: o->warmup = (long)parse_int(arg, 0, LONG_MAX / 2, "--warmup"); return 1;
    case TRAINER_O_STEPS: o->steps = (long)parse_int(arg, 1, LONG_MAX / 2, "--steps"); return 1;
    case TRAINER_O_WD: o->weight_decay = parse_float(arg, 0, 10, "--weight-decay"); return 1;
    case TRAINER_O_BETA1: o->beta1 = parse_float(arg, 0, 0.999999, "--beta1"); return 1;
    case TRAINER_O_BETA2: o->beta2 = parse_float(arg, 0, 0.99999999, "--beta2"); return 1;
    case TRAINER_O_EPS: o->eps = parse_float(arg, 1e-30, 1, "--adam-eps"); return 1;
    case TRAINER_O_CLIP: o->clip = parse_float(arg, 0, 1e12, "--clip"); return 1;
    case TRAINER_O_SAVE_EVERY: o->save_every = (long)parse_int(arg, 0, LONG_MAX / 2, "--save-every"); return 1;
    case TRAINER_O_RESUME: o->resume = true; return 1;
    case TRAINER_O_SEED: o->seed = (uint64_t)parse_int(arg, 0, LLONG_MAX, "--seed"); return 1;
    case TRAINER_O_THREADS: o->threads = (int)parse_int(arg, 1, 1024, "--threads"); return 1;
    case TRAINER_O_SAVE_DTYPE:
        if (!strcmp(arg, "f32")) o->save_dtype = SAFETENSORS_F32;
        else if (!strcmp(arg, "bf16")) o->save_dtype = SAFETENSORS_BF16;
        else usage_error("--save-dtype: \"%s\" is not f32 or bf16", arg);
        return 1;
    case TRAINER_O_MAX_RECORD_BYTES:
        o->max_record_bytes = parse_size(arg, 1024, (size_t)1 << 32, "--max-record-bytes");
        return 1;
    case TRAINER_O_LORA_RANK: o->lora_rank = (int)parse_int(arg, 0, 65536, "--lora-rank"); return 1;
    case TRAINER_O_LORA_ALPHA: o->lora_alpha = parse_float(arg, 1e-6, 1e6, "--lora-alpha"); return 1;
    case TRAINER_O_LORA_TARGETS: o->lora_targets = arg; return 1;
    case TRAINER_O_CONTINUE: o->continue_dir = arg; return 1;
    case TRAINER_O_ADAPTER: o->adapter_dir = arg; return 1;
    case TRAINER_O_LOG_DIR: o->log_dir = arg; return 1;
    case TRAINER_O_SAVE_LIMIT: o->save_total_limit = (long)parse_int(arg, 0, LONG_MAX / 2, "--save-total-limit"); return 1;
    }
    return 0;
}

void trainer_options_check(const struct trainer_options *o)
{
    if (!o->model_dir && !o->continue_dir) usage_error("--model DIR is required");
    if (!o->out_dir) usage_error("--out DIR is required");
    if (o->continue_dir && o->adapter_dir)
        usage_error("--continue and --adapter both name a starting point: give one");
    if (o->continue_dir) return;   // the rest is checked once the run's options are known
    if (o->min_lr > o->lr) usage_error("--min-lr %g exceeds --lr %g", o->min_lr, o->lr);
    if (o->steps && o->warmup > o->steps) usage_error("--warmup %ld exceeds --steps %ld", o->warmup, o->steps);
    if (o->lora_rank == 0 && !o->adapter_dir && (o->lora_alpha != 0 || strcmp(o->lora_targets, "all")))
        usage_error("--lora-alpha and --lora-targets need --lora-rank");
}

void trainer_usage(FILE *f)
{
    fprintf(f,
        "common training options:\n"
        "      --model DIR          model to train (Hugging Face directory; required)\n"
        "      --out DIR            checkpoint directory (created; required)\n"
        "      --lr X               peak learning rate (default 1e-5)\n"
        "      --min-lr X           learning rate at the end of linear/cosine decay (default 0)\n"
        "      --schedule S         constant (default) | linear | cosine\n"
        "      --warmup N           linear warm-up steps from 0 (default 0)\n"
        "      --steps N            optimizer steps (default: until the input ends; linear and\n"
        "                           cosine need it when it cannot be counted in advance)\n"
        "      --weight-decay X     AdamW decoupled decay on matrices; biases and norm weights\n"
        "                           never decay (as transformers' Trainer) (default 0)\n"
        "      --beta1 X --beta2 X --adam-eps X   AdamW (default 0.9, 0.999, 1e-8)\n"
        "      --clip X             max global gradient norm, 0 = off (default 1)\n"
        "      --save-every N       checkpoint every N steps (default 0: at the end only); each also\n"
        "                           as a complete model in --out/checkpoint-<step>/\n"
        "      --save-total-limit K keep the newest K checkpoint-<step>/ directories (default 0: all)\n"
        "      --resume             continue the run checkpointed in --out (exactly)\n"
        "      --continue DIR       go on with the run checkpointed in DIR on a new input: its\n"
        "                           weights, AdamW moments, step and LR schedule, and its options\n"
        "                           unless given (one RL run over many rollout iterations)\n"
        "      --seed N             seed (default 1337)\n"
        "      --threads N          threads for everything (default BLIS_NUM_THREADS, else\n"
        "                           OMP_NUM_THREADS, else the CPUs this process may use)\n"
        "      --save-dtype T       f32 (default) | bf16 weights on disk (master weights stay f32)\n"
        "      --max-record-bytes N largest input record (default 64M)\n"
        "      --lora-rank R        train a LoRA adapter of rank R instead of every weight\n"
        "      --lora-alpha X       LoRA alpha (default 2R); scaling = alpha / R\n"
        "      --lora-targets LIST  q,k,v,o,gate,up,down | attn | mlp | all (default all)\n"
        "      --adapter DIR        start the LoRA adapter from DIR (PEFT layout) instead of new\n"
        "      --log-dir DIR        also write the metrics as TensorBoard event files in DIR\n"
        "                           (created; tags train/<name>; flushed every step)\n"
        "  -q, -v                   quieter (no progress lines), more verbose\n");
}

// ---------------------------------------------------------------------------------------------
// files

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

// mkdir -p, then proves the directory writable by creating and removing a file, so a run that
// could never save fails now (exit 73) rather than after hours of training.
static void out_dir_prepare(const char *dir)
{
    make_dirs(dir);
    char probe[64];
    snprintf(probe, sizeof probe, ".srlm-probe.%ld", (long)getpid());
    char *path = path_join(dir, probe);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) die(EX_CANTCREAT, "create %s:", path);
    close(fd);
    unlink(path);
    free(path);
}

static char *state_dir(const char *out, long step)
{
    char name[48];
    snprintf(name, sizeof name, "state-%ld", step);
    return path_join(out, name);
}

// Removes DIR/state-* except state-<keep> (files inside, then the directory). Best effort: a
// leftover directory is harmless (resume reads the one matching the model's step).
static void remove_other_states(const char *out, long keep)
{
    DIR *d = opendir(out);
    if (!d) return;
    struct dirent *e;
    char keepname[48];
    snprintf(keepname, sizeof keepname, "state-%ld", keep);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "state-", 6) || !strcmp(e->d_name, keepname)) continue;
        char *sd = path_join(out, e->d_name);
        DIR *sdir = opendir(sd);
        if (sdir) {
            struct dirent *f;
            while ((f = readdir(sdir)))
                if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) {
                    char *fp = path_join(sd, f->d_name);
                    unlink(fp);
                    free(fp);
                }
            closedir(sdir);
            rmdir(sd);
        }
        free(sd);
    }
    closedir(d);
}

// ---------------------------------------------------------------------------------------------
// init

// The checkpoint step in DIR (of its model, or of its adapter with LoRA), or -1 when DIR holds no
// srlm checkpoint.
static long checkpoint_step(const char *out, bool lora)
{
    const char *file = lora ? "adapter_model.safetensors" : "model.safetensors";
    char *mp = path_join(out, file);
    bool has = file_exists(mp);
    free(mp);
    if (!has) return -1;
    struct safetensors st;
    char *p = path_join(out, file);
    safetensors_open(&st, p);
    const char *s = safetensors_metadata(&st, "srlm_step");
    long step = -1;
    if (s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end || v < 0) die(EX_DATAERR, "%s: metadata srlm_step \"%s\" is not a step", p, s);
        step = (long)v;
    }
    safetensors_close(&st);
    free(p);
    return step;
}

static int state_bufs(struct trainer *t, struct model_state_buf *bufs, bool master)
{
    int n = 0;
    bufs[n++] = (struct model_state_buf){"exp_avg", t->m1};
    bufs[n++] = (struct model_state_buf){"exp_avg_sq", t->m2};
    if (master) bufs[n++] = (struct model_state_buf){"params", t->params};
    return n;
}

// The run's options, saved in every trainer_state.json so that --continue (and --resume) need
// not repeat them. One table serves saving, loading and the change log.
enum run_opt_type { RO_REAL, RO_INT, RO_STR, RO_SCHEDULE, RO_DTYPE };
struct run_opt {
    const char *key;
    enum trainer_opt code;
    enum run_opt_type type;
    size_t off;
};
#define RO(k, c, ty, f) {k, c, ty, offsetof(struct trainer_options, f)}
static const struct run_opt run_opts[] = {
    RO("lr", TRAINER_O_LR, RO_REAL, lr), RO("min_lr", TRAINER_O_MIN_LR, RO_REAL, min_lr),
    RO("schedule", TRAINER_O_SCHEDULE, RO_SCHEDULE, schedule), RO("warmup", TRAINER_O_WARMUP, RO_INT, warmup),
    RO("steps", TRAINER_O_STEPS, RO_INT, steps), RO("weight_decay", TRAINER_O_WD, RO_REAL, weight_decay),
    RO("beta1", TRAINER_O_BETA1, RO_REAL, beta1), RO("beta2", TRAINER_O_BETA2, RO_REAL, beta2),
    RO("adam_eps", TRAINER_O_EPS, RO_REAL, eps), RO("clip", TRAINER_O_CLIP, RO_REAL, clip),
    RO("save_dtype", TRAINER_O_SAVE_DTYPE, RO_DTYPE, save_dtype),
    RO("save_every", TRAINER_O_SAVE_EVERY, RO_INT, save_every),
    RO("lora_rank", TRAINER_O_LORA_RANK, RO_INT, lora_rank), RO("lora_alpha", TRAINER_O_LORA_ALPHA, RO_REAL, lora_alpha),
    RO("lora_targets", TRAINER_O_LORA_TARGETS, RO_STR, lora_targets),
};
#undef RO

static const char *schedule_name(enum lr_schedule s)
{
    return s == LR_LINEAR ? "linear" : s == LR_COSINE ? "cosine" : "constant";
}

// The value of option r in o as JSON (new reference).
static json_t *run_opt_get(const struct trainer_options *o, const struct run_opt *r)
{
    const char *p = (const char *)o + r->off;
    switch (r->type) {
    case RO_REAL: return json_real(*(const double *)p);
    case RO_INT:
        if (r->code == TRAINER_O_LORA_RANK) return json_integer(*(const int *)p);
        return json_integer(*(const long *)p);
    case RO_STR: return json_string(*(const char *const *)p);
    case RO_SCHEDULE: return json_string(schedule_name(*(const enum lr_schedule *)p));
    case RO_DTYPE: return json_string(*(const enum safetensors_dtype *)p == SAFETENSORS_BF16 ? "bf16" : "f32");
    }
    return json_null();
}

// Sets option r of o from the saved value v; exit 65 (naming file) if v has the wrong type.
static void run_opt_set(struct trainer_options *o, const struct run_opt *r, json_t *v, const char *file)
{
    char *p = (char *)o + r->off;
    int s;
    switch (r->type) {
    case RO_REAL:
        if (!json_is_number(v)) break;
        *(double *)p = json_number_value(v);
        return;
    case RO_INT:
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > LONG_MAX / 2) break;
        if (r->code == TRAINER_O_LORA_RANK) {
            if (json_integer_value(v) > 65536) break;
            *(int *)p = (int)json_integer_value(v);
        } else *(long *)p = (long)json_integer_value(v);
        return;
    case RO_STR:   // borrowed from the JSON object, which the trainer keeps (t->run_json)
        if (!json_is_string(v)) break;
        *(const char **)p = json_string_value(v);
        return;
    case RO_SCHEDULE:
        if (!json_is_string(v) || (s = lr_schedule_parse(json_string_value(v))) < 0) break;
        *(enum lr_schedule *)p = (enum lr_schedule)s;
        return;
    case RO_DTYPE:
        if (!json_is_string(v)) break;
        if (!strcmp(json_string_value(v), "f32")) *(enum safetensors_dtype *)p = SAFETENSORS_F32;
        else if (!strcmp(json_string_value(v), "bf16")) *(enum safetensors_dtype *)p = SAFETENSORS_BF16;
        else break;
        return;
    }
    die(EX_DATAERR, "%s: run option \"%s\" has a value of the wrong type or range", file, r->key);
}

static json_t *run_options_json(const struct trainer_options *o)
{
    json_t *run = json_object();
    for (size_t i = 0; i < sizeof run_opts / sizeof run_opts[0]; i++)
        json_object_set_new(run, run_opts[i].key, run_opt_get(o, &run_opts[i]));
    json_object_set_new(run, "model", json_string(o->model_dir));
    return run;
}

// Takes every run option not given on the command line from the saved "run" object (owned by
// the caller, who must keep it alive while o's strings borrow from it); logs the ones given with
// another value. A state without "run" (written before it existed) changes nothing.
static void run_options_inherit(struct trainer_options *o, json_t *run, const char *file)
{
    if (!json_is_object(run)) return;
    for (size_t i = 0; i < sizeof run_opts / sizeof run_opts[0]; i++) {
        const struct run_opt *r = &run_opts[i];
        json_t *v = json_object_get(run, r->key);
        if (!v) continue;
        if (!(o->set & (1ull << (r->code - TRAINER_OPT_BASE)))) {
            run_opt_set(o, r, v, file);
            continue;
        }
        json_t *now = run_opt_get(o, r);
        if (!json_equal(now, v)) {
            char *a = json_dumps(v, JSON_ENCODE_ANY), *b = json_dumps(now, JSON_ENCODE_ANY);
            log_info("%s: the run had %s = %s; --%s gives %s from now on", file, r->key, a ? a : "?", r->key, b ? b : "?");
            free(a), free(b);
        }
        json_decref(now);
    }
    json_t *m = json_object_get(run, "model");   // a LoRA run's frozen base
    if (!o->model_dir && o->lora_rank > 0 && json_is_string(m)) o->model_dir = json_string_value(m);
}

// Reads DIR/state-<step>/ into the moments and the trainer's position. Returns the state object
// (new reference).
static json_t *load_state(struct trainer *t, const char *dir, long step)
{
    char *sd = state_dir(dir, step), *tsp = path_join(sd, "trainer_state.json");
    if (!file_exists(tsp))
        die(EX_DATAERR, "%s: checkpoint of step %ld has no run state (%s missing); cannot resume",
            dir, step, tsp);
    json_t *peek = json_read_file(tsp);
    bool master = json_is_true(json_object_get(peek, "master_weights"));
    json_decref(peek);
    struct model_state_buf bufs[3];
    int nb = state_bufs(t, bufs, master);
    json_t *st = t->lora ? lora_state_load(sd, t->lora, bufs, nb, step)
                         : model_state_load(sd, &t->model.cfg, bufs, nb, step);
    free(tsp);
    free(sd);
    return st;
}

// The position in the input and the tool's state, from a --resume'd state.
static void resume_position(struct trainer *t, json_t *st)
{
    json_t *v;
    if ((v = json_object_get(st, "data_pos")) && json_is_integer(v)) t->data_pos = json_integer_value(v);
    if ((v = json_object_get(st, "epoch")) && json_is_integer(v)) t->epoch = (long)json_integer_value(v);
    if ((v = json_object_get(st, "tool_state")) && json_is_object(v)) {
        json_decref(t->tool_state);
        t->tool_state = json_incref(v);
    }
}

// The run's seed carries on (its RNG streams are keyed by it).
static void keep_seed(struct trainer *t, json_t *st)
{
    json_t *v = json_object_get(st, "seed");
    if (v && json_is_integer(v) && (uint64_t)json_integer_value(v) != t->opt.seed) {
        if (t->opt.set & (1ull << (TRAINER_O_SEED - TRAINER_OPT_BASE)))
            log_warn("the run used --seed %lld; continuing with it", (long long)json_integer_value(v));
        t->opt.seed = (uint64_t)json_integer_value(v);
    }
}

// The adapter of a LoRA run: loaded from a checkpoint (from != NULL), from --adapter, or new.
static void lora_setup(struct trainer *t, const char *from)
{
    const struct trainer_options *o = &t->opt;
    struct lora_config lc = {.r = o->lora_rank, .alpha = o->lora_alpha ? o->lora_alpha : 2.0 * o->lora_rank,
                             .base_model = o->model_dir};
    if (lora_targets_parse(o->lora_targets, &lc.targets) != 0)
        usage_error("--lora-targets: \"%s\" is not a list of q,k,v,o,gate,up,down (or attn, mlp, all)", o->lora_targets);
    t->lora = xcalloc(1, sizeof *t->lora);
    const char *dir = from ? from : o->adapter_dir;
    if (dir) {
        lora_load(t->lora, &t->model.cfg, dir);
        bool given = o->set & (1ull << (TRAINER_O_LORA_RANK - TRAINER_OPT_BASE));
        bool tgiven = o->set & (1ull << (TRAINER_O_LORA_TARGETS - TRAINER_OPT_BASE));
        if ((given || from) && t->lora->r != lc.r)
            die(EX_USAGE, "the adapter in %s has rank %d, not --lora-rank %d", dir, t->lora->r, lc.r);
        if ((tgiven || from) && t->lora->targets != lc.targets)
            die(EX_USAGE, "the adapter in %s has other targets than --lora-targets %s", dir, o->lora_targets);
        t->opt.lora_rank = t->lora->r;
    } else {
        lora_init(t->lora, &t->model.cfg, &lc);
        lora_init_random(t->lora, o->seed);
    }
    t->params = t->lora->params;
    t->nparams = t->lora->num_params;
    t->grad_memory = lora_alloc_buffer(t->lora);
    t->m1 = lora_alloc_buffer(t->lora);
    t->m2 = lora_alloc_buffer(t->lora);
    t->loss_grads = &t->frozen;   // all NULL: no base gradient, not even lm_head's
}

// The checkpoint step in dir and whether it is an adapter, or -1: a full model checkpoint
// (model.safetensors with srlm_step) first, else an adapter's.
static long find_checkpoint(const char *dir, bool *lora)
{
    long s = checkpoint_step(dir, false);
    *lora = false;
    if (s < 0 && (s = checkpoint_step(dir, true)) >= 0) *lora = true;
    return s;
}

static long *checkpoint_dirs(const char *out, size_t *n);
static char *checkpoint_dir_path(const char *out, long step, bool tmp);

// --resume: a checkpoint-<s>/ newer than --out's own checkpoint (a run killed between writing the
// two) wins; its path is kept in t->resume_dir for as long as src points at it.
static void newest_checkpoint_dir(struct trainer *t, const char **src, long *ck, bool *lora)
{
    size_t n;
    long *v = checkpoint_dirs(t->opt.out_dir, &n);
    for (size_t i = n; i-- > 0;) {
        if (v[i] <= *ck) break;
        char *d = checkpoint_dir_path(t->opt.out_dir, v[i], false);
        bool l;
        long s = find_checkpoint(d, &l);
        if (s == v[i]) {
            t->resume_dir = d;
            *src = d, *ck = s, *lora = l;
            break;
        }
        free(d);
    }
    free(v);
}

static void check_ranks_agree(const struct trainer *t);   // below
static void zero_shard(struct trainer *t);

void trainer_init(struct trainer *t, const struct trainer_options *o)
{
    memset(t, 0, sizeof *t);
    t->opt = *o;
    t->saved_step = -1;
    t->cont_step = -1;
    t->tool_state = json_object();
    blas_init(o->threads);
    if (dist_rank() == 0) out_dir_prepare(o->out_dir);   // rank 0 alone writes (dist.h)

    // Where the run's state comes from: --out's own checkpoint (--resume), --continue's, or none.
    bool ck_lora = false;
    long ck = o->resume ? find_checkpoint(o->out_dir, &ck_lora) : -1;
    const char *src = ck >= 0 ? o->out_dir : NULL;
    if (o->resume) newest_checkpoint_dir(t, &src, &ck, &ck_lora);
    if (!src && o->continue_dir) {
        if ((ck = find_checkpoint(o->continue_dir, &ck_lora)) < 0)
            die(EX_NOINPUT, "--continue %s: no checkpoint there (model.safetensors or adapter_model.safetensors "
                "with srlm_step, written by sft-step or rl-step)", o->continue_dir);
        src = o->continue_dir;
        t->cont_step = ck;
    }
    if (o->resume && !src) log_info("--resume: no checkpoint in %s; starting from %s", o->out_dir, o->model_dir);
    if (src) {   // the run's options, before anything is loaded
        char *sd = state_dir(src, ck), *tsp = path_join(sd, "trainer_state.json");
        if (!file_exists(tsp))
            die(EX_DATAERR, "%s: checkpoint of step %ld has no run state (%s missing); cannot %s", src, ck, tsp,
                t->cont_step >= 0 ? "continue" : "resume");
        t->run_json = json_read_file(tsp);
        // --resume alone keeps the contract "the same options again" (a run stopped by an
        // early --steps may resume with another); a continued run inherits what is not given.
        if (o->continue_dir) run_options_inherit(&t->opt, json_object_get(t->run_json, "run"), tsp);
        free(tsp), free(sd);
        if (ck_lora != (t->opt.lora_rank > 0))
            die(EX_USAGE, "%s holds %s, but the options train %s", src, ck_lora ? "a LoRA adapter" : "a full model",
                t->opt.lora_rank > 0 ? "a LoRA adapter" : "the full model");
        if (!t->opt.model_dir && !ck_lora) t->opt.model_dir = src;   // its tokenizer is the run's
        if (!t->opt.model_dir) die(EX_USAGE, "--continue %s: the run's base model is unknown: give --model", src);
    }
    o = &t->opt;

    char *tok = path_join(o->model_dir, "tokenizer.json");
    if (file_exists(tok)) {
        t->tok_hash = hash_file(tok);
        t->has_tok_hash = true;
        t->tok_vocab = model_tokenizer_vocab_size(tok);
    } else {
        log_warn("%s has no tokenizer.json: the checkpoints in %s will hold none, and tokenize/rollout "
                 "need one (copy it there)", o->model_dir, o->out_dir);
    }
    free(tok);

    bool lora = o->lora_rank > 0 || (o->adapter_dir && !src);   // --adapter alone: its own rank (lora_setup)
    // With LoRA the base model is always --model (frozen); the checkpoint holds the adapter.
    model_load(&t->model, src && !lora ? src : o->model_dir);
    if (lora) {
        lora_setup(t, src);
    } else {
        if (o->adapter_dir) usage_error("--adapter needs a LoRA run (--lora-rank)");
        t->params = t->model.params_memory;
        t->nparams = t->model.cfg.num_params;
        t->grad_memory = model_alloc_buffer(&t->model.cfg);
        t->m1 = model_alloc_buffer(&t->model.cfg);
        t->m2 = model_alloc_buffer(&t->model.cfg);
        model_params_attach(&t->grads, &t->model.cfg, t->grad_memory);
        t->loss_grads = &t->grads;
    }
    if (src) {
        json_t *st = load_state(t, src, ck);
        keep_seed(t, st);
        t->step = ck;
        if (t->cont_step < 0) {
            resume_position(t, st);
            if (src != o->out_dir) log_info("--resume: %s is newer than %s's own checkpoint", src, o->out_dir);
            // A run killed between writing a checkpoint and removing the older run states (or while
            // writing a newer one) leaves other state-* directories; the loaded pair is the
            // consistent one, so the rest go now, also when the run has nothing left to do.
            // Resumed from a newer checkpoint-<s>/ (killed after it was renamed into place but
            // before --out's own checkpoint of that step), --out's own is older than the loaded
            // state: it is written again (at the next save, or by trainer_finish when the run has
            // nothing left to do), and that write removes its stale states.
            if (src == o->out_dir) {
                remove_other_states(o->out_dir, ck);
                t->saved_step = ck;
            }
            log_info("resuming %s from step %ld (%lld records consumed)", o->out_dir, ck, t->data_pos);
        } else {
            log_info("continuing the run of %s from step %ld on a new input", src, ck);
        }
        json_decref(st);
    }
    t->start_step = t->step;
    if (o->min_lr > o->lr) usage_error("--min-lr %g exceeds --lr %g", o->min_lr, o->lr);
    if (t->opt.schedule != LR_CONSTANT && t->opt.steps == 0)
        usage_error("--schedule %s needs --steps", t->opt.schedule == LR_LINEAR ? "linear" : "cosine");
    if (t->opt.steps && t->opt.warmup > t->opt.steps)
        usage_error("--warmup %ld exceeds --steps %ld", t->opt.warmup, t->opt.steps);
    if (t->opt.steps && t->step >= t->opt.steps && t->cont_step >= 0)
        log_warn("--continue %s: the run is at step %ld of --steps %ld; nothing to train", src, t->step, t->opt.steps);
    t->start_hash = trainer_hash(t);
    t->base_hash = model_hash(&t->model);
    check_ranks_agree(t);
    zero_shard(t);
}

// Under MPI every rank loads the model and the run state itself (a checkpoint in --out must be
// on a filesystem every rank sees): the ranks must start from the same weights, moments and step.
static void check_ranks_agree(const struct trainer *t)
{
    if (dist_size() == 1) return;
    const char *hint = ": every rank must read the same --model, and --out (for --resume) and "
                       "--continue on a filesystem shared by all ranks (docs/scaling.md)";
    XXH64_hash_t w[2] = {t->start_hash, t->base_hash};
    dist_check_same("the starting weights (xxh3 of model and adapter)", XXH3_64bits(w, sizeof w), hint);
    XXH64_hash_t st[5] = {(XXH64_hash_t)t->step, (XXH64_hash_t)t->data_pos, (XXH64_hash_t)t->epoch,
                          (XXH64_hash_t)t->opt.seed,
                          XXH3_64bits(t->m1, t->nparams * sizeof(float)) ^ XXH3_64bits(t->m2, t->nparams * sizeof(float))};
    dist_check_same("the run state (step, records consumed, seed, optimizer moments)", XXH3_64bits(st, sizeof st), hint);
}

// ZeRO stage 1 (trainer.h): keeps this rank's slice of the moments, loaded whole.
static void zero_shard(struct trainer *t)
{
    t->zlo = 0, t->zhi = t->nparams;
    const char *e = getenv("SRLM_ZERO");
    if (dist_size() == 1 || (e && !strcmp(e, "0"))) return;
    dist_slice(t->nparams, &t->zlo, &t->zhi);
    size_t k = t->zhi - t->zlo;
    float *a = xmalloc((k ? k : 1) * sizeof(float)), *b = xmalloc((k ? k : 1) * sizeof(float));
    memcpy(a, t->m1 + t->zlo, k * sizeof(float));
    memcpy(b, t->m2 + t->zlo, k * sizeof(float));
    free(t->m1), free(t->m2);
    t->m1 = a, t->m2 = b;
}

static bool zero_sharded(const struct trainer *t) { return t->zhi - t->zlo != t->nparams; }

// Whole moments on rank 0 for a checkpoint (every rank calls it). Rank 0's slice is the head of
// the vector (zlo = 0), so its buffers grow in place to the whole length: its peak is the whole
// moments, as without sharding.
static void zero_gather(struct trainer *t)
{
    if (!zero_sharded(t)) return;
    bool root = dist_rank() == 0;
    if (root) {
        t->m1 = xrealloc(t->m1, t->nparams * sizeof(float));
        t->m2 = xrealloc(t->m2, t->nparams * sizeof(float));
    }
    dist_gather_slices(root ? t->m1 : NULL, t->m1, t->nparams);
    dist_gather_slices(root ? t->m2 : NULL, t->m2, t->nparams);
}

// Back to rank 0's slice after the checkpoint.
static void zero_ungather(struct trainer *t)
{
    if (!zero_sharded(t) || dist_rank() > 0) return;
    size_t k = t->zhi > 0 ? t->zhi : 1;
    t->m1 = xrealloc(t->m1, k * sizeof(float));
    t->m2 = xrealloc(t->m2, k * sizeof(float));
}

uint64_t trainer_hash(const struct trainer *t)
{
    return t->lora ? lora_hash(t->lora) : model_hash(&t->model);
}

void trainer_acts_init(struct trainer *t, struct lm_acts *a, int N_max, int T_max)
{
    lm_acts_init(a, &t->model.cfg, N_max, T_max);
    if (t->lora) lm_acts_set_lora(a, t->lora);
}

void trainer_backward(struct trainer *t, struct lm_acts *a, float *dhN)
{
    if (t->lora) lm_backward_lora(&t->model, NULL, t->grad_memory, a, dhN);
    else lm_backward(&t->model, &t->grads, a, dhN);
}

// ---------------------------------------------------------------------------------------------
// output

static void hex(struct rec_writer *w, uint64_t h)
{
    char s[17];
    hash_hex(h, s);
    rec_pack_str(w, s);
}

static const char *dtype_name(enum safetensors_dtype d)
{
    return d == SAFETENSORS_BF16 ? "bf16" : "f32";
}

struct header_ctx {
    struct trainer *t;
    int ntool;
    rec_pack_fn tool_opts;
    void *ctx;
};

#define TRAINER_NOPTS 23

static void pack_header(struct rec_writer *w, void *vctx)
{
    struct header_ctx *h = vctx;
    struct trainer *t = h->t;
    const struct trainer_options *o = &t->opt;
    rec_pack_key(w, "model_xxh3"); hex(w, t->base_hash);
    if (t->lora) { rec_pack_key(w, "adapter_xxh3"); hex(w, t->start_hash); }
    rec_pack_key(w, "tokenizer_xxh3");
    if (t->has_tok_hash) hex(w, t->tok_hash); else rec_pack_nil(w);
    rec_pack_key(w, "vocab_size"); rec_pack_int(w, t->model.cfg.V);
    rec_pack_key(w, "seed"); rec_pack_uint(w, o->seed);
    rec_pack_key(w, "resumed_from"); rec_pack_int(w, t->cont_step >= 0 ? 0 : t->start_step);
    rec_pack_key(w, "continued_from");
    if (t->cont_step >= 0) {
        rec_pack_map(w, 2);
        rec_pack_key(w, "path"); rec_pack_str(w, o->continue_dir);
        rec_pack_key(w, "step"); rec_pack_int(w, t->cont_step);
    } else rec_pack_nil(w);
    rec_pack_key(w, "options");
    rec_pack_map(w, (uint32_t)(TRAINER_NOPTS + h->ntool));
    rec_pack_key(w, "model"); rec_pack_str(w, o->model_dir);
    rec_pack_key(w, "out"); rec_pack_str(w, o->out_dir);
    rec_pack_key(w, "lr"); rec_pack_double(w, o->lr);
    rec_pack_key(w, "min_lr"); rec_pack_double(w, o->min_lr);
    rec_pack_key(w, "schedule"); rec_pack_str(w, schedule_name(o->schedule));
    rec_pack_key(w, "warmup"); rec_pack_int(w, o->warmup);
    rec_pack_key(w, "steps"); rec_pack_int(w, o->steps);
    rec_pack_key(w, "weight_decay"); rec_pack_double(w, o->weight_decay);
    rec_pack_key(w, "beta1"); rec_pack_double(w, o->beta1);
    rec_pack_key(w, "beta2"); rec_pack_double(w, o->beta2);
    rec_pack_key(w, "adam_eps"); rec_pack_double(w, o->eps);
    rec_pack_key(w, "clip"); rec_pack_double(w, o->clip);
    rec_pack_key(w, "save_every"); rec_pack_int(w, o->save_every);
    rec_pack_key(w, "resume"); rec_pack_bool(w, o->resume);
    rec_pack_key(w, "seed"); rec_pack_uint(w, o->seed);
    rec_pack_key(w, "threads"); rec_pack_int(w, blas_threads());
    rec_pack_key(w, "save_dtype"); rec_pack_str(w, dtype_name(o->save_dtype));
    rec_pack_key(w, "max_record_bytes"); rec_pack_uint(w, o->max_record_bytes);
    rec_pack_key(w, "lora_rank"); rec_pack_int(w, o->lora_rank);
    rec_pack_key(w, "lora_alpha"); rec_pack_double(w, o->lora_alpha ? o->lora_alpha : 2.0 * o->lora_rank);
    rec_pack_key(w, "lora_targets"); rec_pack_str(w, o->lora_rank ? o->lora_targets : "");
    rec_pack_key(w, "continue"); if (o->continue_dir) rec_pack_str(w, o->continue_dir); else rec_pack_nil(w);
    rec_pack_key(w, "adapter"); if (o->adapter_dir) rec_pack_str(w, o->adapter_dir); else rec_pack_nil(w);
    if (h->tool_opts) h->tool_opts(w, h->ctx);
}

void trainer_begin(struct trainer *t, struct rec_writer *w, const msgpack_object *upstream,
                   int ntool, rec_pack_fn tool_opts, void *ctx)
{
    t->w = w;
    struct header_ctx h = {t, ntool, tool_opts, ctx};
    rec_write_header(w, "srlm.metrics", upstream, t->lora ? 8 : 7, pack_header, &h);
    rec_flush(w);
    if (t->opt.log_dir && dist_rank() == 0) t->tb = tfevents_open(t->opt.log_dir);
    t->t_start = t->t_last = now_seconds();
}

// ---------------------------------------------------------------------------------------------
// the optimizer step

// Weight decay applies to matrices only: transformers' Trainer.get_decay_parameter_names leaves
// out every "bias" and every norm weight (names matching layernorm / norm / _norm).
static bool kind_decays(enum model_kind k)
{
    switch (k) {
    case MODEL_QB: case MODEL_KB: case MODEL_VB: case MODEL_OB:
    case MODEL_QNW: case MODEL_KNW: case MODEL_LN1W: case MODEL_LN2W: case MODEL_NORMW:
        return false;
    default:
        return true;
    }
}

// AdamW over parameters [off, off + n) that this rank holds moments for (all, unsharded).
static void adamw_range(struct trainer *t, size_t off, size_t n, const struct adamw_config *ac, double lr,
                        long step, float gscale)
{
    size_t a = off > t->zlo ? off : t->zlo, b = off + n < t->zhi ? off + n : t->zhi;
    if (a >= b) return;
    adamw_step(t->params + a, t->grad_memory + a, t->m1 + (a - t->zlo), t->m2 + (a - t->zlo), b - a, ac, lr,
               step, gscale);
}

// One fused pass per group (adamw_step): clip scale, AdamW, and zeroing the gradient for the next
// step. Adjacent kinds with the same decay are one group: the kinds tile [0, nparams) in order.
static void adamw_groups(struct trainer *t, double lr, long step, float gscale)
{
    const struct model_config *c = &t->model.cfg;
    struct adamw_config ac = {.lr = lr, .beta1 = t->opt.beta1, .beta2 = t->opt.beta2, .eps = t->opt.eps};
    if (t->lora) {   // A and B are all matrices: one group, decayed (lora.h)
        ac.weight_decay = t->opt.weight_decay;
        adamw_range(t, 0, t->nparams, &ac, lr, step, gscale);
        return;
    }
    size_t done = 0;
    for (int k = 0; k < MODEL_NKIND; k++) {
        size_t n = c->kind_size[k], off = c->kind_offset[k];
        if (!n) continue;
        ASSERT(off == done);
        bool decays = kind_decays((enum model_kind)k);
        while (k + 1 < MODEL_NKIND && (!c->kind_size[k + 1] || kind_decays((enum model_kind)(k + 1)) == decays))
            n += c->kind_size[++k];
        ac.weight_decay = decays ? t->opt.weight_decay : 0.0;
        adamw_range(t, off, n, &ac, lr, step, gscale);
        done = off + n;
    }
    ASSERT(done == t->nparams);
}

static void save_checkpoint_dir(struct trainer *t);   // below, with the checkpoint writers

bool trainer_done(const struct trainer *t)
{
    return t->opt.steps && t->step >= t->opt.steps;
}

// The metrics record of step s (see trainer.h): to the output stream, and with --log-dir once
// more into memory for log_tensorboard. m->extra must pack the same fields every call.
static void pack_metrics(struct rec_writer *w, long s, const struct trainer_metrics *m, double lr,
                         double gn, double tps, double elapsed, long epoch)
{
    rec_record_begin(w, (uint32_t)(9 + m->nextra));
    rec_pack_key(w, "kind"); rec_pack_str(w, "metrics");
    rec_pack_key(w, "step"); rec_pack_int(w, s);
    rec_pack_key(w, "loss"); rec_pack_double(w, m->loss);
    rec_pack_key(w, "learning_rate"); rec_pack_double(w, lr);
    rec_pack_key(w, "grad_norm"); rec_pack_double(w, gn);
    rec_pack_key(w, "tokens"); rec_pack_int(w, m->tokens);
    rec_pack_key(w, "tokens_per_s"); rec_pack_double(w, tps);
    rec_pack_key(w, "epoch"); rec_pack_int(w, epoch);
    rec_pack_key(w, "elapsed_s"); rec_pack_double(w, elapsed);
    if (m->extra) m->extra(w, m->ctx);
    rec_record_end(w);
}

// --log-dir: every number of step s's metrics record as a TensorBoard scalar train/<name>
// (nested maps as a/b), flushed so that tensorboard --logdir shows the step.
static void log_tensorboard(struct trainer *t, long s, const struct trainer_metrics *m, double lr,
                            double gn, double tps, double elapsed)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *fp = open_memstream(&buf, &n);
    if (!fp) die(EX_OSERR, "open_memstream:");
    struct rec_writer mw;
    rec_writer_open(&mw, fp);
    pack_metrics(&mw, s, m, lr, gn, tps, elapsed, t->epoch);
    if (fclose(fp) != 0) die(EX_OSERR, "open_memstream:");
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT(msgpack_unpack_next(&u, buf, n, NULL) == MSGPACK_UNPACK_SUCCESS);
    static const char *const skip[] = {"kind", "step", NULL};
    tfevents_map(t->tb, "train/", &u.data, skip, s, tfevents_wall_time());
    tfevents_flush(t->tb);
    msgpack_unpacked_destroy(&u);
    free(buf);
}

int trainer_step(struct trainer *t, const struct trainer_metrics *m)
{
    long s = t->step + 1;
    // Under MPI each rank holds the gradient of its micro-batches (already divided by the step's
    // global denominator): their sum is the step's gradient, on every rank.
    dist_sum_f32(t->grad_memory, t->nparams);
    const float *g = t->grad_memory;
    double gn = grad_norm(&g, &t->nparams, 1);
    if (!isfinite(m->loss) || !isfinite(gn))
        die(EX_SOFTWARE, "step %ld: non-finite loss (loss=%g, grad_norm=%g); no checkpoint written "
            "(the last one, if any, is intact)", s, m->loss, gn);
    double lr = lr_at(t->opt.schedule, t->opt.lr, t->opt.min_lr, s, t->opt.warmup, t->opt.steps);
    adamw_groups(t, lr, s, clip_scale(gn, t->opt.clip));   // also zeroes the gradients
    if (zero_sharded(t)) {   // the rest of the gradient, and the other ranks' updated slices
        memset(t->grad_memory, 0, t->zlo * sizeof(float));
        memset(t->grad_memory + t->zhi, 0, (t->nparams - t->zhi) * sizeof(float));
        dist_allgather_slices(t->params, t->nparams);
    }
    t->step = s;
    t->tokens_total += m->tokens;

    double now = now_seconds(), dt = now - t->t_last;
    double tps = dt > 0 ? (double)m->tokens / dt : 0.0;
    pack_metrics(t->w, s, m, lr, gn, tps, now - t->t_start, t->epoch);
    rec_flush(t->w);
    if (t->tb) log_tensorboard(t, s, m, lr, gn, tps, now - t->t_start);
    char total[32] = "", el[32], eta[48] = "";
    if (t->opt.steps) snprintf(total, sizeof total, "/%ld", t->opt.steps);
    double run = now - t->t_start;   // this process's steps so far predict the rest
    if (t->opt.steps && s < t->opt.steps && s > t->start_step) {
        char c[32];
        snprintf(eta, sizeof eta, " eta=%s",
                 progress_clock(run / (double)(s - t->start_step) * (double)(t->opt.steps - s), c));
    }
    log_info("step=%ld%s loss=%.4f lr=%.1e tok/s=%.0f elapsed=%s%s%s%s", s, total, m->loss, lr, tps,
             progress_clock(run, el), eta, m->progress ? " " : "", m->progress ? m->progress : "");

    bool periodic = t->opt.save_every > 0 && s % t->opt.save_every == 0;
    if (periodic) save_checkpoint_dir(t);
    if (periodic || (t->opt.steps && s == t->opt.steps)) trainer_checkpoint(t);
    t->t_last = now_seconds();
    return !(t->opt.steps && s >= t->opt.steps);
}

// ---------------------------------------------------------------------------------------------
// checkpoints

// model_xxh3 of the weights as a loader of the checkpoint sees them (rounded for bf16). The
// gradient buffer (zero between steps) holds the f32 weights meanwhile.
static uint64_t saved_hash(struct trainer *t)
{
    if (t->opt.save_dtype == SAFETENSORS_F32) return trainer_hash(t);
    memcpy(t->grad_memory, t->params, t->nparams * sizeof(float));
    if (t->lora)
        for (size_t i = 0; i < t->nparams; i++) t->params[i] = bf16_to_f32(f32_to_bf16(t->params[i]));
    else
        model_round(&t->model, t->opt.save_dtype);
    uint64_t h = trainer_hash(t);
    memcpy(t->params, t->grad_memory, t->nparams * sizeof(float));
    memset(t->grad_memory, 0, t->nparams * sizeof(float));
    return h;
}

// Writes the current step's checkpoint into dir: the run state (dir/state-<step>/), then the model
// (or adapter), the tokenizer files and generation_config.json; each file atomically.
static void write_checkpoint(struct trainer *t, const char *dir)
{
    const struct trainer_options *o = &t->opt;
    bool master = o->save_dtype != SAFETENSORS_F32;
    struct model_state_buf bufs[3];
    int nb = state_bufs(t, bufs, master);
    json_t *st = json_object();
    json_object_set_new(st, "tool", json_string(progname));
    json_object_set_new(st, "data_pos", json_integer(t->data_pos));
    json_object_set_new(st, "epoch", json_integer(t->epoch));
    json_object_set_new(st, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(st, "master_weights", json_boolean(master));
    json_object_set_new(st, "lr", json_real(lr_at(o->schedule, o->lr, o->min_lr, t->step > 0 ? t->step : 1,
                                                  o->warmup, o->steps)));
    json_object_set(st, "tool_state", t->tool_state);
    json_object_set_new(st, "run", run_options_json(o));
    char *sd = state_dir(dir, t->step);
    if (t->lora) lora_state_save(sd, t->lora, bufs, nb, t->step, st);
    else model_state_save(sd, &t->model.cfg, bufs, nb, t->step, st);
    json_decref(st);
    free(sd);

    if (t->lora) {
        t->lora->step = t->step;
        lora_save(t->lora, dir, o->save_dtype);
    } else {
        t->model.step = t->step;
        model_save(&t->model, dir, o->save_dtype);
    }
    if (t->has_tok_hash && strcmp(o->model_dir, dir)) model_copy_tokenizer(o->model_dir, dir, 0);
    if (!t->lora) model_write_generation_config(&t->model.cfg, dir);   // a complete model
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

// rm -r (best effort: a leftover is never picked, see checkpoint_dirs).
static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// The steps of out's complete checkpoint-<step> directories (renamed into place whole, so a
// half-written one, still named .checkpoint-<step>.tmp, never counts), ascending; *n of them.
static long *checkpoint_dirs(const char *out, size_t *n)
{
    *n = 0;
    DIR *d = opendir(out);
    if (!d) return NULL;
    long *v = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "checkpoint-", 11)) continue;
        errno = 0;
        long s = strtol(e->d_name + 11, &end, 10);
        if (errno || *end || s < 0 || end == e->d_name + 11) continue;
        if (*n == cap) v = xrealloc(v, (cap = cap ? 2 * cap : 8) * sizeof *v);
        v[(*n)++] = s;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++)   // insertion sort: a handful of directories
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) { long x = v[j]; v[j] = v[j - 1]; v[j - 1] = x; }
    return v;
}

static char *checkpoint_dir_path(const char *out, long step, bool tmp)
{
    char name[64];
    snprintf(name, sizeof name, tmp ? ".checkpoint-%ld.tmp" : "checkpoint-%ld", step);
    return path_join(out, name);
}

// --save-every: OUT/checkpoint-<step>/, a complete model with its run state, as transformers'
// Trainer writes; built under a temporary name and renamed into place, then the oldest beyond
// --save-total-limit are removed.
static void save_checkpoint_dir(struct trainer *t)
{
    zero_gather(t);
    if (dist_rank() > 0) return;   // rank 0 writes (dist.h)
    const char *out = t->opt.out_dir;
    char *tmp = checkpoint_dir_path(out, t->step, true), *dst = checkpoint_dir_path(out, t->step, false);
    remove_tree(tmp);
    write_checkpoint(t, tmp);
    remove_tree(dst);
    if (rename(tmp, dst) != 0) die(EX_CANTCREAT, "rename %s to %s:", tmp, dst);
    int fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);   // the rename itself, durably
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) die(EX_IOERR, "fsync %s:", out);
    close(fd);
    free(tmp), free(dst);
    size_t n;
    long *v = checkpoint_dirs(out, &n);
    for (size_t i = 0; t->opt.save_total_limit > 0 && i + (size_t)t->opt.save_total_limit < n; i++) {
        char *old = checkpoint_dir_path(out, v[i], false);
        remove_tree(old);
        free(old);
    }
    free(v);
    zero_ungather(t);
}

void trainer_checkpoint(struct trainer *t)
{
    const struct trainer_options *o = &t->opt;
    zero_gather(t);
    if (dist_rank() > 0) {   // rank 0 writes (dist.h)
        t->saved_step = t->step;
        return;
    }
    write_checkpoint(t, o->out_dir);
    remove_other_states(o->out_dir, t->step);
    t->saved_step = t->step;

    uint64_t h = saved_hash(t);
    struct rec_writer *w = t->w;
    rec_record_begin(w, 4);
    rec_pack_key(w, "kind"); rec_pack_str(w, "checkpoint");
    rec_pack_key(w, "step"); rec_pack_int(w, t->step);
    rec_pack_key(w, "path"); rec_pack_str(w, o->out_dir);
    rec_pack_key(w, "model_xxh3"); hex(w, h);
    rec_record_end(w);
    rec_flush(w);
    log_info("checkpoint step=%ld -> %s", t->step, o->out_dir);
    zero_ungather(t);
}

void trainer_finish(struct trainer *t)
{
    if (t->saved_step != t->step) trainer_checkpoint(t);
    double dt = now_seconds() - t->t_start;
    log_info("done: %ld steps, %lld tokens, %.1f s", t->step - t->start_step, t->tokens_total, dt);
    rec_write_end(t->w);
    tfevents_close(t->tb);
    free(t->grad_memory);
    free(t->m1);
    free(t->m2);
    json_decref(t->tool_state);
    if (t->lora) {
        lora_free(t->lora);
        free(t->lora);
    }
    model_free(&t->model);
    json_decref(t->run_json);
    free(t->resume_dir);
}
