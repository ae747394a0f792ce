// grpo.h — the GRPO objective (Shao et al. 2024, "DeepSeekMath", §4.1.2, eq. 3) and the variants
// the literature compares. The first half is pure functions of per-token log-probabilities (no
// model, no I/O): the policy's log-probs come from logsoftmax_gather_forward (nn.h), grpo_loss()
// turns them into the loss and dL/dlogp, which logsoftmax_gather_backward takes. The second half
// (below) reads rollout batches and runs that on a model for rl-step (tools/rl-step.c).
// docs/rl.md has the formulas with every reference.
//
// The objective, for a batch of groups of G completions o_i of one prompt each, with rewards r_i:
//
//   advantage   A_i = (r_i - mean_g r) / (std_g r + adv_eps)       (GRPO "outcome supervision")
//               A_i =  r_i - mean_g r                              (Dr. GRPO, Liu et al. 2025 §3.1:
//                                                                   no std division, scale_std = 0)
//               std_g is the sample standard deviation (n - 1), as torch.std / TRL compute it.
//               A group whose rewards are all equal has A = 0 everywhere; with drop_equal it is
//               removed from the batch instead (DAPO "dynamic sampling", Yu et al. 2025 §3.2).
//   ratio       rho_t = exp(logp_t - old_logp_t)     old_logp: the sampling policy's, from the stream
//   clipped     c_t   = min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A)   (PPO, Schulman
//               et al. 2017 eq. 7; separate eps_low/eps_high: DAPO "clip-higher" §3.1)
//   KL          with d_t = ref_logp_t - logp_t (Schulman 2020, "Approximating KL Divergence"):
//               k1 = -d,   k2 = d^2 / 2,   k3 = exp(d) - d - 1  (GRPO eq. 4 uses k3)
//   per token   l_t = -c_t + beta * k_t
//   loss        L = sum_i sum_t w_i l_{i,t}, over the completion tokens t of the kept sequences,
//               with the aggregation weight w_i:
//     GRPO_AGG_TOKEN  w_i = 1 / sum_j |o_j|             token mean over the batch (DAPO §3.3)
//     GRPO_AGG_SEQ    w_i = 1 / (n_seq |o_i|)           sequence mean, then mean (GRPO eq. 3)
//     GRPO_AGG_CONST  w_i = 1 / (n_seq * max_len)       constant normaliser (Dr. GRPO §3.1)
//   where |o_i| counts the trained tokens of o_i and n_seq the kept sequences. Completions that
//   ended on the token limit (finish_reason "length") are left out of the loss and of every count
//   with mask_truncated (DAPO "overlong filtering" §3.4).
//
// dL/dlogp_t = w_i * dl_t/dlogp_t with
//   dc/dlogp = rho A, except 0 where the clipped branch is taken with rho outside the range
//              (A > 0 and rho > 1 + eps_high, or A < 0 and rho < 1 - eps_low);
//   dk1/dlogp = 1,  dk2/dlogp = -d,  dk3/dlogp = 1 - exp(d).
//
// Gradient accumulation: the weights are those of the whole optimizer step (its minibatch), so a
// minibatch processed in several packed micro-batches gives the same gradient as one batch.
//
// The second half of this file applies the objective to a model: struct grpo_batch holds the
// groups of a rollout batch read from a srlm.samples stream (docs/stream.md; checked: contiguous
// groups in sample order, tokens in range, log-probs finite and one per completion token), and
// grpo_minibatch_grad() runs the policy over a slice of it in packed micro-batches and accumulates
// the gradient of the loss into a model_params buffer. The optimizer step itself is the caller's
// (common/trainer.h). The batch owns its samples (grpo_batch_clear/free); struct grpo_ws owns the
// scratch, sized once for micro-batches of at most N_max tokens.
#ifndef SRLM_GRPO_H
#define SRLM_GRPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lm.h"
#include "loss.h"
#include "rec.h"

enum grpo_agg { GRPO_AGG_TOKEN, GRPO_AGG_SEQ, GRPO_AGG_CONST };
enum grpo_kl { GRPO_KL_K1, GRPO_KL_K2, GRPO_KL_K3 };

struct grpo_config {
    double eps_low, eps_high;   // ratio clip range [1 - eps_low, 1 + eps_high]
    double beta;                // KL coefficient; 0: no reference model needed
    enum grpo_kl kl;            // KL estimator
    enum grpo_agg agg;          // loss aggregation
    bool scale_std;             // divide advantages by the group's std (GRPO); false: Dr. GRPO
    double adv_eps;             // added to the std before dividing
    bool drop_equal;            // drop groups whose rewards are all equal (DAPO dynamic sampling)
    bool mask_truncated;        // leave finish_reason "length" completions out of the loss
    int max_len;                // GRPO_AGG_CONST normaliser; 0: the longest completion of the step
};

// Defaults: eps 0.2/0.2, beta 0, k3, token mean, std scaling, adv_eps 1e-4, nothing dropped.
void grpo_config_default(struct grpo_config *c);
// Name <-> value ("token" "seq" "const"; "k1" "k2" "k3"); parse returns -1 if unknown.
int grpo_agg_parse(const char *s);
int grpo_kl_parse(const char *s);
const char *grpo_agg_name(enum grpo_agg a);
const char *grpo_kl_name(enum grpo_kl k);

// Advantages of one group of G rewards into adv (G). Returns false when the group is dropped
// (drop_equal and every reward equal; adv is then all 0), true otherwise.
bool grpo_advantages(const struct grpo_config *c, const double *reward, int G, float *adv);

// Aggregation weight of each sequence (see above). len[i]: trained tokens of sequence i; use[i]:
// whether it is in the loss (kept group, not a masked truncation). Sequences not used get 0.
// Returns the number of trained tokens of the used sequences.
long grpo_seq_weights(const struct grpo_config *c, const int *len, const bool *use, int nseq,
                      float *w);

// One token's loss l_t (without the weight) and dl/dlogp (into *dlogp). ref_logp is ignored when
// beta == 0. Computed in double; exposed for the finite-difference tests.
double grpo_token_loss(const struct grpo_config *c, double logp, double old_logp, double ref_logp,
                       double adv, double *dlogp);

// Statistics of an optimizer step, summed by grpo_loss over its calls (zero it first) and turned
// into means by grpo_stats_finish.
struct grpo_stats {
    double tokens;              // trained tokens seen (weight > 0)
    double kl_sum;              // sum of the chosen estimator (computed even when beta = 0 if ref given)
    double clip_low, clip_high; // tokens clipped below (A < 0, rho < 1-eps_low) / above
    double ratio_sum, ratio_min, ratio_max;
    double entropy_sum;         // added by the caller (it has the entropies)
    bool has_kl;
};
void grpo_stats_zero(struct grpo_stats *s);

// Loss of M tokens: sum_t weight[t] * l_t, and dlogp[t] = weight[t] * dl_t/dlogp_t (OVERWRITTEN).
// adv and weight are per token (a sequence's advantage and weight repeated over its tokens); a
// token of weight 0 contributes nothing and gets dlogp 0. ref_logp may be NULL when beta == 0.
// stats (may be NULL) accumulates over tokens with weight > 0.
double grpo_loss(const struct grpo_config *c, const float *logp, const float *old_logp,
                 const float *ref_logp, const float *adv, const float *weight, int M,
                 float *dlogp, struct grpo_stats *stats);

// Per-rollout-batch figures (rewards, advantages, lengths, truncation, dropped groups).
#define GRPO_MAX_COMPONENTS 8   // reward components reported (score's "rewards" map)

struct grpo_batch_stats {
    int groups, groups_dropped, seqs, truncated;
    double reward_mean, reward_std;      // over all samples of the batch (dropped groups included)
    double adv_mean, adv_std, adv_abs_max;   // over kept samples
    double len_mean;                     // completion tokens, all samples
    int len_max;
    int groups_zero_std;                 // groups whose rewards are all equal (no signal), set
                                         //  by grpo_batch_figures (TRL's frac_reward_zero_std)
    int ncomp;                           // reward components (grpo_batch_figures): mean and
    double comp_mean[GRPO_MAX_COMPONENTS], comp_std[GRPO_MAX_COMPONENTS];   //  population std over
                                         //  the samples that have the component
};
// reward, adv, len, truncated, kept: per sequence (nseq); kept[i] = its group was not dropped.
void grpo_batch_stats(struct grpo_batch_stats *b, const double *reward, const float *adv,
                      const int *len, const bool *truncated, const bool *kept, int nseq, int groups,
                      int groups_dropped);

// ---------------------------------------------------------------------------------------------
// rollout batches on a model

struct grpo_sample {
    char *id;                  // the group's id
    int32_t *tokens;           // (n) prompt + completion
    int32_t *mask;             // (n) 1 on trained completion tokens
    int n, prompt_len;
    int len;                   // trained tokens (mask sum)
    float *old_logp;           // (n - prompt_len) sampling policy's log-probs (the stream's)
    float *ref_logp;           // (n - prompt_len) reference model's, or NULL
    double reward;
    double comp[GRPO_MAX_COMPONENTS];   // its "rewards" map, by the batch's comp_name index
    unsigned comp_set;                  // bit i: comp[i] present
    bool truncated;            // finish_reason "length"
    float adv;                 // set by grpo_batch_prepare
    float weight;              // aggregation weight in the current minibatch (grpo_minibatch_grad)
    bool kept;                 // its group was not dropped
    bool use;                  // in the loss: kept, and not a masked truncation, and len > 0
};

struct grpo_batch {
    struct grpo_sample *s;     // nseq samples: the groups in stream order, each G contiguous
    int nseq, cap;
    int groups, groups_dropped;
    int *group_start;          // (groups + 1) first sample of each group
    int gcap;
    // the numeric entries of the samples' "rewards" maps (score's components), first seen first;
    // a map with more than GRPO_MAX_COMPONENTS names reports the first ones
    char comp_name[GRPO_MAX_COMPONENTS][32];
    int ncomp;
};

void grpo_batch_init(struct grpo_batch *b);
void grpo_batch_clear(struct grpo_batch *b);   // frees the samples, keeps the arrays
void grpo_batch_free(struct grpo_batch *b);
// Reads up to `groups` whole groups from r (after its header) into b (cleared first). Returns the
// number of groups read, 0 at the end of the stream. Exits 65 on a broken group (a sample out of
// order, a change of id or group_size inside a group, the stream ending inside a group) and on any
// field that breaks docs/stream.md. V: the model's vocabulary (token ids are checked against it);
// max_tokens: longest sequence accepted (exit 65 beyond, naming the option that raises it).
int grpo_batch_read(struct grpo_batch *b, struct rec_reader *r, int groups, int V, int max_tokens);
// Advantages, dropped groups and the `use` flags of every sample.
void grpo_batch_prepare(const struct grpo_config *c, struct grpo_batch *b);
// Moves the samples not in the loss (dropped groups) to the end, keeping the order of the others;
// returns the number of samples still in play (kept groups). Statistics must be taken before.
int grpo_batch_compact(struct grpo_batch *b);
void grpo_batch_figures(const struct grpo_batch *b, struct grpo_batch_stats *st);

struct grpo_ws {
    int N_max;
    struct loss_ws lw;         // rows, ids, logp, lse, dlogp, dh, gather scratch
    int *tokens, *cu, *seq;    // packed micro-batch (N_max), (N_max + 1), its samples (N_max)
    float *entropy, *old, *ref, *adv, *w;   // per target (N_max)
};
void grpo_ws_init(struct grpo_ws *w, const struct model_config *cfg, int N_max);
void grpo_ws_free(struct grpo_ws *w);

// Fills ref_logp of samples [first, first + count) with the log-probs of model `ref` (frozen).
void grpo_ref_logprobs(const struct model *ref, struct lm_acts *a, struct grpo_ws *w,
                       struct grpo_batch *b, int first, int count);

// The policy being trained, as grpo_minibatch_grad sees it: the model, the gradient struct the
// output layer accumulates its lm_head gradient into (trainer.h's loss_grads), and the backward
// through the rest of the network (trainer_backward: full or LoRA), called once per micro-batch
// with dL/dhN (consumed). A callback keeps this module free of the trainer.
struct grpo_policy {
    const struct model *m;
    struct model_params *lm_grads;
    void (*backward)(void *ctx, struct lm_acts *a, float *dhN);
    void *ctx;
};

// The GRPO loss of samples [first, first + count) (one optimizer step's minibatch) under the
// policy; accumulates its gradient (gradients zeroed by the caller) and its statistics into st
// (entropy included). Returns the loss; *tokens receives the trained tokens. Samples of the slice
// with use = false cost nothing.
double grpo_minibatch_grad(const struct grpo_config *c, const struct grpo_policy *p,
                           struct lm_acts *a, struct grpo_ws *w, struct grpo_batch *b,
                           int first, int count, struct grpo_stats *st, long *tokens);

#endif
