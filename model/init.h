// model/init.h — random initial weights for a config, as transformers' _init_weights gives them:
// normal(0, initializer_range) for linear and embedding weights (the pad_token_id row of the
// embedding zeroed), ones for RMSNorm weights, zeros for biases. Deterministic in the seed and
// independent of thread count and tensor order: element i of a tensor comes from (seed, tensor
// name, i) through kernels/rng.h and Box–Muller.
#pragma once
#include "config.h"
#include "names.h"
#include "safetensors.h"
#include <stddef.h>
#include <stdint.h>

// Values [start, start + count) of tensor t (row-major), as float32. pad_row: the embedding row
// zeroed (pad_token_id), or -1.
void model_init_fill(const model_tensor_info *t, uint64_t seed, float std, int pad_row, size_t start, size_t count,
                     float *dst);

// Writes the weights into the existing directory dir: model.safetensors when they fit in one
// shard of shard_bytes, else model-0000i-of-0000n.safetensors + model.safetensors.index.json as
// transformers names them. dtype: ST_F32, ST_BF16 or ST_F16. 0 ok; -1 with a message.
int model_init_write(const model_config *cfg, const char *dir, uint64_t seed, st_dtype dtype, int pad_token_id,
                     size_t shard_bytes, char *err, size_t errlen);

// Writes a cJSON value to path with two-space indentation, as Python's json.dumps(indent=2)
// lays it out (config.json, index.json); fsynced. 0 ok; -1 with a message.
struct cJSON;
int model_write_json(const char *path, const struct cJSON *v, char *err, size_t errlen);
// DIR/model.safetensors.index.json as transformers writes it: {"metadata": {"total_size"},
// "weight_map": {sorted names → "model-0000i-of-0000n.safetensors"}}; shard_of[i] is 0-based.
int model_write_index(const char *dir, const model_tensor_info *list, const int *shard_of, int n, int nshards,
                      size_t total, char *err, size_t errlen);

// config.json text with the top-level "torch_dtype" (and transformers 5's "dtype", when present)
// set to dtype ("bfloat16", "float16", "float32"), every other byte kept as it was (added before
// the closing brace when absent). The text must be a valid JSON object (model_config_parse
// accepted it). A malloc'd string, or NULL when out of memory or the text is not an object.
char *model_config_text_set_dtype(const char *json, const char *dtype);
