// rec.c — the srlm record stream (see rec.h for the contract, docs/stream.md for the format).
#include "rec.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "0.0.0"
#endif

#define READ_CHUNK ((size_t)64 << 10)

// ---------------------------------------------------------------------------------------------
// reader: framing

void rec_reader_open(struct rec_reader *r, FILE *fp, const char *name, size_t max_bytes)
{
    memset(r, 0, sizeof *r);
    r->fp = fp;
    r->name = name ? name : "<stdin>";
    r->max_bytes = max_bytes ? max_bytes : REC_DEFAULT_MAX_BYTES;
    r->cap = READ_CHUNK;
    r->buf = xmalloc(r->cap);
    r->depth = -1;
    msgpack_unpacked_init(&r->unp);
    msgpack_unpacked_init(&r->header_unp);
}

void rec_reader_close(struct rec_reader *r)
{
    msgpack_unpacked_destroy(&r->unp);
    msgpack_unpacked_destroy(&r->header_unp);
    free(r->header_bytes);
    free(r->buf);
    r->buf = r->header_bytes = NULL;
}

// Errors in the record being read (framing) name record nrec + 1; errors found in a record
// already returned (schema, fields) name record nrec.
static _Noreturn void fail_at(const struct rec_reader *r, size_t recno, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    die(EX_DATAERR, "%s: record %zu: %s", r->name, recno, msg);
}

void rec_fail(const struct rec_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_at(r, r->nrec ? r->nrec : 1, fmt, ap);
}

static _Noreturn __attribute__((format(printf, 2, 3))) void read_fail(const struct rec_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_at(r, r->nrec + 1, fmt, ap);
}

static uint64_t be_uint(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

// Sizes one msgpack item starting at p (avail bytes present). Sets *hdr to the header length,
// *payload to the bytes that follow it (str/bin/ext/scalars) and *items to the number of child
// items (containers: arrays n, maps 2n). Returns 0 if more bytes are needed to read the header,
// 1 when sized, -1 on the reserved byte 0xc1.
static int item_size(const unsigned char *p, size_t avail, size_t *hdr, uint64_t *payload, uint64_t *items)
{
    unsigned b = p[0];
    *payload = 0, *items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) { *hdr = 1; return 1; }
    if (b >= 0x80 && b <= 0x8f) { *hdr = 1; *items = 2 * (uint64_t)(b & 0x0f); return 1; }
    if (b >= 0x90 && b <= 0x9f) { *hdr = 1; *items = b & 0x0f; return 1; }
    if (b >= 0xa0 && b <= 0xbf) { *hdr = 1; *payload = b & 0x1f; return 1; }
    if (b == 0xc1) return -1;
    int lenbytes = 0, extra = 0, kind = 0;   // kind: 0 payload, 1 array, 2 map
    switch (b) {
    case 0xc4: case 0xd9: lenbytes = 1; break;                // bin8, str8
    case 0xc5: case 0xda: lenbytes = 2; break;                // bin16, str16
    case 0xc6: case 0xdb: lenbytes = 4; break;                // bin32, str32
    case 0xc7: lenbytes = 1, extra = 1; break;                // ext8 (+ type byte)
    case 0xc8: lenbytes = 2, extra = 1; break;                // ext16
    case 0xc9: lenbytes = 4, extra = 1; break;                // ext32
    case 0xca: *hdr = 1, *payload = 4; return 1;              // float32
    case 0xcb: *hdr = 1, *payload = 8; return 1;              // float64
    case 0xcc: case 0xd0: *hdr = 1, *payload = 1; return 1;   // (u)int8
    case 0xcd: case 0xd1: *hdr = 1, *payload = 2; return 1;
    case 0xce: case 0xd2: *hdr = 1, *payload = 4; return 1;
    case 0xcf: case 0xd3: *hdr = 1, *payload = 8; return 1;
    case 0xd4: *hdr = 1, *payload = 2; return 1;              // fixext1 (type + 1)
    case 0xd5: *hdr = 1, *payload = 3; return 1;
    case 0xd6: *hdr = 1, *payload = 5; return 1;
    case 0xd7: *hdr = 1, *payload = 9; return 1;
    case 0xd8: *hdr = 1, *payload = 17; return 1;
    case 0xdc: lenbytes = 2, kind = 1; break;                 // array16
    case 0xdd: lenbytes = 4, kind = 1; break;                 // array32
    case 0xde: lenbytes = 2, kind = 2; break;                 // map16
    case 0xdf: lenbytes = 4, kind = 2; break;                 // map32
    default: return -1;
    }
    if (avail < (size_t)(1 + lenbytes)) return 0;
    uint64_t n = be_uint(p + 1, lenbytes);
    *hdr = 1 + lenbytes;
    if (kind == 0) *payload = n + extra;
    else *items = kind == 2 ? 2 * n : n;
    return 1;
}

// The first record does not start as a msgpack map: names the formats users feed by mistake.
// JSON lines start with '{' (after blanks or a UTF-8 byte-order mark); gzip with 1f 8b.
static void wrong_format(const struct rec_reader *r, const unsigned char *p, size_t n)
{
    size_t i = n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
    if (i < n && p[i] == '{')
        read_fail(r, "this is JSON lines: run tokenize or from-json first (a srlm stream is msgpack)");
    if (p[0] == 0x1f && (n < 2 || p[1] == 0x8b))
        read_fail(r, "this is gzip-compressed data: srlm streams are read uncompressed; "
                     "decompress it first (zcat FILE | ...)");
}

// Advances the scanner over the bytes present for the current record. Returns 1 when the record
// is complete (its length is r->scan_pos), 0 when more input is needed. Dies on bad structure.
static int scan_record(struct rec_reader *r)
{
    const unsigned char *base = (const unsigned char *)r->buf + r->off;
    size_t avail = r->len - r->off;
    if (r->depth < 0) {                       // a new record starts here
        if (avail == 0) return 0;
        unsigned b = base[0];
        if (!((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf)) {
            if (r->nrec == 0) wrong_format(r, base, avail);
            read_fail(r, "malformed stream: a record must be a msgpack map (first byte 0x%02x)", b);
        }
        r->depth = 0, r->stack[0] = 1, r->scan_pos = 0;
    }
    while (r->depth >= 0) {
        if (r->stack[r->depth] == 0) { r->depth--; continue; }
        if (r->scan_pos >= avail) return 0;
        size_t hdr;
        uint64_t payload, items;
        int rc = item_size(base + r->scan_pos, avail - r->scan_pos, &hdr, &payload, &items);
        if (rc < 0) read_fail(r, "malformed msgpack (reserved byte 0x%02x at offset %zu)",
                             base[r->scan_pos], r->scan_pos);
        if (rc == 0) return 0;
        // Sizes come from the input: bound them by the record cap before trusting them. A
        // container of n items needs at least n more bytes, so the same cap bounds counts.
        uint64_t need = (uint64_t)r->scan_pos + hdr + payload + items;
        if (need > r->max_bytes)
            read_fail(r, "larger than %zu bytes (a size field claims %llu); see --max-record-bytes",
                     r->max_bytes, (unsigned long long)need);
        if (items > 0) {
            if (r->depth + 1 >= REC_MAX_DEPTH)
                read_fail(r, "containers nested deeper than %d levels", REC_MAX_DEPTH);
            r->stack[r->depth]--;
            r->stack[++r->depth] = items;
            r->scan_pos += hdr;
            continue;
        }
        if (r->scan_pos + hdr + payload > avail) return 0;
        r->stack[r->depth]--;
        r->scan_pos += hdr + payload;
    }
    return 1;
}

ssize_t (*rec_read_hook)(int fd, void *buf, size_t n) = read;   // rec.h

// Reads more input into the buffer. Returns the number of bytes read (0 at end of input).
// read(2), not fread: fread waits to fill its whole request, which would stall a pipeline whose
// upstream writes one small record at a time.
static size_t fill(struct rec_reader *r)
{
    if (r->off > 0) {                         // drop consumed bytes (borrowed data is dead now)
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->cap - r->len < READ_CHUNK) {
        r->cap = r->len + READ_CHUNK > 2 * r->cap ? r->len + READ_CHUNK : 2 * r->cap;
        r->buf = xrealloc(r->buf, r->cap);
    }
    for (;;) {
        ssize_t n = rec_read_hook(fileno(r->fp), r->buf + r->len, r->cap - r->len);
        if (n >= 0) { r->len += (size_t)n; return (size_t)n; }
        if (errno == EINTR) continue;
        die(EX_IOERR, "read %s:", r->name);
    }
}

int rec_reader_next(struct rec_reader *r, msgpack_object *out)
{
    for (;;) {
        if (scan_record(r)) break;
        if (r->eof || fill(r) == 0) {
            r->eof = true;
            size_t partial = r->len - r->off;
            if (partial > 0)
                read_fail(r, "truncated (%zu bytes, then end of input)", partial);
            return 0;
        }
    }
    size_t reclen = r->scan_pos, used = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(&r->unp, r->buf + r->off, reclen, &used);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR) die(EX_OSERR, "%s: record %zu: out of memory", r->name, r->nrec + 1);
    if (ret != MSGPACK_UNPACK_SUCCESS || used != reclen)
        read_fail(r, "malformed msgpack");   // the scanner should have caught it; stay safe
    r->off += reclen;
    r->depth = -1;
    r->nrec++;
    *out = r->unp.data;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// reader: header, data, end

static bool str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

bool rec_key_is(const msgpack_object *key, const char *s) { return str_eq(key, s); }

const msgpack_object *rec_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

const msgpack_object *rec_header_find(const msgpack_object *h, const char *key)
{
    for (int depth = 0; h && h->type == MSGPACK_OBJECT_MAP && depth < REC_MAX_DEPTH; depth++) {
        const msgpack_object *v = rec_get(h, key);
        if (v) return v;
        h = rec_get(h, "upstream");
    }
    return NULL;
}

void rec_check_tokenizer(const struct rec_reader *r, const msgpack_object *header, const char *mine,
                         const char *path, const char *whose)
{
    const msgpack_object *h = rec_header_find(header, "tokenizer_xxh3");
    if (!h) {
        log_warn("%s: the header has no tokenizer_xxh3: cannot check that the records were tokenized for %s",
                 r->name, path);
        return;
    }
    if (h->type != MSGPACK_OBJECT_STR) rec_fail(r, "field \"tokenizer_xxh3\": expected str, got %s", rec_type_name(h->type));
    if (h->via.str.size != strlen(mine) || memcmp(h->via.str.ptr, mine, h->via.str.size))
        die(EX_DATAERR, "%s: the records were tokenized with tokenizer_xxh3 %.*s, but %s tokenizer %s has %s",
            r->name, (int)h->via.str.size, h->via.str.ptr, whose, path, mine);
}

// Copies a msgpack str into a short printable buffer for messages.
static const char *str_show(const msgpack_object *o, char *buf, size_t cap)
{
    if (!o) return "(missing)";
    if (o->type != MSGPACK_OBJECT_STR) { snprintf(buf, cap, "(%s)", rec_type_name(o->type)); return buf; }
    size_t n = o->via.str.size < cap - 3 ? o->via.str.size : cap - 3;
    buf[0] = '"';
    for (size_t i = 0; i < n; i++) {
        char c = o->via.str.ptr[i];
        buf[1 + i] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    buf[1 + n] = '"', buf[2 + n] = '\0';
    return buf;
}

const msgpack_object *rec_read_header(struct rec_reader *r, const char *const *schemas, const char *hint)
{
    msgpack_object h;
    char got[80];
    if (!rec_reader_next(r, &h))
        die(EX_DATAERR, "%s: empty input: expected a srlm stream%s%s", r->name, hint ? "; " : "", hint ? hint : "");
    if (!str_eq(rec_get(&h, "kind"), "header"))
        rec_fail(r, "expected a header record, got kind %s%s%s", str_show(rec_get(&h, "kind"), got, sizeof got),
                 hint ? "; " : "", hint ? hint : "");
    const msgpack_object *schema = rec_get(&h, "schema");
    if (!schema || schema->type != MSGPACK_OBJECT_STR) rec_fail(r, "header: field \"schema\": missing or not a string");
    bool ok = schemas == NULL;
    for (const char *const *s = schemas; s && *s; s++) ok = ok || str_eq(schema, *s);
    if (!ok) {
        char want[256] = "";
        for (const char *const *s = schemas; *s; s++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", s == schemas ? "" : " or ", *s);
        rec_fail(r, "wrong schema %s, expected %s%s%s", str_show(schema, got, sizeof got), want,
                 hint ? "; " : "", hint ? hint : "");
    }
    const msgpack_object *ver = rec_get(&h, "schema_version");
    if (!ver || ver->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        rec_fail(r, "header: field \"schema_version\": missing or not a positive integer");
    if (ver->via.u64 != REC_SCHEMA_VERSION)
        rec_fail(r, "unsupported schema_version %llu (this build reads version %d)",
                 (unsigned long long)ver->via.u64, REC_SCHEMA_VERSION);
    // Keep a private copy: the borrowed object dies at the next record.
    size_t n = r->scan_pos, used = 0;
    r->header_bytes = xmalloc(n);
    memcpy(r->header_bytes, r->buf + r->off - n, n);
    if (msgpack_unpack_next(&r->header_unp, r->header_bytes, n, &used) != MSGPACK_UNPACK_SUCCESS)
        die(EX_SOFTWARE, "%s: cannot re-read the header", r->name);
    return &r->header_unp.data;
}

int rec_reader_next_data(struct rec_reader *r, msgpack_object *out)
{
    ASSERT(r->header_bytes != NULL);          // rec_read_header first
    if (r->ended) return 0;
    msgpack_object o;
    char got[80];
    if (!rec_reader_next(r, &o))
        die(EX_DATAERR, "%s: missing end record after %zu records: the stream was cut off (did the upstream tool fail?)",
            r->name, r->ndata);
    const msgpack_object *kind = rec_get(&o, "kind");
    if (!kind || kind->type != MSGPACK_OBJECT_STR) rec_fail(r, "field \"kind\": missing or not a string");
    if (str_eq(kind, "header")) rec_fail(r, "a second header inside the stream (concatenated streams are not supported)");
    if (str_eq(kind, "end")) {
        const msgpack_object *cnt = rec_get(&o, "records");
        if (!cnt || cnt->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            rec_fail(r, "end record: field \"records\": missing or not a count");
        if (cnt->via.u64 != r->ndata)
            rec_fail(r, "end record says %llu records, but %zu arrived",
                     (unsigned long long)cnt->via.u64, r->ndata);
        r->ended = true;
        msgpack_object extra;
        if (rec_reader_next(r, &extra))
            rec_fail(r, "data after the end record (kind %s)", str_show(rec_get(&extra, "kind"), got, sizeof got));
        return 0;
    }
    r->ndata++;
    *out = o;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// field access

const char *rec_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "unknown";
}

const msgpack_object *rec_need(const struct rec_reader *r, const msgpack_object *map, const char *key)
{
    const msgpack_object *v = rec_get(map, key);
    if (!v) rec_fail(r, "field \"%s\": missing", key);
    return v;
}

static _Noreturn void wrong_type(const struct rec_reader *r, const char *key, const char *want, const msgpack_object *v)
{
    rec_fail(r, "field \"%s\": expected %s, got %s", key, want, rec_type_name(v->type));
}

char *rec_get_str(const struct rec_reader *r, const msgpack_object *map, const char *key)
{
    const msgpack_object *v = rec_need(r, map, key);
    if (v->type != MSGPACK_OBJECT_STR) wrong_type(r, key, "str", v);
    if (memchr(v->via.str.ptr, '\0', v->via.str.size)) rec_fail(r, "field \"%s\": contains a NUL byte", key);
    char *s = xmalloc(v->via.str.size + 1);
    memcpy(s, v->via.str.ptr, v->via.str.size);
    s[v->via.str.size] = '\0';
    return s;
}

static bool obj_int(const msgpack_object *v, int64_t *out)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->via.u64;
        return true;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *out = v->via.i64; return true; }
    return false;
}

int64_t rec_get_int(const struct rec_reader *r, const msgpack_object *map, const char *key, int64_t min, int64_t max)
{
    const msgpack_object *v = rec_need(r, map, key);
    int64_t x;
    if (!obj_int(v, &x)) wrong_type(r, key, "int", v);
    if (x < min || x > max)
        rec_fail(r, "field \"%s\": %lld out of range [%lld, %lld]", key, (long long)x, (long long)min, (long long)max);
    return x;
}

double rec_get_num(const struct rec_reader *r, const msgpack_object *map, const char *key)
{
    const msgpack_object *v = rec_need(r, map, key);
    int64_t x;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) return v->via.f64;
    if (obj_int(v, &x)) return (double)x;
    wrong_type(r, key, "number", v);
}

// Reads a tensor map's dtype and shape; returns the element count. Checks the payload size.
static size_t tensor_shape(const struct rec_reader *r, const char *key, const msgpack_object *v,
                           const char *dtype, size_t esize, const void **data, int64_t *shape, int *ndim)
{
    if (v->type != MSGPACK_OBJECT_MAP) wrong_type(r, key, "tensor map", v);
    const msgpack_object *dt = rec_get(v, "dtype"), *sh = rec_get(v, "shape"), *d = rec_get(v, "data");
    if (!dt || !sh || !d) rec_fail(r, "field \"%s\": tensor needs dtype, shape and data", key);
    if (!str_eq(dt, dtype)) {
        char got[40];
        rec_fail(r, "field \"%s\": expected dtype \"%s\", got %s", key, dtype, str_show(dt, got, sizeof got));
    }
    if (sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size > 4)
        rec_fail(r, "field \"%s\": shape must be an array of at most 4 sizes", key);
    if (d->type != MSGPACK_OBJECT_BIN) rec_fail(r, "field \"%s\": data: expected bin, got %s", key, rec_type_name(d->type));
    size_t n = 1;
    for (uint32_t i = 0; i < sh->via.array.size; i++) {
        const msgpack_object *e = &sh->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > ((uint64_t)1 << 40))
            rec_fail(r, "field \"%s\": shape[%u] is not a valid size", key, i);
        if (shape) shape[i] = (int64_t)e->via.u64;
        if (e->via.u64 != 0 && n > SIZE_MAX / e->via.u64) rec_fail(r, "field \"%s\": shape overflows", key);
        n *= e->via.u64;
    }
    if (ndim) *ndim = (int)sh->via.array.size;
    if (n > SIZE_MAX / esize || n * esize != d->via.bin.size)
        rec_fail(r, "field \"%s\": shape needs %zu values but data holds %u bytes", key, n, d->via.bin.size);
    *data = d->via.bin.ptr;
    return n;
}

size_t rec_get_i32_array(const struct rec_reader *r, const msgpack_object *map, const char *key,
                         int64_t min, int64_t max, int32_t **out)
{
    const msgpack_object *v = rec_need(r, map, key);
    size_t n;
    int32_t *a;
    if (v->type == MSGPACK_OBJECT_ARRAY) {
        n = v->via.array.size;
        a = xmalloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++) {
            int64_t x;
            if (!obj_int(&v->via.array.ptr[i], &x))
                rec_fail(r, "field \"%s\"[%zu]: expected int, got %s", key, i, rec_type_name(v->via.array.ptr[i].type));
            if (x < min || x > max)
                rec_fail(r, "field \"%s\"[%zu]: %lld out of range [%lld, %lld]", key, i, (long long)x,
                         (long long)min, (long long)max);
            a[i] = (int32_t)x;
        }
    } else {
        const void *data;
        n = tensor_shape(r, key, v, "i32", 4, &data, NULL, NULL);
        a = xmalloc(n * sizeof *a);
        memcpy(a, data, n * sizeof *a);       // bin payloads are unaligned: copy, never cast
        for (size_t i = 0; i < n; i++)
            if (a[i] < min || a[i] > max)
                rec_fail(r, "field \"%s\"[%zu]: %d out of range [%lld, %lld]", key, i, a[i],
                         (long long)min, (long long)max);
    }
    *out = a;
    return n;
}

size_t rec_get_f32_tensor(const struct rec_reader *r, const msgpack_object *map, const char *key,
                          bool finite_only, float **out, int64_t *shape, int *ndim)
{
    const msgpack_object *v = rec_need(r, map, key);
    const void *data;
    size_t n = tensor_shape(r, key, v, "f32", 4, &data, shape, ndim);
    float *a = xmalloc(n * sizeof *a);
    memcpy(a, data, n * sizeof *a);
    if (finite_only)
        for (size_t i = 0; i < n; i++)
            if (!isfinite(a[i])) rec_fail(r, "field \"%s\"[%zu]: non-finite value %g", key, i, a[i]);
    *out = a;
    return n;
}

// ---------------------------------------------------------------------------------------------
// writer

static const char *writer_name(const struct rec_writer *w) { return w->fp == stdout ? "<stdout>" : "<output>"; }

// msgpack-c's fbuffer callback reports an error for a zero-length write (fwrite returns 0
// items), which an empty string produces; this one does not.
static int write_cb(void *data, const char *buf, size_t len)
{
    struct rec_writer *w = data;
    if (len == 0) return 0;
    return fwrite(buf, 1, len, w->fp) == len ? 0 : -1;
}

static void check(struct rec_writer *w, int rc)
{
    if (rc != 0) die(EX_IOERR, "write %s:", writer_name(w));
}

int rec_refuse_tty = 1;

void rec_writer_open(struct rec_writer *w, FILE *fp)
{
    // binary records would only garble a terminal (gzip refuses the same way)
    if (rec_refuse_tty && isatty(fileno(fp))) die(EX_USAGE, "not writing msgpack to a terminal; pipe into to-json (or redirect to a file)");
    memset(w, 0, sizeof *w);
    w->fp = fp;
    msgpack_packer_init(&w->pk, w, write_cb);
}

void rec_pack_map(struct rec_writer *w, uint32_t n) { check(w, msgpack_pack_map(&w->pk, n)); }
void rec_pack_array(struct rec_writer *w, uint32_t n) { check(w, msgpack_pack_array(&w->pk, n)); }
void rec_pack_strn(struct rec_writer *w, const char *s, size_t n)
{
    ASSERT(n <= UINT32_MAX);
    check(w, msgpack_pack_str(&w->pk, n));
    check(w, msgpack_pack_str_body(&w->pk, s, n));
}
void rec_pack_str(struct rec_writer *w, const char *s) { rec_pack_strn(w, s, strlen(s)); }
void rec_pack_key(struct rec_writer *w, const char *key) { rec_pack_strn(w, key, strlen(key)); }
void rec_pack_int(struct rec_writer *w, int64_t v) { check(w, msgpack_pack_int64(&w->pk, v)); }
void rec_pack_uint(struct rec_writer *w, uint64_t v) { check(w, msgpack_pack_uint64(&w->pk, v)); }
void rec_pack_double(struct rec_writer *w, double v) { check(w, msgpack_pack_double(&w->pk, v)); }
void rec_pack_float(struct rec_writer *w, float v) { check(w, msgpack_pack_float(&w->pk, v)); }
void rec_pack_bool(struct rec_writer *w, bool v) { check(w, v ? msgpack_pack_true(&w->pk) : msgpack_pack_false(&w->pk)); }
void rec_pack_nil(struct rec_writer *w) { check(w, msgpack_pack_nil(&w->pk)); }
void rec_pack_bin(struct rec_writer *w, const void *p, size_t n)
{
    ASSERT(n <= UINT32_MAX);
    check(w, msgpack_pack_bin(&w->pk, n));
    check(w, msgpack_pack_bin_body(&w->pk, p, n));
}
void rec_pack_object(struct rec_writer *w, const msgpack_object *o) { check(w, msgpack_pack_object(&w->pk, *o)); }
void rec_pack_ext(struct rec_writer *w, int8_t type, const void *p, size_t n)
{
    ASSERT(n <= UINT32_MAX);
    check(w, msgpack_pack_ext(&w->pk, n, type));
    check(w, msgpack_pack_ext_body(&w->pk, p, n));
}

void rec_pack_i32_array(struct rec_writer *w, const int32_t *v, size_t n)
{
    ASSERT(n <= UINT32_MAX);
    rec_pack_array(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) rec_pack_int(w, v[i]);
}

static void pack_tensor(struct rec_writer *w, const char *dtype, const void *v, size_t esize,
                        const int64_t *shape, int ndim)
{
    ASSERT(ndim >= 0 && ndim <= 4);
    size_t n = 1;
    rec_pack_map(w, 3);
    rec_pack_key(w, "dtype");
    rec_pack_str(w, dtype);
    rec_pack_key(w, "shape");
    rec_pack_array(w, (uint32_t)ndim);
    for (int i = 0; i < ndim; i++) {
        ASSERT(shape[i] >= 0);
        rec_pack_uint(w, (uint64_t)shape[i]);
        n *= (size_t)shape[i];
    }
    rec_pack_key(w, "data");
    rec_pack_bin(w, v, n * esize);            // host is little-endian (checked in tool_init)
}

void rec_pack_f32_tensor(struct rec_writer *w, const float *v, const int64_t *shape, int ndim)
{
    pack_tensor(w, "f32", v, 4, shape, ndim);
}

void rec_pack_i32_tensor(struct rec_writer *w, const int32_t *v, const int64_t *shape, int ndim)
{
    pack_tensor(w, "i32", v, 4, shape, ndim);
}

static bool skipped(const msgpack_object *key, const char *const *skip)
{
    for (const char *const *s = skip; s && *s; s++)
        if (str_eq(key, *s)) return true;
    return false;
}

uint32_t rec_count_passthrough(const msgpack_object *map, const char *const *skip)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++) n += !skipped(&map->via.map.ptr[i].key, skip);
    return n;
}

void rec_pack_passthrough(struct rec_writer *w, const msgpack_object *map, const char *const *skip)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        if (skipped(&map->via.map.ptr[i].key, skip)) continue;
        rec_pack_object(w, &map->via.map.ptr[i].key);
        rec_pack_object(w, &map->via.map.ptr[i].val);
    }
}

void rec_write_header(struct rec_writer *w, const char *schema, const msgpack_object *upstream,
                      int nextra, rec_pack_fn fields, void *ctx)
{
    rec_pack_map(w, 4 + (upstream ? 1 : 0) + (uint32_t)nextra);
    rec_pack_key(w, "kind");
    rec_pack_str(w, "header");
    rec_pack_key(w, "schema");
    rec_pack_str(w, schema);
    rec_pack_key(w, "schema_version");
    rec_pack_uint(w, REC_SCHEMA_VERSION);
    rec_pack_key(w, "producer");
    rec_pack_map(w, 2);
    rec_pack_key(w, "name");
    rec_pack_str(w, progname);
    rec_pack_key(w, "version");
    rec_pack_str(w, VERSION);
    if (upstream) {
        rec_pack_key(w, "upstream");
        rec_pack_object(w, upstream);
    }
    if (fields) fields(w, ctx);
    rec_flush(w);
}

void rec_record_begin(struct rec_writer *w, uint32_t nfields)
{
    ASSERT(!w->in_record);
    w->in_record = 1;
    rec_pack_map(w, nfields);
}

void rec_record_end(struct rec_writer *w)
{
    ASSERT(w->in_record);
    w->in_record = 0;
    w->ndata++;
}

void rec_flush(struct rec_writer *w)
{
    if (fflush(w->fp) != 0) die(EX_IOERR, "write %s:", writer_name(w));
}

void rec_write_end(struct rec_writer *w)
{
    ASSERT(!w->in_record);
    rec_pack_map(w, 2);
    rec_pack_key(w, "kind");
    rec_pack_str(w, "end");
    rec_pack_key(w, "records");
    rec_pack_uint(w, w->ndata);
    rec_flush(w);
}
