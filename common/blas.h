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
//     * sets BLIS's thread count and OpenMP's to the same number: one knob for every thread of a
//       tool. threads <= 0 (no --threads) means: BLIS_NUM_THREADS if set, else OMP_NUM_THREADS,
//       else cpus_available() (util.h): the CPUs of the process's affinity mask (taskset,
//       cpusets), capped by its cgroup's CPU quota (a container's --cpus).
//     * allows no nested OpenMP parallelism (omp_set_max_active_levels(1)).
//   Calling it again later only changes the thread count (tests compare 1 and 2 threads).
// - sgemm_rm is a thin row-major wrapper over bli_sgemm: C(M,N) = alpha·op(A)·op(B) + beta·C, each
//   matrix given by its pointer and row stride (ld, in floats; column stride 1). op(X) = Xᵀ when the
//   trans flag is set, and then X is stored (K, M) resp. (N, K). Transposed operands cost nothing:
//   BLIS packs through the strides. Called from inside an OpenMP parallel region it runs BLIS with one
//   thread (a per-call rntm_t), so an OpenMP loop over BLIS calls never oversubscribes the cores;
//   outside a region it uses the blas_init thread count. One exception: A·Bᵀ with at most 8 rows
//   of A (a decode step) on an AVX2+FMA CPU goes to srlm's own kernel, which streams B once
//   (BLIS packs B for every call and is tuned for many rows); SRLM_NO_SMALLM=1 turns that off.
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

// C(M,N) = A(M,K)·B(N,K)ᵀ + beta·C (beta 0 or 1) with B in bf16: each uint16_t is the upper half
// of an f32, widened exactly. For decoding from bf16 weights (half the bytes of f32 to stream per
// token); any M, meant for few rows (the sequences decoded together). Each element of C is one dot
// product summed in a fixed order by one thread: the same bits at every thread count.
void sgemm_bf16_nt(int M, int N, int K, const float *A, int lda, const uint16_t *B, int ldb,
                   float beta, float *C, int ldc);

// Several products sharing A in one parallel region (decoding: q, k, v; gate, up):
// C_i(M,N_i) = A(M,K)·B_i(N_i,K)ᵀ + beta_i·C_i (beta 0 or 1), B_i f32 or (bf16) bf16, C_i row
// length N_i. Every element gets the bits the separate sgemm_rm / sgemm_bf16_nt call gives.
struct gemm_nt_part { const void *B; int N; float *C; float beta; };
void sgemm_nt_parts(int M, int K, const float *A, int lda, const struct gemm_nt_part *parts, int nparts,
                    bool bf16);

#endif
