// runstate.h — the JSON files of a checkpoint directory, and the run state saved beside a
// checkpoint so that training resumes exactly (model.h and lora.h name the buffers).
//
// json_write_file() writes dir/name atomically (atomic_write_file) the way transformers writes its
// JSON (json.dumps(indent=2, sort_keys=True)): config.json, adapter_config.json,
// trainer_state.json.
//
// A run state is two files in one directory:
//   optimizer.safetensors  the named f32 buffers (AdamW moments, ...), tensor by tensor, with
//                          metadata "srlm_step"
//   trainer_state.json     the caller's JSON object plus "step"
// run_state_save() writes the tensors first, then the JSON, each atomically; run_state_load() reads
// them back into the entries' buffers and refuses (exit 65, naming the file) a step that differs
// between the two files (a run stopped between the two writes) or from expect_step (>= 0: the step
// of the checkpoint it belongs to), a missing tensor, a tensor of another shape and an unexpected
// tensor. `owner` ("model", "adapter") names whose layout the entries follow in messages. Missing
// files are exit 66. Moments are always f32: resuming must be exact.
#ifndef SRLM_RUNSTATE_H
#define SRLM_RUNSTATE_H

#include <jansson.h>

#include "safetensors.h"

void json_write_file(const char *dir, const char *name, const json_t *o);

void run_state_save(const char *dir, const struct safetensors_entry *e, size_t n, long long step,
                    const json_t *state);
// Returns trainer_state.json's object (new reference).
json_t *run_state_load(const char *dir, const struct safetensors_entry *e, size_t n,
                       long long expect_step, const char *owner);

#endif
