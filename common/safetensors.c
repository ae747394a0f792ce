// safetensors.c — see safetensors.h for the contract.
#include "safetensors.h"
#include "json.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// dtypes

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [SAFETENSORS_F32] = {"F32", 4},
    [SAFETENSORS_BF16] = {"BF16", 2},
    [SAFETENSORS_F16] = {"F16", 2},
};

// The format's other dtypes: named so the message says "not supported" rather than "unknown".
static const char *const dtype_other[] = {
    "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", NULL,
};

const char *safetensors_dtype_name(enum safetensors_dtype dtype) { return dtype_info[dtype].name; }
size_t safetensors_dtype_size(enum safetensors_dtype dtype) { return dtype_info[dtype].size; }

int safetensors_dtype_parse(const char *s, enum safetensors_dtype *out)
{
    static const struct { const char *a, *b; enum safetensors_dtype d; } names[] = {
        {"f32", "float32", SAFETENSORS_F32},
        {"bf16", "bfloat16", SAFETENSORS_BF16},
        {"f16", "float16", SAFETENSORS_F16},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(s, names[i].a) || !strcasecmp(s, names[i].b)) {
            *out = names[i].d;
            return 0;
        }
    return -1;
}

// ---------------------------------------------------------------------------------------------
// conversions (IEEE 754 binary16 / bfloat16; rounding as torch: to nearest, ties to even)

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040);      // NaN stays NaN (quiet), sign kept
    // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry out of
    // the mantissa bumps the exponent, and the largest floats round up to infinity, as in torch.
    uint32_t bias = 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)((u + bias) >> 16);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f)                                  // inf, or NaN made quiet (as F16C does)
        return bits_f32(sign | 0x7f800000u | (mant ? 0x00400000u | (mant << 13) : 0));
    if (exp != 0)
        return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0)
        return bits_f32(sign);
    // Subnormal: mant * 2^-24. Shift the leading one up to the implicit-bit position.
    uint32_t e = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        e--;
    }
    return bits_f32(sign | (e << 23) | ((mant & 0x3ff) << 13));
}

// Rounds m >> shift to nearest, ties to even.
static uint32_t round_shift(uint32_t m, unsigned shift)
{
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return r + (rem > half || (rem == half && (r & 1)));
}

uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return sign | 0x7e00;        // NaN -> quiet NaN, as torch
    if (u >= 0x477ff000u) return sign | 0x7c00;       // >= 65520 (incl. inf) rounds to inf
    uint32_t e = u >> 23, m = u & 0x7fffffu;
    if (e >= 113)                                     // normal in f16 (>= 2^-14)
        return sign | (uint16_t)round_shift(((e - 112) << 23) | m, 13);
    // Subnormal or zero in f16: the value is (m | 1<<23) * 2^(e-150) = k * 2^-24, k = that >> (126-e).
    if (e < 101) return sign;                         // below 2^-25 (incl. f32 subnormals): 0
    return sign | (uint16_t)round_shift(m | 0x800000u, 126 - e);
}

// ---------------------------------------------------------------------------------------------
// reading

static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static void map_file(struct safetensors_map *m, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(EX_NOINPUT, "open %s:", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) die(EX_NOINPUT, "stat %s:", path);
    if (!S_ISREG(sb.st_mode)) die(EX_NOINPUT, "%s: not a regular file", path);
    if (sb.st_size < 8)
        die(EX_DATAERR, "%s: %lld bytes, too short for a safetensors file (8-byte header length)",
            path, (long long)sb.st_size);
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) die(EX_NOINPUT, "mmap %s:", path);
    close(fd);
    m->path = xstrdup(path);
    m->base = p;
    m->size = (size_t)sb.st_size;
    m->metadata = NULL;
}

// Reads a JSON integer >= 0 (the format's offsets and dims are u64 / usize).
static uint64_t json_u64(json_t *v, const char *path, const char *name, const char *field)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        die(EX_DATAERR, "%s: tensor %s: %s must hold non-negative integers", path, name, field);
    return (uint64_t)json_integer_value(v);
}

static void parse_metadata(struct safetensors_map *m, json_t *meta)
{
    if (!json_is_object(meta)) die(EX_DATAERR, "%s: __metadata__ is not an object", m->path);
    const char *key;
    json_t *v;
    json_object_foreach(meta, key, v)
        if (!json_is_string(v))
            die(EX_DATAERR, "%s: __metadata__ value of \"%s\" is not a string", m->path, key);
    m->metadata = json_incref(meta);
}

static enum safetensors_dtype parse_dtype(json_t *v, const char *path, const char *name)
{
    const char *s = json_string_value(v);
    if (!s) die(EX_DATAERR, "%s: tensor %s: dtype missing or not a string", path, name);
    for (int d = 0; d <= SAFETENSORS_F16; d++)
        if (!strcmp(s, dtype_info[d].name)) return (enum safetensors_dtype)d;
    for (int i = 0; dtype_other[i]; i++)
        if (!strcmp(s, dtype_other[i]))
            die(EX_DATAERR, "%s: tensor %s: dtype %s not supported (srlm reads F32, BF16, F16)",
                path, name, s);
    die(EX_DATAERR, "%s: tensor %s: unknown dtype \"%s\"", path, name, s);
}

// Checks one header entry and fills t (name still to be set by the caller).
static void parse_tensor(struct safetensors_tensor *t, json_t *info, const char *path,
                         const char *name, size_t data_len)
{
    if (!json_is_object(info)) die(EX_DATAERR, "%s: tensor %s: entry is not an object", path, name);
    t->dtype = parse_dtype(json_object_get(info, "dtype"), path, name);
    json_t *shape = json_object_get(info, "shape"), *off = json_object_get(info, "data_offsets");
    if (!json_is_array(shape)) die(EX_DATAERR, "%s: tensor %s: shape missing or not an array", path, name);
    if (json_array_size(shape) > SAFETENSORS_MAX_DIMS)
        die(EX_DATAERR, "%s: tensor %s: %zu dimensions (at most %d)", path, name,
            json_array_size(shape), SAFETENSORS_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = json_u64(json_array_get(shape, (size_t)i), path, name, "shape");
        if (d > (uint64_t)INT64_MAX || (d && numel > SIZE_MAX / d))
            die(EX_DATAERR, "%s: tensor %s: shape overflows", path, name);
        t->shape[i] = (int64_t)d;
        numel *= (size_t)d;
    }
    t->numel = numel;
    if (!json_is_array(off) || json_array_size(off) != 2)
        die(EX_DATAERR, "%s: tensor %s: data_offsets missing or not [begin, end]", path, name);
    uint64_t b = json_u64(json_array_get(off, 0), path, name, "data_offsets");
    uint64_t e = json_u64(json_array_get(off, 1), path, name, "data_offsets");
    if (e < b) die(EX_DATAERR, "%s: tensor %s: data_offsets [%llu, %llu] end before begin", path,
                   name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_len)
        die(EX_DATAERR, "%s: tensor %s: data_offsets [%llu, %llu] beyond the file's %zu data bytes",
            path, name, (unsigned long long)b, (unsigned long long)e, data_len);
    size_t esz = dtype_info[t->dtype].size;
    if (numel > SIZE_MAX / esz || numel * esz != e - b) {
        char sh[256];
        format_shape(sh, sizeof sh, t->shape, t->ndim);
        die(EX_DATAERR, "%s: tensor %s: shape %s of %s needs %zu bytes, data_offsets [%llu, %llu] hold %llu",
            path, name, sh, dtype_info[t->dtype].name, numel > SIZE_MAX / esz ? SIZE_MAX : numel * esz,
            (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b));
    }
    t->begin = (size_t)b;
    t->end = (size_t)e;
}

static int cmp_begin(const void *a, const void *b)
{
    const struct safetensors_tensor *x = *(const struct safetensors_tensor *const *)a;
    const struct safetensors_tensor *y = *(const struct safetensors_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// The reference implementation's rule: in offset order, each tensor starts where the previous one
// ended and the last one ends at the end of the file. No gap, no overlap, no trailing bytes.
static void check_coverage(struct safetensors_tensor *t, size_t n, const char *path, size_t data_len)
{
    struct safetensors_tensor **ord = xmalloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++) ord[i] = &t[i];
    qsort(ord, n, sizeof *ord, cmp_begin);
    size_t pos = 0, i = 0;
    while (i < n && ord[i]->begin == pos) pos = ord[i++]->end;
    const struct safetensors_tensor *bad = i < n ? ord[i] : NULL;
    free(ord);   // before die(), so leak checkers see a clean exit
    if (bad && bad->begin < pos)
        die(EX_DATAERR, "%s: tensor %s: data_offsets [%zu, %zu] overlap the previous tensor (ending at %zu)",
            path, bad->name, bad->begin, bad->end, pos);
    if (bad)
        die(EX_DATAERR, "%s: tensor %s: data_offsets [%zu, %zu] leave a gap after byte %zu",
            path, bad->name, bad->begin, bad->end, pos);
    if (pos != data_len)
        die(EX_DATAERR, "%s: tensors cover %zu of the file's %zu data bytes (truncated or trailing bytes)",
            path, pos, data_len);
}

// Maps and checks one file; appends its tensors to st.
static void add_file(struct safetensors *st, const char *path)
{
    st->files = xrealloc(st->files, (st->nfiles + 1) * sizeof *st->files);
    struct safetensors_map *m = &st->files[st->nfiles++];
    map_file(m, path);
    uint64_t hlen;
    memcpy(&hlen, m->base, 8);                        // little-endian host (tool_init checks)
    if (hlen > SAFETENSORS_MAX_HEADER)
        die(EX_DATAERR, "%s: header length %llu exceeds the %u-byte cap", path,
            (unsigned long long)hlen, SAFETENSORS_MAX_HEADER);
    if (hlen > m->size - 8)
        die(EX_DATAERR, "%s: header length %llu beyond the file's %zu bytes", path,
            (unsigned long long)hlen, m->size);
    if (hlen < 2 || m->base[8] != '{') die(EX_DATAERR, "%s: header does not start with '{'", path);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)m->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) die(EX_DATAERR, "%s: header is not valid JSON: %s (column %d)", path, jerr.text, jerr.column);
    if (!json_is_object(root)) die(EX_DATAERR, "%s: header is not a JSON object", path);
    size_t data_len = m->size - 8 - (size_t)hlen, first = st->n;
    const unsigned char *data = m->base + 8 + hlen;
    st->tensors = xrealloc(st->tensors, (st->n + json_object_size(root)) * sizeof *st->tensors);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            parse_metadata(m, v);
            continue;
        }
        struct safetensors_tensor *t = &st->tensors[st->n++];
        memset(t, 0, sizeof *t);
        t->name = xstrdup(key);
        t->path = m->path;
        parse_tensor(t, v, path, key, data_len);
        t->data = data + t->begin;
    }
    json_decref(root);
    check_coverage(st->tensors + first, st->n - first, path, data_len);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct safetensors_tensor *)a)->name, ((const struct safetensors_tensor *)b)->name);
}

// Sorts by name for safetensors_find; a name twice (across shards) is an error.
static void finish_set(struct safetensors *st, const char *what)
{
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_name);
    for (size_t i = 1; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            die(EX_DATAERR, "%s: tensor %s appears twice (%s, %s)", what, st->tensors[i].name,
                st->tensors[i - 1].path, st->tensors[i].path);
}

void safetensors_open(struct safetensors *st, const char *path)
{
    memset(st, 0, sizeof *st);
    add_file(st, path);
    finish_set(st, path);
}

// Sharded: every tensor of the index is in the shard it names, and every shard tensor is indexed.
static void open_index(struct safetensors *st, const char *dir, const char *ipath)
{
    json_t *root = json_read_file(ipath);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) die(EX_DATAERR, "%s: weight_map missing or not an object", ipath);
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        const char *shard = json_string_value(v);
        if (!shard || !*shard || strchr(shard, '/') || !strcmp(shard, "..") || !strcmp(shard, "."))
            die(EX_DATAERR, "%s: tensor %s: shard must be a file name in the same directory", ipath, name);
        char *sp = path_join(dir, shard);
        size_t k = 0;
        while (k < st->nfiles && strcmp(st->files[k].path, sp)) k++;
        if (k == st->nfiles) add_file(st, sp);
        free(sp);
    }
    finish_set(st, ipath);
    for (size_t i = 0; i < st->n; i++) {
        const struct safetensors_tensor *t = &st->tensors[i];
        const char *want = json_string_value(json_object_get(wm, t->name));
        const char *base = strrchr(t->path, '/') + 1;
        if (!want || strcmp(want, base))
            die(EX_DATAERR, "%s: tensor %s is in %s but the index %s%s", ipath, t->name, base,
                want ? "puts it in " : "does not list it", want ? want : "");
    }
    json_object_foreach(wm, name, v)
        if (!safetensors_find(st, name))
            die(EX_DATAERR, "%s: tensor %s: not found in its shard %s", ipath, name, json_string_value(v));
    json_decref(root);
}

void safetensors_open_dir(struct safetensors *st, const char *dir)
{
    memset(st, 0, sizeof *st);
    struct stat sb;
    if (stat(dir, &sb) != 0) die(EX_NOINPUT, "open %s:", dir);
    if (!S_ISDIR(sb.st_mode)) die(EX_NOINPUT, "%s: not a directory", dir);
    // Like transformers: a single model.safetensors wins over an index.
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    if (access(single, F_OK) == 0) {
        add_file(st, single);
        finish_set(st, single);
    } else if (access(index, F_OK) == 0) {
        open_index(st, dir, index);
    } else {
        die(EX_NOINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    free(single);
    free(index);
}

void safetensors_close(struct safetensors *st)
{
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (size_t i = 0; i < st->nfiles; i++) {
        munmap(st->files[i].base, st->files[i].size);
        json_decref(st->files[i].metadata);
        free(st->files[i].path);
    }
    free(st->tensors);
    free(st->files);
    memset(st, 0, sizeof *st);
}

const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name)
{
    struct safetensors_tensor key = {.name = name};
    if (!st->n) return NULL;
    return bsearch(&key, st->tensors, st->n, sizeof *st->tensors, cmp_name);
}

const char *safetensors_metadata(const struct safetensors *st, const char *key)
{
    if (!st->nfiles || !st->files[0].metadata) return NULL;
    return json_string_value(json_object_get(st->files[0].metadata, key));
}

void safetensors_read_f32(const struct safetensors_tensor *t, float *out)
{
    const unsigned char *p = t->data;
    size_t n = t->numel;
    if (t->dtype == SAFETENSORS_F32) {
        memcpy(out, p, n * 4);
        return;
    }
    // Data sits at any byte offset (the header length is arbitrary): load through memcpy.
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = t->dtype == SAFETENSORS_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
}

// ---------------------------------------------------------------------------------------------
// atomic files

void atomic_file_open(struct atomic_file *af, const char *path)
{
    af->path = xstrdup(path);
    size_t n = strlen(path) + 32;
    af->tmp = xmalloc(n);
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wbe");
    if (!af->f) die(EX_CANTCREAT, "create %s:", af->tmp);
}

void atomic_file_abort(struct atomic_file *af)
{
    int e = errno;
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    errno = e;
}

static _Noreturn void af_fail(struct atomic_file *af, const char *what)
{
    int e = errno ? errno : EIO;
    char *path = xstrdup(af->path);
    atomic_file_abort(af);
    errno = e;
    die(EX_IOERR, "%s %s:", what, path);
}

void atomic_file_write(struct atomic_file *af, const void *p, size_t n)
{
    errno = 0;
    if (n && fwrite(p, 1, n, af->f) != n) af_fail(af, "write");
}

static void fsync_dir(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    // Some file systems cannot fsync a directory (EINVAL): the rename is then as durable as it gets.
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) die(EX_IOERR, "fsync %s:", dir);
    close(fd);
    free(dir);
}

void atomic_file_commit(struct atomic_file *af)
{
    errno = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) af_fail(af, "write");
    if (fsync(fileno(af->f)) != 0) af_fail(af, "fsync");
    FILE *f = af->f;
    af->f = NULL;
    if (fclose(f) != 0) af_fail(af, "close");
    if (rename(af->tmp, af->path) != 0) af_fail(af, "rename");
    fsync_dir(af->path);
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
}

void atomic_write_file(const char *path, const void *p, size_t n)
{
    struct atomic_file af;
    atomic_file_open(&af, path);
    atomic_file_write(&af, p, n);
    atomic_file_commit(&af);
}

// ---------------------------------------------------------------------------------------------
// writing

static const struct safetensors_entry *sort_base;
static int cmp_entry(const void *a, const void *b)
{
    return strcmp(sort_base[*(const size_t *)a].name, sort_base[*(const size_t *)b].name);
}

static size_t entry_numel(const struct safetensors_entry *e)
{
    size_t n = 1;
    for (int i = 0; i < e->ndim; i++) n = mul_size(n, (size_t)e->shape[i], e->name);
    return n;
}

// The header as the reference library writes it: compact JSON, "__metadata__" first, then the
// tensors in data order, padded with spaces so that the data region starts 8-byte aligned.
static char *build_header(const struct safetensors_entry *t, const size_t *ord, size_t n,
                          enum safetensors_dtype dtype, const char *const *metadata, size_t *len)
{
    json_t *root = json_object(), *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    for (size_t i = 0; metadata && metadata[i]; i += 2)
        json_object_set_new(meta, metadata[i], json_string(metadata[i + 1]));
    json_object_set_new(root, "__metadata__", meta);
    size_t off = 0;
    for (size_t k = 0; k < n; k++) {
        const struct safetensors_entry *e = &t[ord[k]];
        json_t *info = json_object(), *shape = json_array();
        json_object_set_new(info, "dtype", json_string(dtype_info[dtype].name));
        for (int i = 0; i < e->ndim; i++) json_array_append_new(shape, json_integer(e->shape[i]));
        json_object_set_new(info, "shape", shape);
        size_t bytes = entry_numel(e) * dtype_info[dtype].size;
        json_object_set_new(info, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
        ASSERT(json_object_set_new(root, e->name, info) == 0);
    }
    ASSERT(json_object_size(root) == n + 1);          // duplicate names are a caller bug
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ASSERT(s);
    json_decref(root);
    size_t k = strlen(s), padded = (k + 7) / 8 * 8;
    s = xrealloc(s, padded + 1);
    memset(s + k, ' ', padded - k);
    s[padded] = '\0';
    *len = padded;
    return s;
}

static void write_data(struct atomic_file *af, const float *x, size_t n, enum safetensors_dtype dtype)
{
    if (dtype == SAFETENSORS_F32) {
        atomic_file_write(af, x, n * 4);
        return;
    }
    uint16_t buf[8192];
    for (size_t i = 0; i < n; i += 8192) {
        size_t k = n - i < 8192 ? n - i : 8192;
        for (size_t j = 0; j < k; j++)
            buf[j] = dtype == SAFETENSORS_BF16 ? f32_to_bf16(x[i + j]) : f32_to_f16(x[i + j]);
        atomic_file_write(af, buf, k * 2);
    }
}

void safetensors_write(const char *path, const struct safetensors_entry *t, size_t n,
                       enum safetensors_dtype dtype, const char *const *metadata)
{
    size_t *ord = xmalloc((n ? n : 1) * sizeof *ord);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    sort_base = t;
    qsort(ord, n, sizeof *ord, cmp_entry);
    size_t hlen;
    char *header = build_header(t, ord, n, dtype, metadata, &hlen);
    struct atomic_file af;
    atomic_file_open(&af, path);
    uint64_t h64 = hlen;
    atomic_file_write(&af, &h64, 8);
    atomic_file_write(&af, header, hlen);
    for (size_t k = 0; k < n; k++) write_data(&af, t[ord[k]].data, entry_numel(&t[ord[k]]), dtype);
    atomic_file_commit(&af);
    free(header);
    free(ord);
}

long long safetensors_step(const struct safetensors *st, const char *what)
{
    const char *s = safetensors_metadata(st, "srlm_step");
    if (!s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0) die(EX_DATAERR, "%s: metadata srlm_step \"%s\" is not a step number", what, s);
    return v;
}

void safetensors_check_shape(const struct safetensors_tensor *t, int ndim, const int64_t *shape,
                             const char *what, const char *needs)
{
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return;
    char a[96], b[96];
    format_shape(a, sizeof a, t->shape, t->ndim);
    format_shape(b, sizeof b, shape, ndim);
    die(EX_DATAERR, "%s: tensor %s: shape %s, %s needs %s", what, t->name, a, needs, b);
}
