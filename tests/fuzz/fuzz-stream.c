// fuzz-stream.c — the record stream reader (common/rec.c) and the msgpack -> JSON -> msgpack
// mapping (common/json.c) on arbitrary bytes.
//
// Input: byte 0 picks the mode, the rest is the stream.
//   bit 0: framed (rec_read_header + rec_reader_next_data, as every tool) or raw (rec_reader_next)
//   bit 1: a small record cap (256 bytes) instead of the default
//   bit 2: call the typed getters on the usual fields (tokens, mask, teacher_logprobs, ...)
// For every record that JSON can represent, to-json's output must pack again (from-json) and
// the packed bytes must be a fixed point: msgpack -> JSON -> msgpack -> JSON -> msgpack gives
// the same bytes twice.
// Expected outcomes: return, or exit 64..74 (trapped). Anything else is a crash.
#include <jansson.h>

#include "common.h"
#include "json.h"
#include "rec.h"
#include "trap.h"
#include "util.h"

struct ctx { FILE *fp; int mode; };

static size_t pack_json(const json_t *v, char **buf)
{
    size_t len = 0;
    FILE *f = open_memstream(buf, &len);
    if (!f) abort();
    struct rec_writer w;
    rec_writer_open(&w, f);
    rec_record_begin(&w, (uint32_t)json_object_size(v));
    json_pack_members(&w, v);
    rec_record_end(&w);
    if (fclose(f) != 0) abort();
    return len;
}

static void roundtrip(const msgpack_object *o)
{
    char err[256];
    json_t *j1 = json_from_msgpack_ex(o, JSON_MP_DECODE_TENSORS, err, sizeof err);
    if (!j1) return;                       // not representable: to-json reports it (65)
    if (!json_is_object(j1)) FUZZ_FAIL("a record became a JSON %d, not an object", json_typeof(j1));
    if (!json_pack_check_members(j1, err, sizeof err)) {
        json_decref(j1);
        return;                            // see docs/reliability.md: reserved JSON forms
    }
    char *b1 = NULL, *b2 = NULL;
    size_t n1 = pack_json(j1, &b1);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, b1, n1, &off) != MSGPACK_UNPACK_SUCCESS || off != n1)
        FUZZ_FAIL("from-json packed bytes that do not unpack");
    json_t *j2 = json_from_msgpack_ex(&u.data, JSON_MP_DECODE_TENSORS, err, sizeof err);
    if (!j2) FUZZ_FAIL("to-json cannot print what from-json packed: %s", err);
    if (!json_pack_check_members(j2, err, sizeof err)) FUZZ_FAIL("second pack refused: %s", err);
    size_t n2 = pack_json(j2, &b2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0) {
        char *s1 = json_dumps(j1, JSON_COMPACT), *s2 = json_dumps(j2, JSON_COMPACT);
        FUZZ_FAIL("msgpack -> JSON -> msgpack is not a fixed point: %.300s -> %.300s", s1, s2);
    }
    msgpack_unpacked_destroy(&u);
    json_decref(j1);
    json_decref(j2);
    free(b1);
    free(b2);
}

static void getters(const struct rec_reader *r, const msgpack_object *o)
{
    if (rec_get(o, "kind")) free(rec_get_str(r, o, "kind"));
    if (rec_get(o, "id")) free(rec_get_str(r, o, "id"));
    if (rec_get(o, "prompt_len")) (void)rec_get_int(r, o, "prompt_len", 0, 1 << 20);
    if (rec_get(o, "reward")) (void)rec_get_num(r, o, "reward");
    int32_t *v = NULL;
    if (rec_get(o, "tokens")) { size_t n = rec_get_i32_array(r, o, "tokens", 0, 151935, &v); (void)n; free(v); v = NULL; }
    if (rec_get(o, "mask")) { rec_get_i32_array(r, o, "mask", 0, 1, &v); free(v); v = NULL; }
    if (rec_get(o, "teacher_ids")) { rec_get_i32_array(r, o, "teacher_ids", 0, 151935, &v); free(v); v = NULL; }
    float *f = NULL;
    int64_t shape[4];
    int ndim;
    if (rec_get(o, "teacher_logprobs")) { rec_get_f32_tensor(r, o, "teacher_logprobs", true, &f, shape, &ndim); free(f); f = NULL; }
    if (rec_get(o, "logprobs")) { rec_get_f32_tensor(r, o, "logprobs", false, &f, NULL, NULL); free(f); }
}

static void run(void *arg)
{
    struct ctx *c = arg;
    struct rec_reader r;
    rec_reader_open(&r, c->fp, "<fuzz>", (c->mode & 2) ? 256 : REC_DEFAULT_MAX_BYTES);
    msgpack_object o;
    if (c->mode & 1) {
        while (rec_reader_next(&r, &o)) {
            if (c->mode & 4) getters(&r, &o);
            roundtrip(&o);
        }
    } else {
        const msgpack_object *h = rec_read_header(&r, NULL, "fuzz");
        roundtrip(h);
        while (rec_reader_next_data(&r, &o)) {
            if (c->mode & 4) getters(&r, &o);
            roundtrip(&o);
        }
    }
    rec_reader_close(&r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-stream");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct ctx c = {fuzz_memfile(data + 1, size - 1), data[0]};
    int st = trap_run(run, &c);
    fclose(c.fp);
    trap_check(st, "stream");
    return 0;
}
