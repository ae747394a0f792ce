// tfevents.c — see tfevents.h for the contract and the format.
#include "tfevents.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

// ---------------------------------------------------------------------------------------------
// CRC-32C

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t crc32c(const void *data, size_t n)
{
    pthread_once(&crc_once, crc_table_init);
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

uint32_t crc32c_masked(const void *data, size_t n)
{
    uint32_t crc = crc32c(data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// ---------------------------------------------------------------------------------------------
// protobuf encoding into a growing buffer

struct buf {
    uint8_t *p;
    size_t n, cap;
};

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

size_t pb_varint(uint8_t out[10], uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = b->n + n > 2 * b->cap ? b->n + n : 2 * b->cap;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_varint(struct buf *b, uint64_t v)
{
    uint8_t tmp[10];
    buf_put(b, tmp, pb_varint(tmp, v));
}

static void put_key(struct buf *b, unsigned field, unsigned wire)
{
    put_varint(b, (uint64_t)field << 3 | wire);
}

static void put_le(struct buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, tmp, (size_t)bytes);
}

static void put_len(struct buf *b, unsigned field, const void *p, size_t n)
{
    put_key(b, field, WIRE_LEN);
    put_varint(b, n);
    buf_put(b, p, n);
}

static void put_double(struct buf *b, unsigned field, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_I64);
    put_le(b, bits, 8);
}

static void put_float(struct buf *b, unsigned field, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, WIRE_I32);
    put_le(b, bits, 4);
}

// ---------------------------------------------------------------------------------------------
// the writer

struct tfevents {
    FILE *fp;
    char *path;
    struct buf event, summary, value;   // scratch for the encodings; summary = the pending batch
    long long step;                     // of the pending batch (summary.n > 0)
    double wall_time;
};

static void write_or_die(struct tfevents *tf, const void *p, size_t n)
{
    if (fwrite(p, 1, n, tf->fp) != n) die(EX_IOERR, "write %s:", tf->path);
}

// One record: length, its masked CRC, the data, its masked CRC.
static void write_record(struct tfevents *tf, const uint8_t *data, size_t n)
{
    uint8_t head[12];
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t lcrc = crc32c_masked(head, 8), dcrc = crc32c_masked(data, n);
    for (int i = 0; i < 4; i++) head[8 + i] = (uint8_t)(lcrc >> (8 * i));
    write_or_die(tf, head, 12);
    write_or_die(tf, data, n);
    uint8_t tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (uint8_t)(dcrc >> (8 * i));
    write_or_die(tf, tail, 4);
}

// Event { wall_time = 1, step = 2, then field `what` holding p[0..n) }.
static void write_event(struct tfevents *tf, double wall_time, long long step, unsigned what,
                        const void *p, size_t n)
{
    tf->event.n = 0;
    put_double(&tf->event, 1, wall_time);
    put_key(&tf->event, 2, WIRE_VARINT);
    put_varint(&tf->event, (uint64_t)step);
    put_len(&tf->event, what, p, n);
    write_record(tf, tf->event.p, tf->event.n);
}

static void write_pending(struct tfevents *tf)
{
    if (tf->summary.n == 0) return;
    write_event(tf, tf->wall_time, tf->step, 5, tf->summary.p, tf->summary.n);
    tf->summary.n = 0;
}

double tfevents_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Creates dir/events.out.tfevents.<secs>.<host>.<pid>.<n> with O_EXCL; n is a process-wide
// count of the files opened, raised past names that exist.
static FILE *create_file(const char *dir, char **path)
{
    static int counter;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *s = host; *s; s++)
        if (*s == '/') *s = '_';
    long long secs = (long long)time(NULL);
    for (;;) {
        char name[400];
        snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%ld.%d", secs, host, (long)getpid(),
                 counter++);
        *path = path_join(dir, name);
        int fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            FILE *fp = fdopen(fd, "wb");
            if (!fp) die(EX_CANTCREAT, "create %s:", *path);
            return fp;
        }
        if (errno != EEXIST) die(EX_CANTCREAT, "create %s:", *path);
        free(*path);
    }
}

struct tfevents *tfevents_open(const char *dir)
{
    make_dirs(dir);
    struct tfevents *tf = xcalloc(1, sizeof *tf);
    tf->fp = create_file(dir, &tf->path);
    static const char version[] = "brain.Event:2";
    write_event(tf, tfevents_wall_time(), 0, 3, version, strlen(version));
    tfevents_flush(tf);
    return tf;
}

void tfevents_scalar(struct tfevents *tf, const char *tag, long long step, double wall_time, float value)
{
    if (tf->summary.n > 0 && step != tf->step) write_pending(tf);
    if (tf->summary.n == 0) {
        tf->step = step;
        tf->wall_time = wall_time;
    }
    tf->value.n = 0;
    put_len(&tf->value, 1, tag, strlen(tag));
    put_float(&tf->value, 2, value);
    put_len(&tf->summary, 1, tf->value.p, tf->value.n);
}

static bool skipped(const msgpack_object_str *key, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (strlen(*skip) == key->size && memcmp(*skip, key->ptr, key->size) == 0) return true;
    return false;
}

// The map's numbers under the tag path->p[0..path->n) (a NUL-terminated prefix).
static void map_scalars(struct tfevents *tf, struct buf *path, const msgpack_object *map,
                        const char *const *skip, long long step, double wall_time)
{
    size_t base = path->n;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || skipped(&k->via.str, skip)) continue;
        path->n = base;
        buf_put(path, k->via.str.ptr, k->via.str.size);
        buf_put(path, "", 1);
        path->n--;
        switch (v->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER: tfevents_scalar(tf, (char *)path->p, step, wall_time, (float)v->via.u64); break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: tfevents_scalar(tf, (char *)path->p, step, wall_time, (float)v->via.i64); break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: tfevents_scalar(tf, (char *)path->p, step, wall_time, (float)v->via.f64); break;
        case MSGPACK_OBJECT_BOOLEAN: tfevents_scalar(tf, (char *)path->p, step, wall_time, v->via.boolean ? 1.0f : 0.0f); break;
        case MSGPACK_OBJECT_MAP:
            buf_put(path, "/", 1);
            map_scalars(tf, path, v, NULL, step, wall_time);
            break;
        default: break;
        }
    }
    path->n = base;
}

void tfevents_map(struct tfevents *tf, const char *prefix, const msgpack_object *map,
                  const char *const *skip, long long step, double wall_time)
{
    if (map->type != MSGPACK_OBJECT_MAP) return;
    struct buf path = {0};
    buf_put(&path, prefix, strlen(prefix));
    map_scalars(tf, &path, map, skip, step, wall_time);
    free(path.p);
}

void tfevents_flush(struct tfevents *tf)
{
    write_pending(tf);
    if (fflush(tf->fp) != 0) die(EX_IOERR, "write %s:", tf->path);
}

void tfevents_close(struct tfevents *tf)
{
    if (!tf) return;
    tfevents_flush(tf);
    if (fclose(tf->fp) != 0) die(EX_IOERR, "write %s:", tf->path);
    free(tf->path);
    free(tf->event.p);
    free(tf->summary.p);
    free(tf->value.p);
    free(tf);
}

const char *tfevents_path(const struct tfevents *tf)
{
    return tf->path;
}
