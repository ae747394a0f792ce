// fuzz-jsonl.c — the JSON-lines reader and the JSON -> msgpack packer (common/json.c), as
// from-json and tokenize use them, on arbitrary bytes.
//
// Input: byte 0 picks a small line cap (bit 0: 64 bytes) and whether objects are packed as
// records (bit 1) or as plain values; the rest is the JSON lines text. Everything packed must
// unpack as exactly one msgpack value, and to-json's view of it must pack back to the same bytes.
// Expected outcomes: return, or exit 64..74 (trapped). Anything else is a crash.
#include <jansson.h>

#include "common.h"
#include "json.h"
#include "rec.h"
#include "trap.h"
#include "util.h"

struct ctx { FILE *fp; int mode; };

static size_t pack(const json_t *v, int as_record, char **buf)
{
    size_t len = 0;
    FILE *f = open_memstream(buf, &len);
    if (!f) abort();
    struct rec_writer w;
    rec_writer_open(&w, f);
    if (as_record) {
        rec_record_begin(&w, (uint32_t)json_object_size(v));
        json_pack_members(&w, v);
        rec_record_end(&w);
    } else {
        json_pack_value(&w, v);
    }
    if (fclose(f) != 0) abort();
    return len;
}

static void run(void *arg)
{
    struct ctx *c = arg;
    struct jsonl_reader r;
    jsonl_open(&r, c->fp, "<fuzz>", (c->mode & 1) ? 64 : 0);
    json_t *v;
    char err[256];
    while ((v = jsonl_next(&r))) {
        int rec = (c->mode & 2) != 0;
        bool ok = rec ? json_pack_check_members(v, err, sizeof err) : json_pack_check(v, err, sizeof err);
        if (!ok) { json_decref(v); continue; }
        char *b1 = NULL, *b2 = NULL;
        size_t n1 = pack(v, rec, &b1);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, b1, n1, &off) != MSGPACK_UNPACK_SUCCESS || off != n1)
            FUZZ_FAIL("packed JSON is not one msgpack value");
        json_t *j = json_from_msgpack_ex(&u.data, JSON_MP_DECODE_TENSORS, err, sizeof err);
        if (j) {
            bool ok2 = rec ? json_pack_check_members(j, err, sizeof err) : json_pack_check(j, err, sizeof err);
            if (!ok2) FUZZ_FAIL("to-json printed what from-json refuses: %s", err);
            size_t n2 = pack(j, rec, &b2);
            if (n1 != n2 || memcmp(b1, b2, n1) != 0) {
                char *s1 = json_dumps(v, JSON_COMPACT), *s2 = json_dumps(j, JSON_COMPACT);
                FUZZ_FAIL("JSON -> msgpack -> JSON -> msgpack changed the bytes: line %zu %.300s -> %.300s",
                          r.line, s1, s2);
            }
            json_decref(j);
        }
        msgpack_unpacked_destroy(&u);
        free(b1);
        free(b2);
        json_decref(v);
    }
    jsonl_close(&r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-jsonl");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct ctx c = {fuzz_memfile(data + 1, size - 1), data[0]};
    int st = trap_run(run, &c);
    fclose(c.fp);
    trap_check(st, "jsonl");
    return 0;
}
