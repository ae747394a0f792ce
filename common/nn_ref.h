// nn_ref.h — naive reference kernels for the tests of nn.c (linked into test binaries only).
//
// Written independently of nn.c, straight from the formulas (HF transformers modeling_llama.py /
// modeling_qwen2.py / modeling_qwen3.py, PyTorch docs), as plain loops in double precision with
// no blocking, no BLIS and no threads. Double serves twice: as the exact side of a forward
// comparison with the f32 kernels, and as the function whose central finite differences check
// every f32 backward in nn.c. Shapes and argument order mirror nn.h; outputs are overwritten.
#ifndef SRLM_NN_REF_H
#define SRLM_NN_REF_H

void matmul_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                        int N, int C, int OC);
void rmsnorm_forward_ref(double *out, const double *inp, const double *weight, int N, int C,
                         double eps);
// The angle is pos * theta^(-2i/hs) computed in double (nn.c rounds it to f32 as HF does).
void rope_forward_ref(double *out, const double *inp, const int *pos, int N, int nh, int hs,
                      double theta);
// Full T×T scores per (sequence, head) with an explicit causal mask and repeat_kv.
void attention_forward_ref(double *out, const double *q, const double *k, const double *v,
                           const int *cu_seqlens, int nseq, int N, int NH, int NKV, int hs);
void swiglu_forward_ref(double *out, const double *gate, const double *up, int N, int FF);
void embedding_forward_ref(double *out, const int *tokens, const double *wte, int N, int C);
// All M×V logits at once. topk_ids/topk_logp may be NULL; entropy may be NULL.
void logsoftmax_gather_ref(double *logp, double *lse, double *entropy, int *topk_ids,
                           double *topk_logp, int topk, const double *h, const double *wlm,
                           const int *rows, const int *ids, int M, int K, int C, int V,
                           double temperature);

#endif
