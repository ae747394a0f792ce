// tfevents.h — TensorBoard event files: the trainers' scalars (loss, learning_rate, reward, ...)
// written so that `tensorboard --logdir DIR` plots them while the run goes on.
//
// The file format (TensorFlow's record I/O, as tensorboard/summary/writer/record_writer.py writes
// it) is a sequence of records, each
//
//     u64 length (little-endian)          u32 masked_crc32c(the 8 length bytes)
//     u8  data[length]                    u32 masked_crc32c(data)
//
// with CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF) and
// masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32). Each record's data is a
// serialized `Event` protobuf (tensorboard/compat/proto/event.proto and summary.proto), encoded
// here by hand:
//
//     Event   { double wall_time = 1; int64 step = 2;
//               oneof what { string file_version = 3; Summary summary = 5; } }
//     Summary { repeated Value value = 1; }
//     Value   { string tag = 1; oneof value { float simple_value = 2; } }
//
// wall_time and step are always written (also when zero, which proto3 readers accept); the first
// record of a file is the Event with file_version "brain.Event:2", as TensorFlow writes it.
//
// Contract:
// - tfevents_open(dir) creates dir (mkdir -p; exit 73 naming the part that cannot be created)
//   and in it a new file events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>, where n counts
//   the files this process opened (0, 1, ...) and is raised further while the name exists (the
//   file is created with O_EXCL: an existing file is never overwritten). Exit 73 if it cannot be
//   created. It writes and flushes the file_version record. Several writers may be open at once.
// - tfevents_scalar(tf, tag, step, wall_time, value) adds one scalar. Scalars are batched into one
//   Event (one Summary with several values) while their step stays the same; a scalar of another
//   step, tfevents_flush or tfevents_close writes the batch out. The Event's wall_time is that of
//   the batch's first scalar. tag is copied (any UTF-8 string, e.g. "rewards/format/mean");
//   NaN and infinities are written as they are (TensorBoard shows them). Negative steps are
//   written as int64 (10-byte varints), as protobuf does.
// - tfevents_flush(tf) writes the pending batch and fflush()es the file, so a reader (TensorBoard)
//   sees every step up to now: call it once per training step, after that step's scalars.
// - tfevents_close(tf) flushes, closes and frees; NULL is a no-op.
// - Write, flush and close errors exit 74 with "<tool>: write <path>: <strerror>".
// - tfevents_map(tf, prefix, map, skip, step, wall_time) adds every number of a msgpack map (a
//   metrics record) as a scalar: tag = prefix + key, nested maps flattened with '/' (prefix
//   "train/", {"rewards": {"format": {"mean": 0.5}}} -> "train/rewards/format/mean"); integers,
//   floats and booleans (1/0) become float32; strings, nil, arrays, binaries and extensions are
//   skipped, and so are the top-level keys listed in skip (NULL-terminated, may be NULL), e.g.
//   "kind" and "step". Keys that are not strings are skipped. The map is BORROWED.
// - tfevents_path(tf) is the file's path (owned by tf).
// - wall_time is seconds since the Unix epoch; tfevents_wall_time() gives the current one
//   (CLOCK_REALTIME with nanoseconds).
//
// The encoding primitives are exported for the unit test (tests/unit/test-tfevents.c); the reader
// used as the oracle (tests/oracle/tfevents-read.mjs) is @roboflow/tfrecords' CRC and protobufjs.
#ifndef SRLM_TFEVENTS_H
#define SRLM_TFEVENTS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

struct tfevents;

struct tfevents *tfevents_open(const char *dir);
void tfevents_scalar(struct tfevents *tf, const char *tag, long long step, double wall_time, float value);
void tfevents_map(struct tfevents *tf, const char *prefix, const msgpack_object *map,
                  const char *const *skip, long long step, double wall_time);
void tfevents_flush(struct tfevents *tf);
void tfevents_close(struct tfevents *tf);
const char *tfevents_path(const struct tfevents *tf);
double tfevents_wall_time(void);

// CRC-32C of n bytes (crc32c("123456789") = 0xe3069283), and its masked form.
uint32_t crc32c(const void *data, size_t n);
uint32_t crc32c_masked(const void *data, size_t n);
// The base-128 varint of v (protobuf's encoding of uint64 and of int64 as two's complement) into
// out; returns its length, 1 to 10 bytes.
size_t pb_varint(uint8_t out[10], uint64_t v);

#endif
