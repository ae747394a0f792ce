// test-rec.c — conformance and hostile-input tests for the record stream (common/rec.c) and its
// JSON face (common/json.c). Errors end the process (die), so each failing read runs in a forked
// child whose exit status and stderr are checked. Run from the repository root (tests/run.sh).
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "rec.h"
#include "test.h"
#include "util.h"

// ---------------------------------------------------------------------------------------------
// helpers: byte buffers, streams in memory, reading in a child

struct bytes {
    unsigned char *p;
    size_t n;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    b->p = xrealloc(b->p, b->n + n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

// A writer into memory: open_memstream gives the bytes when closed.
struct memw {
    FILE *fp;
    char *buf;
    size_t len;
    struct rec_writer w;
};

static void memw_open(struct memw *m)
{
    m->fp = open_memstream(&m->buf, &m->len);
    ASSERT(m->fp);
    rec_writer_open(&m->w, m->fp);
}

static size_t memw_pos(struct memw *m)
{
    fflush(m->fp);
    return m->len;
}

static struct bytes memw_close(struct memw *m)
{
    fclose(m->fp);
    return (struct bytes){ (unsigned char *)m->buf, m->len };
}

// A FILE with a real descriptor (the reader uses read(2), so fmemopen will not do).
static FILE *file_of(const void *p, size_t n)
{
    FILE *f = tmpfile();
    ASSERT(f);
    if (n) ASSERT(fwrite(p, 1, n, f) == n);
    fflush(f);
    rewind(f);
    return f;
}

// Header, then ndata records {kind:"example", i:k, name:"r<k>"}, then the end record.
// bounds[] receives the offset of every record boundary (after each record).
static struct bytes make_stream(const char *schema, int ndata, size_t *bounds)
{
    struct memw m;
    memw_open(&m);
    rec_write_header(&m.w, schema, NULL, 0, NULL, NULL);
    if (bounds) bounds[0] = memw_pos(&m);
    for (int k = 0; k < ndata; k++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", k);
        rec_record_begin(&m.w, 3);
        rec_pack_key(&m.w, "kind");
        rec_pack_str(&m.w, "example");
        rec_pack_key(&m.w, "i");
        rec_pack_int(&m.w, k);
        rec_pack_key(&m.w, "name");
        rec_pack_str(&m.w, name);
        rec_record_end(&m.w);
        if (bounds) bounds[k + 1] = memw_pos(&m);
    }
    rec_write_end(&m.w);
    return memw_close(&m);
}

struct read_job {
    const void *p;
    size_t n;
    const char *const *schemas;
    size_t max_bytes;
    int keep_pipe_open;        // feed through a pipe whose write end stays open (no EOF)
};

// Reads a whole framed stream; the child exits 0 if it is valid.
static void read_stream(FILE *fp, const struct read_job *j)
{
    struct rec_reader r;
    msgpack_object o;
    rec_reader_open(&r, fp, "<stdin>", j->max_bytes);
    rec_read_header(&r, j->schemas, "run it after tokenize");
    while (rec_reader_next_data(&r, &o)) {}
    rec_reader_close(&r);
}

// Runs the read in a child; returns its exit status (128+signal if killed) and its stderr.
static int run_read(const struct read_job *j, char *err, size_t errlen)
{
    FILE *errf = tmpfile();
    int fds[2] = { -1, -1 };
    if (j->keep_pipe_open) ASSERT(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(fileno(errf), 2);
        alarm(10);                            // a hang shows as status 142
        FILE *in;
        if (j->keep_pipe_open) {
            close(fds[1]);
            in = fdopen(fds[0], "rb");
        } else {
            in = file_of(j->p, j->n);
        }
        read_stream(in, j);
        _exit(0);
    }
    if (j->keep_pipe_open) {
        close(fds[0]);
        ASSERT(write(fds[1], j->p, j->n) == (ssize_t)j->n);   // small: fits the pipe buffer
    }
    int st;
    waitpid(pid, &st, 0);
    if (j->keep_pipe_open) close(fds[1]);
    rewind(errf);
    size_t n = fread(err, 1, errlen - 1, errf);
    err[n] = '\0';
    fclose(errf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int expect_read(const void *p, size_t n, int want, const char *text)
{
    char err[2048];
    struct read_job j = { p, n, NULL, 0, 0 };
    int rc = run_read(&j, err, sizeof err);
    CHECK_MSG(rc == want, "status %d, want %d; stderr: %s", rc, want, err);
    if (text) CHECK_MSG(strstr(err, text) != NULL, "stderr lacks \"%s\": %s", text, err);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// (a) msgpack-test-suite: every encoding decodes to the expected value

static void test_suite(void)
{
    FILE *mp = fopen("tests/data/stream-suite.mp", "rb"), *js = fopen("tests/data/stream-suite.jsonl", "rb");
    CHECK_MSG(mp && js, "run from the repository root: tests/data/stream-suite.* missing");
    if (!mp || !js) return;
    struct rec_reader r;
    struct jsonl_reader jr;
    rec_reader_open(&r, mp, "stream-suite.mp", 0);
    jsonl_open(&jr, js, "stream-suite.jsonl", 0);
    rec_read_header(&r, NULL, NULL);
    json_decref(jsonl_next(&jr));
    msgpack_object o;
    int cases = 0, bad = 0;
    while (rec_reader_next_data(&r, &o)) {
        json_t *want = jsonl_next(&jr);
        json_t *got = json_from_msgpack(rec_get(&o, "value"), 1);
        if (!json_equal(got, json_object_get(want, "value"))) {
            bad++;
            char *g = json_dumps(got, JSON_ENCODE_ANY);
            fprintf(stderr, "suite case %s: got %s\n", json_string_value(json_object_get(want, "name")), g);
            free(g);
        }
        cases++;
        json_decref(got);
        json_decref(want);
    }
    CHECK_MSG(cases == 233 && bad == 0, "%d suite encodings, %d wrong", cases, bad);
    rec_reader_close(&r);
    jsonl_close(&jr);
    fclose(mp);
    fclose(js);
}

// ---------------------------------------------------------------------------------------------
// (b) one byte at a time through a pipe

static void test_byte_at_a_time(void)
{
    struct bytes s = make_stream("srlm.test", 3, NULL);
    int fds[2];
    ASSERT(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        for (size_t i = 0; i < s.n; i++) {
            if (write(fds[1], s.p + i, 1) != 1) _exit(1);
            if (i % 7 == 0) usleep(100);      // let the reader see a short read
        }
        _exit(0);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "rb");
    struct rec_reader r;
    rec_reader_open(&r, in, "<pipe>", 0);
    rec_read_header(&r, NULL, NULL);
    msgpack_object o;
    int k = 0, ok = 1;
    while (rec_reader_next_data(&r, &o)) {
        ok &= rec_get_int(&r, &o, "i", 0, 10) == k;
        char *name = rec_get_str(&r, &o, "name");
        char want[16];
        snprintf(want, sizeof want, "r%d", k);
        ok &= strcmp(name, want) == 0;
        free(name);
        k++;
    }
    CHECK(ok && k == 3);
    rec_reader_close(&r);
    fclose(in);
    waitpid(pid, NULL, 0);
    free(s.p);
}

// ---------------------------------------------------------------------------------------------
// (c) a cut at every byte

static void test_cuts(void)
{
    size_t bounds[4];
    struct bytes s = make_stream("srlm.test", 3, bounds);
    int wrong = 0;
    for (size_t cut = 0; cut < s.n; cut++) {
        bool boundary = false;
        for (int b = 0; b < 4; b++) boundary |= cut == bounds[b];
        const char *want = cut == 0 ? "empty input" : boundary ? "missing end record" : "truncated";
        char err[2048];
        struct read_job j = { s.p, cut, NULL, 0, 0 };
        int rc = run_read(&j, err, sizeof err);
        if (rc != 65 || !strstr(err, want)) {
            wrong++;
            fprintf(stderr, "cut at %zu: status %d, want 65 \"%s\": %s", cut, rc, want, err);
        }
    }
    CHECK_MSG(wrong == 0, "%d of %zu cuts misreported", wrong, s.n);
    expect_read(s.p, s.n, 0, NULL);
    free(s.p);
}

// ---------------------------------------------------------------------------------------------
// (d) hostile and wrongly framed input

// The header of make_stream followed by raw bytes.
static struct bytes header_then(const void *p, size_t n)
{
    struct memw m;
    memw_open(&m);
    rec_write_header(&m.w, "srlm.test", NULL, 0, NULL, NULL);
    struct bytes b = memw_close(&m);
    bytes_add(&b, p, n);
    return b;
}

static void expect_after_header(const void *p, size_t n, const char *text, const char *what)
{
    struct bytes b = header_then(p, n);
    double t0 = now_seconds();
    int rc = expect_read(b.p, b.n, 65, text);
    CHECK_MSG(now_seconds() - t0 < 5, "%s: took %.1f s", what, now_seconds() - t0);
    if (rc != 65) fprintf(stderr, "  (case: %s)\n", what);
    free(b.p);
}

static void test_hostile(void)
{
    // 0xc1 is reserved: never valid msgpack.
    static const unsigned char c1[] = { 0x81, 0xa1, 'a', 0xc1 };
    expect_after_header(c1, sizeof c1, "malformed", "0xc1");
    // map32 / array32 claiming 2^32-1 entries in 5 bytes: refused before any allocation.
    static const unsigned char map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    expect_after_header(map32, sizeof map32, "larger than", "map32 2^32");
    static const unsigned char arr32[] = { 0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01 };
    expect_after_header(arr32, sizeof arr32, "larger than", "array32 2^32");
    static const unsigned char str32[] = { 0x81, 0xa1, 'a', 0xdb, 0x7f, 0xff, 0xff, 0xff, 'x' };
    expect_after_header(str32, sizeof str32, "larger than", "str32 2 GB");
    // A top-level value that is not a map.
    static const unsigned char arr[] = { 0x92, 0x01, 0x02 };
    expect_after_header(arr, sizeof arr, "must be a msgpack map", "top-level array");
    static const unsigned char num[] = { 0x07 };
    expect_after_header(num, sizeof num, "must be a msgpack map", "top-level int");

    // bin32 claiming 4 GB through a pipe that stays open: refused at once, not after waiting.
    struct bytes b = header_then((const unsigned char[]){ 0x81, 0xa1, 'd', 0xc6, 0xff, 0xff, 0xff, 0xf0, 0, 0 }, 10);
    char err[2048];
    struct read_job j = { b.p, b.n, NULL, 0, 1 };
    double t0 = now_seconds();
    int rc = run_read(&j, err, sizeof err);
    CHECK_MSG(rc == 65 && strstr(err, "larger than"), "bin32 4 GB on an open pipe: status %d: %s", rc, err);
    CHECK_MSG(now_seconds() - t0 < 5, "bin32 4 GB: took %.1f s", now_seconds() - t0);
    free(b.p);

    // Nesting deeper than REC_MAX_DEPTH: {"a":[[[...1...]]]}.
    struct bytes deep = { 0 };
    bytes_add(&deep, (const unsigned char[]){ 0x81, 0xa1, 'a' }, 3);
    for (int i = 0; i < REC_MAX_DEPTH + 2; i++) bytes_add(&deep, (const unsigned char[]){ 0x91 }, 1);
    bytes_add(&deep, (const unsigned char[]){ 0x01 }, 1);
    expect_after_header(deep.p, deep.n, "nested deeper", "deep nesting");
    free(deep.p);
    // Just inside the limit is fine as far as nesting goes (it then lacks its end record).
    deep = (struct bytes){ 0 };
    bytes_add(&deep, (const unsigned char[]){ 0x81, 0xa4, 'k', 'i', 'n', 'd', 0xa1, 'x' }, 8);
    deep.p[0] = 0x82;
    bytes_add(&deep, (const unsigned char[]){ 0xa1, 'a' }, 2);
    for (int i = 0; i < REC_MAX_DEPTH - 2; i++) bytes_add(&deep, (const unsigned char[]){ 0x91 }, 1);
    bytes_add(&deep, (const unsigned char[]){ 0x01 }, 1);
    expect_after_header(deep.p, deep.n, "missing end record", "nesting at the limit");
    free(deep.p);

    // Random bytes after a valid header: exit 65, never a crash, never a hang.
    unsigned seed = 12345;
    int crashes = 0;
    for (int t = 0; t < 200; t++) {
        unsigned char junk[64];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
        struct bytes h = header_then(junk, 1 + (size_t)t % sizeof junk);
        struct read_job jj = { h.p, h.n, NULL, 0, 0 };
        int st = run_read(&jj, err, sizeof err);
        if (st != 65) { crashes++; fprintf(stderr, "random case %d: status %d: %s", t, st, err); }
        free(h.p);
    }
    CHECK_MSG(crashes == 0, "%d random inputs did not end with 65", crashes);
}

// Streams with one framing mistake each.
static void test_framing(void)
{
    char err[2048];
    expect_read("", 0, 65, "empty input");

    struct bytes s = make_stream("srlm.test", 2, NULL);
    static const char *const want_examples[] = { "srlm.examples", NULL };
    struct read_job j = { s.p, s.n, want_examples, 0, 0 };
    int rc = run_read(&j, err, sizeof err);
    CHECK_MSG(rc == 65 && strstr(err, "wrong schema") && strstr(err, "srlm.examples"), "wrong schema: %d %s", rc, err);
    CHECK_MSG(strstr(err, "tokenize") != NULL, "wrong schema: no hint: %s", err);
    // The header is record 1 (docs/stream.md: "counting the header as 1").
    CHECK_MSG(strstr(err, "record 1:") != NULL, "wrong schema: record number: %s", err);
    free(s.p);

    // schema_version 2.
    struct memw m;
    memw_open(&m);
    rec_pack_map(&m.w, 3);
    rec_pack_key(&m.w, "kind"), rec_pack_str(&m.w, "header");
    rec_pack_key(&m.w, "schema"), rec_pack_str(&m.w, "srlm.test");
    rec_pack_key(&m.w, "schema_version"), rec_pack_uint(&m.w, 2);
    rec_write_end(&m.w);
    s = memw_close(&m);
    expect_read(s.p, s.n, 65, "schema_version 2");
    free(s.p);

    // The first record is not a header.
    memw_open(&m);
    rec_record_begin(&m.w, 1), rec_pack_key(&m.w, "kind"), rec_pack_str(&m.w, "example"), rec_record_end(&m.w);
    rec_write_end(&m.w);
    s = memw_close(&m);
    expect_read(s.p, s.n, 65, "expected a header record");
    free(s.p);

    // A second header (two streams concatenated), records after the end, a wrong count.
    size_t bounds[2];
    struct bytes a = make_stream("srlm.test", 1, bounds), cat = { 0 }, second = { 0 };
    bytes_add(&second, a.p, bounds[1]);                  // header, record
    bytes_add(&second, a.p, bounds[0]);                  // header again
    bytes_add(&second, a.p + bounds[0], a.n - bounds[0]); // record, end
    expect_read(second.p, second.n, 65, "second header");
    bytes_add(&cat, a.p, a.n);
    bytes_add(&cat, a.p, a.n);
    expect_read(cat.p, cat.n, 65, "after the end record");
    struct bytes wrong = { 0 };
    bytes_add(&wrong, a.p, a.n);
    ASSERT(wrong.p[wrong.n - 1] == 1);       // {kind:"end", records:1}: the count is the last byte
    wrong.p[wrong.n - 1] = 5;
    expect_read(wrong.p, wrong.n, 65, "end record says 5 records, but 1 arrived");
    wrong.p[wrong.n - 1] = 0xc0;             // records: nil
    expect_read(wrong.p, wrong.n, 65, "records");
    free(a.p), free(cat.p), free(second.p), free(wrong.p);
}

// ---------------------------------------------------------------------------------------------
// (e) writer: pack, read back; pass-through keeps unknown fields unchanged

static void pack_extra(struct rec_writer *w, void *ctx)
{
    rec_pack_key(w, "seed");
    rec_pack_int(w, *(int *)ctx);
}

static void test_writer(void)
{
    struct memw m;
    memw_open(&m);
    int seed = 1337;
    rec_write_header(&m.w, "srlm.examples", NULL, 1, pack_extra, &seed);
    static const int32_t ids[] = { 5, 0, 151643 };
    rec_record_begin(&m.w, 8);
    rec_pack_key(&m.w, "kind"), rec_pack_str(&m.w, "example");
    rec_pack_key(&m.w, "tokens"), rec_pack_i32_array(&m.w, ids, 3);
    rec_pack_key(&m.w, "x"), rec_pack_double(&m.w, -0.25);
    rec_pack_key(&m.w, "f"), rec_pack_float(&m.w, 0.1f);
    rec_pack_key(&m.w, "ok"), rec_pack_bool(&m.w, true);
    rec_pack_key(&m.w, "none"), rec_pack_nil(&m.w);
    rec_pack_key(&m.w, "empty"), rec_pack_str(&m.w, "");
    rec_pack_key(&m.w, "blob"), rec_pack_bin(&m.w, "\0\1\2", 3);
    rec_record_end(&m.w);
    rec_write_end(&m.w);
    struct bytes s = memw_close(&m);

    FILE *in = file_of(s.p, s.n);
    struct rec_reader r;
    rec_reader_open(&r, in, "<mem>", 0);
    static const char *const schemas[] = { "srlm.examples", NULL };
    const msgpack_object *h = rec_read_header(&r, schemas, NULL);
    CHECK(rec_get_int(&r, h, "seed", 0, 1 << 30) == 1337);
    CHECK(rec_get(rec_get(h, "producer"), "name") != NULL);
    msgpack_object o;
    CHECK(rec_reader_next_data(&r, &o) == 1);
    int32_t *t;
    CHECK(rec_get_i32_array(&r, &o, "tokens", 0, 200000, &t) == 3 && t[2] == 151643);
    free(t);
    CHECK(rec_get_num(&r, &o, "x") == -0.25);
    CHECK((float)rec_get_num(&r, &o, "f") == 0.1f);
    const msgpack_object *blob = rec_get(&o, "blob");
    CHECK(blob && blob->type == MSGPACK_OBJECT_BIN && blob->via.bin.size == 3 && memcmp(blob->via.bin.ptr, "\0\1\2", 3) == 0);
    char *e = rec_get_str(&r, &o, "empty");
    CHECK(e[0] == '\0');
    free(e);

    // Pass-through: re-pack every field but "x" and compare with the original, field by field.
    static const char *const skip[] = { "x", NULL };
    struct memw m2;
    memw_open(&m2);
    rec_record_begin(&m2.w, rec_count_passthrough(&o, skip));
    rec_pack_passthrough(&m2.w, &o, skip);
    rec_record_end(&m2.w);
    struct bytes p = memw_close(&m2);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, (const char *)p.p, p.n, &off) == MSGPACK_UNPACK_SUCCESS && off == p.n);
    json_t *orig = json_from_msgpack(&o, 0), *copy = json_from_msgpack(&u.data, 0);
    json_object_del(orig, "x");
    CHECK(u.data.via.map.size == 7 && json_equal(orig, copy));
    json_decref(orig), json_decref(copy);
    msgpack_unpacked_destroy(&u);
    free(p.p);

    CHECK(rec_reader_next_data(&r, &o) == 0);
    rec_reader_close(&r);
    fclose(in);
    free(s.p);
}

// ---------------------------------------------------------------------------------------------
// (f) tensors

struct tensor_job {
    struct bytes s;
    bool finite_only;
};

static struct bytes tensor_stream(const float *v, size_t nbytes, const int64_t *shape, int ndim)
{
    struct memw m;
    memw_open(&m);
    rec_write_header(&m.w, "srlm.test", NULL, 0, NULL, NULL);
    rec_record_begin(&m.w, 2);
    rec_pack_key(&m.w, "kind"), rec_pack_str(&m.w, "example");
    rec_pack_key(&m.w, "t");
    rec_pack_map(&m.w, 3);
    rec_pack_key(&m.w, "dtype"), rec_pack_str(&m.w, "f32");
    rec_pack_key(&m.w, "shape"), rec_pack_array(&m.w, (uint32_t)ndim);
    for (int i = 0; i < ndim; i++) rec_pack_int(&m.w, shape[i]);
    rec_pack_key(&m.w, "data"), rec_pack_bin(&m.w, v, nbytes);
    rec_record_end(&m.w);
    rec_write_end(&m.w);
    return memw_close(&m);
}

static int read_tensor(struct bytes s, bool finite_only, float **out, size_t *n, char *err, size_t errlen)
{
    FILE *errf = tmpfile();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fileno(errf), 2);
        struct rec_reader r;
        msgpack_object o;
        rec_reader_open(&r, file_of(s.p, s.n), "<mem>", 0);
        rec_read_header(&r, NULL, NULL);
        rec_reader_next_data(&r, &o);
        float *v;
        int64_t shape[4];
        int ndim;
        rec_get_f32_tensor(&r, &o, "t", finite_only, &v, shape, &ndim);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    rewind(errf);
    size_t k = fread(err, 1, errlen - 1, errf);
    err[k] = '\0';
    fclose(errf);
    (void)out, (void)n;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_tensors(void)
{
    float v[6] = { 0.5f, -1, 2, 3, NAN, 5 };
    int64_t shape[2] = { 2, 3 }, bad[2] = { 2, 4 };
    char err[1024];
    struct bytes s = tensor_stream(v, sizeof v, shape, 2);
    CHECK(read_tensor(s, false, NULL, NULL, err, sizeof err) == 0);
    int rc = read_tensor(s, true, NULL, NULL, err, sizeof err);
    CHECK_MSG(rc == 65 && strstr(err, "non-finite"), "NaN with finite_only: %d %s", rc, err);
    free(s.p);
    s = tensor_stream(v, sizeof v, bad, 2);
    rc = read_tensor(s, false, NULL, NULL, err, sizeof err);
    CHECK_MSG(rc == 65 && strstr(err, "shape"), "shape mismatch: %d %s", rc, err);
    free(s.p);

    // In the same process: values come back exactly, from an unaligned payload.
    v[4] = 4;
    s = tensor_stream(v, sizeof v, shape, 2);
    struct rec_reader r;
    msgpack_object o;
    FILE *in = file_of(s.p, s.n);
    rec_reader_open(&r, in, "<mem>", 0);
    rec_read_header(&r, NULL, NULL);
    rec_reader_next_data(&r, &o);
    float *got;
    int64_t sh[4];
    int ndim;
    CHECK(rec_get_f32_tensor(&r, &o, "t", true, &got, sh, &ndim) == 6 && ndim == 2 && sh[1] == 3);
    CHECK(memcmp(got, v, sizeof v) == 0);
    free(got);
    // And through JSON: decoded, packed again, identical bytes.
    json_t *j = json_from_msgpack(&o, 1);
    CHECK(json_is_array(json_object_get(json_object_get(j, "t"), "data")));
    struct memw m;
    memw_open(&m);
    json_pack_value(&m.w, j);
    struct bytes again = memw_close(&m);
    CHECK_MSG(again.n > 0 && memmem(s.p, s.n, again.p, again.n) != NULL, "tensor record differs after JSON");
    json_decref(j);
    free(again.p);
    rec_reader_close(&r);
    fclose(in);
    free(s.p);
}

// ---------------------------------------------------------------------------------------------
// JSON mapping details

static void test_json_mapping(void)
{
    // Every float32 survives the shortest printing: sample the bit patterns widely.
    int bad = 0;
    for (uint64_t bits = 0; bits < 0x100000000ull; bits += 65521) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f)) continue;
        msgpack_object o = { .type = MSGPACK_OBJECT_FLOAT32, .via.f64 = f };
        json_t *j = json_from_msgpack(&o, 0);
        char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if ((float)strtod(s, NULL) != f) bad++;
        free(s);
        json_decref(j);
    }
    CHECK_MSG(bad == 0, "%d float32 values do not read back", bad);

    // Base64 is strict, so each bin has one spelling.
    unsigned char *out;
    size_t n;
    CHECK(json_base64_decode("AAH/", 4, &out, &n) && n == 3 && out[2] == 0xff);
    free(out);
    CHECK(!json_base64_decode("AAH", 3, &out, &n));
    CHECK(!json_base64_decode("AB==", 4, &out, &n));   // bits in the padding
    CHECK(!json_base64_decode("A*==", 4, &out, &n));
    char *e = json_base64_encode("\xff\xfe", 2);
    CHECK(strcmp(e, "//4=") == 0);
    free(e);

    // Malformed special forms are errors with the field path.
    char err[600];
    json_error_t je;
    json_t *v = json_loads("{\"t\":{\"dtype\":\"f32\",\"shape\":[2,2],\"data\":[1,2,3]}}", 0, &je);
    CHECK(!json_pack_check(v, err, sizeof err) && strstr(err, ".t") && strstr(err, "3 values"));
    json_decref(v);
    v = json_loads("{\"t\":{\"dtype\":\"f16\",\"shape\":[1],\"data\":[1]}}", 0, &je);
    CHECK(!json_pack_check(v, err, sizeof err) && strstr(err, "dtype"));
    json_decref(v);
    v = json_loads("{\"t\":{\"dtype\":\"u8\",\"shape\":[1],\"data\":[256]}}", 0, &je);
    CHECK(!json_pack_check(v, err, sizeof err) && strstr(err, "u8 range"));
    json_decref(v);
    v = json_loads("{\"b\":[{\"bin_base64\":\"!!\"}]}", 0, &je);
    CHECK(!json_pack_check(v, err, sizeof err) && strstr(err, ".b[0]"));
    json_decref(v);
    v = json_loads("{\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data\":[1e39]}}", 0, &je);
    CHECK(!json_pack_check(v, err, sizeof err) && strstr(err, "f32 range"));
    json_decref(v);

    // msgpack that JSON cannot carry: invalid UTF-8, a non-string key, a duplicate key.
    msgpack_object_kv kv[2];
    msgpack_object map = { .type = MSGPACK_OBJECT_MAP, .via.map = { 1, kv } };
    kv[0].key = (msgpack_object){ .type = MSGPACK_OBJECT_STR, .via.str = { 1, "s" } };
    kv[0].val = (msgpack_object){ .type = MSGPACK_OBJECT_STR, .via.str = { 2, "\xc3\x28" } };
    CHECK(!json_from_msgpack_ex(&map, 0, err, sizeof err) && strstr(err, "UTF-8") && strstr(err, ".s"));
    kv[0].key = (msgpack_object){ .type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 1 };
    CHECK(!json_from_msgpack_ex(&map, 0, err, sizeof err) && strstr(err, "keys must be strings"));
    kv[0].key = kv[1].key = (msgpack_object){ .type = MSGPACK_OBJECT_STR, .via.str = { 1, "k" } };
    kv[1].val = kv[0].val = (msgpack_object){ .type = MSGPACK_OBJECT_NIL };
    map.via.map.size = 2;
    CHECK(!json_from_msgpack_ex(&map, 0, err, sizeof err) && strstr(err, "duplicate"));
}

int main(int argc, char **argv)
{
    tool_init("test-rec");
    (void)argc, (void)argv;
    test_suite();
    test_byte_at_a_time();
    test_cuts();
    test_hostile();
    test_framing();
    test_writer();
    test_tensors();
    test_json_mapping();
    return test_finish("test-rec");
}
