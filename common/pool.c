// pool.c — see pool.h for the contract.
//
// One job at a time. The job's chunk counter and its generation share one 64-bit word
// (ticket = generation << 32 | next chunk), so a worker still finishing job g can never claim a
// chunk of job g+1 with job g's function: its compare-and-swap fails once the generation moves.
// Workers sleep on `gen32` (a futex word bumped per job); the caller sleeps on `done`.
#include "pool.h"

#include <errno.h>
#include <string.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX 1024

static struct {
    _Atomic uint64_t ticket;        // generation << 32 | next chunk to claim
    _Atomic uint32_t gen32;         // futex: bumped when a job is published or the pool stops
    _Atomic uint32_t done;          // futex: chunks finished in the current job
    _Atomic int caller_sleeping;
    _Atomic int sleepers;           // workers asleep on gen32
    struct job {                    // job g lives in ring[g % 4]; `gen` guards it like a seqlock
        _Atomic uint32_t gen;       // 0 while being written
        _Atomic(pool_fn) fn;
        _Atomic(void *) ctx;
        _Atomic uint32_t n;
    } ring[4];
    int nthreads;                   // caller + workers
    int nworkers;
    _Atomic int stop;
    pthread_t tid[POOL_MAX];
    long spin_ns;
    uint32_t start_gen;             // gen32 when the current workers were started
} P = {.nthreads = 1, .spin_ns = 50000};

static _Thread_local int tl_id;          // 0: the caller
static _Thread_local int tl_in_task;

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)addr, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// Spins until *w != seen or spin_ns passed; returns the last value read.
static uint32_t spin_while_equal(_Atomic uint32_t *w, uint32_t seen)
{
    long t0 = 0;
    for (int i = 0;; i++) {
        uint32_t v = atomic_load_explicit(w, memory_order_acquire);
        if (v != seen) return v;
        cpu_relax();
        if ((i & 63) == 63) {
            long t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 >= P.spin_ns) return v;
        }
    }
}

// Claims and runs chunks of job `gen` until none are left. Returns when the counter is exhausted
// or the generation moved on.
static void work_on(uint32_t gen, pool_fn fn, void *ctx, uint32_t n)
{
    uint64_t v = atomic_load_explicit(&P.ticket, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (uint32_t)v >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&P.ticket, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        tl_in_task = 1;
        fn(ctx, (int)(uint32_t)v);
        tl_in_task = 0;
        uint32_t d = atomic_fetch_add_explicit(&P.done, 1, memory_order_acq_rel) + 1;
        if (d == n && atomic_load(&P.caller_sleeping)) futex(&P.done, FUTEX_WAKE, 1);
        v = atomic_load_explicit(&P.ticket, memory_order_acquire);
    }
}

static void *worker(void *arg)
{
    tl_id = (int)(intptr_t)arg;
    // gen32 as pool_init saw it: a thread that starts late must still see a later job or stop
    uint32_t seen = P.start_gen;
    for (;;) {
        uint32_t g = spin_while_equal(&P.gen32, seen);
        if (g == seen) {
            atomic_fetch_add(&P.sleepers, 1);
            // re-checked by the kernel: returns at once if a job was published meanwhile
            futex(&P.gen32, FUTEX_WAIT, seen);
            atomic_fetch_sub(&P.sleepers, 1);
            continue;
        }
        seen = g;
        if (atomic_load(&P.stop)) return NULL;
        // The job named by the ticket, read consistently: a worker that slept through several
        // jobs may find its ring slot rewritten, and then skips it (its CAS would fail anyway).
        uint32_t gen = (uint32_t)(atomic_load_explicit(&P.ticket, memory_order_acquire) >> 32);
        struct job *j = &P.ring[gen % 4];
        if (atomic_load_explicit(&j->gen, memory_order_acquire) != gen) continue;
        pool_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&j->ctx, memory_order_relaxed);
        uint32_t n = atomic_load_explicit(&j->n, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&j->gen, memory_order_relaxed) != gen) continue;
        work_on(gen, fn, ctx, n);
    }
}

static void pool_stop(void)
{
    if (!P.nworkers) return;
    atomic_store(&P.stop, 1);
    atomic_fetch_add(&P.gen32, 1);
    futex(&P.gen32, FUTEX_WAKE, INT_MAX);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.tid[i], NULL);
    P.nworkers = 0;
    atomic_store(&P.stop, 0);
}

void pool_init(int threads)
{
    ASSERT(!tl_in_task);
    if (threads < 1) threads = 1;
    if (threads > POOL_MAX) threads = POOL_MAX;
    const char *s = getenv("SRLM_SPIN_US");
    if (s && *s) P.spin_ns = parse_int(s, 0, 1000000, "SRLM_SPIN_US") * 1000L;
    if (threads == P.nthreads && P.nworkers == threads - 1) return;
    pool_stop();
    P.nthreads = threads;
    P.start_gen = atomic_load(&P.gen32);
    for (int i = 1; i < threads; i++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 8u << 20);   // kernels keep small VLAs on the stack
        int rc = pthread_create(&P.tid[i - 1], &a, worker, (void *)(intptr_t)i);
        pthread_attr_destroy(&a);
        if (rc) die(EX_OSERR, "cannot start a compute thread: %s", strerror(rc));
        P.nworkers = i;
    }
}

int pool_threads(void) { return P.nthreads; }
int pool_thread_id(void) { return tl_id; }
int pool_in_task(void) { return tl_in_task; }

int pool_chunks(size_t work, size_t min_work)
{
    size_t n = 64;
    if (min_work < 1) min_work = 1;
    if (work / min_work < n) n = work / min_work;
    return n < 1 ? 1 : (int)n;
}

struct range_job {
    pool_range_fn fn;
    void *ctx;
    size_t n;
    int nchunks;
};

static void range_chunk(void *ctx, int i)
{
    struct range_job *J = ctx;
    size_t b, e;
    pool_range(J->n, J->nchunks, i, &b, &e);
    J->fn(J->ctx, b, e);
}

void pool_for_range(size_t n, size_t unit, size_t min_work, pool_range_fn fn, void *ctx)
{
    if (n == 0) return;
    int nc = pool_chunks(n * (unit ? unit : 1), min_work);
    if ((size_t)nc > n) nc = (int)n;
    struct range_job J = {fn, ctx, n, nc};
    pool_for(nc, range_chunk, &J);
}

void pool_for(int nchunks, pool_fn fn, void *ctx)
{
    if (nchunks <= 0) return;
    if (nchunks == 1 || P.nworkers == 0 || tl_in_task) {
        int outer = tl_in_task;
        tl_in_task = 1;
        for (int i = 0; i < nchunks; i++) fn(ctx, i);
        tl_in_task = outer;
        return;
    }
    uint32_t gen = (uint32_t)(atomic_load(&P.ticket) >> 32) + 1;
    if (gen == 0) gen = 1;   // 0 marks a ring slot being written
    struct job *j = &P.ring[gen % 4];
    atomic_store_explicit(&j->gen, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&j->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&j->n, (uint32_t)nchunks, memory_order_relaxed);
    atomic_store_explicit(&j->gen, gen, memory_order_release);
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    atomic_store_explicit(&P.ticket, (uint64_t)gen << 32, memory_order_release);
    atomic_fetch_add_explicit(&P.gen32, 1, memory_order_release);
    if (atomic_load(&P.sleepers)) futex(&P.gen32, FUTEX_WAKE, INT_MAX);
    work_on(gen, fn, ctx, (uint32_t)nchunks);
    // Wait for chunks other threads hold: spin briefly, then sleep until the last one wakes us.
    uint32_t d = atomic_load_explicit(&P.done, memory_order_acquire);
    if (d != (uint32_t)nchunks) {
        long t0 = now_ns();
        for (int i = 0; d != (uint32_t)nchunks; i++) {
            cpu_relax();
            d = atomic_load_explicit(&P.done, memory_order_acquire);
            if ((i & 63) == 63 && now_ns() - t0 >= P.spin_ns) break;
        }
        while (d != (uint32_t)nchunks) {
            atomic_store(&P.caller_sleeping, 1);
            d = atomic_load(&P.done);
            if (d != (uint32_t)nchunks) futex(&P.done, FUTEX_WAIT, d);
            atomic_store(&P.caller_sleeping, 0);
            d = atomic_load_explicit(&P.done, memory_order_acquire);
        }
    }
}
