// tests/model/fixture.h — reading a model fixture (tests/fixtures/NAME/: reference.json and
// reference.safetensors, written by scripts/reference/*.py from transformers + PEFT), shared by
// tests/model/test_model_fidelity.c, tests/model/test_qlora.c and dev/cuda/emu/moe_routes.c: the
// token batches, the reference tensors, PEFT's initial adapters.  Failures are returned (and
// described on stderr), never CHECKed here: the calling test counts them.
#pragma once
#include "model/llama.h"
#include "model/safetensors.h"
#include <cjson/cJSON.h>
#include <stdint.h>

// One batch of B·T token rows, as reference.json's "batches" hold them.
typedef struct {
    int B, T;
    int32_t *ids, *targets, *pos, *doc;   // (B·T) each: ids, targets (−1: not trained), position in
                                          // its document, the document's first position; one
                                          // allocation, owned by ids
} fixture_batch;

// The whole file, NUL-terminated (caller frees); NULL when unreadable.
char *fixture_read_text(const char *path);

// arr must be a JSON array of exactly n numbers: 0, else -1.
int fixture_read_ints(const cJSON *arr, int32_t *out, int n);
int fixture_read_doubles(const cJSON *arr, double *out, int n);

// root's "B", "T" and batches[b] into fb (allocated; fixture_batch_free): 0, else -1.
int fixture_read_batch(const cJSON *root, int b, fixture_batch *fb);
void fixture_batch_free(fixture_batch *fb);

// The batch as the model takes it (dropout seed 7, as the fixtures were made), and its trained
// (target ≠ −1) token count.
model_batch fixture_model_batch(const fixture_batch *fb);
int64_t fixture_trained_tokens(const fixture_batch *fb);

// Reference tensor `name` as f32 (caller frees), checked to hold n elements; NULL otherwise.
float *fixture_ref_tensor(const st_set *ref, const char *name, size_t n);

// Reference prefix/<name> of trained tensor p in quarry's layout (caller frees), NULL when missing:
// as it is, or expert p's part of PEFT's fused tensor (gpt-oss's experts: model/lora_peft.h).
float *fixture_ref_trained(model *m, const st_set *ref, const char *prefix, const model_param *p);

// Starts m's trained tensors from the reference's lora_init/<name> (PEFT's A drawn by torch's
// generator; B too in the LoRA-only fixtures).  Returns how many were written (a missing one is
// named on stderr); *refs = how many quarry tensors the reference's lora_init/ tensors hold (one
// per expert in a fused one).
int fixture_write_lora_init(model *m, const st_set *ref, int *refs);
