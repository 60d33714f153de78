// kernels/rng.h — counter-based random numbers shared by host code and both backends, so the
// CPU and CUDA backends draw the same dropout masks for the same (seed, index).
#pragma once
#include <stdint.h>

#ifdef __CUDACC__
#define RNG_FN static inline __host__ __device__
#else
#define RNG_FN static inline
#endif

// splitmix64 finaliser: a bijective mix with good avalanche; cheap enough per element.
RNG_FN uint64_t rng_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 bits, from (seed, index).
RNG_FN float rng_uniform(uint64_t seed, uint64_t index) {
    return (float)(rng_mix64(seed ^ rng_mix64(index)) >> 40) * (1.0f / 16777216.0f);
}

// Dropout keeps element index with probability 1 - p.
RNG_FN int rng_keep(uint64_t seed, uint64_t index, float p) {
    return rng_uniform(seed, index) >= p;
}

// A sequential generator for host code (initialisation, shuffles, sampling): state advances by
// one counter step per draw, so it can be saved in a checkpoint as one integer pair.
typedef struct { uint64_t seed, counter; } rng_state;

RNG_FN uint64_t rng_next_u64(rng_state *s) { return rng_mix64(s->seed ^ rng_mix64(s->counter++)); }
RNG_FN float rng_next_uniform(rng_state *s) { return (float)(rng_next_u64(s) >> 40) * (1.0f / 16777216.0f); }
