// fuzz-reward.c — the reward parsers (common/reward.c) on arbitrary NUL-terminated strings.
//
// Input: up to the first NUL byte the prediction, after it the gold answer (both made
// NUL-terminated copies, so ASan sees any read past the end). Byte 0 of the prediction also
// sizes reward_extract's output buffer (1..64 bytes) in one call. Properties: the extracted
// answer is NUL-terminated within its buffer, the format reward is 0 or 1, and equivalence is
// reflexive for any text that yields an answer, and symmetric.
#include "common.h"
#include "reward.h"
#include "trap.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    trap_init("fuzz-reward");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t na = nul ? (size_t)(nul - data) : size;
    size_t nb = nul ? size - na - 1 : 0;
    char *a = malloc(na + 1), *b = malloc(nb + 1);
    memcpy(a, data, na); a[na] = 0;
    if (nb) memcpy(b, nul + 1, nb);
    b[nb] = 0;

    size_t cap = size ? 1 + data[0] % 64 : 1;
    char *small = malloc(cap);
    (void)reward_extract(a, small, cap);
    if (!memchr(small, 0, cap)) FUZZ_FAIL("reward_extract output not NUL-terminated within %zu bytes", cap);
    char out[256];
    bool has = reward_extract(a, out, sizeof out);
    double x;
    (void)reward_parse_number(a, &x);
    (void)reward_parse_number(out, &x);
    double f = reward_format(a);
    if (f != 0 && f != 1) FUZZ_FAIL("reward_format gave %g", f);
    bool ab = reward_equivalent(a, b), ba = reward_equivalent(b, a);
    if (ab != ba) FUZZ_FAIL("reward_equivalent is not symmetric");
    if (has && !reward_equivalent(a, a)) FUZZ_FAIL("reward_equivalent(x, x) is false for an extractable x");
    (void)reward_overlong((long)na, (long)nb, (long)(size % 7));
    free(a); free(b); free(small);
    return 0;
}
