// dist.c — MPI ranks (dist.h). The only file that includes mpi.h.
#include "dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>
#include <xxhash.h>

#include "util.h"

static int rank = 0, size = 1;
static bool active = false;

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }
bool dist_mine(long long i) { return i % size == rank; }

// ---------------------------------------------------------------------------------------------
// waiting without spinning

static void out_poll(void);

static void nap(double waited)
{
    struct timespec ts = {0, waited < 0.1 ? 100000 : 1000000};
    nanosleep(&ts, NULL);
}

// Completes rq; rank 0 keeps writing arrived output items meanwhile.
static void wait_req(MPI_Request *rq)
{
    double t0 = now_seconds();
    for (int polls = 0;; polls++) {
        int done = 0;
        MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (done) return;
        out_poll();
        if (polls > 64) nap(now_seconds() - t0);
    }
}

static void sleeping_barrier(void)
{
    MPI_Request rq;
    MPI_Ibarrier(MPI_COMM_WORLD, &rq);
    wait_req(&rq);
}

// ---------------------------------------------------------------------------------------------
// start, errors and the end

// die()/usage_error() under MPI (util.h exit hook). Rank 0 reports and ends the job. Another
// rank waits first: an error every rank meets is rank 0's to report, and its MPI_Abort ends us.
static void on_fatal(int code, const char *msg)
{
    if (rank > 0) {
        struct timespec ts = {2, 0};
        nanosleep(&ts, NULL);
        fprintf(stderr, "%s: rank %d: %s\n", progname, rank, msg);
    } else {
        fprintf(stderr, "%s: %s\n", progname, msg);
    }
    fflush(stdout), fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

static void on_exit_ok(void)
{
    sleeping_barrier();
    MPI_Finalize();
}

static ssize_t dist_read(int fd, void *buf, size_t cap);
static void check_same(int code, const char *what, uint64_t v, const char *hint);

static bool launched(void)
{
    const char *off = getenv("SRLM_MPI");
    if (off && !strcmp(off, "0")) return false;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

void dist_init(int argc, char **argv)
{
    if (!launched()) return;
    int provided;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die(EX_UNAVAILABLE, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    active = true;
    util_fatal_hook = on_fatal;
    util_exit_hook = on_exit_ok;
    rec_refuse_tty = 0;
    if (size == 1) return;
    rec_read_hook = dist_read;
    if (rank > 0) {
        log_mute = 1;
        if (!freopen("/dev/null", "w", stdout)) die(EX_OSERR, "open /dev/null:");
    }
    // One job, one set of options: the ranks' command lines and builds must agree.
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, VERSION, sizeof VERSION);
    for (int i = 0; i < argc; i++) XXH3_64bits_update(st, argv[i], strlen(argv[i]) + 1);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    check_same(EX_USAGE, "the command line (or the srlm build)", h,
                    ": every rank must run the same tool with the same options");
}

void dist_check_same(const char *what, uint64_t v, const char *hint)
{
    check_same(EX_DATAERR, what, v, hint);
}

static void check_same(int code, const char *what, uint64_t v, const char *hint)
{
    if (size == 1) return;
    uint64_t *all = xmalloc((size_t)size * sizeof *all);
    MPI_Allgather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    int bad = 0;
    for (int r = 1; r < size && !bad; r++)
        if (all[r] != all[0]) bad = r;
    if (bad) {
        char a[17], b[17];
        hash_hex(all[0], a), hash_hex(all[bad], b);
        free(all);
        if (rank == 0) die(code, "%s differs between ranks: rank 0 has %s, rank %d %s%s", what, a, bad, b, hint);
        for (;;) nap(1);   // rank 0 ends the job
    }
    free(all);
}

FILE *dist_open_input(const char *path, const char **name)
{
    if (rank == 0) return open_input_path(path, name);
    *name = path && strcmp(path, "-") ? path : "<stdin>";
    FILE *fp = fopen("/dev/null", "r");
    if (!fp) die(EX_OSERR, "open /dev/null:");
    return fp;
}

// ---------------------------------------------------------------------------------------------
// the input: rank 0 reads, every rank sees the bytes

// rec.c's read(2): rank 0 reads, then broadcasts the count (or the error) and the bytes. The
// other ranks ask for the same reads in the same order, as they run the same parse.
static ssize_t dist_read(int fd, void *buf, size_t cap)
{
    int64_t hdr[2] = {0, 0};
    if (rank == 0) {
        ssize_t n;
        do n = read(fd, buf, cap > (1u << 30) ? (1u << 30) : cap);
        while (n < 0 && errno == EINTR);
        hdr[0] = n, hdr[1] = n < 0 ? errno : 0;
    }
    MPI_Request rq;
    MPI_Ibcast(hdr, 2, MPI_INT64_T, 0, MPI_COMM_WORLD, &rq);
    wait_req(&rq);
    if (hdr[0] < 0) { errno = (int)hdr[1]; return -1; }
    ASSERT((size_t)hdr[0] <= cap);   // the same parse asks for the same reads
    if (hdr[0] > 0) {
        MPI_Ibcast(buf, (int)hdr[0], MPI_BYTE, 0, MPI_COMM_WORLD, &rq);
        wait_req(&rq);
    }
    return (ssize_t)hdr[0];
}

long long dist_bcast_ll(long long v)
{
    if (size == 1) return v;
    int64_t x = v;
    MPI_Request rq;
    MPI_Ibcast(&x, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &rq);
    wait_req(&rq);
    return x;
}

// ---------------------------------------------------------------------------------------------
// reductions

#define REDUCE_CHUNK (1 << 24)   // elements per MPI call (counts are ints; bounds MPI's buffers)

static void allreduce(void *x, size_t n, MPI_Datatype t, size_t esize, MPI_Op op)
{
    if (size == 1 || n == 0) return;
    sleeping_barrier();
    for (size_t i = 0; i < n; i += REDUCE_CHUNK) {
        size_t m = n - i < REDUCE_CHUNK ? n - i : REDUCE_CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * esize, (int)m, t, op, MPI_COMM_WORLD);
    }
}

void dist_sum_f32(float *x, size_t n) { allreduce(x, n, MPI_FLOAT, sizeof *x, MPI_SUM); }
void dist_sum_f64(double *x, size_t n) { allreduce(x, n, MPI_DOUBLE, sizeof *x, MPI_SUM); }
void dist_min_f64(double *x, size_t n) { allreduce(x, n, MPI_DOUBLE, sizeof *x, MPI_MIN); }
void dist_max_f64(double *x, size_t n) { allreduce(x, n, MPI_DOUBLE, sizeof *x, MPI_MAX); }

// ---------------------------------------------------------------------------------------------
// slices (ZeRO stage 1)

static void slice_of(size_t n, int r, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)r / (size_t)size;
    *hi = n * (size_t)(r + 1) / (size_t)size;
}

void dist_slice(size_t n, size_t *lo, size_t *hi) { slice_of(n, rank, lo, hi); }

void dist_allgather_slices(float *x, size_t n)
{
    if (size == 1) return;
    sleeping_barrier();
    for (int r = 0; r < size; r++) {
        size_t lo, hi;
        slice_of(n, r, &lo, &hi);
        for (size_t i = lo; i < hi; i += REDUCE_CHUNK) {
            size_t m = hi - i < REDUCE_CHUNK ? hi - i : REDUCE_CHUNK;
            MPI_Bcast(x + i, (int)m, MPI_FLOAT, r, MPI_COMM_WORLD);
        }
    }
}

void dist_gather_slices(float *full, const float *mine, size_t n)
{
    size_t lo, hi;
    slice_of(n, rank, &lo, &hi);
    if (rank == 0 && full + lo != mine) memcpy(full + lo, mine, (hi - lo) * sizeof(float));
    if (size == 1) return;
    sleeping_barrier();
    for (int r = 1; r < size; r++) {
        size_t rlo, rhi;
        slice_of(n, r, &rlo, &rhi);
        for (size_t i = rlo; i < rhi; i += REDUCE_CHUNK) {
            size_t m = rhi - i < REDUCE_CHUNK ? rhi - i : REDUCE_CHUNK;
            if (rank == 0) MPI_Recv(full + i, (int)m, MPI_FLOAT, r, 78, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            else if (rank == r) MPI_Send(mine + (i - lo), (int)m, MPI_FLOAT, 0, 78, MPI_COMM_WORLD);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ordered output

#define OUT_TAG 77
#define OUT_AHEAD 64

struct item { long long i, nrec; char *buf; size_t len; MPI_Request rq; };

static struct {
    bool open;
    struct rec_writer *w;          // stdout (rank 0)
    long long next;                // rank 0: next item to write
    struct item *q;                // rank 0: own items waiting; others: items being sent
    int nq, cap;
    FILE *ms;                      // the current item's memory stream
    char *ms_buf;
    size_t ms_len;
    struct rec_writer iw;
} out;

void dist_out_open(struct rec_writer *w)
{
    memset(&out, 0, sizeof out);
    out.w = w;
    out.open = true;
}

struct rec_writer *dist_item_begin(void)
{
    if (size == 1) return out.w;
    out.ms = open_memstream(&out.ms_buf, &out.ms_len);
    if (!out.ms) die(EX_OSERR, "open_memstream:");
    rec_writer_open(&out.iw, out.ms);
    return &out.iw;
}

static void write_item(const char *buf, size_t len, long long nrec)
{
    if (len && fwrite(buf, 1, len, out.w->fp) != len) die(EX_IOERR, "write <stdout>:");
    rec_flush(out.w);
    out.w->ndata += (size_t)nrec;
    out.next++;
}

// Rank 0: writes every item that can go out now, in order.
static void out_poll(void)
{
    if (!out.open || rank != 0 || size == 1) return;
    for (;;) {
        if (dist_mine(out.next)) {
            int k = 0;
            while (k < out.nq && out.q[k].i != out.next) k++;
            if (k == out.nq) return;
            struct item it = out.q[k];
            out.q[k] = out.q[--out.nq];
            write_item(it.buf, it.len, it.nrec);
            free(it.buf);
            continue;
        }
        int src = (int)(out.next % size), flag = 0, len;
        MPI_Status s;
        MPI_Iprobe(src, OUT_TAG, MPI_COMM_WORLD, &flag, &s);
        if (!flag) return;
        MPI_Get_count(&s, MPI_BYTE, &len);
        char *buf = xmalloc((size_t)len + 1);
        MPI_Recv(buf, len, MPI_BYTE, src, OUT_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        ASSERT(len >= 8);
        int64_t nrec;
        memcpy(&nrec, buf, 8);
        write_item(buf + 8, (size_t)len - 8, nrec);
        free(buf);
    }
}

// Other ranks: frees the items rank 0 has received.
static void out_reap(void)
{
    for (int k = 0; k < out.nq;) {
        int done = 0;
        MPI_Test(&out.q[k].rq, &done, MPI_STATUS_IGNORE);
        if (!done) { k++; continue; }
        free(out.q[k].buf);
        out.q[k] = out.q[--out.nq];
    }
}

void dist_item_end(long long i)
{
    if (size == 1) { rec_flush(out.w); return; }
    if (fclose(out.ms) != 0) die(EX_OSERR, "close memory stream:");
    struct item it = {i, (long long)out.iw.ndata, out.ms_buf, out.ms_len, MPI_REQUEST_NULL};
    if (out.nq == out.cap) out.q = xrealloc(out.q, (size_t)(out.cap = 2 * out.cap + 8) * sizeof *out.q);
    if (rank == 0) {
        out.q[out.nq++] = it;
        out_poll();
        double t0 = now_seconds();
        while (out.nq > OUT_AHEAD) out_poll(), nap(now_seconds() - t0);
        return;
    }
    // the record count travels in front of the bytes
    char *msg = xmalloc(it.len + 8);
    int64_t nrec = it.nrec;
    memcpy(msg, &nrec, 8);
    memcpy(msg + 8, it.buf, it.len);
    free(it.buf);
    it.buf = msg;
    if (it.len + 8 > (size_t)INT32_MAX) die(EX_SOFTWARE, "an output item of %zu bytes is too big to send", it.len);
    MPI_Isend(msg, (int)(it.len + 8), MPI_BYTE, 0, OUT_TAG, MPI_COMM_WORLD, &it.rq);
    out.q[out.nq++] = it;
    out_reap();
    double t0 = now_seconds();
    while (out.nq > OUT_AHEAD) out_reap(), nap(now_seconds() - t0);
}

void dist_out_close(long long nitems)
{
    if (size > 1) {
        double t0 = now_seconds();
        if (rank == 0)
            while (out.next < nitems) out_poll(), nap(now_seconds() - t0);
        else
            while (out.nq > 0) out_reap(), nap(now_seconds() - t0);
    }
    free(out.q);
    out.open = false;
}
