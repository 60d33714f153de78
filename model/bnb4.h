// model/bnb4.h — checkpoints saved in bitsandbytes' 4-bit layout (transformers' save_pretrained
// of a model loaded with BitsAndBytesConfig(load_in_4bit=True), the `-bnb-4bit` uploads): config.json
// has "quantization_config" {"quant_method": "bitsandbytes", "load_in_4bit": true,
// "bnb_4bit_quant_type": "nf4", ...} and each quantised linear W (out, in) is stored as
//   W.weight                                  U8 ((n + 1) / 2, 1)  the NF4 codes, two a byte
//   W.weight.absmax                           U8 (blocks) double-quantised, or F32 (blocks)
//   W.weight.quant_map                        F32 (16)   the NF4 code values
//   W.weight.nested_absmax                    F32 (nested blocks)        double quant only
//   W.weight.nested_quant_map                 F32 (256)  the dynamic map double quant only
//   W.weight.quant_state.bitsandbytes__nf4    U8 JSON {"quant_type", "blocksize", "shape",
//                                             "nested_blocksize", "nested_offset", "dtype", ...}
// (bitsandbytes' QuantState.as_dict(packed=True)). The model reads these as its NF4 weights
// without quantising; export dequantises them. Only NF4 with blocks of 64 (and 256 nested).
#pragma once
#include "config.h"
#include "safetensors.h"
#include <stddef.h>

struct nf4_tensor;

// dir/config.json's quantization_config: 1 for a bitsandbytes NF4 checkpoint (*double_quant set
// from bnb_4bit_use_double_quant), 0 for none or another method (mxfp4 is model/mxfp4_load's),
// -1 with a message for a bitsandbytes one quarry cannot read (8-bit, FP4).
int bnb4_detect(const char *dir, int *double_quant, char *err, size_t errlen);

// The tensors of linear weight `name` ("model.layers.0.self_attn.q_proj.weight", shape out × in)
// checked and described in t: its pointers point into s's mmap (valid while s is open; never
// written), lengths and offset set. 0, or -1 with a message naming the file, tensor and fix.
int bnb4_tensor(const st_set *s, const char *source, const char *name, int64_t out, int64_t in, int double_quant,
                struct nf4_tensor *t, char *err, size_t errlen);

// Every tensor of the checkpoint: the config's, the decoder linears in the 4-bit layout, nothing
// else (model_tensor_check for a 4-bit checkpoint). 0, or -1 with a message.
int bnb4_check(const model_config *cfg, const st_set *s, const char *source, int double_quant, char *err,
               size_t errlen);
