// pool.h — srlm's compute threads: one persistent pool that runs a parallel loop as many small
// chunks taken from an atomic counter (the design of ggml's thread pool). docs/performance.md
// "Threads on a shared machine" has the measurements behind it.
//
// Why not `#pragma omp parallel for schedule(static)` (what srlm used before): a static split gives
// every thread a fixed share and waits at the end for the slowest one. On a machine where another
// process takes part of a core, a descheduled thread stalls every parallel region, and GNU OpenMP's
// idle threads spin for up to ~300k iterations, burning the time slice the late thread needs.
// Here a slow thread delays only the chunk it holds; the others take the rest.
//
// Contract:
// - pool_init(threads) sizes the pool to `threads` compute threads: the caller plus threads-1
//   workers, started once and kept for the process's life. blas_init calls it (blas.h: one
//   thread knob per tool); calling it again resizes the pool.
// - pool_for(n, fn, ctx) calls fn(ctx, i) exactly once for every chunk i in [0, n), on the caller
//   and the workers, and returns when all n calls have returned (a full barrier: their writes are
//   visible to the caller). Which thread runs which chunk is not defined, so fn's result for
//   chunk i must depend on i only: then results are bitwise the same at every thread count.
//   Chunks of one call run concurrently: they must write disjoint memory.
// - pool_for called from inside a chunk (nested) runs its chunks in order on the calling thread.
//   Only one thread may call pool_for at a time (srlm's tools have one driving thread).
// - Waits spin briefly (SRLM_SPIN_US microseconds, default 50) and then sleep on a futex, so an
//   idle pool costs no CPU and a busy machine gets its cores back.
// - pool_thread_id() is 0 on the caller and 1..threads-1 on the workers (per-thread scratch).
// - pool_chunks(work, min_work) is the usual chunk count for `work` units of equal cost: about
//   POOL_CHUNKS_PER_THREAD × POOL_MAX_THREADS_HINT chunks, none smaller than min_work units, at
//   least 1. It depends on the work only, never on the thread count (see above).
#ifndef SRLM_POOL_H
#define SRLM_POOL_H

#include <stddef.h>

typedef void (*pool_fn)(void *ctx, int chunk);

void pool_init(int threads);
int pool_threads(void);
void pool_for(int nchunks, pool_fn fn, void *ctx);
int pool_thread_id(void);
// Whether the calling thread is inside a pool_for chunk (nested calls run serially).
int pool_in_task(void);

// A chunk count for `work` units that does not depend on the thread count: enough chunks for
// load balance on a shared machine (64), none below min_work units.
int pool_chunks(size_t work, size_t min_work);

// A loop over [0, n) in contiguous ranges: fn(ctx, begin, end) once per range, the ranges cut
// by pool_chunks(n * unit, min_work) (at most n of them), so they depend on n, unit and min_work
// only. unit is the cost of one index (e.g. a row's length), min_work the least work worth a
// chunk; below 2·min_work in all the loop runs on the caller without waking the pool.
typedef void (*pool_range_fn)(void *ctx, size_t begin, size_t end);
void pool_for_range(size_t n, size_t unit, size_t min_work, pool_range_fn fn, void *ctx);

// The half-open range of chunk i of n over [0, total): even splits, the remainder spread over the
// first chunks.
static inline void pool_range(size_t total, int n, int i, size_t *begin, size_t *end)
{
    size_t q = total / (size_t)n, r = total % (size_t)n, ii = (size_t)i;
    *begin = ii * q + (ii < r ? ii : r);
    *end = *begin + q + (ii < r);
}

#endif
