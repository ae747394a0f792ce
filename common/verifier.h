// verifier.h — runs an external reward program (`score --exec CMD`).
//
// Protocol: for each batch of samples srlm starts `/bin/sh -c CMD` once, writes one JSON object
// per sample on its stdin ({"id", "sample", "text", "gold"}), closes stdin, and reads one line per
// sample from its stdout: either a number (the reward) or a JSON object with a numeric "reward"
// and optionally other numeric fields (kept as reward components). Because stdin is closed before
// answers are required, the program's output buffering does not matter. stderr passes through.
//
// Failures are never scored silently: a program that cannot start, exits non-zero, dies of a
// signal, answers too few or too many lines, answers something that is not a finite number, or
// runs longer than timeout_s seconds per sample (then it is killed with its process group) makes
// verifier_run() return false with a one-line reason in err.
#ifndef SRLM_VERIFIER_H
#define SRLM_VERIFIER_H

#include <stdbool.h>
#include <stddef.h>

#define VERIFIER_MAX_EXTRA 8

struct verifier_result {
    double reward;
    int nextra;                                  // extra numeric fields the program returned
    char extra_name[VERIFIER_MAX_EXTRA][32];
    double extra_value[VERIFIER_MAX_EXTRA];
};

// input: the n JSON lines to send, concatenated, each ending in '\n'.
bool verifier_run(const char *cmd, const char *input, size_t input_len, size_t n,
                  double timeout_s, struct verifier_result *out, char *err, size_t errcap);

#endif
