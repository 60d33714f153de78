// export/hf_export.h — writes a Hugging Face package into an existing (empty) directory.
//
// Merged: the base checkpoint's tensors, optionally replaced by fully fine-tuned weights or with
// a LoRA adapter folded in (export/merge.h), streamed one tensor at a time (mmap in, one f32
// tensor + its converted copy in memory, written straight to the shard) into
//   model.safetensors                                   when everything fits one shard, else
//   model-0000i-of-0000n.safetensors + model.safetensors.index.json
// (metadata {"format":"pt"}; names and order as model/names.h lists them, lm_head.weight absent
// when embeddings are tied), config.json = the base's bytes with only torch_dtype changed,
// generation_config.json (the base's, or derived from config.json as transformers does), and the
// base's tokenizer files byte for byte.
//
// PEFT: adapter_config.json + adapter_model.safetensors as PEFT's save_pretrained writes them.
#pragma once
#include "merge.h"
#include "../model/safetensors.h"
#include <stddef.h>

enum { HF_NF4_NONE = 0, HF_NF4_DOUBLE_QUANT = 1, HF_NF4_PLAIN = 2 };   // the values of model_quant

typedef struct {
    const char *base_dir;          // HF checkpoint: config.json, safetensors, tokenizer files
    const merge_adapter *adapter;  // LoRA folded in, or NULL
    const char *weights;           // fully fine-tuned weights replacing the base's values (a
                                   // .safetensors file or a directory), or NULL
    st_dtype dtype;                // ST_F32, ST_F16 or ST_BF16
    size_t shard_bytes;            // largest shard (a larger tensor gets a shard of its own)
    int quiet;                     // 0: one progress line per shard on stderr
    int nf4_base;                  // HF_NF4_*: with NONE (0) the base as it is; else the decoder's linear weights
                                   // (q, k, v, o, gate, up, down) replaced by their NF4 round trip
                                   // (quantised and dequantised in f32 as bitsandbytes does) before
                                   // the adapter: the base a QLoRA adapter was trained against
} hf_export_options;

// The tokenizer files copied when present (NULL-terminated).
extern const char *const hf_tokenizer_files[];

int hf_export_merged(const hf_export_options *o, const char *out_dir, char *err, size_t errlen);

// The merged package's tensors in f32, before the one rounding to o->dtype (which is ignored),
// in package order: fn(ctx, name, values, element count) for each, the buffer valid only during
// the call. A nonzero return of fn stops the walk and is returned; -1 + message otherwise.
typedef int (*hf_tensor_fn)(void *ctx, const char *name, const float *v, size_t n);
int hf_export_each_tensor(const hf_export_options *o, hf_tensor_fn fn, void *ctx, char *err, size_t errlen);

// adapter_model.safetensors in dtype (the adapter's values rounded once) and adapter_config.json
// (the adapter's, with base_model_name_or_path set to base_name and inference_mode true).
int hf_export_peft(const merge_adapter *a, const char *base_name, st_dtype dtype, const char *out_dir, char *err,
                   size_t errlen);

// "bf16"/"bfloat16", "fp16"/"float16", "fp32"/"float32" → dtype. 0 ok, -1 otherwise.
int hf_dtype_parse(const char *s, st_dtype *dtype);

// The base checkpoint's dtype: config.json's torch_dtype (or transformers 5's "dtype"), else the
// dtype of its tensors. 0 ok; -1 with a message (no readable float dtype).
int hf_base_dtype(const char *base_dir, st_dtype *dtype, char *err, size_t errlen);
