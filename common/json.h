// json.h — JSON lines in and out of srlm streams: a strict JSON-lines reader, and the mapping
// between JSON values and msgpack (docs/stream-tools.md is the user-facing description).
//
// Reading JSON lines. jsonl_open() wraps a FILE* (not owned: the caller closes it);
// jsonl_next() returns a NEW reference to the next line's JSON object (the caller json_decref()s
// it), or NULL at end of input. Blank lines are skipped, "\r\n" line ends and a last line without
// a newline are accepted, a UTF-8 byte-order mark before line 1 is ignored. Anything else that
// is not one JSON object per line exits 65 with "<name>: line N: ..." — invalid JSON (with the
// parser's reason and column), invalid UTF-8, a NUL byte, a value that is not an object, a line
// longer than max_line bytes (checked while reading: a huge line is never buffered whole).
// Read errors exit 74. r->line is the number of the line last returned (1-based).
//
// The JSON <-> msgpack mapping (both directions, so `to-json | from-json` is the identity):
//   null, true/false, strings           <-> nil, bool, str (UTF-8; JSON cannot carry other bytes)
//   integers                            <-> int (msgpack's smallest encoding)
//   reals (a '.' or an exponent)        <-> float64. A float32 is printed with the fewest digits
//                                           that read back to the same float32, so it stays exact;
//                                           it comes back as float64 unless inside a tensor.
//   arrays, objects (key order kept)    <-> array, map with str keys (other key types: error)
//   {"dtype":"f32"|"i32"|"u8","shape":[...],"data":[numbers]}
//                                       <-> tensor map {dtype, shape, data:<bin, little-endian>}
//   {"bin_base64":"..."}                <-> bin that is not a tensor's data
//   {"ext_type":N,"ext_base64":"..."}   <-> ext (timestamps included)
//   {"uint64":"<decimal>"}              <-> an unsigned int above 2^63-1 (jansson's limit)
//   "NaN", "Infinity", "-Infinity"      <-  non-finite floats (JSON has no such numbers). Inside a
//                                           f32 tensor they are read back as those floats; a
//                                           non-finite scalar comes back as that string.
// A JSON object shaped like one of the special forms but malformed (a tensor whose data count
// does not match its shape, an unknown dtype with a data array, bad base64, ...) is an error,
// never silently packed as a plain map. A tensor object whose data is not an array (for example
// {"bin_base64":...}, as to-json prints a tensor it could not decode) is packed as a plain map.
//
// Ownership: json_from_msgpack*() return a new reference (caller decrefs); the msgpack object is
// only read. json_pack*() only read v. Error texts go into the caller's buffer.
#ifndef SRLM_JSON_H
#define SRLM_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "rec.h"

#define JSONL_DEFAULT_MAX_LINE ((size_t)64 << 20)

// ---------------------------------------------------------------------------------------------
// JSON lines reader

struct jsonl_reader {
    FILE *fp;                  // borrowed
    const char *name;          // "<stdin>" or a path, used in messages
    size_t line;               // number of the line last read (1-based)
    char *buf;                 // the current line (not NUL-terminated)
    size_t len, cap;
    size_t max_line;           // longest accepted line, in bytes, without its line end
};

// max_line 0 means JSONL_DEFAULT_MAX_LINE.
void jsonl_open(struct jsonl_reader *r, FILE *fp, const char *name, size_t max_line);
json_t *jsonl_next(struct jsonl_reader *r);
void jsonl_close(struct jsonl_reader *r);
// Exits 65 with "<name>: line N: <message>", N being the line last read.
_Noreturn void jsonl_fail(const struct jsonl_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ---------------------------------------------------------------------------------------------
// JSON -> msgpack

// Checks that v can be packed (the special forms above are well formed, sizes fit msgpack).
// Returns false with a message naming the field path (".logits.data[3]: ...") in err.
bool json_pack_check(const json_t *v, char *err, size_t errlen);
// Packs v (any JSON value); exits 65 with the json_pack_check message if it cannot be packed.
// Nothing is written for an invalid value: the check runs before the first byte is packed.
// (Named json_pack_value, not json_pack: jansson already exports json_pack(const char *fmt, ...).)
void json_pack_value(struct rec_writer *w, const json_t *v);
// A record is always a map, even one whose keys look like a special form: these two check and
// pack an object's members only (the caller packs the map header, e.g. with rec_record_begin(w,
// json_object_size(obj))).
bool json_pack_check_members(const json_t *obj, char *err, size_t errlen);
void json_pack_members(struct rec_writer *w, const json_t *obj);

// ---------------------------------------------------------------------------------------------
// msgpack -> JSON

enum { JSON_MP_DECODE_TENSORS = 1 };
// Converts o; returns NULL and a message naming the field path in err when JSON cannot represent
// it (invalid UTF-8 in a str, a non-str map key, a duplicate key). flags: JSON_MP_DECODE_TENSORS
// turns well-formed tensor maps into {dtype, shape, data:[numbers]} (else data is bin_base64).
json_t *json_from_msgpack_ex(const msgpack_object *o, int flags, char *err, size_t errlen);
// Same, exiting 65 with the message on failure.
json_t *json_from_msgpack(const msgpack_object *o, int decode_tensors);

// ---------------------------------------------------------------------------------------------
// output

// Writes v as compact JSON (no spaces, as `jq -c` does) followed by '\n'. Reals are written with
// the fewest digits that read back to the same double (and so to the same float32 for values that
// came from one); an integral real keeps a ".0" so it stays a real. Non-ASCII UTF-8 is written as
// is. Returns 0, or -1 if the stream reported an error.
int json_write_line(FILE *fp, const json_t *v);

// Base64 (RFC 4648, standard alphabet, padded). Encode returns a malloc'ed NUL-terminated string;
// decode returns false on any invalid input, else a malloc'ed buffer (*out, *n; caller frees).
char *json_base64_encode(const void *p, size_t n);
bool json_base64_decode(const char *s, size_t len, unsigned char **out, size_t *n);

// Hugging Face JSON files (config.json, tokenizer.json, tokenizer_config.json, ...) may hold any
// valid JSON number, also where jansson cannot: transformers writes "model_max_length":
// 1000000000000000019884624838656 (int(1e30)) for a model without a length limit, beyond
// jansson's int64. json_load_text() is json_loadb() (same flags and errors) except that such a
// number is read instead of refused: an integer outside int64 becomes a real (its nearest
// double), a real beyond a double's range becomes +-DBL_MAX. So a field nobody uses never stops
// a load, and a field that is used meets its own check: an integer field reads a real and is
// refused as "not an integer" / out of range, never a wrapped or truncated value. Files that
// jansson reads are parsed once, unchanged; only a failed parse is retried with the rewrite.
json_t *json_load_text(const char *text, size_t len, size_t flags, json_error_t *err);

// The whole file at path as one JSON value (new reference), through json_load_text: config.json,
// trainer_state.json, adapter_config.json, a sharded checkpoint's index. Duplicate keys are
// refused. A missing file is exit 66; invalid JSON is exit 65 "<path>: not valid JSON: <reason>
// (line N)".
json_t *json_read_file(const char *path);

// ---------------------------------------------------------------------------------------------
// gzip input (tokenize, from-json)

// Looks at the first bytes of fp (nothing may have been read from it yet). Input that starts
// with the gzip magic 1f 8b (whatever its name) is decompressed: the result is a new read-only
// FILE that yields the inflated bytes (concatenated gzip members as `gzip -d` reads them); bad
// or truncated gzip data exits 65 "<name>: gzip: <reason>". Other input returns fp itself, its
// first byte pushed back. Input starting with 1f but not 8b is no JSON and no gzip: exit 65.
// Close the result with jsonl_gunzip_close(in, fp), then fp as usual (fp is not owned).
FILE *jsonl_gunzip(FILE *fp, const char *name);
void jsonl_gunzip_close(FILE *in, FILE *fp);

#endif
