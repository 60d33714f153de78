// model/sample.h — the next token from a row of logits, as transformers' sampling does it:
// logits processors in its order (temperature → top-k → top-p), then a draw from the softmax
// of what is left, seeded (kernels/rng.h) so that the same seed gives the same tokens.
//
//   temperature ≤ 0: greedy (the first maximum, as torch.argmax); no draw is made.
//   temperature T > 0: scores = logits / T.
//   top_k K > 0: tokens scoring below the K-th highest score are removed (ties at it kept).
//   top_p P < 1: sorted by ascending probability, tokens whose cumulative probability is ≤ 1 − P
//                are removed; the most probable token always stays.
//   draw: u = 53 random bits / 2^53 from the stream (seed, counter); the first token, in id
//         order, whose cumulative probability over the kept tokens exceeds u.
#pragma once
#include <stdint.h>
#include "../kernels/rng.h"

typedef struct {
    double temperature;   // ≤ 0: greedy
    int top_k;            // ≤ 0: off
    double top_p;         // ≥ 1: off
    uint64_t seed;
} sample_params;

typedef struct sampler sampler;

// NULL when out of memory. vocab ≥ 1.
sampler *sampler_new(const sample_params *p, int vocab);
void sampler_free(sampler *s);
// The next token id (0 ≤ id < vocab) for logits f32 (vocab). Non-finite logits count as −inf;
// when every logit is −inf or NaN the result is greedy over the raw values (token 0 at worst).
int sampler_next(sampler *s, const float *logits);
// Checks ranges: top_p in (0, 1], top_k ≥ 0, temperature finite and ≥ 0. 0 ok; -1 + message.
int sample_params_check(const sample_params *p, char *err, unsigned long errlen);
