// blas.c — see blas.h for the contract.
#include "blas.h"

#include <blis.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"
#include "safetensors.h"   // bf16_to_f32
#include "util.h"

static int blas_nthreads = 1;

// AVX-512 kernels need the four subsets BLIS's skx configuration uses. __builtin_cpu_supports reads
// cpuid and (in libgcc) checks with xgetbv that the OS saves the zmm state.
static bool cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

void blas_init(int threads)
{
    static bool arch_chosen;
    if (!arch_chosen) {
        // Must happen before BLIS's first call: BLIS reads it once, at initialisation. The 0 in
        // setenv keeps a value the user set (e.g. BLIS_ARCH_TYPE=3 to compare with haswell).
        if (cpu_has_avx512())
            setenv("BLIS_ARCH_TYPE", "0", 0);
        arch_chosen = true;
    }
    if (threads <= 0) {
        const char *s = getenv("BLIS_NUM_THREADS");
        const char *name = "BLIS_NUM_THREADS";
        if (!s || !*s) {
            s = getenv("OMP_NUM_THREADS");
            name = "OMP_NUM_THREADS";
        }
        threads = (s && *s) ? (int)parse_int(s, 1, 4096, name) : cpus_available();
    }
    blas_nthreads = threads;
    pool_init(threads);
    // Every BLIS call runs on one thread (a per-call rntm_t); the pool spreads calls over the
    // cores. BLIS's own count stays 1 so that a stray call without a context cannot start a team.
    bli_thread_set_num_threads(1);
}

int blas_threads(void)
{
    return blas_nthreads;
}

const char *blas_arch_name(void)
{
    bli_init();   // querying before initialisation aborts in BLIS 0.9.0
    return bli_arch_string(bli_arch_query_id());
}

// ---------------------------------------------------------------------------------------------
// Few-row products against a transposed weight: C(M,N) = alpha·A(M,K)·B(N,K)ᵀ + beta·C for small M
// (decoding: M = the number of sequences decoded together). BLIS 0.9.0 packs B for every call and
// its microkernels are tuned for M >= 6..16: at M = 1 (a matrix-vector product) the "zen" sgemm
// reached 4.4 GFLOP/s and at M = 8 17 GFLOP/s on 896 x 4864 here, far below the memory bound. This
// kernel streams B once: for a block of 4 (M <= 2) or 2 B rows it forms the dot products with
// up to 2 resp. 4 rows of A at a time (8 AVX2 accumulators), A staying in L1/L2. Each element of C is one
// dot product summed in a fixed order (8 lanes, then the lanes, then the K % 8 tail) by one thread,
// so the result does not depend on the thread count. Threads split the columns (static schedule).

#define SMALLM_MAX 8   // up to this many rows of A (measured: bench/sgemm.c decode shapes)

// Whether the AVX2 + FMA kernels below can run (cpuid, read once).
static bool cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
#else
    return false;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// dots of rows r < NM of A with NJ consecutive rows of B (row c < nj; rows past nj repeat the
// last one and are discarded): out[r][c]. NM and NJ are compile-time constants after inlining;
// NM·NJ <= 8 accumulators + NJ + 1 operands fit the 16 ymm registers.
__attribute__((target("avx2,fma"), always_inline)) static inline void
smallm_kernel(float out[4][4], const float *A, int lda, const float *B, int ldb, int K, int nj,
              const int NM, const int NJ)
{
    __m256 acc[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < NM; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
            acc[r][c] = _mm256_setzero_ps();
    const float *b[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
        b[c] = B + (size_t)(c < nj ? c : nj - 1) * ldb;
    int K8 = K & ~7;
    for (int k = 0; k < K8; k += 8) {
        __m256 w[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
            w[c] = _mm256_loadu_ps(b[c] + k);
        _Pragma("GCC unroll 4") for (int r = 0; r < NM; r++) {
            __m256 x = _mm256_loadu_ps(A + (size_t)r * lda + k);
            _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
                acc[r][c] = _mm256_fmadd_ps(x, w[c], acc[r][c]);
        }
    }
    for (int r = 0; r < NM; r++)
        for (int c = 0; c < nj; c++) {
            const float *ar = A + (size_t)r * lda;
            float s = hsum256(acc[r][c]);
            for (int k = K8; k < K; k++)
                s += ar[k] * b[c][k];
            out[r][c] = s;
        }
}

// The same with B in bf16. 16 bf16 of a B row load as eight 32-bit words w_i = B[2i] | B[2i+1]<<16;
// w & 0xffff0000 is B[2i+1] as an f32 and w << 16 is B[2i], both exact, so a block of 16 costs
// one load, one and, one shift (Zen 1 has one vector-shift pipe: widening every element with
// vpmovzxwd + vpslld, the shift was the bottleneck) and two FMAs against Ap, the rows of A
// permuted the same way per block of 16 (bf16_permute_a). The K % 16 tail is scalar on A itself.
__attribute__((target("avx2,fma"), always_inline)) static inline void
bf16_kernel(float out[4][4], const float *A, int lda, const float *Ap, int ldap, const uint16_t *B,
            int ldb, int K, int nj, const int NM, const int NJ)
{
    __m256 acc[4][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < NM; r++)
        _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
            acc[r][c] = _mm256_setzero_ps();
    const uint16_t *b[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
        b[c] = B + (size_t)(c < nj ? c : nj - 1) * ldb;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    int K16 = K & ~15;
    for (int k = 0; k < K16; k += 16) {
        __m256 we[4], wo[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(b[c] + k));
            wo[c] = _mm256_castsi256_ps(_mm256_and_si256(w, hi));
            we[c] = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < NM; r++) {
            __m256 xe = _mm256_loadu_ps(Ap + (size_t)r * ldap + k);
            __m256 xo = _mm256_loadu_ps(Ap + (size_t)r * ldap + k + 8);
            _Pragma("GCC unroll 4") for (int c = 0; c < NJ; c++)
                acc[r][c] = _mm256_fmadd_ps(xo, wo[c], _mm256_fmadd_ps(xe, we[c], acc[r][c]));
        }
    }
    for (int r = 0; r < NM; r++)
        for (int c = 0; c < nj; c++) {
            const float *ar = A + (size_t)r * lda;
            float s = hsum256(acc[r][c]);
            for (int k = K16; k < K; k++)
                s += ar[k] * bf16_to_f32(b[c][k]);
            out[r][c] = s;
        }
}

// NJ = 4 columns for one or two rows of A (several B streams keep the memory busy: the
// matrix-vector case is bandwidth-bound), NJ = 2 for up to four rows (fewer reloads of A).
__attribute__((target("avx2,fma"))) static void smallm_block(float out[4][4], const float *A, int lda,
                                                            const float *B, int ldb, int K, int nm, int nj)
{
    switch (nm) {
    case 1: smallm_kernel(out, A, lda, B, ldb, K, nj, 1, 4); break;
    case 2: smallm_kernel(out, A, lda, B, ldb, K, nj, 2, 4); break;
    case 3: smallm_kernel(out, A, lda, B, ldb, K, nj, 3, 2); break;
    default: smallm_kernel(out, A, lda, B, ldb, K, nj, 4, 2); break;
    }
}

// The same blocks with B in bf16.
__attribute__((target("avx2,fma"))) static void smallm_block_bf16(float out[4][4], const float *A, int lda,
                                                                 const float *Ap, int ldap, const uint16_t *B,
                                                                 int ldb, int K, int nm, int nj)
{
    switch (nm) {
    case 1: bf16_kernel(out, A, lda, Ap, ldap, B, ldb, K, nj, 1, 4); break;
    case 2: bf16_kernel(out, A, lda, Ap, ldap, B, ldb, K, nj, 2, 4); break;
    case 3: bf16_kernel(out, A, lda, Ap, ldap, B, ldb, K, nj, 3, 2); break;
    default: bf16_kernel(out, A, lda, Ap, ldap, B, ldb, K, nj, 4, 2); break;
    }
}

// Ap(M, K & ~15): each block of 16 of A's rows as its 8 even then its 8 odd elements (bf16_kernel).
static float *bf16_permute_a(const float *A, int lda, int M, int K)
{
    int K16 = K & ~15;
    float *Ap = xmalloc((size_t)M * (K16 ? K16 : 1) * sizeof(float));
    for (int r = 0; r < M; r++)
        for (int k = 0; k < K16; k += 16)
            for (int i = 0; i < 8; i++) {
                Ap[(size_t)r * K16 + k + i] = A[(size_t)r * lda + k + 2 * i];
                Ap[(size_t)r * K16 + k + 8 + i] = A[(size_t)r * lda + k + 2 * i + 1];
            }
    return Ap;
}
#endif

// The f32 few-row path: AVX2 + FMA, unless SRLM_NO_SMALLM is set (to compare with BLIS).
static bool smallm_enabled(void)
{
    static int ok = -1;
    if (ok < 0) ok = cpu_has_avx2_fma() && !getenv("SRLM_NO_SMALLM");
    return ok;
}

struct smallm_part { const void *B; int N, ldb; float *C; int ldc; float beta; };

// One call of smallm_gemm_parts: its column blocks are cut into pool chunks.
struct smallm_job {
    int M, K, np, JB, nblk, nchunks;
    float alpha;
    const float *A, *Ap;
    int lda, ldap;
    const struct smallm_part *part;
    int first[9];   // first block of each part
    bool bf16, simd;
};

// Column blocks [b0, b1) of the job: for each, the rows of A in groups of up to 4 against the
// block while it sits in L1.
static void smallm_blocks(const struct smallm_job *J, int b0, int b1)
{
    int M = J->M, K = J->K, JB = J->JB, lda = J->lda, ldap = J->ldap;
    bool bf16 = J->bf16, simd = J->simd;
    for (int gb = b0; gb < b1; gb++) {
        int pi = 0;
        while (gb >= J->first[pi + 1]) pi++;
        const struct smallm_part *P = &J->part[pi];
        int j = JB * (gb - J->first[pi]), nj = P->N - j < JB ? P->N - j : JB, ldb = P->ldb;
        const void *B = P->B;
        for (int m0 = 0; m0 < M; m0 += 4) {
            int nm = M - m0 < 4 ? M - m0 : 4;
            if (JB == 4 && nm > 2) nm = 2;   // M <= 2 when JB == 4: two rows per group at most
            float out[4][4];
            const float *a = J->A + (size_t)m0 * lda;
#if defined(__x86_64__) || defined(__i386__)
            if (simd && bf16)
                smallm_block_bf16(out, a, lda, J->Ap + (size_t)m0 * ldap, ldap,
                                  (const uint16_t *)B + (size_t)j * ldb, ldb, K, nm, nj);
            else if (simd) smallm_block(out, a, lda, (const float *)B + (size_t)j * ldb, ldb, K, nm, nj);
            else
#endif
            for (int r = 0; r < nm; r++)
                for (int c = 0; c < nj; c++) {
                    const float *ar = a + (size_t)r * lda;
                    const void *bc = bf16 ? (const void *)((const uint16_t *)B + (size_t)(j + c) * ldb)
                                          : (const void *)((const float *)B + (size_t)(j + c) * ldb);
                    float s = 0;
                    for (int k = 0; k < K; k++)
                        s += ar[k] * (bf16 ? bf16_to_f32(((const uint16_t *)bc)[k]) : ((const float *)bc)[k]);
                    out[r][c] = s;
                }
            for (int r = 0; r < nm; r++)
                for (int c = 0; c < nj; c++) {
                    float *dst = P->C + (size_t)(m0 + r) * P->ldc + j + c;
                    *dst = P->beta == 0.0f ? J->alpha * out[r][c] : J->alpha * out[r][c] + P->beta * *dst;
                }
        }
    }
}

static void smallm_chunk(void *p, int c)
{
    const struct smallm_job *J = p;
    size_t b0, b1;
    pool_range((size_t)J->nblk, J->nchunks, c, &b0, &b1);
    smallm_blocks(J, (int)b0, (int)b1);
}

// C_i(M,N_i) = alpha·A·B_iᵀ + beta_i·C_i for every part i (ldb = ldc_i = its row length as
// given), in blocks of JB B rows over all parts together: one parallel loop for several products
// that share A. B is f32 or (bf16) bf16; without AVX2/FMA (simd == false) the same dots are formed
// by a scalar loop in the same grouping. Each element of C is one dot product in a fixed order,
// whatever M, the parts, the chunks and the thread count: row-invariant (blas.h).
static void smallm_gemm_parts(int M, int K, float alpha, const float *A, int lda,
                              const struct smallm_part *part, int np, bool bf16, bool simd)
{
    ASSERT(np >= 1 && np <= 8);
    struct smallm_job J = {.M = M, .K = K, .np = np, .alpha = alpha, .A = A, .lda = lda, .part = part,
                           .bf16 = bf16, .simd = simd};
    float *Ap = simd && bf16 ? bf16_permute_a(A, lda, M, K) : NULL;
    J.Ap = Ap, J.ldap = K & ~15;
    J.JB = M <= 2 ? 4 : 2;   // columns per block, as smallm_block picks its kernel
    size_t work = 0;
    for (int i = 0; i < np; i++) {
        J.first[i + 1] = J.first[i] + (part[i].N + J.JB - 1) / J.JB;
        work += (size_t)part[i].N * K * (size_t)M;
    }
    J.nblk = J.first[np];
    // chunks of at least 2^16 multiply-adds; the count depends on the shape only
    size_t per_blk = work / (size_t)J.nblk + 1;
    J.nchunks = pool_chunks((size_t)J.nblk, 65536 / per_blk + 1);
    pool_for(J.nchunks, smallm_chunk, &J);
    free(Ap);
}

static void smallm_gemm(int M, int N, int K, float alpha, const float *A, int lda, const void *B,
                        int ldb, bool bf16, float beta, float *C, int ldc, bool simd)
{
    struct smallm_part p = {B, N, ldb, C, ldc, beta};
    smallm_gemm_parts(M, K, alpha, A, lda, &p, 1, bf16, simd);
}

void sgemm_nt_parts(int M, int K, const float *A, int lda, const struct gemm_nt_part *parts, int nparts,
                    bool bf16)
{
    ASSERT(M >= 0 && K > 0 && nparts >= 1 && nparts <= 8);
    if (M == 0) return;
    struct smallm_part p[8];
    for (int i = 0; i < nparts; i++)
        p[i] = (struct smallm_part){parts[i].B, parts[i].N, K, parts[i].C, parts[i].N, parts[i].beta};
    smallm_gemm_parts(M, K, 1.0f, A, lda, p, nparts, bf16, cpu_has_avx2_fma());
}

void sgemm_bf16_nt(int M, int N, int K, const float *A, int lda, const uint16_t *B, int ldb,
                   float beta, float *C, int ldc)
{
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0) return;
    smallm_gemm(M, N, K, 1.0f, A, lda, B, ldb, true, beta, C, ldc, cpu_has_avx2_fma());
}

// ---------------------------------------------------------------------------------------------
// BLIS calls, one thread each, over a grid of blocks of C taken by the pool (pool.h): BLIS's own
// threads split each product statically and wait at a barrier for the slowest, which stalls on a
// shared machine (issue 17). The grid depends on the shape only. No block splits K, so every
// element of C is still one BLIS reduction over the whole of K.

struct gemm_job {
    trans_t ta, tb;
    int M, N, K, nn, mb, nb;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    bool sup;
};

static void blis_one(trans_t ta, trans_t tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc, bool sup)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    if (!sup) bli_rntm_disable_l3_sup(&rntm);
    // BLIS's typed API is not const-qualified
    bli_sgemm_ex(ta, tb, M, N, K, &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, &rntm);
}

static void gemm_chunk(void *p, int c)
{
    const struct gemm_job *J = p;
    int i0 = (c / J->nn) * J->mb, j0 = (c % J->nn) * J->nb;
    int m = J->M - i0 < J->mb ? J->M - i0 : J->mb, n = J->N - j0 < J->nb ? J->N - j0 : J->nb;
    // op(A) row i0: stored (M,K) -> row i0; stored (K,M) (transposed) -> column i0
    const float *a = J->ta == BLIS_TRANSPOSE ? J->A + i0 : J->A + (size_t)i0 * J->lda;
    const float *b = J->tb == BLIS_TRANSPOSE ? J->B + (size_t)j0 * J->ldb : J->B + j0;
    blis_one(J->ta, J->tb, m, n, J->K, J->alpha, a, J->lda, b, J->ldb, J->beta,
             J->C + (size_t)i0 * J->ldc + j0, J->ldc, false);
}

static int ceil_div(long a, long b) { return (int)((a + b - 1) / b); }

// Products below this many FLOPs are one BLIS call, which may take BLIS's small-matrix ("sup")
// path; bigger ones always take the native path. Why the split matters for bits: the native path
// reduces every element of C over K in the same order (KC-blocks, each one register chain)
// whatever the size of the block of C it is asked for, so a grid of native calls gives the bits of
// one native call, at any grid; the sup kernels are chosen by shape and may reduce in another order.
#define GEMM_SMALL_FLOPS 16e6
// Blocks per compute thread: more blocks balance better when a thread is descheduled, but every
// block packs its own panels of A and B (measured on the small shape's training step, 2 threads:
// 2 per thread matched BLIS's own threading, 4 per thread lost 4%; docs/performance.md).
#define GEMM_BLOCKS_PER_THREAD 2

// The block grid of an (M, N, K) product on `threads` threads: about GEMM_BLOCKS_PER_THREAD blocks
// per thread, none below GEMM_SMALL_FLOPS, split into nm row blocks × nn column blocks so that the
// panels packed in all (each block packs its rows of A and its columns of B: nm·|B| + nn·|A|)
// are fewest; block sizes are multiples of BLIS's 6-row and 16-column micro-tiles. The grid may
// depend on the thread count: native calls give the same bits at any grid (above).
static void gemm_blocks(struct gemm_job *J, int threads)
{
    double flops = 2.0 * J->M * (double)J->N * J->K;
    int T = GEMM_BLOCKS_PER_THREAD * threads;
    if (flops < T * GEMM_SMALL_FLOPS) T = flops < GEMM_SMALL_FLOPS ? 1 : (int)(flops / GEMM_SMALL_FLOPS);
    int nn = 1, nm = T;
    double best = -1;
    for (int a = 1; a <= T; a++) {
        int b = ceil_div(T, a);
        if (a > 1 && a > ceil_div(J->N, 64)) break;
        if (b > 1 && b > ceil_div(J->M, 48)) continue;
        double cost = (double)b * J->N + (double)a * J->M;
        if (best < 0 || cost < best) best = cost, nn = a, nm = b;
    }
    J->nb = ceil_div(ceil_div(J->N, nn), 16) * 16;
    J->mb = ceil_div(ceil_div(J->M, nm), 6) * 6;
    J->nn = ceil_div(J->N, J->nb);
}

static void gemm_pool(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc, bool sup)
{
    trans_t ta = trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    trans_t tb = trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE;
    bool small = 2.0 * M * (double)N * K < GEMM_SMALL_FLOPS;
    if (small || pool_in_task() || pool_threads() == 1) {
        blis_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, sup && small);
        return;
    }
    struct gemm_job J = {ta, tb, M, N, K, 1, M, N, alpha, beta, A, B, C, lda, ldb, ldc, false};
    gemm_blocks(&J, pool_threads());
    pool_for(J.nn * ceil_div(M, J.mb), gemm_chunk, &J);
}

// C = beta·C for an empty product (K = 0). Done here so that beta = 0 also clears NaNs in C.
static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
}

void sgemm_rm(bool trans_a, bool trans_b, int M, int N, int K,
              float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc)
{
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    // Row-major: element (i, j) of a stored matrix sits at i*ld + j, so rs = ld and cs = 1; BLIS
    // applies the transpose to the stored matrix (docs/platform-notes.md, BLIS section).
#if defined(__x86_64__) || defined(__i386__)
    if (M <= SMALLM_MAX && !trans_a && trans_b && smallm_enabled()) {
        smallm_gemm(M, N, K, alpha, A, lda, B, ldb, false, beta, C, ldc, true);
        return;
    }
#endif
    gemm_pool(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true);
}

void sgemm_rm_rowinv(bool trans_a, bool trans_b, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B, int ldb,
                     float beta, float *C, int ldc)
{
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    gemm_pool(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, false);
}

// ---------------------------------------------------------------------------------------------
// Panel-packed weights for decoding (blas.h "panels"). An outer-product kernel: each element of C
// is ONE multiply-add chain over k = 0..K-1 (acc = fma(a_k, w_k, acc) from acc = 0), whatever the
// tile, the number of rows M and the thread count. Register tiles of MR rows × NP panels of 16
// columns (MR·NP·2 <= 12 accumulators: enough independent chains to hide the FMA latency at
// every M), the panels of a chunk outermost so that each panel is read from memory once per call
// and the rows of A come from L1/L2.

#define PANEL 16

struct pack_job { const struct panels *p; const float *W; };

// Panels [b, e): for each column its K weights are read in order (one row of W) and scattered into
// the panel, which stays in L2 (K·16 values) while its 16 columns are written.
static void pack_range(void *ctx, size_t b, size_t e)
{
    const struct pack_job *J = ctx;
    const struct panels *p = J->p;
    int K = p->K;
    for (size_t q = b; q < e; q++)
        for (int c = 0; c < PANEL; c++) {
            int col = (int)q * PANEL + c;
            const float *w = col < p->N ? J->W + (size_t)col * K : NULL;
            if (p->bf16) {
                // per k, 16 bf16 as 8 words: word i = column i (low half) | column 8+i (high half),
                // so that `w << 16` is columns 0..7 and `w & 0xffff0000` columns 8..15, exact in f32
                uint16_t *d = (uint16_t *)p->data + q * K * PANEL + (c < 8 ? 2 * c : 2 * (c - 8) + 1);
                for (int k = 0; k < K; k++)
                    d[(size_t)k * PANEL] = w ? f32_to_bf16(w[k]) : 0;
            } else {
                float *d = (float *)p->data + q * K * PANEL + c;
                for (int k = 0; k < K; k++)
                    d[(size_t)k * PANEL] = w ? w[k] : 0.0f;
            }
        }
}

void panels_pack(struct panels *p, const float *W, int N, int K, bool bf16)
{
    ASSERT(N > 0 && K > 0);
    p->N = N, p->K = K, p->np = (N + PANEL - 1) / PANEL, p->bf16 = bf16;
    size_t n = mul_size(mul_size((size_t)p->np, (size_t)K, "panels"), PANEL, "panels");
    p->data = xmalloc(n * (bf16 ? sizeof(uint16_t) : sizeof(float)));
    struct pack_job J = {p, W};
    pool_for_range((size_t)p->np, (size_t)K * PANEL, 1 << 16, pack_range, &J);
}

void panels_free(struct panels *p)
{
    free(p->data);
    p->data = NULL;
}

// Stores a tile's 16-column block (col0 = its first column): C = acc (beta 0) or acc + C.
static void panel_store(const float acc[PANEL], float *c, int ncols, float beta)
{
    for (int j = 0; j < ncols; j++) c[j] = beta == 0.0f ? acc[j] : acc[j] + c[j];
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"), always_inline)) static inline void
panel_tile(const float *A, int lda, const void *P, int K, const bool bf16, float *C, int ldc, int ncols_total,
           int col0, float beta, const int MR, const int NP)
{
    __m256 acc[6][4][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < NP; q++)
            acc[r][q][0] = acc[r][q][1] = _mm256_setzero_ps();
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (int k = 0; k < K; k++) {
        __m256 w[4][2];
        _Pragma("GCC unroll 4") for (int q = 0; q < NP; q++) {
            if (bf16) {
                __m256i x = _mm256_loadu_si256((const __m256i *)((const uint16_t *)P + ((size_t)q * K + k) * PANEL));
                w[q][0] = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
                w[q][1] = _mm256_castsi256_ps(_mm256_and_si256(x, hi));
            } else {
                const float *f = (const float *)P + ((size_t)q * K + k) * PANEL;
                w[q][0] = _mm256_loadu_ps(f);
                w[q][1] = _mm256_loadu_ps(f + 8);
            }
        }
        _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)r * lda + k);
            _Pragma("GCC unroll 4") for (int q = 0; q < NP; q++) {
                acc[r][q][0] = _mm256_fmadd_ps(a, w[q][0], acc[r][q][0]);
                acc[r][q][1] = _mm256_fmadd_ps(a, w[q][1], acc[r][q][1]);
            }
        }
    }
    // out of registers through fully unrolled stores: a runtime index into acc would keep the
    // accumulators in memory for the whole k loop (GCC did: a store per FMA)
    float t[6][4][PANEL];
    _Pragma("GCC unroll 6") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 4") for (int q = 0; q < NP; q++) {
            _mm256_storeu_ps(t[r][q], acc[r][q][0]);
            _mm256_storeu_ps(t[r][q] + 8, acc[r][q][1]);
        }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NP && col0 + q * PANEL < ncols_total; q++) {
            int c0 = col0 + q * PANEL, nc = ncols_total - c0 < PANEL ? ncols_total - c0 : PANEL;
            panel_store(t[r][q], C + (size_t)r * ldc + c0, nc, beta);
        }
}

// One tile of mr rows (1..6) × np panels, the kernel chosen by mr (compile-time shapes).
__attribute__((target("avx2,fma"))) static void panel_tile_avx2(const float *A, int lda, const void *P, int K,
                                                               bool bf16, float *C, int ldc, int N, int col0,
                                                               float beta, int mr, int np)
{
#define PT(MR, NP) (bf16 ? panel_tile(A, lda, P, K, true, C, ldc, N, col0, beta, MR, NP) \
                         : panel_tile(A, lda, P, K, false, C, ldc, N, col0, beta, MR, NP))
    switch (mr * 8 + np) {
    case 1 * 8 + 4: PT(1, 4); break;
    case 1 * 8 + 3: PT(1, 3); break;
    case 1 * 8 + 2: PT(1, 2); break;
    case 1 * 8 + 1: PT(1, 1); break;
    case 2 * 8 + 3: PT(2, 3); break;
    case 2 * 8 + 2: PT(2, 2); break;
    case 2 * 8 + 1: PT(2, 1); break;
    case 3 * 8 + 2: PT(3, 2); break;
    case 3 * 8 + 1: PT(3, 1); break;
    case 4 * 8 + 1: PT(4, 1); break;
    case 5 * 8 + 1: PT(5, 1); break;
    default: PT(6, 1); break;
    }
#undef PT
}
#endif

// The same chains without AVX2: fmaf rounds each step once, as the vector FMA does.
static void panel_tile_scalar(const float *A, int lda, const void *P, int K, bool bf16, float *C, int ldc,
                              int N, int col0, float beta, int mr, int np)
{
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++) {
            int c0 = col0 + q * PANEL;
            if (c0 >= N) break;
            float acc[PANEL] = {0};
            for (int k = 0; k < K; k++) {
                float a = A[(size_t)r * lda + k];
                for (int c = 0; c < PANEL; c++) {
                    float w;
                    if (bf16) w = bf16_to_f32(((const uint16_t *)P)[((size_t)q * K + k) * PANEL + (c < 8 ? 2 * c : 2 * (c - 8) + 1)]);
                    else w = ((const float *)P)[((size_t)q * K + k) * PANEL + c];
                    acc[c] = fmaf(a, w, acc[c]);
                }
            }
            panel_store(acc, C + (size_t)r * ldc + c0, N - c0 < PANEL ? N - c0 : PANEL, beta);
        }
}

// panels per tile for mr rows: at most 12 accumulators, at least 8 where the rows allow
static int panel_np(int mr) { return mr == 1 ? 4 : mr == 2 ? 3 : mr == 3 ? 2 : 1; }

struct panel_job {
    int M, nparts, nchunks, total;   // total: panel groups over all parts
    const float *A;
    int lda;
    const struct gemm_panel_part *part;
    int first[9];                    // first panel group of each part
    bool simd;
};

#define PANEL_GROUP 4   // panels per group: a chunk's unit, read from memory once

static void panel_chunk(void *p, int ch)
{
    const struct panel_job *J = p;
    size_t g0, g1;
    pool_range((size_t)J->total, J->nchunks, ch, &g0, &g1);
    for (size_t gi = g0; gi < g1; gi++) {
        int pi = 0;
        while ((int)gi >= J->first[pi + 1]) pi++;
        const struct gemm_panel_part *P = &J->part[pi];
        const struct panels *W = P->W;
        int q0 = ((int)gi - J->first[pi]) * PANEL_GROUP;
        int q1 = q0 + PANEL_GROUP < W->np ? q0 + PANEL_GROUP : W->np;
        size_t es = W->bf16 ? sizeof(uint16_t) : sizeof(float);
        for (int m0 = 0; m0 < J->M; m0 += 6) {
            int mr = J->M - m0 < 6 ? J->M - m0 : 6, np = panel_np(mr);
            for (int q = q0; q < q1; q += np) {
                int nq = q1 - q < np ? q1 - q : np;
                const void *Pq = (const char *)W->data + (size_t)q * W->K * PANEL * es;
                const float *a = J->A + (size_t)m0 * J->lda;
                float *c = P->C + (size_t)m0 * W->N;
#if defined(__x86_64__) || defined(__i386__)
                if (J->simd) {
                    panel_tile_avx2(a, J->lda, Pq, W->K, W->bf16, c, W->N, W->N, q * PANEL, P->beta, mr, nq);
                    continue;
                }
#endif
                panel_tile_scalar(a, J->lda, Pq, W->K, W->bf16, c, W->N, W->N, q * PANEL, P->beta, mr, nq);
            }
        }
    }
}

static bool panels_scalar;   // tests: the scalar chains instead of AVX2
void panels_force_scalar(bool on) { panels_scalar = on; }

void sgemm_panels(int M, const float *A, int lda, const struct gemm_panel_part *parts, int nparts)
{
    ASSERT(M >= 0 && nparts >= 1 && nparts <= 8);
    if (M == 0) return;
    struct panel_job J = {.M = M, .nparts = nparts, .A = A, .lda = lda, .part = parts,
                         .simd = cpu_has_avx2_fma() && !panels_scalar};
    size_t work = 0;
    for (int i = 0; i < nparts; i++) {
        ASSERT(parts[i].W->K == parts[0].W->K);
        J.first[i + 1] = J.first[i] + (parts[i].W->np + PANEL_GROUP - 1) / PANEL_GROUP;
        work += (size_t)parts[i].W->np * PANEL * parts[i].W->K * (size_t)M;
    }
    J.total = J.first[nparts];
    size_t per_group = work / (size_t)J.total + 1;
    J.nchunks = pool_chunks((size_t)J.total, 65536 / per_group + 1);
    pool_for(J.nchunks, panel_chunk, &J);
}
