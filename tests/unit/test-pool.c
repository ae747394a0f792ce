// test-pool.c — common/pool.c: every chunk runs exactly once per pool_for, at 1..5 threads and
// after resizing; nested pool_for runs serially on the calling thread; many short jobs in a row
// (the race a slow worker could lose against the next job: it must never run a chunk of a new job
// with the old job's function); a worker busy in a long chunk does not stop the caller from
// taking the remaining chunks; and a loop whose chunks depend only on their index gives the same
// bits at every thread count.
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "test.h"
#include "util.h"

struct count { _Atomic int *hits; int tag; _Atomic int *wrong; };

static void count_chunk(void *p, int i)
{
    struct count *c = p;
    atomic_fetch_add(&c->hits[i], 1);
    if (c->tag < 0) atomic_fetch_add(c->wrong, 1);
}

static void other_chunk(void *p, int i)
{
    (void)i;
    atomic_fetch_add((_Atomic int *)p, 1);
}

static void exactly_once(int threads)
{
    pool_init(threads);
    CHECK(pool_threads() == threads);
    enum { N = 257 };
    _Atomic int hits[N], wrong = 0;
    int bad = 0;
    for (int rep = 0; rep < 2000; rep++) {
        int n = 1 + rep % N;
        for (int i = 0; i < n; i++) atomic_store(&hits[i], 0);
        struct count c = {hits, rep, &wrong};
        pool_for(n, count_chunk, &c);
        for (int i = 0; i < n; i++) bad += atomic_load(&hits[i]) != 1;
        // a different function in between: a stale worker must not mix the two
        _Atomic int k = 0;
        pool_for(3, other_chunk, (void *)&k);
        bad += atomic_load(&k) != 3;
    }
    CHECK_MSG(bad == 0, "%d chunks ran other than once at %d threads", bad, threads);
    CHECK(atomic_load(&wrong) == 0);
}

static _Atomic int nested_bad;

static void inner(void *p, int i)
{
    int *order = p;
    if (!pool_in_task()) atomic_fetch_add(&nested_bad, 1);
    order[i] = order[i - (i > 0)] + (i > 0);   // in order: each sees its predecessor's write
}

static void outer(void *p, int i)
{
    int order[16] = {0};
    pool_for(16, inner, order);
    for (int k = 0; k < 16; k++)
        if (order[k] != k) atomic_fetch_add(&nested_bad, 1);
    ((int *)p)[i] = 1;
}

static void nested(void)
{
    pool_init(3);
    int done[40] = {0};
    pool_for(40, outer, done);
    int all = 1;
    for (int i = 0; i < 40; i++) all &= done[i];
    CHECK(all);
    CHECK(atomic_load(&nested_bad) == 0);
    CHECK(!pool_in_task());
}

// A chunk that sleeps 200 ms on whichever thread takes chunk 0; the other chunks must all have
// run by the time it wakes (the caller and the other worker took them), so the job ends about
// when chunk 0 does.
struct slow { _Atomic int finished; int seen_at_end; };

static void slow_chunk(void *p, int i)
{
    struct slow *s = p;
    if (i == 0) {
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
        s->seen_at_end = atomic_load(&s->finished);
    } else {
        atomic_fetch_add(&s->finished, 1);
    }
}

static void slow_worker(void)
{
    pool_init(3);
    struct slow s = {0, 0};
    pool_for(50, slow_chunk, &s);
    CHECK_MSG(s.seen_at_end == 49, "other chunks finished while chunk 0 slept: %d of 49", s.seen_at_end);
}

// out[i] = a sum whose order depends on i only: the same bits at 1, 2 and 4 threads.
struct sums { const float *x; float *out; int n, len; };

static void sum_chunk(void *p, int c)
{
    struct sums *s = p;
    size_t b, e;
    pool_range((size_t)s->n, 7, c, &b, &e);
    for (size_t i = b; i < e; i++) {
        float acc = 0;
        for (int k = 0; k < s->len; k++) acc += s->x[(i * 31 + (size_t)k) % 4096] * (float)(k + 1);
        s->out[i] = acc;
    }
}

static void invariance(void)
{
    float x[4096], ref[1000], out[1000];
    for (int i = 0; i < 4096; i++) x[i] = (float)((i * 2654435761u) % 1000) / 997.0f - 0.5f;
    struct sums s = {x, ref, 1000, 333};
    pool_init(1);
    pool_for(7, sum_chunk, &s);
    for (int t = 2; t <= 4; t += 2) {
        pool_init(t);
        memset(out, 0, sizeof out);
        s.out = out;
        pool_for(7, sum_chunk, &s);
        CHECK(memcmp(out, ref, sizeof out) == 0);
    }
}

static void ranges(void)
{
    size_t b, e, prev = 0, total = 0;
    for (int i = 0; i < 7; i++) {
        pool_range(100, 7, i, &b, &e);
        CHECK(b == prev && e >= b);
        total += e - b, prev = e;
    }
    CHECK(total == 100);
    CHECK(pool_chunks(1000, 10) == 64);
    CHECK(pool_chunks(100, 10) == 10);
    CHECK(pool_chunks(5, 10) == 1);
}

int main(void)
{
    tool_init("test-pool");
    for (int t = 1; t <= 5; t++) exactly_once(t);
    exactly_once(2);   // shrink after growing
    nested();
    slow_worker();
    invariance();
    ranges();
    return test_finish("test-pool");
}
