// test-tfevents.c — common/tfevents.c: CRC-32C against the published check value and the
// RFC 3720 (iSCSI) vectors, protobuf varints against hand-encoded bytes, and a written file's
// records byte for byte against an Event encoded by hand from event.proto/summary.proto, and
// tfevents_map against the tfevents_scalar calls it stands for.
//
// With --write DIR it is the driver of tests/cli/tfevents.sh: it reads lines
// "step wall_time tag value" from stdin, writes them with tfevents_scalar (flushing when the step
// changes, as a trainer does after each step), closes, and prints the file's path. The script
// reads the file back with an independent reader (tests/oracle/tfevents-read.mjs).
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tfevents.h"
#include "util.h"

static void test_crc32c(void)
{
    CHECK(crc32c("123456789", 9) == 0xe3069283u);   // the CRC catalogue's check value
    CHECK(crc32c("", 0) == 0);
    uint8_t b[32];
    memset(b, 0, sizeof b);
    CHECK(crc32c(b, 32) == 0x8a9136aau);             // RFC 3720 B.4: 32 bytes of zeros
    memset(b, 0xff, sizeof b);
    CHECK(crc32c(b, 32) == 0x62a8ab43u);             // 32 bytes of 0xff
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    CHECK(crc32c(b, 32) == 0x46dd794eu);             // 0x00 .. 0x1f
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    CHECK(crc32c(b, 32) == 0x113fdb5cu);             // 0x1f .. 0x00
    // mask: rotate right by 15, add 0xa282ead8 (mod 2^32)
    CHECK(crc32c_masked("", 0) == 0xa282ead8u);
    CHECK(crc32c_masked("123456789", 9) == 0xc78ab0e5u);       // (0x0001c60d | 0x25060000) + delta
}

static int varint_is(uint64_t v, const char *hex)
{
    uint8_t out[10];
    size_t n = pb_varint(out, v);
    char got[32] = "";
    for (size_t i = 0; i < n; i++) snprintf(got + 2 * i, 3, "%02x", out[i]);
    if (strcmp(got, hex) == 0) return 1;
    fprintf(stderr, "varint %llu: got %s, want %s\n", (unsigned long long)v, got, hex);
    return 0;
}

static void test_varint(void)
{
    CHECK(varint_is(0, "00"));
    CHECK(varint_is(1, "01"));
    CHECK(varint_is(127, "7f"));
    CHECK(varint_is(128, "8001"));
    CHECK(varint_is(150, "9601"));                    // protobuf encoding guide's example
    CHECK(varint_is(300, "ac02"));
    CHECK(varint_is(16383, "ff7f"));
    CHECK(varint_is(16384, "808001"));
    CHECK(varint_is(UINT64_C(1) << 63, "80808080808080808001"));
    CHECK(varint_is((uint64_t)-1LL, "ffffffffffffffffff01"));   // int64 -1: ten bytes
}

static char top[200];

static unsigned char *slurp(const char *path, size_t *n)
{
    char *p = read_file(path, n);
    return (unsigned char *)p;
}

static uint64_t le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

// Checks the record at *pos (framing and both CRCs) and returns its data, advancing *pos.
static const unsigned char *record(const unsigned char *f, size_t size, size_t *pos, size_t *len)
{
    *len = 0;
    if (*pos + 12 > size) return NULL;
    uint64_t n = le(f + *pos, 8);
    CHECK(le(f + *pos + 8, 4) == crc32c_masked(f + *pos, 8));
    if (*pos + 16 + n > size) return NULL;
    const unsigned char *d = f + *pos + 12;
    CHECK(le(d + n, 4) == crc32c_masked(d, n));
    *pos += 16 + n;
    *len = n;
    return d;
}

static void test_file(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/a/b", top);        // created on the way (mkdir -p)
    struct tfevents *tf = tfevents_open(dir);
    const char *path = tfevents_path(tf);
    char want[400];
    snprintf(want, sizeof want, "%s/events.out.tfevents.", dir);
    CHECK(strncmp(path, want, strlen(want)) == 0);
    char pid[32];
    snprintf(pid, sizeof pid, ".%ld.", (long)getpid());
    CHECK(strstr(path + strlen(want), pid) != NULL);
    tfevents_scalar(tf, "a", 5, 1.0, 1.5f);
    tfevents_scalar(tf, "b", 5, 2.0, -2.0f);             // same step: same Event, first wall_time
    tfevents_flush(tf);
    tfevents_scalar(tf, "loss", -1, 0.0, 0.0f);
    char *saved = xstrdup(path);
    tfevents_close(tf);

    size_t size, pos = 0, n;
    unsigned char *f = slurp(saved, &size);
    const unsigned char *d = record(f, size, &pos, &n);
    // Event { wall_time (09, 8 bytes), step 0 (10 00), file_version (1a 0d "brain.Event:2") }
    CHECK(d && n == 9 + 2 + 2 + 13);
    if (d && n == 26) {
        CHECK(d[0] == 0x09 && d[9] == 0x10 && d[10] == 0x00 && d[11] == 0x1a && d[12] == 13);
        CHECK(memcmp(d + 13, "brain.Event:2", 13) == 0);
        double wt;
        memcpy(&wt, d + 1, 8);
        CHECK(wt > 1.5e9 && wt < 1e10);
    }
    static const unsigned char ev5[] = {
        0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,              // wall_time 1.0
        0x10, 0x05,                                      // step 5
        0x2a, 20,                                        // summary, 20 bytes
        0x0a, 8, 0x0a, 1, 'a', 0x15, 0, 0, 0xc0, 0x3f,   //   value { tag "a", simple_value 1.5 }
        0x0a, 8, 0x0a, 1, 'b', 0x15, 0, 0, 0, 0xc0,      //   value { tag "b", simple_value -2 }
    };
    d = record(f, size, &pos, &n);
    CHECK(d && n == sizeof ev5 && memcmp(d, ev5, n) == 0);
    static const unsigned char evm1[] = {
        0x09, 0, 0, 0, 0, 0, 0, 0, 0,                    // wall_time 0.0
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,   // step -1
        0x2a, 13,                                        // summary, 13 bytes
        0x0a, 11, 0x0a, 4, 'l', 'o', 's', 's', 0x15, 0, 0, 0, 0,   //   value { tag "loss", 0 }
    };
    d = record(f, size, &pos, &n);
    CHECK(d && n == sizeof evm1 && memcmp(d, evm1, n) == 0);
    CHECK(pos == size);
    free(f);

    // A second writer in the same directory gets a file of its own.
    tf = tfevents_open(dir);
    CHECK(strcmp(tfevents_path(tf), saved) != 0);
    tfevents_close(tf);
    free(saved);
}

// The bytes of f after its first (file_version) record, which holds the time of opening.
static unsigned char *after_first(const char *path, size_t *n)
{
    size_t size, pos = 0, len;
    unsigned char *f = slurp(path, &size);
    record(f, size, &pos, &len);
    *n = size - pos;
    memmove(f, f + pos, *n);
    return f;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

// tfevents_map writes the same records as the tfevents_scalar calls it stands for.
static void test_map(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 13);
    pack_str(&pk, "kind"); pack_str(&pk, "metrics");
    pack_str(&pk, "step"); msgpack_pack_int(&pk, 7);
    pack_str(&pk, "loss"); msgpack_pack_double(&pk, 2.5);
    pack_str(&pk, "learning_rate"); msgpack_pack_double(&pk, 1e-4);
    pack_str(&pk, "tokens"); msgpack_pack_uint64(&pk, 123);
    pack_str(&pk, "neg"); msgpack_pack_int(&pk, -3);
    pack_str(&pk, "ok"); msgpack_pack_true(&pk);
    pack_str(&pk, "f32"); msgpack_pack_float(&pk, 0.75f);
    pack_str(&pk, "name"); pack_str(&pk, "x");
    pack_str(&pk, "arr"); msgpack_pack_array(&pk, 1); msgpack_pack_int(&pk, 1);
    pack_str(&pk, "nil"); msgpack_pack_nil(&pk);
    pack_str(&pk, "rewards"); msgpack_pack_map(&pk, 2);
        pack_str(&pk, "format"); msgpack_pack_map(&pk, 2);
            pack_str(&pk, "mean"); msgpack_pack_double(&pk, 0.5);
            pack_str(&pk, "std"); msgpack_pack_double(&pk, 0.25);
        pack_str(&pk, "correct"); msgpack_pack_map(&pk, 1);
            pack_str(&pk, "mean"); msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 5); msgpack_pack_double(&pk, 1.0);      // a key that is not a string
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/map", top);
    struct tfevents *a = tfevents_open(dir), *b = tfevents_open(dir);
    char *pa = xstrdup(tfevents_path(a)), *pb = xstrdup(tfevents_path(b));
    static const char *const skip[] = {"kind", "step", NULL};
    tfevents_map(a, "train/", &u.data, skip, 7, 100.0);
    tfevents_flush(a);
    tfevents_map(a, "", &u.data, NULL, 8, 101.0);        // no prefix, nothing skipped
    static const struct { const char *tag; float v; } want[] = {
        {"train/loss", 2.5f}, {"train/learning_rate", 1e-4f}, {"train/tokens", 123}, {"train/neg", -3},
        {"train/ok", 1}, {"train/f32", 0.75f}, {"train/rewards/format/mean", 0.5f},
        {"train/rewards/format/std", 0.25f}, {"train/rewards/correct/mean", 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) tfevents_scalar(b, want[i].tag, 7, 100.0, want[i].v);
    tfevents_flush(b);
    tfevents_scalar(b, "step", 8, 101.0, 7);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) tfevents_scalar(b, want[i].tag + 6, 8, 101.0, want[i].v);
    tfevents_close(a);
    tfevents_close(b);
    size_t na, nb;
    unsigned char *fa = after_first(pa, &na), *fb = after_first(pb, &nb);
    CHECK(na > 0 && na == nb && memcmp(fa, fb, na) == 0);
    free(fa);
    free(fb);
    free(pa);
    free(pb);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

// --write DIR: the driver for tests/cli/tfevents.sh.
static int write_mode(const char *dir)
{
    struct tfevents *tf = tfevents_open(dir);
    char line[4096], tag[4000];
    long long step, last = 0;
    double wall, value;
    int any = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "%lld %lf %3999s %lf", &step, &wall, tag, &value) != 4)
            die(EX_DATAERR, "bad line: %s", line);
        if (any && step != last) tfevents_flush(tf);
        tfevents_scalar(tf, tag, step, wall, (float)value);
        last = step;
        any = 1;
    }
    printf("%s\n", tfevents_path(tf));
    tfevents_close(tf);
    return 0;
}

int main(int argc, char **argv)
{
    tool_init("test-tfevents");
    if (argc == 3 && strcmp(argv[1], "--write") == 0) return write_mode(argv[2]);
    snprintf(top, sizeof top, "%s/srlm-test-tfevents.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(top)) { perror("mkdtemp"); return 1; }
    test_crc32c();
    test_varint();
    test_file();
    test_map();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    if (system(cmd) != 0) fprintf(stderr, "test-tfevents: could not remove %s\n", top);
    return test_finish("test-tfevents");
}
