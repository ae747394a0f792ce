// nn.h — transformer layer kernels (Llama / Qwen2 / Qwen3), forward and backward, in f32 on BLIS.
//
// Contract (the llm.c vocabulary, house style 9.3/9.6):
// - Kernels take raw float pointers and dimensions; they never allocate and never keep a pointer.
//   The caller owns every buffer. Every tensor is a dense row-major array whose shape is given in
//   the comment beside it; (N, NH, hs) means index (n*NH + h)*hs + i.
// - <layer>_forward(out, ..., inp, ..., dims) OVERWRITES its outputs.
// - <layer>_backward(dinp, dweight, ..., dout, inp, ..., dims) ACCUMULATES (+=) into every gradient
//   buffer, so the model zeroes gradients once per step and micro-batches add up for free. A NULL
//   gradient pointer means "not wanted" (a frozen weight, an input that needs no gradient) and its
//   work is skipped. Gradient buffers never alias inputs unless a kernel says so.
// - Activations are packed sequences without padding (FlashAttention "varlen"): a batch is N tokens
//   made of nseq sequences; sequence s holds tokens [cu_seqlens[s], cu_seqlens[s+1]), with
//   cu_seqlens[0] = 0 and cu_seqlens[nseq] = N. Attention is causal within each sequence and never
//   crosses sequences. Positions (for RoPE) are an explicit int array pos (N);
//   nn_positions fills it with 0, 1, ... restarting at each sequence.
// - Dimension names: N tokens in the batch, C model width, OC output width, NH query heads, NKV
//   key/value heads (NH % NKV == 0, grouped-query attention), hs head size, FF MLP width, V
//   vocabulary, M scored positions, K ids per scored position.
// - Kernels check their arguments with ASSERT (bugs), never input data: token ids and positions
//   are validated once where they enter (house style 9.6).
// - Threads: every kernel runs on the compute pool (pool.h) sized by blas_init (common/blas.h).
//   Matrix products are grids of single-threaded BLIS calls (blas.h); our own loops are ranges of
//   rows, elements or column blocks cut by the work alone, or independent (sequence, head) tasks
//   that each write only their own output and call single-threaded BLIS. Every output element is
//   reduced by one thread in one fixed order, so every kernel gives the same bits at every thread
//   count, and a rerun is bitwise identical.
// - Scratch: attention and the log-softmax gather need scratch memory whose size a *_scratch_size()
//   function gives (in floats); allocate it once at start-up for the largest batch (house style 9.5).
//
// Which forward buffers the backward needs (keep them in the activation arena):
//   matmul     inp, weight                    rmsnorm    inp, weight, rstd (saved by forward)
//   rope       nothing (tables, pos)          attention  q, k, v (after RoPE), out, lse (saved)
//   swiglu     gate, up                       embedding  tokens
//   logsoftmax_gather  h, wlm, ids, lse (saved), entropy (saved, only if dentropy is used)
//
// Formulas follow Hugging Face transformers modeling_llama.py / modeling_qwen2.py /
// modeling_qwen3.py and the PyTorch docs; each kernel cites its source.
//
// Numerics: everything is f32 except a few long sums (RMSNorm's mean square, the vocabulary-long
// sums of the log-softmax), kept in double. The softmax / sigmoid exps use a vectorised Cephes
// expf (under 1.4 ulp; libm's is under 1), so results match PyTorch to float rounding, not bitwise.
// Tested against double-precision references (common/nn_ref.c, tests/unit/test-nn.c).
//
// Not here (yet): attention of new tokens against a KV cache (generation); fused q/k/v or gate/up
// buffers (kernels take separate contiguous tensors: three, resp. two, matmul_forward calls).
#ifndef SRLM_NN_H
#define SRLM_NN_H

#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// positions

// pos (N): position of every token within its sequence (0, 1, ..., restarting per sequence).
void nn_positions(int *pos, const int *cu_seqlens, int nseq);

// ----------------------------------------------------------------------------
// linear layer: out = inp·weightᵀ + bias (torch.nn.Linear, weight stored (out, in) as in HF)

void matmul_forward(float *out,            // (N, OC)
                    const float *inp,      // (N, C)
                    const float *weight,   // (OC, C)
                    const float *bias,     // (OC) or NULL (Llama/Qwen3: none; Qwen2: q/k/v only)
                    int N, int C, int OC);
// x = softmax(x) over n elements in place, with the attention forward's vectorised exp and
// float sum (decode attention uses it, so its probabilities round as the training forward's do).
void softmax_inplace(float *x, int n);
// The same with the weight in bf16 (each uint16_t the upper half of an f32): decoding.
void matmul_forward_bf16(float *out, const float *inp, const uint16_t *weight, const float *bias,
                         int N, int C, int OC);
// dinp += dout·weight, dweight += doutᵀ·inp, dbias += Σ_n dout[n]. Any of the three may be NULL.
void matmul_backward(float *dinp,          // (N, C) or NULL
                     float *dweight,       // (OC, C) or NULL
                     float *dbias,         // (OC) or NULL
                     const float *dout,    // (N, OC)
                     const float *inp,     // (N, C)
                     const float *weight,  // (OC, C)
                     int N, int C, int OC);
// The same, except that dinp is OVERWRITTEN (dinp = dout·weight, the sgemm with beta = 0) rather
// than accumulated: for the first product into a fresh buffer, which then needs no zeroing.
// dweight and dbias still accumulate.
void matmul_backward_set_dinp(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int N, int C, int OC);

// ----------------------------------------------------------------------------
// RMSNorm (HF LlamaRMSNorm / Qwen2RMSNorm / Qwen3RMSNorm, computed in f32):
//   out = inp * rsqrt(mean(inp²) + eps) * weight
// Qwen3's q_norm/k_norm normalise each head over head_dim with one weight (hs): call the same
// kernel with N = tokens*heads rows and C = hs on the contiguous (tokens, heads, hs) tensor.

void rmsnorm_forward(float *out,           // (N, C)
                     float *rstd,          // (N) saved for backward; may be NULL (inference)
                     const float *inp,     // (N, C)
                     const float *weight,  // (C)
                     int N, int C, float eps);
void rmsnorm_backward(float *dinp,         // (N, C) or NULL
                      float *dweight,      // (C) or NULL
                      const float *dout,   // (N, C)
                      const float *inp,    // (N, C)
                      const float *weight, // (C)
                      const float *rstd,   // (N) from rmsnorm_forward
                      int N, int C);
// The same with dinp OVERWRITTEN (dweight still accumulates).
void rmsnorm_backward_set_dinp(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *rstd, int N, int C);

// ----------------------------------------------------------------------------
// RoPE, HF rotate_half convention (modeling_llama.py rotate_half / apply_rotary_pos_emb), NOT
// interleaved pairs: element i is rotated with element i + hs/2 by angle pos * inv_freq[i],
//   out[i]        = x[i] cos - x[i+hs/2] sin
//   out[i+hs/2]   = x[i+hs/2] cos + x[i] sin,          i < hs/2.

// inv_freq (hs/2) = 1 / theta^(2i/hs), in f32 as HF's default rope_init_fn computes it. Models with
// rope scaling adjust inv_freq before building the tables (rope_inv_freq_scaled in lm.c).
void rope_inv_freq(float *inv_freq, int hs, float theta);
// Llama 3.1/3.2 frequency scaling ("rope_type": "llama3"), in f32 as HF
// _compute_llama3_parameters does it: with wavelength w = 2π / inv_freq and the original context
// length n, frequencies with w < n/high_freq_factor are kept, those with w > n/low_freq_factor are
// divided by factor, and those between are blended linearly in n/w. Needs high > low > 0.
void rope_scale_llama3(float *inv_freq, int hs, double factor, double low_freq_factor,
                       double high_freq_factor, double original_max_pos);
// cos_tab, sin_tab (max_pos, hs/2): the angle is (float)pos * inv_freq[i] rounded to f32, as HF
// LlamaRotaryEmbedding computes it in f32, then cos/sin of it.
void rope_tables(float *cos_tab, float *sin_tab, const float *inv_freq, int max_pos, int hs);
// out may equal inp (in place). pos values must be < max_pos of the tables.
void rope_forward(float *out,              // (N, nh, hs)
                  const float *inp,        // (N, nh, hs)
                  const float *cos_tab,    // (max_pos, hs/2)
                  const float *sin_tab,    // (max_pos, hs/2)
                  const int *pos,          // (N)
                  int N, int nh, int hs);
// dinp += Rᵀ·dout. In place (dinp == dout) it REPLACES the gradient by Rᵀ·dout, which is what a
// model that ran the forward in place wants (nothing else writes the pre-RoPE gradient).
void rope_backward(float *dinp,            // (N, nh, hs)
                   const float *dout,      // (N, nh, hs)
                   const float *cos_tab, const float *sin_tab, const int *pos,
                   int N, int nh, int hs);

// ----------------------------------------------------------------------------
// Causal grouped-query attention over packed sequences (HF eager_attention_forward with
// repeat_kv): query head h reads key/value head h / (NH/NKV); scores q·k / sqrt(hs); token t of a
// sequence attends to tokens 0..t of the same sequence; softmax in f32 with max subtraction.
// Computed flash-style by blocks of ATTN_BLOCK query rows against all keys they can see, with
// BLIS sgemm for Q·Kᵀ, P·V and the backward products; the T×T probability matrix is never stored.
// The forward saves lse (N, NH), the log-sum-exp of each scaled score row, from which the backward
// recomputes the probabilities. Work is spread over (sequence, head) tasks.

#define ATTN_BLOCK 64

// Scratch (floats) for attention_forward/backward with sequences up to T_max tokens on up to
// `threads` threads (pass blas_threads()).
size_t attention_scratch_size(int T_max, int threads);

void attention_forward(float *out,         // (N, NH, hs)
                       float *lse,         // (N, NH) saved for backward
                       const float *q,     // (N, NH, hs)  after RoPE (and Qwen3 q_norm)
                       const float *k,     // (N, NKV, hs) after RoPE (and Qwen3 k_norm)
                       const float *v,     // (N, NKV, hs)
                       const int *cu_seqlens, int nseq,  // (nseq+1)
                       int N, int NH, int NKV, int hs,
                       float *scratch, size_t scratch_size);
void attention_backward(float *dq,         // (N, NH, hs)  or NULL
                        float *dk,         // (N, NKV, hs) or NULL
                        float *dv,         // (N, NKV, hs) or NULL
                        const float *dout, // (N, NH, hs)
                        const float *q, const float *k, const float *v,
                        const float *out,  // (N, NH, hs) from attention_forward
                        const float *lse,  // (N, NH) from attention_forward
                        const int *cu_seqlens, int nseq,
                        int N, int NH, int NKV, int hs,
                        float *scratch, size_t scratch_size);

// ----------------------------------------------------------------------------
// SwiGLU MLP activation (HF LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)), act_fn = silu):
//   out = silu(gate) * up,  silu(x) = x * sigmoid(x)   (torch.nn.SiLU)
// gate and up are separate (N, FF) tensors (two matmul_forward calls).

void swiglu_forward(float *out,            // (N, FF)
                    const float *gate,     // (N, FF)
                    const float *up,       // (N, FF)
                    int N, int FF);
void swiglu_backward(float *dgate,         // (N, FF) or NULL
                     float *dup,           // (N, FF) or NULL
                     const float *dout,    // (N, FF)
                     const float *gate, const float *up,
                     int N, int FF);
// The same with dgate and dup OVERWRITTEN instead of accumulated.
void swiglu_backward_set(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, int N, int FF);

// ----------------------------------------------------------------------------
// residual connection and token embedding

// out = a + b (out may alias a or b).
void residual_forward(float *out, const float *a, const float *b, size_t n);
// da += dout, db += dout (either may be NULL).
void residual_backward(float *da, float *db, const float *dout, size_t n);

// out[n] = wte[tokens[n]] (torch.nn.Embedding).
void embedding_forward(float *out,         // (N, C)
                       const int *tokens,  // (N), each in [0, V)
                       const float *wte,   // (V, C)
                       int N, int C);
// dwte[tokens[n]] += dout[n]; a token seen twice gets both rows, summed in order of n.
void embedding_backward(float *dwte,       // (V, C)
                        const float *dout, // (N, C)
                        const int *tokens, // (N)
                        int N, int C);

// ----------------------------------------------------------------------------
// LM head + log-softmax + gather: the output layer of every loss, without ever holding all N×V
// logits. For M scored positions (rows of h), by chunks of rows that fit the scratch:
//   z = h[rows[m]]·wlmᵀ / temperature                 (V logits, one BLIS sgemm per chunk)
//   lse[m]  = log Σ_j exp(z_j)                        (max-subtracted, summed in double)
//   logp[m, k] = z[ids[m, k]] - lse[m]                 for k < K (K ids per position)
//   entropy[m] = -Σ_j p_j log p_j = lse - Σ_j p_j z_j,  p = softmax(z)
//   topk_ids/topk_logp[m, :] = the `topk` largest log-probs, descending (ties: smaller id first)
// Losses sit on top as functions of logp: cross-entropy (K = 1, dlogp = -1/ntokens), GRPO's
// policy ratio (K = 1, dlogp = its derivative per token), distillation from a teacher's top-k
// (K = teacher's k, the student's log-probs at the teacher's ids), entropy bonuses via entropy.
// The backward takes dL/dlogp (M, K) (and optionally dL/dentropy (M)) and accumulates dh and dwlm:
//   dz_j = Σ_k dlogp[k]·[j == ids[k]] - p_j·Σ_k dlogp[k] - dentropy·p_j·(log p_j + entropy)
//   dh[rows[m]] += dz·wlm / temperature,  dwlm += dzᵀ·h[rows[m]] / temperature.
// It recomputes the logits (one more sgemm per chunk) rather than storing M×V floats.
// temperature scales logits as HF generation / TRL GRPO do (logits / T); 1 for training losses.
// rows == NULL means rows[m] = m (h then has M rows). Rows may repeat.

// Scratch (floats) for chunks of up to `chunk` rows; both directions use the same size. Larger
// chunks make bigger, faster sgemms; 64..256 rows is plenty.
size_t logsoftmax_gather_scratch_size(int chunk, int C, int V);

void logsoftmax_gather_forward(float *logp,        // (M, K)
                               float *lse,         // (M) saved for backward
                               float *entropy,     // (M) or NULL
                               int *topk_ids,      // (M, topk) or NULL
                               float *topk_logp,   // (M, topk) or NULL
                               int topk,           // 0 if not wanted
                               const float *h,     // (N, C) final hidden states (after the norm)
                               const float *wlm,   // (V, C) lm_head (or the tied embedding)
                               const int *rows,    // (M) rows of h to score, or NULL
                               const int *ids,     // (M, K) token ids whose log-prob is wanted
                               int M, int K, int C, int V, float temperature,
                               float *scratch, size_t scratch_size);
void logsoftmax_gather_backward(float *dh,         // (N, C) or NULL
                                float *dwlm,       // (V, C) or NULL
                                const float *dlogp,    // (M, K)
                                const float *dentropy, // (M) or NULL
                                const float *h, const float *wlm, const int *rows, const int *ids,
                                const float *lse,      // (M) from the forward
                                const float *entropy,  // (M) from the forward; needed iff dentropy
                                int M, int K, int C, int V, float temperature,
                                float *scratch, size_t scratch_size);
// Forward and backward in one pass, for losses whose dL/dlogp is known before the forward (cross-
// entropy: a constant): per chunk ONE logits sgemm (the backward above recomputes them), then
// logp and lse as logsoftmax_gather_forward writes them and dh, dwlm accumulated as
// logsoftmax_gather_backward does for this dlogp (no entropy, no top-k). Bitwise equal to calling
// the two with the same scratch size. dh or dwlm may be NULL.
void logsoftmax_gather_fused(float *logp,          // (M, K)
                             float *lse,           // (M)
                             float *dh,            // (N, C) or NULL
                             float *dwlm,          // (V, C) or NULL
                             const float *dlogp,   // (M, K)
                             const float *h, const float *wlm, const int *rows, const int *ids,
                             int M, int K, int C, int V, float temperature,
                             float *scratch, size_t scratch_size);

#endif
