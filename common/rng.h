// rng.h — counter-based randomness. Every random number srlm draws is a pure function of a key,
// never of how many numbers were drawn before, so rerunning, resuming or splitting a stream
// across processes gives the same samples (design.md, Reproducibility).
//
//   rng_key(seed, a, b, c)   the 64-bit key of one draw, e.g. (seed, xxh3(example id), sample
//                            index, token position) for a sampled token, or (seed, tensor index,
//                            element index, 0) for a weight at initialisation.
//   rng_uniform(key)         a double in [0, 1) with 53 random bits.
//   rng_normal(key)          a standard normal (Box-Muller on two keyed uniforms).
//   rng_hash_str(s, n)       xxh3-64 of a string, to turn ids into key parts.
//
// The mix is XXH3-64 over the little-endian tuple with the seed as XXH3's seed: fast, well
// distributed, and available in every language that can call xxHash.
#ifndef SRLM_RNG_H
#define SRLM_RNG_H

#include <stddef.h>
#include <stdint.h>

uint64_t rng_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
double rng_uniform(uint64_t key);
double rng_normal(uint64_t key);
uint64_t rng_hash_str(const char *s, size_t n);

#endif
