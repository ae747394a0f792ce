// json.c — JSON lines and the JSON <-> msgpack mapping (see json.h for the contract).
#include "json.h"
#include "util.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

// ---------------------------------------------------------------------------------------------
// UTF-8

// Returns the length of the valid UTF-8 prefix of s (n when all of it is valid). Overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629 (and jansson).
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// JSON lines reader

void jsonl_open(struct jsonl_reader *r, FILE *fp, const char *name, size_t max_line)
{
    memset(r, 0, sizeof *r);
    r->fp = fp;
    r->name = name ? name : "<stdin>";
    r->max_line = max_line ? max_line : JSONL_DEFAULT_MAX_LINE;
    r->cap = 4096;
    r->buf = xmalloc(r->cap);
}

void jsonl_close(struct jsonl_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

void jsonl_fail(const struct jsonl_reader *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die(EX_DATAERR, "%s: line %zu: %s", r->name, r->line, msg);
}

// Reads the next line (without its '\n') into r->buf. Returns false at end of input. The cap is
// applied while reading, so a gigabyte without a newline costs max_line bytes, not a gigabyte.
static bool read_line(struct jsonl_reader *r)
{
    int c;
    bool any = false;
    r->len = 0;
    while ((c = getc_unlocked(r->fp)) != EOF) {
        any = true;
        if (c == '\n') break;
        // One byte of slack for the '\r' of a "\r\n" line end.
        if (r->len > r->max_line) jsonl_fail(r, "line longer than %zu bytes", r->max_line);
        if (r->len == r->cap) r->buf = xrealloc(r->buf, r->cap *= 2);
        r->buf[r->len++] = (char)c;
    }
    if (ferror(r->fp)) die(EX_IOERR, "read %s:", r->name);
    return any;
}

static const char *json_kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return false;
    return true;
}

json_t *jsonl_next(struct jsonl_reader *r)
{
    for (;;) {
        r->line++;
        if (!read_line(r)) { r->line--; return NULL; }
        const char *p = r->buf;
        size_t n = r->len;
        if (n > 0 && p[n - 1] == '\r') n--;
        if (n > r->max_line) jsonl_fail(r, "line longer than %zu bytes", r->max_line);
        if (r->line == 1 && n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3, n -= 3;
        if (is_blank(p, n)) continue;
        const char *nul = memchr(p, '\0', n);
        if (nul) jsonl_fail(r, "NUL byte at column %zu (write it as \\u0000 inside a string)", (size_t)(nul - p) + 1);
        size_t ok = utf8_valid_prefix((const unsigned char *)p, n);
        if (ok < n) jsonl_fail(r, "invalid UTF-8 (byte 0x%02x at column %zu)", (unsigned char)p[ok], ok + 1);
        json_error_t e;
        json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
        if (!v) jsonl_fail(r, "invalid JSON: %s (column %d)", e.text, e.column);
        if (!json_is_object(v)) {
            const char *kind = json_kind_name(v);
            json_decref(v);
            jsonl_fail(r, "expected a JSON object, got %s", kind);
        }
        return v;
    }
}

// ---------------------------------------------------------------------------------------------
// base64

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *json_base64_encode(const void *p, size_t n)
{
    const unsigned char *s = p;
    char *out = xmalloc(mul_size((n + 2) / 3, 4, "base64") + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        *o++ = b64_alphabet[(v >> 18) & 63];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Strict: padded, no whitespace, no bits left over (so every bin has exactly one encoding).
bool json_base64_decode(const char *s, size_t len, unsigned char **out, size_t *n)
{
    if (len % 4 != 0) return false;
    size_t pad = len >= 1 && s[len - 1] == '=' ? (len >= 2 && s[len - 2] == '=' ? 2 : 1) : 0;
    unsigned char *buf = xmalloc(len / 4 * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        for (int j = 0; j < 4; j++) {
            bool padding = i + (size_t)j >= len - pad;
            int d = padding ? 0 : b64_value((unsigned char)s[i + j]);
            if (d < 0) { free(buf); return false; }
            v = (v << 6) | (uint32_t)d;
        }
        buf[k++] = (unsigned char)(v >> 16);
        buf[k++] = (unsigned char)(v >> 8);
        buf[k++] = (unsigned char)v;
    }
    k -= pad;
    // Non-canonical input (bits set in the padding) would not survive a round trip.
    if ((pad == 1 && (b64_value((unsigned char)s[len - 2]) & 3)) ||
        (pad == 2 && (b64_value((unsigned char)s[len - 3]) & 15))) {
        free(buf);
        return false;
    }
    *out = buf;
    *n = k;
    return true;
}

// ---------------------------------------------------------------------------------------------
// shared: error context with a field path

struct ctx {
    char path[256];            // ".messages[2].content"
    size_t plen;
    char *err;
    size_t errlen;
    int flags;
    int depth;
};

static size_t path_push_key(struct ctx *c, const char *k, size_t klen)
{
    size_t old = c->plen;
    int shown = klen > 40 ? 40 : (int)klen;
    snprintf(c->path + old, sizeof c->path - old, ".%.*s%s", shown, k, klen > 40 ? "..." : "");
    c->plen = strlen(c->path);
    return old;
}

static size_t path_push_index(struct ctx *c, size_t i)
{
    size_t old = c->plen;
    snprintf(c->path + old, sizeof c->path - old, "[%zu]", i);
    c->plen = strlen(c->path);
    return old;
}

static void path_pop(struct ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static bool ctx_fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool ctx_fail(struct ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->plen) snprintf(c->err, c->errlen, "field %s: %s", c->path, msg);
    else snprintf(c->err, c->errlen, "%s", msg);
    return false;
}

enum dtype { DT_NONE, DT_F32, DT_I32, DT_U8 };

static enum dtype dtype_of(const char *s, size_t n)
{
    if (n == 3 && memcmp(s, "f32", 3) == 0) return DT_F32;
    if (n == 3 && memcmp(s, "i32", 3) == 0) return DT_I32;
    if (n == 2 && memcmp(s, "u8", 2) == 0) return DT_U8;
    return DT_NONE;
}

static size_t dtype_size(enum dtype t) { return t == DT_U8 ? 1 : 4; }

// ---------------------------------------------------------------------------------------------
// JSON -> msgpack: recognising and checking the special forms

enum special { SP_NONE, SP_TENSOR, SP_BIN, SP_EXT, SP_U64 };

// Classifies an object by its keys alone; json_pack_check then insists the contents are valid.
static enum special special_of(const json_t *obj)
{
    size_t n = json_object_size(obj);
    if (n == 3 && json_object_get(obj, "dtype") && json_object_get(obj, "shape") &&
        json_is_array(json_object_get(obj, "data")))
        return SP_TENSOR;
    if (n == 1 && json_object_get(obj, "bin_base64")) return SP_BIN;
    if (n == 2 && json_object_get(obj, "ext_type") && json_object_get(obj, "ext_base64")) return SP_EXT;
    if (n == 1 && json_object_get(obj, "uint64")) return SP_U64;
    return SP_NONE;
}

// Parses a non-finite float's JSON spelling.
static bool nonfinite_of(const json_t *v, double *out)
{
    const char *s = json_string_value(v);
    if (!s) return false;
    if (strcmp(s, "NaN") == 0) *out = NAN;
    else if (strcmp(s, "Infinity") == 0) *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0) *out = -INFINITY;
    else return false;
    return true;
}

static bool u64_of(const json_t *v, uint64_t *out)
{
    const char *s = json_string_value(v);
    if (!s || s[0] < '0' || s[0] > '9' || json_string_length(v) > 20) return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE) return false;
    *out = x;
    return true;
}

// Element count of a tensor's shape, or false (with a message) on a bad shape.
static bool tensor_count(struct ctx *c, const json_t *shape, enum dtype dt, size_t *count)
{
    if (!json_is_array(shape)) return ctx_fail(c, "tensor shape must be an array of sizes");
    size_t n = 1;
    for (size_t i = 0; i < json_array_size(shape); i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return ctx_fail(c, "tensor shape[%zu] must be a non-negative integer", i);
        uint64_t x = (uint64_t)json_integer_value(d);
        if (x != 0 && n > (UINT32_MAX / dtype_size(dt)) / x)
            return ctx_fail(c, "tensor shape is too large for a msgpack bin (4 GiB)");
        n *= x;
    }
    *count = n;
    return true;
}

static bool check_tensor_value(struct ctx *c, enum dtype dt, const json_t *e, size_t i)
{
    double nf;
    if (dt == DT_F32) {
        if (nonfinite_of(e, &nf)) return true;
        if (!json_is_number(e))
            return ctx_fail(c, "tensor data[%zu]: expected a number (or \"NaN\", \"Infinity\", \"-Infinity\"), got %s",
                            i, json_kind_name(e));
        double d = json_number_value(e);
        if (isinf((float)d)) return ctx_fail(c, "tensor data[%zu]: %g is out of f32 range", i, d);
        return true;
    }
    json_int_t lo = dt == DT_I32 ? INT32_MIN : 0, hi = dt == DT_I32 ? INT32_MAX : 255;
    if (!json_is_integer(e))
        return ctx_fail(c, "tensor data[%zu]: expected an integer for dtype %s, got %s", i,
                        dt == DT_I32 ? "i32" : "u8", json_kind_name(e));
    json_int_t x = json_integer_value(e);
    if (x < lo || x > hi)
        return ctx_fail(c, "tensor data[%zu]: %" JSON_INTEGER_FORMAT " out of %s range", i, x,
                        dt == DT_I32 ? "i32" : "u8");
    return true;
}

static bool check_tensor(struct ctx *c, const json_t *obj)
{
    const json_t *dtype = json_object_get(obj, "dtype"), *data = json_object_get(obj, "data");
    enum dtype dt = json_is_string(dtype) ? dtype_of(json_string_value(dtype), json_string_length(dtype)) : DT_NONE;
    if (dt == DT_NONE) return ctx_fail(c, "tensor dtype must be \"f32\", \"i32\" or \"u8\"");
    size_t count = 0;
    if (!tensor_count(c, json_object_get(obj, "shape"), dt, &count)) return false;
    if (json_array_size(data) != count)
        return ctx_fail(c, "tensor data has %zu values, but its shape needs %zu", json_array_size(data), count);
    for (size_t i = 0; i < count; i++)
        if (!check_tensor_value(c, dt, json_array_get(data, i), i)) return false;
    return true;
}

static bool check_special(struct ctx *c, const json_t *obj, enum special sp)
{
    const json_t *v;
    uint64_t u;
    unsigned char *buf;
    size_t n;
    switch (sp) {
    case SP_TENSOR: return check_tensor(c, obj);
    case SP_BIN:
        v = json_object_get(obj, "bin_base64");
        if (!json_is_string(v) || !json_base64_decode(json_string_value(v), json_string_length(v), &buf, &n))
            return ctx_fail(c, "bin_base64 must be a padded base64 string");
        free(buf);
        return n <= UINT32_MAX ? true : ctx_fail(c, "bin larger than 4 GiB");
    case SP_EXT:
        v = json_object_get(obj, "ext_type");
        if (!json_is_integer(v) || json_integer_value(v) < -128 || json_integer_value(v) > 127)
            return ctx_fail(c, "ext_type must be an integer in [-128, 127]");
        v = json_object_get(obj, "ext_base64");
        if (!json_is_string(v) || !json_base64_decode(json_string_value(v), json_string_length(v), &buf, &n))
            return ctx_fail(c, "ext_base64 must be a padded base64 string");
        free(buf);
        return true;
    case SP_U64:
        if (!u64_of(json_object_get(obj, "uint64"), &u))
            return ctx_fail(c, "uint64 must be a decimal string in [0, 18446744073709551615]");
        return true;
    case SP_NONE: break;
    }
    return true;
}

static bool check_value(struct ctx *c, const json_t *v)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        if (json_is_string(v) && json_string_length(v) > UINT32_MAX) return ctx_fail(c, "string longer than 4 GiB");
        return true;
    }
    // srlm readers refuse deeper records (rec.h); say so here rather than downstream.
    if (++c->depth >= REC_MAX_DEPTH)
        return ctx_fail(c, "nested deeper than %d levels (srlm readers refuse it)", REC_MAX_DEPTH - 1);
    bool ok = true;
    if (json_is_array(v)) {
        for (size_t i = 0; ok && i < json_array_size(v); i++) {
            size_t old = path_push_index(c, i);
            ok = check_value(c, json_array_get(v, i));
            if (ok) path_pop(c, old);
        }
    } else {
        enum special sp = special_of(v);
        if (sp != SP_NONE) {
            ok = check_special(c, v, sp);
        } else {
            const char *key;
            size_t klen;
            json_t *m;
            json_object_keylen_foreach((json_t *)v, key, klen, m) {
                size_t old = path_push_key(c, key, klen);
                ok = check_value(c, m);
                if (!ok) break;
                path_pop(c, old);
            }
        }
    }
    c->depth--;
    return ok;
}

bool json_pack_check_members(const json_t *obj, char *err, size_t errlen)
{
    struct ctx c = { .err = err, .errlen = errlen, .depth = 1 };
    const char *key;
    size_t klen;
    json_t *m;
    if (!json_is_object(obj)) return ctx_fail(&c, "expected an object");
    json_object_keylen_foreach((json_t *)obj, key, klen, m) {
        size_t old = path_push_key(&c, key, klen);
        if (!check_value(&c, m)) return false;
        path_pop(&c, old);
    }
    return true;
}

bool json_pack_check(const json_t *v, char *err, size_t errlen)
{
    struct ctx c = { .err = err, .errlen = errlen };
    if (json_is_array(v) && json_array_size(v) > UINT32_MAX) return ctx_fail(&c, "array too long for msgpack");
    return check_value(&c, v);
}

// ---------------------------------------------------------------------------------------------
// JSON -> msgpack: packing (the value was checked first)

static void pack_b64(struct rec_writer *w, const json_t *s, bool ext, int8_t type)
{
    unsigned char *buf;
    size_t n;
    bool ok = json_base64_decode(json_string_value(s), json_string_length(s), &buf, &n);
    ASSERT(ok);
    if (ext) rec_pack_ext(w, type, buf, n);
    else rec_pack_bin(w, buf, n);
    free(buf);
}

static void pack_tensor_data(struct rec_writer *w, enum dtype dt, const json_t *data)
{
    size_t n = json_array_size(data), es = dtype_size(dt);
    unsigned char *buf = xmalloc(n * es);     // xmalloc(0) is fine
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(data, i);
        if (dt == DT_F32) {
            double d;
            if (!nonfinite_of(e, &d)) d = json_number_value(e);
            float f = (float)d;
            memcpy(buf + 4 * i, &f, 4);       // host is little-endian (tool_init checks)
        } else if (dt == DT_I32) {
            int32_t x = (int32_t)json_integer_value(e);
            memcpy(buf + 4 * i, &x, 4);
        } else {
            buf[i] = (unsigned char)json_integer_value(e);
        }
    }
    rec_pack_bin(w, buf, n * es);
    free(buf);
}

static void pack_tensor(struct rec_writer *w, const json_t *obj)
{
    const json_t *dtype = json_object_get(obj, "dtype");
    enum dtype dt = dtype_of(json_string_value(dtype), json_string_length(dtype));
    const char *key;
    json_t *v;
    rec_pack_map(w, 3);
    json_object_foreach((json_t *)obj, key, v) {     // in the object's own key order
        rec_pack_key(w, key);
        if (strcmp(key, "dtype") == 0) {
            rec_pack_strn(w, json_string_value(v), json_string_length(v));
        } else if (strcmp(key, "shape") == 0) {
            rec_pack_array(w, (uint32_t)json_array_size(v));
            for (size_t i = 0; i < json_array_size(v); i++)
                rec_pack_uint(w, (uint64_t)json_integer_value(json_array_get(v, i)));
        } else {
            pack_tensor_data(w, dt, v);
        }
    }
}

static void pack_value(struct rec_writer *w, const json_t *v);

void json_pack_members(struct rec_writer *w, const json_t *obj)
{
    const char *key;
    size_t klen;
    json_t *m;
    json_object_keylen_foreach((json_t *)obj, key, klen, m) {
        rec_pack_strn(w, key, klen);
        pack_value(w, m);
    }
}

static void pack_object(struct rec_writer *w, const json_t *obj)
{
    uint64_t u;
    switch (special_of(obj)) {
    case SP_TENSOR: pack_tensor(w, obj); return;
    case SP_BIN: pack_b64(w, json_object_get(obj, "bin_base64"), false, 0); return;
    case SP_EXT:
        pack_b64(w, json_object_get(obj, "ext_base64"), true,
                 (int8_t)json_integer_value(json_object_get(obj, "ext_type")));
        return;
    case SP_U64:
        u64_of(json_object_get(obj, "uint64"), &u);
        rec_pack_uint(w, u);
        return;
    case SP_NONE: break;
    }
    ASSERT(json_object_size(obj) <= UINT32_MAX);
    rec_pack_map(w, (uint32_t)json_object_size(obj));
    json_pack_members(w, obj);
}

static void pack_value(struct rec_writer *w, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: pack_object(w, v); break;
    case JSON_ARRAY:
        rec_pack_array(w, (uint32_t)json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++) pack_value(w, json_array_get(v, i));
        break;
    case JSON_STRING: rec_pack_strn(w, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: rec_pack_int(w, json_integer_value(v)); break;
    case JSON_REAL: rec_pack_double(w, json_real_value(v)); break;
    case JSON_TRUE: rec_pack_bool(w, true); break;
    case JSON_FALSE: rec_pack_bool(w, false); break;
    case JSON_NULL: rec_pack_nil(w); break;
    }
}

void json_pack_value(struct rec_writer *w, const json_t *v)
{
    char err[600];
    if (!json_pack_check(v, err, sizeof err)) die(EX_DATAERR, "%s", err);
    pack_value(w, v);
}

// ---------------------------------------------------------------------------------------------
// msgpack -> JSON

// The double nearest to the shortest decimal that reads back (through double, as every JSON
// reader does) to the same float32: printing it with the fewest round-trip digits for a double
// then shows those few digits (0.1f prints as 0.1, not 0.100000001490116).
static double f32_short(float f)
{
    char buf[40];
    // Whole numbers print exactly while that stays short: 2147483648, not 2147483600.
    if (f == truncf(f) && fabsf(f) < 1e16f) return (double)f;
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;   // exact: always reads back
}

static json_t *float_json(double d, bool is_f32)
{
    if (isnan(d)) return json_string("NaN");
    if (isinf(d)) return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(is_f32 ? f32_short((float)d) : d);
}

// msgpack-c may leave the pointer of a zero-length str NULL (or stale); jansson refuses NULL.
static const char *str_ptr(const msgpack_object *o) { return o->via.str.size ? o->via.str.ptr : ""; }

static json_t *str_json(struct ctx *c, const char *p, size_t n)
{
    if (n == 0) p = "";
    size_t ok = utf8_valid_prefix((const unsigned char *)p, n);
    if (ok < n) {
        ctx_fail(c, "invalid UTF-8 in a string (byte 0x%02x at offset %zu); JSON cannot carry it",
                 (unsigned char)p[ok], ok);
        return NULL;
    }
    return json_stringn_nocheck(p, n);
}

static json_t *b64_json(const char *key, const void *p, size_t n)
{
    char *s = json_base64_encode(p, n);
    json_t *o = json_object();
    json_object_set_new(o, key, json_string_nocheck(s));
    free(s);
    return o;
}

// Recognises a well-formed tensor map; returns its dtype (DT_NONE if o is not one).
static enum dtype tensor_of(const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 3) return DT_NONE;
    const msgpack_object *dtype = rec_get(o, "dtype"), *shape = rec_get(o, "shape"), *data = rec_get(o, "data");
    if (!dtype || !shape || !data || dtype->type != MSGPACK_OBJECT_STR || shape->type != MSGPACK_OBJECT_ARRAY ||
        data->type != MSGPACK_OBJECT_BIN)
        return DT_NONE;
    enum dtype dt = dtype_of(dtype->via.str.ptr, dtype->via.str.size);
    if (dt == DT_NONE) return DT_NONE;
    uint64_t n = 1;
    for (uint32_t i = 0; i < shape->via.array.size; i++) {
        const msgpack_object *d = &shape->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > UINT32_MAX) return DT_NONE;
        if (d->via.u64 != 0 && n > UINT32_MAX / d->via.u64) return DT_NONE;
        n *= d->via.u64;
    }
    return n * dtype_size(dt) == data->via.bin.size ? dt : DT_NONE;
}

static json_t *tensor_data_json(enum dtype dt, const msgpack_object *data)
{
    size_t n = data->via.bin.size / dtype_size(dt);
    const unsigned char *p = (const unsigned char *)data->via.bin.ptr;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e;
        if (dt == DT_F32) {
            float f;
            memcpy(&f, p + 4 * i, 4);         // unaligned: copy, never cast
            e = float_json(f, true);
        } else if (dt == DT_I32) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            e = json_integer(x);
        } else {
            e = json_integer(p[i]);
        }
        json_array_append_new(a, e);
    }
    return a;
}

static json_t *tensor_json(const msgpack_object *o, enum dtype dt)
{
    json_t *t = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {   // keep the map's key order
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        json_t *jv;
        if (rec_key_is(k, "dtype")) {
            jv = json_stringn_nocheck(str_ptr(v), v->via.str.size);
        } else if (rec_key_is(k, "shape")) {
            jv = json_array();
            for (uint32_t d = 0; d < v->via.array.size; d++)
                json_array_append_new(jv, json_integer((json_int_t)v->via.array.ptr[d].via.u64));
        } else {
            jv = tensor_data_json(dt, v);
        }
        if (json_object_setn_new_nocheck(t, str_ptr(k), k->via.str.size, jv) != 0) {
            json_decref(t);
            return NULL;
        }
    }
    return t;
}

static json_t *to_json(struct ctx *c, const msgpack_object *o);

static json_t *map_json(struct ctx *c, const msgpack_object *o)
{
    json_t *obj = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const char *kp = k->type == MSGPACK_OBJECT_STR ? str_ptr(k) : NULL;
        if (k->type != MSGPACK_OBJECT_STR) {
            ctx_fail(c, "map key %u is %s: JSON object keys must be strings", i, rec_type_name(k->type));
            goto fail;
        }
        size_t ok = utf8_valid_prefix((const unsigned char *)kp, k->via.str.size);
        if (ok < k->via.str.size) {
            ctx_fail(c, "map key %u is not valid UTF-8", i);
            goto fail;
        }
        if (json_object_getn(obj, kp, k->via.str.size)) {
            ctx_fail(c, "duplicate map key \"%.*s\"", (int)(k->via.str.size > 40 ? 40 : k->via.str.size), kp);
            goto fail;
        }
        size_t old = path_push_key(c, kp, k->via.str.size);
        json_t *v = to_json(c, &o->via.map.ptr[i].val);
        if (!v) goto fail;
        path_pop(c, old);
        if (json_object_setn_new_nocheck(obj, kp, k->via.str.size, v) != 0) {
            ctx_fail(c, "map key %u cannot be stored", i);
            goto fail;
        }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *to_json(struct ctx *c, const msgpack_object *o)
{
    char num[24];
    json_t *a, *e;
    enum dtype dt;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 <= INT64_MAX) return json_integer((json_int_t)o->via.u64);
        snprintf(num, sizeof num, "%" PRIu64, o->via.u64);
        a = json_object();
        json_object_set_new(a, "uint64", json_string(num));
        return a;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32: return float_json(o->via.f64, true);
    case MSGPACK_OBJECT_FLOAT64: return float_json(o->via.f64, false);
    case MSGPACK_OBJECT_STR: return str_json(c, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: return b64_json("bin_base64", o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        a = b64_json("ext_base64", o->via.ext.ptr, o->via.ext.size);
        json_t *t = json_object();
        json_object_set_new(t, "ext_type", json_integer(o->via.ext.type));
        json_object_update(t, a);
        json_decref(a);
        return t;
    case MSGPACK_OBJECT_ARRAY:
        a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            size_t old = path_push_index(c, i);
            e = to_json(c, &o->via.array.ptr[i]);
            if (!e) { json_decref(a); return NULL; }
            path_pop(c, old);
            json_array_append_new(a, e);
        }
        return a;
    case MSGPACK_OBJECT_MAP:
        dt = (c->flags & JSON_MP_DECODE_TENSORS) ? tensor_of(o) : DT_NONE;
        return dt != DT_NONE ? tensor_json(o, dt) : map_json(c, o);
    }
    ctx_fail(c, "unknown msgpack type %d", (int)o->type);
    return NULL;
}

json_t *json_from_msgpack_ex(const msgpack_object *o, int flags, char *err, size_t errlen)
{
    struct ctx c = { .err = err, .errlen = errlen, .flags = flags };
    return to_json(&c, o);
}

json_t *json_from_msgpack(const msgpack_object *o, int decode_tensors)
{
    char err[600];
    json_t *v = json_from_msgpack_ex(o, decode_tensors ? JSON_MP_DECODE_TENSORS : 0, err, sizeof err);
    if (!v) die(EX_DATAERR, "%s", err);
    return v;
}

// ---------------------------------------------------------------------------------------------
// output

static void write_real(FILE *fp, double d)
{
    char buf[40];
    for (int p = 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, fp);
    if (!strpbrk(buf, ".e")) fputs(".0", fp);   // keep it a real for the reader
}

static void write_string(FILE *fp, const char *s, size_t n)
{
    size_t start = 0;
    putc_unlocked('"', fp);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        fwrite(s + start, 1, i - start, fp);
        start = i + 1;
        switch (ch) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\t': fputs("\\t", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\b': fputs("\\b", fp); break;
        case '\f': fputs("\\f", fp); break;
        default: fprintf(fp, "\\u%04x", ch); break;
        }
    }
    fwrite(s + start, 1, n - start, fp);
    putc_unlocked('"', fp);
}

static void write_value(FILE *fp, const json_t *v)
{
    const char *key;
    size_t klen;
    json_t *m;
    bool first = true;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        putc_unlocked('{', fp);
        json_object_keylen_foreach((json_t *)v, key, klen, m) {
            if (!first) putc_unlocked(',', fp);
            first = false;
            write_string(fp, key, klen);
            putc_unlocked(':', fp);
            write_value(fp, m);
        }
        putc_unlocked('}', fp);
        break;
    case JSON_ARRAY:
        putc_unlocked('[', fp);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) putc_unlocked(',', fp);
            write_value(fp, json_array_get(v, i));
        }
        putc_unlocked(']', fp);
        break;
    case JSON_STRING: write_string(fp, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: fprintf(fp, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: write_real(fp, json_real_value(v)); break;
    case JSON_TRUE: fputs("true", fp); break;
    case JSON_FALSE: fputs("false", fp); break;
    case JSON_NULL: fputs("null", fp); break;
    }
}

int json_write_line(FILE *fp, const json_t *v)
{
    write_value(fp, v);
    putc_unlocked('\n', fp);
    return ferror(fp) ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// numbers beyond jansson's range

// Length of the number token at p (a maximal run of number characters).
static size_t number_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == '-' || p[i] == '+' || p[i] == '.' || p[i] == 'e' || p[i] == 'E' ||
                     (p[i] >= '0' && p[i] <= '9')))
        i++;
    return i;
}

static size_t digits(const char *p, size_t i, size_t n)
{
    size_t d = 0;
    while (i + d < n && p[i + d] >= '0' && p[i + d] <= '9') d++;
    return d;
}

// RFC 8259's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
static bool json_number_syntax(const char *p, size_t n)
{
    size_t i = p[0] == '-', d;
    if (i < n && p[i] == '0') i++;
    else if ((d = digits(p, i, n)) > 0) i += d;
    else return false;
    if (i < n && p[i] == '.') {
        if ((d = digits(p, i + 1, n)) == 0) return false;
        i += 1 + d;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i += 1 + (i + 1 < n && (p[i + 1] == '+' || p[i + 1] == '-'));
        if ((d = digits(p, i, n)) == 0) return false;
        i += d;
    }
    return i == n;
}

// Appends to *out the token, or its replacement when jansson cannot hold it. Returns true if it
// replaced it.
static bool rewrite_number(const char *p, size_t n, char **out, size_t *olen, size_t *ocap)
{
    char tok[400], rep[40];
    const char *src = p;
    size_t srclen = n;
    bool changed = false;
    if (!json_number_syntax(p, n)) {
        // not a number: copied, for jansson to report
    } else if (n < sizeof tok) {
        memcpy(tok, p, n);
        tok[n] = '\0';
        bool integer = !strpbrk(tok, ".eE");
        char *end;
        errno = 0;
        if (integer) (void)strtoll(tok, &end, 10);
        if (!integer || errno == ERANGE) {
            errno = 0;
            double d = strtod(tok, &end);
            if (end == tok + n && (isinf(d) || integer)) {
                if (isinf(d)) d = copysign(DBL_MAX, d);
                snprintf(rep, sizeof rep, "%.17g", d);   // >= 1e17: always holds an 'e' or '.'
                src = rep, srclen = strlen(rep), changed = true;
            }
        }
    } else if (!memchr(p, '.', n) && !memchr(p, 'e', n) && !memchr(p, 'E', n)) {
        src = p[0] == '-' ? "-1.7976931348623157e308" : "1.7976931348623157e308";   // 400+ digits
        srclen = strlen(src), changed = true;
    }
    if (*olen + srclen + 1 > *ocap) *out = xrealloc(*out, *ocap = 2 * (*olen + srclen + 1));
    memcpy(*out + *olen, src, srclen);
    *olen += srclen;
    return changed;
}

// text with every number jansson refuses rewritten (see json_load_text); NULL if none is.
static char *rewrite_numbers(const char *text, size_t len, size_t *outlen)
{
    size_t cap = len + 64, olen = 0, i = 0, start = 0;
    char *out = xmalloc(cap);
    bool in_str = false, changed = false;
    while (i < len) {
        char c = text[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            i++;
            continue;
        }
        if (c == '"') { in_str = true; i++; continue; }
        if (c != '-' && (c < '0' || c > '9')) { i++; continue; }
        size_t n = number_len(text + i, len - i);
        if (olen + (i - start) + 1 > cap) out = xrealloc(out, cap = 2 * (olen + (i - start) + 1));
        memcpy(out + olen, text + start, i - start);
        olen += i - start;
        changed |= rewrite_number(text + i, n, &out, &olen, &cap);
        i += n;
        start = i;
    }
    if (!changed) { free(out); return NULL; }
    if (olen + (len - start) + 1 > cap) out = xrealloc(out, cap = olen + (len - start) + 1);
    memcpy(out + olen, text + start, len - start);
    *outlen = olen + (len - start);
    return out;
}

json_t *json_load_text(const char *text, size_t len, size_t flags, json_error_t *err)
{
    json_t *j = json_loadb(text, len, flags, err);
    if (j) return j;
    size_t n;
    char *fixed = rewrite_numbers(text, len, &n);
    if (!fixed) return NULL;                  // a real syntax error: jansson's message stands
    json_error_t err2;
    j = json_loadb(fixed, n, flags, &err2);
    free(fixed);
    if (!j) *err = err2;
    return j;
}

json_t *json_read_file(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    json_error_t err;
    json_t *j = json_load_text(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!j) die(EX_DATAERR, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
    return j;
}

// ---------------------------------------------------------------------------------------------
// gzip input

#define GZ_CHUNK ((size_t)64 << 10)

struct gunzip {
    FILE *fp;                  // compressed input, borrowed
    const char *name;
    z_stream z;
    unsigned char in[GZ_CHUNK];
    bool done;                 // the last member ended at the end of the input
};

static _Noreturn void gz_fail(const struct gunzip *g, const char *what)
{
    die(EX_DATAERR, "%s: gzip: %s", g->name, what);
}

// Refills the compressed buffer; returns false at the end of the input.
static bool gz_fill(struct gunzip *g)
{
    size_t n = fread(g->in, 1, sizeof g->in, g->fp);
    if (ferror(g->fp)) die(EX_IOERR, "read %s:", g->name);
    g->z.next_in = g->in;
    g->z.avail_in = (uInt)n;
    return n > 0;
}

static ssize_t gz_read(void *cookie, char *buf, size_t size)
{
    struct gunzip *g = cookie;
    if (size > UINT_MAX) size = UINT_MAX;
    g->z.next_out = (Bytef *)buf;
    g->z.avail_out = (uInt)size;
    while (!g->done && g->z.avail_out == size) {
        if (g->z.avail_in == 0 && !gz_fill(g))
            gz_fail(g, "truncated (the input ends inside a compressed member)");
        int rc = inflate(&g->z, Z_NO_FLUSH);
        if (rc == Z_MEM_ERROR) die(EX_OSERR, "%s: gzip: out of memory", g->name);
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR)
            gz_fail(g, g->z.msg ? g->z.msg : "invalid compressed data");
        if (rc == Z_STREAM_END) {             // another member may follow, as gzip -d reads it
            if (g->z.avail_in == 0 && !gz_fill(g)) g->done = true;
            else if (inflateReset(&g->z) != Z_OK) gz_fail(g, "inflateReset failed");
        }
    }
    return (ssize_t)(size - g->z.avail_out);
}

static int gz_close(void *cookie)
{
    struct gunzip *g = cookie;
    inflateEnd(&g->z);
    free(g);
    return 0;
}

FILE *jsonl_gunzip(FILE *fp, const char *name)
{
    int c = getc(fp), c2;
    if (c != 0x1f) {
        if (c != EOF) ungetc(c, fp);
        if (ferror(fp)) die(EX_IOERR, "read %s:", name);
        return fp;
    }
    if ((c2 = getc(fp)) != 0x8b)
        die(EX_DATAERR, "%s: not JSON lines (it starts with the byte 0x1f) nor gzip (0x1f 0x8b)", name);
    struct gunzip *g = xcalloc(1, sizeof *g);
    g->fp = fp;
    g->name = name;
    g->in[0] = 0x1f, g->in[1] = 0x8b;
    g->z.next_in = g->in;
    g->z.avail_in = 2;
    if (inflateInit2(&g->z, 16 + MAX_WBITS) != Z_OK) die(EX_OSERR, "%s: gzip: cannot initialise zlib", name);
    FILE *in = fopencookie(g, "r", (cookie_io_functions_t){ .read = gz_read, .close = gz_close });
    if (!in) die(EX_OSERR, "fopencookie:");
    log_debug("%s: gzip input", name);
    return in;
}

void jsonl_gunzip_close(FILE *in, FILE *fp)
{
    if (in && in != fp) fclose(in);
}
