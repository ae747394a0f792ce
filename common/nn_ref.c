// nn_ref.c — naive double-precision reference kernels; see nn_ref.h.
#include "nn_ref.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

void matmul_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                        int N, int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++)
                acc += inp[n * C + c] * weight[o * C + c];
            out[n * OC + o] = acc;
        }
}

void rmsnorm_forward_ref(double *out, const double *inp, const double *weight, int N, int C,
                         double eps)
{
    for (int n = 0; n < N; n++) {
        double ms = 0.0;
        for (int c = 0; c < C; c++)
            ms += inp[n * C + c] * inp[n * C + c];
        ms /= C;
        for (int c = 0; c < C; c++)
            out[n * C + c] = weight[c] * (inp[n * C + c] / sqrt(ms + eps));
    }
}

void rope_forward_ref(double *out, const double *inp, const int *pos, int N, int nh, int hs,
                      double theta)
{
    // HF: q * cos + rotate_half(q) * sin with cos/sin = cat(freqs, freqs); rotate_half = (-x2, x1)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < nh; h++) {
            const double *x = inp + (n * nh + h) * hs;
            double *y = out + (n * nh + h) * hs;
            for (int i = 0; i < hs; i++) {
                int fi = i % (hs / 2);
                double angle = pos[n] * pow(theta, -2.0 * fi / hs);
                double rot = i < hs / 2 ? -x[i + hs / 2] : x[i - hs / 2];
                y[i] = x[i] * cos(angle) + rot * sin(angle);
            }
        }
}

void attention_forward_ref(double *out, const double *q, const double *k, const double *v,
                           const int *cu_seqlens, int nseq, int N, int NH, int NKV, int hs)
{
    int G = NH / NKV;
    double *w = xmalloc((size_t)N * sizeof(double));
    for (int s = 0; s < nseq; s++) {
        int a = cu_seqlens[s], b = cu_seqlens[s + 1];
        for (int h = 0; h < NH; h++) {
            int hk = h / G;   // repeat_kv: query head h uses key/value head h / n_rep
            for (int i = a; i < b; i++) {
                // softmax over keys a..i of (q_i · k_j) / sqrt(hs); later keys are masked (-inf)
                double mx = -INFINITY;
                for (int j = a; j <= i; j++) {
                    double dot = 0.0;
                    for (int c = 0; c < hs; c++)
                        dot += q[(i * NH + h) * hs + c] * k[(j * NKV + hk) * hs + c];
                    w[j] = dot / sqrt((double)hs);
                    if (w[j] > mx)
                        mx = w[j];
                }
                double sum = 0.0;
                for (int j = a; j <= i; j++) {
                    w[j] = exp(w[j] - mx);
                    sum += w[j];
                }
                for (int c = 0; c < hs; c++) {
                    double acc = 0.0;
                    for (int j = a; j <= i; j++)
                        acc += w[j] / sum * v[(j * NKV + hk) * hs + c];
                    out[(i * NH + h) * hs + c] = acc;
                }
            }
        }
    }
    free(w);
}

void swiglu_forward_ref(double *out, const double *gate, const double *up, int N, int FF)
{
    for (int i = 0; i < N * FF; i++)
        out[i] = gate[i] / (1.0 + exp(-gate[i])) * up[i];
}

void embedding_forward_ref(double *out, const int *tokens, const double *wte, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[n * C + c] = wte[tokens[n] * C + c];
}

void logsoftmax_gather_ref(double *logp, double *lse, double *entropy, int *topk_ids,
                           double *topk_logp, int topk, const double *h, const double *wlm,
                           const int *rows, const int *ids, int M, int K, int C, int V,
                           double temperature)
{
    double *z = xmalloc((size_t)V * sizeof(double));
    char *taken = xmalloc((size_t)V);
    for (int m = 0; m < M; m++) {
        const double *x = h + (rows ? rows[m] : m) * C;
        double mx = -INFINITY;
        for (int j = 0; j < V; j++) {
            double acc = 0.0;
            for (int c = 0; c < C; c++)
                acc += x[c] * wlm[j * C + c];
            z[j] = acc / temperature;
            if (z[j] > mx)
                mx = z[j];
        }
        double sum = 0.0;
        for (int j = 0; j < V; j++)
            sum += exp(z[j] - mx);
        double l = mx + log(sum);
        lse[m] = l;
        for (int kk = 0; kk < K; kk++)
            logp[m * K + kk] = z[ids[m * K + kk]] - l;
        if (entropy) {
            double H = 0.0;
            for (int j = 0; j < V; j++)
                H -= exp(z[j] - l) * (z[j] - l);
            entropy[m] = H;
        }
        // top-k by repeated selection of the largest remaining logit (first index on ties)
        for (int j = 0; j < V; j++)
            taken[j] = 0;
        for (int kk = 0; kk < topk; kk++) {
            int best = -1;
            for (int j = 0; j < V; j++)
                if (!taken[j] && (best < 0 || z[j] > z[best]))
                    best = j;
            taken[best] = 1;
            topk_ids[m * topk + kk] = best;
            topk_logp[m * topk + kk] = z[best] - l;
        }
    }
    free(taken);
    free(z);
}
