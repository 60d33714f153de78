// tests/model/bitwise.h — what the tests that train the same step two ways and want the same bits
// share (test_model_fusion, test_model_recompute, test_offload): synthetic micro-batches, a model
// opened for full or LoRA training, its gradients read back, the first element whose bits differ.
// Failures are returned (and described by the caller), never CHECKed here: the test counts them.
#pragma once
#include "model/llama.h"
#include <stddef.h>
#include <stdint.h>

// `count` micro-batches of B·T tokens drawn from [0, vocab) with rng seed `seed`, into ids, targets,
// pos, doc: (count, B·T) each.  Every row holds two documents, the second from position `split`;
// the last token of each document and every token i (its index in the micro-batch) with
// i % every == phase have target −1 (not trained).
void bitwise_batches(int count, int B, int T, int vocab, uint64_t seed, int split, int every, int phase,
                     int32_t *ids, int32_t *targets, int32_t *pos, int32_t *doc);

// How many of targets (n) are trained (≠ −1).
int64_t bitwise_trained(const int32_t *targets, size_t n);

// dir's model on be, with LoRA r4 α8 on every linear (the given dropout) when lora (its B's
// random: lora_random_b.h), planned by opt into *plan and allocated.  NULL with err on failure.
model *bitwise_open(const char *dir, backend *be, int lora, float dropout, const model_options *opt,
                    model_memory *plan, char *err, size_t errlen);

// The elements of all trained tensors; their gradients, back to back in trained order, into out.
size_t bitwise_grad_numel(model *m);
void bitwise_read_grads(model *m, backend *be, float *out);

// The first element where a and b (n) differ in their bits, or −1.
long bitwise_first_diff(const float *a, const float *b, size_t n);

// Σ x² in double: a gradient that is zero or not finite makes a bitwise comparison say nothing.
double bitwise_sumsq(const float *x, size_t n);
