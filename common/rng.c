// rng.c — see rng.h.
#include "rng.h"

#include <math.h>
#include <xxhash.h>

uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t t[3] = {a, b, c};   // little-endian host (checked by tool_init)
    return XXH3_64bits_withSeed(t, sizeof t, seed);
}

double rng_uniform(uint64_t key)
{
    return (double)(key >> 11) * 0x1.0p-53;
}

double rng_normal(uint64_t key)
{
    // Two independent uniforms from one key: the key itself and a re-hash of it.
    double u1 = rng_uniform(key), u2 = rng_uniform(XXH3_64bits_withSeed(&key, sizeof key, 0x9e3779b97f4a7c15ULL));
    if (u1 < 0x1.0p-60) u1 = 0x1.0p-60;       // log(0) guard
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t rng_hash_str(const char *s, size_t n)
{
    return XXH3_64bits(s, n);
}
