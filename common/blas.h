// blas.h — the one place srlm talks to BLIS: start-up (kernel choice and the thread knob), a
// row-major sgemm wrapper, and srlm's own few-row kernels for decoding (f32 and bf16 weights).
// Nothing else includes <blis.h> except blas.c and nn.c.
//
// Contract:
// - blas_init(threads) is called once, before any BLIS call (so before any nn_* kernel), by every
//   tool and test that computes. It
//     * forces BLIS's AVX-512 ("skx") kernels with BLIS_ARCH_TYPE=0 when the CPU and OS support
//       avx512f/dq/bw/vl, unless the user already set BLIS_ARCH_TYPE. BLIS 0.9.0 counts FMA units
//       from the CPU brand string, which VMs hide, and then falls back to AVX2 kernels that run at
//       about half speed (docs/platform-notes.md). The variable is read at BLIS's first call, so a
//       later blas_init cannot change the kernels, only the thread count.
//     * sizes the compute-thread pool (pool.h) to `threads`: one knob for every thread of a
//       tool. threads <= 0 (no --threads) means: BLIS_NUM_THREADS if set, else OMP_NUM_THREADS,
//       else cpus_available() (util.h): the CPUs of the process's affinity mask (taskset,
//       cpusets), capped by its cgroup's CPU quota (a container's --cpus). BLIS itself always
//       runs one thread per call.
//   Calling it again later only changes the thread count (tests compare 1 and 2 threads).
// - sgemm_rm is a row-major wrapper over bli_sgemm: C(M,N) = alpha·op(A)·op(B) + beta·C, each
//   matrix given by its pointer and row stride (ld, in floats; column stride 1). op(X) = Xᵀ when the
//   trans flag is set, and then X is stored (K, M) resp. (N, K). Transposed operands cost nothing:
//   BLIS packs through the strides. A product under 16 MFLOP is one BLIS call (which may take
//   BLIS's small-matrix path); a bigger one is cut into a grid of blocks of C, about two per
//   thread, each one single-threaded call of BLIS's native path, taken by the pool's threads as
//   they come free (BLIS's own threads split statically and wait for the slowest: issue 17). The
//   native path reduces each element over K in the same order whatever block it is asked for and
//   no block splits K, so results are bitwise the same at every grid and thread count. Called from
//   inside a pool chunk it is one BLIS call on that thread.
//   One exception: A·Bᵀ with at most 8 rows of A on an AVX2+FMA CPU goes to srlm's own dot
//   kernel, which streams B once (BLIS packs B for every call and is tuned for many rows);
//   SRLM_NO_SMALLM=1 turns that off.
#ifndef SRLM_BLAS_H
#define SRLM_BLAS_H

#include <stdbool.h>
#include <stdint.h>

void blas_init(int threads);
int blas_threads(void);
// The BLIS kernel set in use ("skx", "haswell", "zen", ...), for logs and benchmarks.
const char *blas_arch_name(void);

void sgemm_rm(bool trans_a, bool trans_b, int M, int N, int K,
              float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

// sgemm_rm with every element of C independent of M, N and the thread count: row i of C depends
// only on row i of op(A), op(B), K, alpha and beta. BLIS's native kernels without its "sup" path
// (which picks kernels by shape) and never the few-row kernel: each element is BLIS's one
// reduction over K (a chain per KC block, the blocks added in order). Inference forwards use it
// (lm_acts_init_forward: rollout's prefill, teacher-logits, evaluate), so a prompt's results do not
// depend on which prompts share its batch (issue 13).
void sgemm_rm_rowinv(bool trans_a, bool trans_b, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B, int ldb,
                     float beta, float *C, int ldc);

// C(M,N) = A(M,K)·B(N,K)ᵀ + beta·C (beta 0 or 1) with B in bf16: each uint16_t is the upper half
// of an f32, widened exactly. For decoding from bf16 weights (half the bytes of f32 to stream per
// token); any M, meant for few rows (the sequences decoded together). Each element of C is one dot
// product summed in a fixed order by one thread: the same bits at every thread count.
void sgemm_bf16_nt(int M, int N, int K, const float *A, int lda, const uint16_t *B, int ldb,
                   float beta, float *C, int ldc);

// Several products sharing A in one parallel loop (decoding: q, k, v; gate, up; or one product):
// C_i(M,N_i) = A(M,K)·B_i(N_i,K)ᵀ + beta_i·C_i (beta 0 or 1), B_i f32 or (bf16) bf16, C_i row
// length N_i. srlm's fixed-order dot kernel for EVERY M (f32 and bf16): each element one dot
// product in one order, so row-invariant like sgemm_rm_rowinv (its own order, not BLIS's).
// The decoder uses it for every product, so a sequence's tokens do not depend on the batch.
struct gemm_nt_part { const void *B; int N; float *C; float beta; };
void sgemm_nt_parts(int M, int K, const float *A, int lda, const struct gemm_nt_part *parts, int nparts,
                    bool bf16);

// Weights packed for decoding: W (N, K) row-major as ceil(N/16) panels of K × 16 values (f32, or
// bf16 rounded from W), column-padded with zeros. sgemm_panels computes, for every part i,
// C_i(M, N_i) = A(M, K)·W_iᵀ + beta_i·C_i (beta 0 or 1, C_i row length N_i) with every element
// ONE fused multiply-add chain over k = 0..K-1: the same bits for every M, tile and thread count
// (row-invariant), and a register-tiled kernel that stays fast from M = 1 to M = 64 (issue 13).
// Without AVX2/FMA the same chains run scalar with fmaf.
struct panels { int N, K, np; bool bf16; void *data; };
void panels_pack(struct panels *p, const float *W, int N, int K, bool bf16);
void panels_free(struct panels *p);
struct gemm_panel_part { const struct panels *W; float *C; float beta; };
void sgemm_panels(int M, const float *A, int lda, const struct gemm_panel_part *parts, int nparts);
// Tests: run sgemm_panels' scalar chains even where AVX2 is available (they must give the same bits).
void panels_force_scalar(bool on);

#endif
