// safetensors.h — reading and writing Hugging Face safetensors files, sharded checkpoints, exact
// f32 <-> bf16/f16 conversion, and the atomic-file helper every checkpoint writer uses.
//
// Format (https://huggingface.co/docs/safetensors): 8 bytes little-endian u64 N, then N bytes of
// JSON {"__metadata__":{str:str}, "<name>":{"dtype":"F32","shape":[..],"data_offsets":[b,e]}, ..}
// padded with spaces, then the data region: every tensor's raw little-endian bytes at
// [b, e) relative to the start of the region.
//
// Reading. safetensors_open() mmaps a file read-only and checks everything against the file before
// any byte of data is touched: N fits the file and is at most SAFETENSORS_MAX_HEADER; the header is
// one JSON object with no duplicate keys; every dtype is known (F32, BF16, F16; the other dtypes of
// the format are refused by name); shape x dtype size == e - b without overflow; the tensors, in
// offset order, cover the data region exactly (no gap, no overlap, nothing past the end), as the
// reference implementation requires. A bad file is exit 65 naming the file and the tensor; a
// missing or unreadable file is exit 66. Nothing here aborts on input.
// safetensors_open_dir() reads a Hugging Face model directory: model.safetensors, or
// model.safetensors.index.json {"weight_map": {tensor: shard file}} and its shards, checking that
// the index and the shards agree tensor for tensor.
// Tensors found are BORROWED from the set: their names and data pointers stay valid until
// safetensors_close(). safetensors_read_f32() converts one tensor into a caller's f32 buffer.
//
// Writing. safetensors_write() writes f32 data as F32, BF16 or F16 (round to nearest even, as
// torch's .to()) in the layout of the reference library: metadata first, tensors sorted by name,
// header padded with spaces to a multiple of 8 bytes. It goes through atomic_file: the bytes go to
// "<path>.tmp.<pid>" in the same directory, then fflush, fsync, fclose, rename over <path>, fsync of
// the directory. A process killed at any moment leaves either the old file or the new one. Failing
// to create the temp file is exit 73; a failed write, flush, fsync or rename (ENOSPC, EIO) is exit
// 74 naming the path and the reason, after the temp file has been removed; the old file is intact.
//
// The converters are plain numeric primitives (llm.c style names), exact and tested against
// PyTorch: bf16 -> f32 is bits << 16; f16 -> f32 handles subnormals, infinities and NaN; f32 -> bf16
// and f32 -> f16 round to nearest, ties to even, overflow to infinity, and keep NaN a (quiet) NaN
// with its sign.
#ifndef SRLM_SAFETENSORS_H
#define SRLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SAFETENSORS_MAX_HEADER (100u << 20)   // the reference library's cap
#define SAFETENSORS_MAX_DIMS 8

enum safetensors_dtype { SAFETENSORS_F32, SAFETENSORS_BF16, SAFETENSORS_F16 };

struct safetensors_tensor {
    const char *name;                    // borrowed from the set
    enum safetensors_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t numel;
    size_t begin, end;                   // byte offsets within the file's data region
    const unsigned char *data;           // begin of the bytes, inside the read-only mapping
    const char *path;                    // file it lives in, for messages
};

struct safetensors_map {                 // one mapped file
    char *path;
    unsigned char *base;
    size_t size;
    void *metadata;                      // json_t* object of str -> str, or NULL
};

struct safetensors {
    size_t nfiles;
    struct safetensors_map *files;
    size_t n;
    struct safetensors_tensor *tensors;  // all tensors of all files, sorted by name (names owned)
};

void safetensors_open(struct safetensors *st, const char *path);
void safetensors_open_dir(struct safetensors *st, const char *dir);
void safetensors_close(struct safetensors *st);
// Returns the tensor or NULL. Binary search over the sorted names.
const struct safetensors_tensor *safetensors_find(const struct safetensors *st, const char *name);
// A "__metadata__" value of the first file, or NULL.
const char *safetensors_metadata(const struct safetensors *st, const char *key);
// Converts t into out[0 .. t->numel).
void safetensors_read_f32(const struct safetensors_tensor *t, float *out);
// The checkpoint step srlm writes as metadata "srlm_step": -1 if absent; exit 65 naming what if
// it is not a non-negative integer.
long long safetensors_step(const struct safetensors *st, const char *what);
// Exit 65 "<what>: tensor <name>: shape [..], <needs> needs [..]" unless t has exactly this shape.
void safetensors_check_shape(const struct safetensors_tensor *t, int ndim, const int64_t *shape,
                             const char *what, const char *needs);

const char *safetensors_dtype_name(enum safetensors_dtype dtype);   // "F32", "BF16", "F16"
size_t safetensors_dtype_size(enum safetensors_dtype dtype);
// Parses "f32"/"bf16"/"f16" (any case, also the torch names "float32"/"bfloat16"/"float16");
// returns 0 on success, -1 if unknown.
int safetensors_dtype_parse(const char *s, enum safetensors_dtype *out);

struct safetensors_entry {               // one tensor to write
    const char *name;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;                   // numel = product of shape
};
// metadata: NULL-terminated list of key, value strings; NULL for none.
void safetensors_write(const char *path, const struct safetensors_entry *t, size_t n,
                       enum safetensors_dtype dtype, const char *const *metadata);

// ---------------------------------------------------------------------------------------------
// exact conversions

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// ---------------------------------------------------------------------------------------------
// atomic files (every checkpoint file: safetensors, config.json, trainer_state.json)

struct atomic_file {
    FILE *f;
    char *path;                          // final name
    char *tmp;                           // "<path>.tmp.<pid>"
};
// Creates the temp file; exit 73 if it cannot.
void atomic_file_open(struct atomic_file *af, const char *path);
// Writes n bytes; on error removes the temp file and exits 74.
void atomic_file_write(struct atomic_file *af, const void *p, size_t n);
// fflush, fsync, fclose, rename, fsync(dir); on error removes the temp file and exits 74.
void atomic_file_commit(struct atomic_file *af);
// Removes the temp file (error paths of callers).
void atomic_file_abort(struct atomic_file *af);
// Whole-buffer convenience: open, write, commit.
void atomic_write_file(const char *path, const void *p, size_t n);

#endif
