// trainer.h — what every training tool (sft-step, rl-step) shares: the common options, the model
// and its optimizer state, the optimizer step (clipping, AdamW over parameter groups, the
// non-finite guard), checkpoints and resuming, and the srlm.metrics output stream.
// docs/training.md describes the options, the checkpoint layout and the resume guarantees.
//
// CONTRACT FOR A TRAINING TOOL
//
//   static struct trainer_options topt;                  // trainer_options_default(&topt) first
//   static const struct option longs[] = { TRAINER_LONG_OPTIONS, {"loss", ..., O_LOSS}, ..., {0} };
//   getopt_long(argc, argv, "hVqv" ..., longs, NULL), and in the switch:
//       default: if (trainer_parse_option(&topt, c, optarg)) break;  else usage_error(...)
//     (the tool's own option codes must be below TRAINER_OPT_BASE; -q/-v are handled too;
//      usage() calls trainer_usage(f) for the common lines.) After the loop:
//   trainer_options_check(&topt);                        // --model/--out required, ranges (exit 64)
//
//   struct trainer t;
//   trainer_init(&t, &topt);         // blas_init(--threads); loads --model (or, with --resume and
//                                    // a checkpoint in --out, the checkpoint + optimizer state);
//                                    // allocates grads and moments; creates --out (exit 73)
//   skip t.data_pos input records already trained on (resume), using t.epoch as well if useful
//   trainer_begin(&t, &writer, input_header, n, pack_tool_options, ctx);   // metrics header
//   struct lm_acts a;  trainer_acts_init(&t, &a, N_max, T_max);            // LoRA-aware
//   for each optimizer step:
//       (gradients are zero here: trainer_init and trainer_step leave them zeroed)
//       per micro-batch:
//           hN = lm_forward(&t.model, &a, ...);
//           loss_*(&t.model, t.loss_grads, &ws, hN, ...);     // accumulates lm_head grads, -> dh
//           trainer_backward(&t, &a, ws.dh);                  // += every trainable gradient
//       t.data_pos = records consumed so far (including this step's); t.epoch likewise
//       if (!trainer_step(&t, &(struct trainer_metrics){loss, tokens, ...})) break;  // --steps hit
//   trainer_finish(&t);              // final checkpoint (if not just written), end record, frees
//
// Gradients: each micro-batch's loss must already be divided by the denominator of the WHOLE
// optimizer step (loss.h), so the buffers hold the step's gradient when trainer_step runs.
//
// Under MPI (dist.h; docs/scaling.md) every rank runs the same loop on the same records, and
// computes only the micro-batches dealt to it (dist_mine(j)); trainer_step first sums the
// gradient buffers over the ranks, so every rank makes the same AdamW step. The loss and the
// figures in trainer_metrics must already be the whole step's (the tool sums its per-rank parts
// with dist_sum_f64). trainer_init checks that every rank starts from the same weights and run
// state (exit 65 otherwise); rank 0 alone creates --out, writes checkpoints, metrics and events.
// ZeRO stage 1: under MPI each rank keeps the AdamW moments of its slice [zlo, zhi) of the
// parameters only, updates that slice, and the ranks then exchange their slices (the weights
// stay whole everywhere); a checkpoint gathers the moments to rank 0. The update of each element
// is the same arithmetic, so the bits equal an unsharded run's. SRLM_ZERO=0 keeps whole moments
// on every rank.
//
// trainer_step(): the step number becomes t.step + 1 =: s (1-based). In order:
//   1. grad_norm = global L2 norm of all trainable gradients (optim.h, before clipping);
//   2. if loss or grad_norm is not finite: exit 70 "step s: non-finite loss (...)", writing
//      nothing (the metrics stream then lacks its end record; the last checkpoint stays intact);
//   3. clip: gradients *= clip_scale(grad_norm, --clip) when --clip > 0 (torch clip_grad_norm_);
//   4. lr = lr_at(--schedule, --lr, --min-lr, s, --warmup, --steps) (optim.h);
//   5. AdamW (torch.optim.AdamW semantics) over two parameter groups, as transformers' Trainer
//      builds them (Trainer.get_decay_parameter_names): weight decay on every matrix (embedding,
//      q/k/v/o, gate/up/down, an untied lm_head; LoRA A and B), none on biases and RMSNorm weights
//      (input_layernorm, post_attention_layernorm, model.norm, qwen3 q_norm/k_norm);
//   6. zero the gradients; t.step = s;
//   7. one "metrics" record on the output stream (flushed) and, unless -q, a progress line on
//      stderr: "sft-step: step=12/200 loss=2.3411 lr=3.0e-04 tok/s=1520 [extra]";
//   8. a checkpoint when s is a multiple of --save-every (> 0), or s == --steps.
//   Returns 0 once --steps steps are done (the tool stops reading), else 1.
//
// --save-every N also writes DIR/checkpoint-<s>/ at every N-th step, as transformers' Trainer
// does: a complete model directory (weights, config.json, tokenizer files, generation_config.json)
// with its run state (checkpoint-<s>/state-<s>/), built as DIR/.checkpoint-<s>.tmp and renamed
// into place, so a half-written one never has the name; --save-total-limit K keeps the newest K.
// --resume takes the newest complete checkpoint: DIR's own, or a newer checkpoint-<s>/.
//
// Checkpoints (--out DIR), written in this order, each file atomically:
//   DIR/state-<s>/optimizer.safetensors   AdamW moments "exp_avg.<tensor>", "exp_avg_sq.<tensor>"
//                                         (f32), and with --save-dtype bf16 the f32 master weights
//                                         "params.<tensor>" (so resuming stays exact)
//   DIR/state-<s>/trainer_state.json      {"step", "data_pos", "epoch", "seed", "lr", "tool", ...}
//   DIR/config.json, model.safetensors    the model (srlm_step = s), Hugging Face loadable; the
//                                         weights file last, as it marks the checkpoint
//   DIR/tokenizer.json (+ friends)        copied from --model (first checkpoint only)
//   then every other DIR/state-* is removed. A kill at any moment leaves a model whose step has
//   its state directory. With LoRA, adapter_model.safetensors + adapter_config.json replace the
//   model files (the base model is not written).
//   A "checkpoint" record {step, path, model_xxh3 (of the weights as saved)} follows on stdout.
//
// --resume: when DIR holds a checkpoint, the model, moments, step, data position and seed are
// loaded from it and the run continues exactly (bit-for-bit, same thread count) as if it had
// never stopped, provided the tool is given the same input and options; without a checkpoint in
// DIR the run starts from --model (logged). Without --resume, an existing checkpoint in DIR is
// overwritten as the run goes.
//
// Output stream: srlm.metrics. Header: upstream = the input header; model_xxh3 (starting
// weights; with LoRA the frozen base model's, and adapter_xxh3 the starting adapter's), tokenizer_xxh3 (of --model's tokenizer.json, when present), seed, resumed_from (step,
// 0 for a fresh run), options {every common option, then the tool's}.
//   "metrics":    step, loss, lr, grad_norm (before clipping), tokens, tokens_per_s, epoch,
//                 then the tool's fields (struct trainer_metrics.extra)
//   "checkpoint": step, path, model_xxh3 (with LoRA: lora_hash of the adapter as saved)
//
// --continue PREV: one optimizer run over several processes and input streams (an RL run of many
// rollout iterations, on-policy KD rounds, a curriculum). PREV is a checkpoint directory written
// by sft-step or rl-step; the new process starts from PREV's weights (with LoRA: --model's base and
// PREV's adapter), AdamW moments, step counter and seed, so the LR schedule (warm-up and decay
// over the run's whole --steps) and the bias correction carry on where PREV stopped; only the
// input position starts again (data_pos = epoch = 0, tool_state = {}), since the input is a new
// stream. The run's options (lr, min_lr, schedule, warmup, steps, weight_decay, beta1, beta2,
// adam_eps, clip, save_dtype, save_every, lora_rank, lora_alpha, lora_targets and, with LoRA, the
// base --model) are saved in every trainer_state.json under "run"; with --continue each one not
// given on the command line is taken from there, and one given with another value is logged
// (--resume alone takes the command line's options, as before). --model is optional with --continue. K processes chained this way, each given
// one of K inputs, make bit for bit the steps of one process given their concatenation.
// With --continue and --resume together, a checkpoint already in --out wins (the iteration was
// killed after it saved); otherwise the run continues from PREV. PREV itself is never written.
// The header's "continued_from" is {path, step}, or nil.
//
// --adapter DIR (with LoRA): the adapter starts from DIR's weights (PEFT layout), with fresh
// moments and step 0, instead of PEFT's random init; --lora-rank may then be omitted (DIR's).
//
// LoRA (--lora-rank R > 0, lora.h): the base model is --model, frozen (also on --resume); the
// trainable parameters are the adapter's flat buffer (t.params = lora->params), created with
// PEFT's init from --seed or, on --resume, loaded from DIR; grads/moments in its layout;
// t.loss_grads is an all-NULL struct (no lm_head gradient); trainer_acts_init attaches the
// adapter and trainer_backward calls lm_backward_lora. Checkpoints hold the adapter
// (adapter_model.safetensors + adapter_config.json, PEFT layout) and state-<s>/ in its layout.
#ifndef SRLM_TRAINER_H
#define SRLM_TRAINER_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "lm.h"
#include "model.h"
#include "optim.h"
#include "rec.h"
#include "safetensors.h"

struct lora;   // lora.h

// ---------------------------------------------------------------------------------------------
// options

#define TRAINER_OPT_BASE 0x1000   // getopt codes of the common options; tools use codes below

enum trainer_opt {
    TRAINER_O_MODEL = TRAINER_OPT_BASE, TRAINER_O_OUT, TRAINER_O_LR, TRAINER_O_MIN_LR,
    TRAINER_O_SCHEDULE, TRAINER_O_WARMUP, TRAINER_O_STEPS, TRAINER_O_WD, TRAINER_O_BETA1,
    TRAINER_O_BETA2, TRAINER_O_EPS, TRAINER_O_CLIP, TRAINER_O_SAVE_EVERY, TRAINER_O_RESUME,
    TRAINER_O_SEED, TRAINER_O_THREADS, TRAINER_O_SAVE_DTYPE, TRAINER_O_MAX_RECORD_BYTES,
    TRAINER_O_LORA_RANK, TRAINER_O_LORA_ALPHA, TRAINER_O_LORA_TARGETS, TRAINER_O_CONTINUE,
    TRAINER_O_ADAPTER, TRAINER_O_LOG_DIR, TRAINER_O_SAVE_LIMIT,
};

// Entries for a struct option array (no terminator).
#define TRAINER_LONG_OPTIONS \
    {"model", required_argument, 0, TRAINER_O_MODEL}, {"out", required_argument, 0, TRAINER_O_OUT}, \
    {"lr", required_argument, 0, TRAINER_O_LR}, {"min-lr", required_argument, 0, TRAINER_O_MIN_LR}, \
    {"schedule", required_argument, 0, TRAINER_O_SCHEDULE}, \
    {"warmup", required_argument, 0, TRAINER_O_WARMUP}, {"steps", required_argument, 0, TRAINER_O_STEPS}, \
    {"weight-decay", required_argument, 0, TRAINER_O_WD}, \
    {"beta1", required_argument, 0, TRAINER_O_BETA1}, {"beta2", required_argument, 0, TRAINER_O_BETA2}, \
    {"adam-eps", required_argument, 0, TRAINER_O_EPS}, {"clip", required_argument, 0, TRAINER_O_CLIP}, \
    {"save-every", required_argument, 0, TRAINER_O_SAVE_EVERY}, \
    {"resume", no_argument, 0, TRAINER_O_RESUME}, {"seed", required_argument, 0, TRAINER_O_SEED}, \
    {"threads", required_argument, 0, TRAINER_O_THREADS}, \
    {"save-dtype", required_argument, 0, TRAINER_O_SAVE_DTYPE}, \
    {"max-record-bytes", required_argument, 0, TRAINER_O_MAX_RECORD_BYTES}, \
    {"lora-rank", required_argument, 0, TRAINER_O_LORA_RANK}, \
    {"lora-alpha", required_argument, 0, TRAINER_O_LORA_ALPHA}, \
    {"lora-targets", required_argument, 0, TRAINER_O_LORA_TARGETS}, \
    {"continue", required_argument, 0, TRAINER_O_CONTINUE}, \
    {"adapter", required_argument, 0, TRAINER_O_ADAPTER}, \
    {"log-dir", required_argument, 0, TRAINER_O_LOG_DIR}, \
    {"save-total-limit", required_argument, 0, TRAINER_O_SAVE_LIMIT}

struct trainer_options {
    const char *model_dir;        // --model DIR (required)
    const char *out_dir;          // --out DIR (required)
    double lr;                    // --lr (default 1e-5)
    double min_lr;                // --min-lr (default 0): end of linear/cosine decay
    enum lr_schedule schedule;    // --schedule constant|linear|cosine (default constant)
    long warmup;                  // --warmup N steps (default 0)
    long steps;                   // --steps N (0: until the input ends; linear/cosine need it,
                                  //  or the tool sets it before trainer_init)
    double weight_decay;          // --weight-decay (default 0; matrices only, see above)
    double beta1, beta2, eps;     // --beta1 0.9 --beta2 0.999 --adam-eps 1e-8 (torch defaults)
    double clip;                  // --clip max grad norm (default 1.0; 0 = off)
    long save_every;              // --save-every N steps (default 0: only at the end)
    long save_total_limit;        // --save-total-limit K: keep the newest K checkpoint-<step>/ (0: all)
    bool resume;                  // --resume
    uint64_t seed;                // --seed (default 1337)
    int threads;                  // --threads N (0: BLIS_NUM_THREADS / OMP_NUM_THREADS / 1)
    enum safetensors_dtype save_dtype;   // --save-dtype f32|bf16 (default f32)
    size_t max_record_bytes;      // --max-record-bytes (default REC_DEFAULT_MAX_BYTES)
    int lora_rank;                // --lora-rank R (0: full fine-tuning)
    double lora_alpha;            // --lora-alpha (0, the default: 2 × rank)
    const char *lora_targets;     // --lora-targets (default "all")
    const char *continue_dir;     // --continue DIR: the run checkpointed in DIR goes on (below)
    const char *adapter_dir;      // --adapter DIR: a LoRA run starts from this adapter
    const char *log_dir;          // --log-dir DIR: TensorBoard event files (tfevents.h), or NULL
    unsigned long long set;       // bit (code - TRAINER_OPT_BASE): options given on the command line
};

void trainer_options_default(struct trainer_options *o);
// Handles one getopt code c (a TRAINER_O_* code, 'q' or 'v'); returns 1 if it was one, else 0.
// Bad values are exit 64.
int trainer_parse_option(struct trainer_options *o, int c, const char *arg);
// Cross-checks after parsing (exit 64): --model and --out given, min_lr <= lr, warmup <= steps.
void trainer_options_check(const struct trainer_options *o);
// The common options' lines for a tool's --help.
void trainer_usage(FILE *f);

// ---------------------------------------------------------------------------------------------
// state

struct trainer {
    struct trainer_options opt;   // copy of the options
    struct model model;           // the model being trained (frozen base with LoRA)
    struct lora *lora;            // the adapter, or NULL for full fine-tuning
    // Trainable parameters, as flat buffers of one layout (the model's, or the adapter's):
    float *params;                // == model.params_memory (or lora->params)
    size_t nparams;
    float *grad_memory;           // (nparams) gradients, zero between steps
    float *m1, *m2;               // AdamW first / second moments of params[zlo, zhi)
    size_t zlo, zhi;              // [0, nparams), or under MPI this rank's slice (ZeRO stage 1)
    struct model_params grads;    // named pointers into grad_memory (full fine-tuning only)
    struct model_params *loss_grads;   // pass to loss_*(): &grads, or an all-NULL struct (LoRA)
    struct model_params frozen;        //   (the all-NULL struct)
    long step;                    // optimizer steps done (0 at the start of a fresh run)
    long start_step;              // step the run started, resumed or continued from
    long cont_step;               // step of --continue's checkpoint, -1 when not continued
    long long data_pos;           // input records consumed by the steps done (tool-maintained)
    long epoch;                   // current epoch, 0-based (tool-maintained)
    json_t *tool_state;           // extra tool data saved in trainer_state.json (object, owned)
    char *resume_dir;             // --resume from a checkpoint-<s>/ directory: its path (owned)
    json_t *run_json;             // the trainer_state.json resumed or continued from (owned; the
                                  //  inherited string options borrow from it), or NULL
    uint64_t start_hash;          // trainer_hash() of the starting weights (adapter's with LoRA)
    uint64_t base_hash;           // model_xxh3 of the (starting) model; the frozen base with LoRA
    uint64_t tok_hash;            // xxh3 of --model/tokenizer.json, if has_tok_hash
    bool has_tok_hash;
    int tok_vocab;                // tokenizer's highest id + 1 (0 when no tokenizer.json)
    // output
    struct rec_writer *w;
    long saved_step;              // step of the last checkpoint written (-1: none)
    double t_last;                // time the previous step ended (for tokens_per_s)
    double t_start;
    long long tokens_total;
    struct tfevents *tb;          // --log-dir's writer, or NULL
};

// What a tool reports for a step. extra packs nextra key/value pairs into the metrics record;
// progress is appended to the stderr line (may be NULL).
struct trainer_metrics {
    double loss;
    long long tokens;             // trained tokens of the step
    int nextra;
    rec_pack_fn extra;
    void *ctx;
    const char *progress;
};

// Loads the model and state (see the contract above). Exit 73 if --out cannot be created or
// written, 66/65 for a missing/bad model or checkpoint.
void trainer_init(struct trainer *t, const struct trainer_options *o);
// Writes the srlm.metrics header to w (which must be open on stdout) with upstream, the common
// fields (continued_from: {path, step} or nil), and the options map: the common options then ntool pairs packed by tool_opts (may be
// NULL with ntool = 0).
void trainer_begin(struct trainer *t, struct rec_writer *w, const msgpack_object *upstream,
                   int ntool, rec_pack_fn tool_opts, void *ctx);
// lm_acts_init, plus attaching the adapter with LoRA.
void trainer_acts_init(struct trainer *t, struct lm_acts *a, int N_max, int T_max);
// lm_backward (or its LoRA variant) into the trainable gradients. dhN is consumed.
void trainer_backward(struct trainer *t, struct lm_acts *a, float *dhN);
// One optimizer step (see above). Returns 0 when --steps is reached.
int trainer_step(struct trainer *t, const struct trainer_metrics *m);
// Whether --steps steps are done (e.g. a finished run resumed): the tool then trains no more.
bool trainer_done(const struct trainer *t);
// Writes a checkpoint of the current step now (also used by trainer_finish).
void trainer_checkpoint(struct trainer *t);
// Final checkpoint unless the last step was just saved (nothing if no step was taken in this run
// and a checkpoint of that step exists), the end record, and frees everything.
void trainer_finish(struct trainer *t);
// xxh3 of the trainable weights as they are now (model_hash, or lora_hash with LoRA).
uint64_t trainer_hash(const struct trainer *t);

#endif
