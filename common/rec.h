// rec.h — the srlm record stream: reading and writing framed msgpack streams (docs/stream.md).
//
// A stream is a sequence of msgpack maps, each with a "kind" string:
//   1. a header   {kind:"header", schema:"srlm.<name>", schema_version:N, producer:{name,version},
//                  ...provenance (tokenizer_xxh3, model_xxh3, seed, options), upstream:<header>}
//   2. data records (kind named by the schema, e.g. "example", "sample", "metrics")
//   3. an end record {kind:"end", records:<number of data records>}
// A stream that stops without its end record was cut off and is rejected (exit 65).
//
// Reading. rec_reader_open() wraps a FILE* whose descriptor it reads with read(2) (stdio would
// hold back a pipe's bytes until its buffer fills, stalling a pipeline): the FILE must have a
// descriptor (not fmemopen) and nothing may have been read from it through stdio before.
// rec_reader_next() returns the next record as a
// msgpack_object that is BORROWED: valid until the next call to rec_reader_next() or
// rec_reader_close(). The reader frames records with its own scanner before msgpack-c sees them,
// so a corrupt length or count can never make msgpack-c allocate more than a small multiple of
// the record's real size: a record larger than max_bytes (default 64 MiB, --max-record-bytes), a
// container nested deeper than REC_MAX_DEPTH, a reserved byte (0xc1), a mid-record end of input,
// or a top-level value that is not a map each end the process with exit 65 naming the stream,
// the record number and the problem. Read errors are exit 74.
//
// rec_read_header() reads and checks the header (kind, schema among those accepted, version);
// rec_reader_next_data() then returns data records only, returns 0 after a valid end record
// (checking its count and that nothing follows it), and exits 65 if the input ends without one.
//
// Writing. rec_writer wraps stdout (or any FILE*) with a msgpack_packer; every pack call is
// checked, and a failure is exit 74 ("write <stdout>: ..."), or the quiet SIGPIPE death when the
// reader has gone. rec_write_begin/rec_write_end frame the stream; data records are written with
// the rec_pack_* helpers between rec_record_begin()/rec_record_end().
//
// Fields. rec_get() finds a key in a map; the rec_get_* getters check the type and exit 65 with
// "<stream>: record N: field \"x\": expected ..., got ..." on a mismatch. Large numeric arrays
// travel as tensor maps {dtype:"f32"|"i32"|"u8", shape:[...], data:<bin little-endian>}.
#ifndef SRLM_REC_H
#define SRLM_REC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define REC_SCHEMA_VERSION 1
#define REC_DEFAULT_MAX_BYTES ((size_t)64 << 20)
// msgpack-c 4.0 keeps a fixed parse stack of 32 open containers (MSGPACK_EMBED_STACK_SIZE);
// deeper input is refused by our scanner first, with a clear message.
#define REC_MAX_DEPTH 30

// ---------------------------------------------------------------------------------------------
// reader

// How every reader gets its bytes: read(2), or under MPI (dist.h) rank 0's read broadcast to
// every rank.
extern ssize_t (*rec_read_hook)(int fd, void *buf, size_t n);

struct rec_reader {
    FILE *fp;
    const char *name;          // "<stdin>" or a path, used in messages
    size_t max_bytes;          // record size cap
    char *buf;                 // bytes read but not yet returned as records
    size_t len, cap, off;      // buf[off..len) is unconsumed input
    size_t scan_pos;           // scanner progress inside the current record (relative to off)
    int depth;                 // scanner stack: items still expected at each level
    uint64_t stack[REC_MAX_DEPTH + 1];
    bool eof;
    msgpack_unpacked unp;      // holds the current record (zone freed at the next call)
    size_t nrec;               // records returned so far (header and end included)
    size_t ndata;              // data records returned so far
    bool ended;                // the end record was seen
    char *header_bytes;        // a private copy of the header record's bytes...
    msgpack_unpacked header_unp;   // ...and its object, valid until rec_reader_close
};

void rec_reader_open(struct rec_reader *r, FILE *fp, const char *name, size_t max_bytes);
void rec_reader_close(struct rec_reader *r);
// Next record of any kind. Returns 1 and sets *out (borrowed), or 0 at a clean end of input.
int rec_reader_next(struct rec_reader *r, msgpack_object *out);
// Reads the header; schemas is a NULL-terminated list of accepted schema names (NULL: any).
// hint names the upstream tool(s) for the error message ("run it after tokenize").
// The header stays valid until rec_reader_close (it is copied out of the borrowed buffer).
const msgpack_object *rec_read_header(struct rec_reader *r, const char *const *schemas, const char *hint);
// Next data record; 0 after a well-formed end record. Exits 65 on a missing end record, a wrong
// count, a second header, or records after the end.
int rec_reader_next_data(struct rec_reader *r, msgpack_object *out);
// Exits 65 with "<stream>: record N: <message>" for a schema error in the record last returned
// (the header is record 1).
_Noreturn void rec_fail(const struct rec_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---------------------------------------------------------------------------------------------
// field access (all take the reader for error context)

const msgpack_object *rec_get(const msgpack_object *map, const char *key);   // NULL if absent
// A header field, from the header itself or else the nearest header down its "upstream" chain
// (stages that do not re-state, e.g., tokenizer_xxh3 still carry it in their provenance).
const msgpack_object *rec_header_find(const msgpack_object *header, const char *key);
// Checks that the stream was tokenized with the tokenizer whose xxh3 hex is `mine` (at `path`):
// exit 65 naming both hashes when the header chain's tokenizer_xxh3 differs; a warning when the
// chain has none. `whose` names the other side in messages ("the model's", "the teacher's").
void rec_check_tokenizer(const struct rec_reader *r, const msgpack_object *header, const char *mine,
                         const char *path, const char *whose);
bool rec_key_is(const msgpack_object *key, const char *s);
const char *rec_type_name(msgpack_object_type t);
// Required fields: exit 65 naming the field when missing or of the wrong type.
const msgpack_object *rec_need(const struct rec_reader *r, const msgpack_object *map, const char *key);
// String: copies into a freshly allocated NUL-terminated buffer (caller frees); rejects NUL bytes.
char *rec_get_str(const struct rec_reader *r, const msgpack_object *map, const char *key);
int64_t rec_get_int(const struct rec_reader *r, const msgpack_object *map, const char *key, int64_t min, int64_t max);
double rec_get_num(const struct rec_reader *r, const msgpack_object *map, const char *key);
// Integer array (msgpack array of ints, or an i32 tensor): values checked to lie in [min, max].
// Returns the element count; *out is allocated (caller frees).
size_t rec_get_i32_array(const struct rec_reader *r, const msgpack_object *map, const char *key,
                         int64_t min, int64_t max, int32_t **out);
// f32 tensor: checks dtype "f32", that shape multiplies out to the payload size, and (when
// finite_only) that every value is finite. Copies into an aligned buffer; returns element count.
// shape/ndim receive the shape (ndim <= 4) when non-NULL.
size_t rec_get_f32_tensor(const struct rec_reader *r, const msgpack_object *map, const char *key,
                          bool finite_only, float **out, int64_t *shape, int *ndim);

// ---------------------------------------------------------------------------------------------
// writer

struct rec_writer {
    FILE *fp;
    msgpack_packer pk;
    size_t ndata;              // data records written
    int in_record;
};

// Exits 64 ("not writing msgpack to a terminal; pipe into to-json") when fp is a terminal.
void rec_writer_open(struct rec_writer *w, FILE *fp);
// 0 under MPI (dist.h): mpirun hands rank 0's stdout a pseudo-terminal of its own (binary-safe)
// whatever the job's stdout is, so the check would refuse every pipeline.
extern int rec_refuse_tty;
// Writes the header map. fields: a function that packs `nextra` extra key/value pairs after the
// standard ones (schema, schema_version, producer, upstream); may be NULL with nextra = 0.
// upstream: the input stream's header, nested as "upstream" (NULL for a source tool).
typedef void (*rec_pack_fn)(struct rec_writer *w, void *ctx);
void rec_write_header(struct rec_writer *w, const char *schema, const msgpack_object *upstream,
                      int nextra, rec_pack_fn fields, void *ctx);
// Counts a data record; the caller packs the map itself with rec_pack_*.
void rec_record_begin(struct rec_writer *w, uint32_t nfields);
void rec_record_end(struct rec_writer *w);   // counts it; rec_flush() makes a batch visible downstream
void rec_write_end(struct rec_writer *w);    // end record + flush
void rec_flush(struct rec_writer *w);

// Checked packing helpers (exit 74 on a write error).
void rec_pack_map(struct rec_writer *w, uint32_t n);
void rec_pack_array(struct rec_writer *w, uint32_t n);
void rec_pack_str(struct rec_writer *w, const char *s);
void rec_pack_strn(struct rec_writer *w, const char *s, size_t n);
void rec_pack_key(struct rec_writer *w, const char *key);   // same as rec_pack_str
void rec_pack_int(struct rec_writer *w, int64_t v);
void rec_pack_uint(struct rec_writer *w, uint64_t v);
void rec_pack_double(struct rec_writer *w, double v);
void rec_pack_float(struct rec_writer *w, float v);
void rec_pack_bool(struct rec_writer *w, bool v);
void rec_pack_nil(struct rec_writer *w);
void rec_pack_bin(struct rec_writer *w, const void *p, size_t n);
void rec_pack_object(struct rec_writer *w, const msgpack_object *o);
void rec_pack_ext(struct rec_writer *w, int8_t type, const void *p, size_t n);
void rec_pack_i32_array(struct rec_writer *w, const int32_t *v, size_t n);
// Tensor map {dtype, shape, data}: dtype "f32" or "i32", ndim <= 4.
void rec_pack_f32_tensor(struct rec_writer *w, const float *v, const int64_t *shape, int ndim);
void rec_pack_i32_tensor(struct rec_writer *w, const int32_t *v, const int64_t *shape, int ndim);
// Packs every key/value of map except the keys listed in skip (NULL-terminated; may be NULL);
// returns how many pairs it packed. Use rec_count_passthrough() first to size the map header.
uint32_t rec_count_passthrough(const msgpack_object *map, const char *const *skip);
void rec_pack_passthrough(struct rec_writer *w, const msgpack_object *map, const char *const *skip);

#endif
