// kd.h — knowledge-distillation losses from a teacher's top-K log-probs (the teacher_ids /
// teacher_logprobs of srlm.examples, docs/stream.md), as pure functions of the student's log-probs
// at the same K ids, plus a helper that runs them on a model's hidden states through
// logsoftmax_gather (nn.h). docs/training.md has the formulas and references.
//
// Mass outside the top-K. Only the teacher's K most likely ids are known. Both distributions are
// restricted to those K ids and renormalised ("top-K KD": Anshumann et al. 2025, "Sparse Logit
// Sampling: Accelerating Knowledge Distillation in LLMs", §2; the same K-restricted softmax as
// TRL's GKD/DistillKit "sparse" variants when the teacher is cached):
//     p_k = softmax_k(tl_k · τ/T)        the teacher over its K ids, re-tempered from the stream's
//                                        temperature τ to the loss temperature T (exact: tl_k·τ =
//                                        z_k - const, and the constant cancels in the softmax)
//     q_k = softmax_k(sl_k)              the student over the same ids, where sl_k are its
//                                        full-vocabulary log-probs at temperature T
// so every divergence below is a proper divergence (>= 0, 0 iff q = p on the K ids). The
// student's total mass on the K ids is not constrained by the KD term; the α·CE term (on the gold
// token) keeps the full distribution anchored. Because D depends on sl only through the
// K-restricted softmax, Σ_k dD/dsl_k = 0, and logsoftmax_gather_backward then moves only the K
// logits (its -p_j Σ_k dlogp_k term vanishes).
//
// Divergences (per trained position; P = teacher, Q = student, both on the K ids):
//   KD_FKL   forward KL   KL(P‖Q) = Σ p (log p − log q)             dD/dsl_j = q_j − p_j
//   KD_RKL   reverse KL   KL(Q‖P) = Σ q (log q − log p)             dD/dsl_j = q_j (log q_j − log p_j − D)
//   KD_JSD   generalised JSD(β) = β KL(P‖M) + (1−β) KL(Q‖M),  M = β P + (1−β) Q
//            (Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from
//            Self-Generated Mistakes" (GKD), eq. 2; TRL GKDTrainer.generalized_jsd_loss)
//            dD/dq_j = (1−β) log(q_j / m_j), so dD/dsl_j = (1−β) q_j (log(q_j/m_j) − KL(Q‖M))
// The step loss (sft-step --loss kd) is  L = α·CE + (1−α)·T²·(1/W) Σ_positions D, W = the
// step's trained tokens; the T² keeps the KD gradient's scale independent of T (Hinton et al.
// 2015, "Distilling the Knowledge in a Neural Network", §2).
// Sums are in double; inputs are f32.
#ifndef SRLM_KD_H
#define SRLM_KD_H

#include <stddef.h>

#include "model.h"

enum kd_div { KD_FKL, KD_RKL, KD_JSD };

struct kd_config {
    enum kd_div div;
    double beta;          // JSD β in (0, 1) (0.5: the symmetric JSD); ignored otherwise
    double temperature;   // T > 0: student logits / T; teacher re-tempered to T
};

// "fkl" | "rkl" | "jsd" (also "kl" for fkl); -1 if unknown.
int kd_div_parse(const char *s);
const char *kd_div_name(enum kd_div d);

// One position: the divergence D and, when dsl != NULL, dD/dsl (K) written (not accumulated),
// scaled by `scale`. sl (K): the student's log-probs at the ids (full vocabulary, temperature T);
// tl (K): the teacher's log-probs at the stream's temperature τ; tscale = τ / T.
double kd_divergence(const struct kd_config *c, const float *sl, const float *tl, int K,
                     double tscale, float *dsl, double scale);

// M positions: Σ_m D_m, and dsl (M, K) = scale · dD_m/dsl_m when dsl != NULL.
double kd_loss(const struct kd_config *c, const float *sl, const float *tl, int M, int K,
               double tscale, float *dsl, double scale);

// Workspace for kd_model_loss, sized once for up to M_max positions of K ids.
struct kd_ws {
    int M_max, K;
    int *ids;            // (M_max, K) teacher ids, filled by the caller
    float *tl;           // (M_max, K) teacher log-probs, filled by the caller
    float *sl, *dsl;     // (M_max, K)
    float *lse;          // (M_max)
    float *scratch;
    size_t scratch_size;
};
void kd_ws_init(struct kd_ws *w, const struct model_config *cfg, int M_max, int K);
void kd_ws_free(struct kd_ws *w);

// The KD term on a model's final hidden states hN (N, C): the student's log-probs at w->ids for
// the M hidden rows `rows` (loss_targets' rows: row t-1 predicts trained token t), at temperature
// T, then kd_loss. When dh != NULL, ACCUMULATES the gradient of scale · Σ D into dh (N, C) and,
// when dwlm != NULL, into the lm_head gradient dwlm (V, C). Returns Σ_m D_m (unscaled).
double kd_model_loss(const struct kd_config *c, const struct model *m, float *dwlm, float *dh,
                     struct kd_ws *w, const float *hN, const int *rows, int M, double tscale,
                     double scale);

#endif
