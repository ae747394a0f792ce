// batch.h — the token batches the model tests read (test-lm.c, test-lora.c): a JSON file
// {"seqs": [[ids...], ...], "mask": [[0|1...], ...]} as written by tests/oracle/ref_model.py,
// packed into one sequence-concatenated array with cumulative offsets.
#ifndef SRLM_TEST_BATCH_H
#define SRLM_TEST_BATCH_H

#include <jansson.h>
#include <stdlib.h>

#include "util.h"

struct batch { int N, nseq, *tokens, *mask, *cu; };

static void batch_free(struct batch *b) { free(b->tokens), free(b->mask), free(b->cu); }

static void batch_load(struct batch *b, const char *path, int V)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) die(EX_DATAERR, "%s: %s", path, err.text);
    json_t *seqs = json_object_get(j, "seqs"), *mask = json_object_get(j, "mask");
    b->nseq = (int)json_array_size(seqs);
    b->cu = xmalloc((size_t)(b->nseq + 1) * sizeof(int));
    b->N = 0;
    b->cu[0] = 0;
    for (int s = 0; s < b->nseq; s++) b->cu[s + 1] = b->N += (int)json_array_size(json_array_get(seqs, s));
    b->tokens = xmalloc((size_t)b->N * sizeof(int));
    b->mask = xcalloc((size_t)b->N, sizeof(int));
    for (int s = 0; s < b->nseq; s++)
        for (int t = b->cu[s]; t < b->cu[s + 1]; t++) {
            b->tokens[t] = (int)json_integer_value(json_array_get(json_array_get(seqs, s), t - b->cu[s]));
            if (mask) b->mask[t] = (int)json_integer_value(json_array_get(json_array_get(mask, s), t - b->cu[s]));
            ASSERT(b->tokens[t] >= 0 && b->tokens[t] < V);
        }
    json_decref(j);
}

static int batch_tmax(const struct batch *b)
{
    int T = 1;
    for (int s = 0; s < b->nseq; s++) T = b->cu[s + 1] - b->cu[s] > T ? b->cu[s + 1] - b->cu[s] : T;
    return T;
}

#endif
