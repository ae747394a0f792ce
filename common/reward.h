// reward.h — verifiable rewards for `score`: answer extraction, numeric equivalence, a format
// check and the overlong penalty. Pure functions on NUL-terminated UTF-8 strings; no I/O.
//
// Answer extraction (reward_extract), in this order:
//   1. text after the last "####" up to the end of its line (GSM8K's convention);
//   2. else the content of the last \boxed{...} (nested braces matched);
//   3. else the last number in the text.
// From the extracted span, reward_parse_number() reads a number: an optional sign, digits with
// optional thousands commas, an optional decimal part, an optional "/denominator", or a LaTeX
// \frac{a}{b} / \dfrac{a}{b}; currency signs, "%", spaces and a trailing period are ignored; the
// first number in the span counts. Two answers are equivalent when both parse and differ by at
// most 1e-9 relative (18, 18.0, $18.00 and 36/2 agree; 2880001 and 2880000 do not), else when
// their trimmed, lower-cased texts are equal.
#ifndef SRLM_REWARD_H
#define SRLM_REWARD_H

#include <stdbool.h>
#include <stddef.h>

// Copies the extracted answer into out (cap bytes, truncated, NUL-terminated). Returns false
// when nothing could be extracted (out is then "").
bool reward_extract(const char *text, char *out, size_t cap);
// Gold answers are extracted the same way (a GSM8K solution ends "#### 72"; a bare "72" works).
bool reward_parse_number(const char *s, double *out);
bool reward_equivalent(const char *pred, const char *gold);
// 1 when the text is "<think>...</think>" followed by a non-empty answer, else 0.
double reward_format(const char *text);
// DAPO's soft overlong penalty (Yu et al. 2025, eq. 13): 0 up to max_len - buffer tokens, then
// linear down to -1 at max_len, and -1 beyond. 0 when max_len is 0 (disabled).
double reward_overlong(long len, long max_len, long buffer);

#endif
