// model/mxfp4_load.h — reading MXFP4-packed tensors of a checkpoint (gpt-oss's experts) as the
// dense tensors the model names.  When config.json's quantization_config.quant_method is
// "mxfp4", a tensor NAME the model asks for that the files lack is read from NAME_blocks (u8)
// and NAME_scales (u8) instead, dequantised exactly as transformers loads it
// (kernels/mxfp4_format.h: (E, in, out), bit-exact in f32).  One lookup, used by the weight
// load (model/llama.c) and the checkpoint check (model/names.c); nothing is expanded up front,
// so a 120B checkpoint is dequantised one tensor at a time into the staging buffer.
#pragma once
#include "../kernels/mxfp4_format.h"
#include "safetensors.h"
#include <stddef.h>

typedef struct mxfp4_pair {
    const st_tensor *blocks, *scales;
    mxfp4_shape shape;
    int ndim;              // of the dequantised tensor: 3
    int64_t dq_shape[3];   // (E, G·B·2, R)
} mxfp4_pair;

// 1 when PATH (a checkpoint directory or its config.json) declares
// quantization_config.quant_method "mxfp4"; 0 otherwise (no config, none or another method).
int mxfp4_checkpoint(const char *path);

// NAME absent from s but NAME_blocks and NAME_scales present: 1 with p filled.  0 when NAME is
// stored or there is no such pair.  -1 when the pair is malformed (dtype other than U8, shapes
// that do not match, data shorter than the shape), with a message naming SOURCE and the tensor.
int mxfp4_pair_find(const st_set *s, const char *name, mxfp4_pair *p, const char *source, char *err,
                    size_t errlen);

// 1 when NAME ends in "_blocks" or "_scales" and the rest is stem (NAME's stem written to stem).
int mxfp4_pair_part(const char *name, char *stem, size_t stemlen);

// Reads the tensor NAME of n values as float32 into dst: the stored tensor, or, when mxfp4 is
// set and it is absent, its dequantised pair (which must have n values).  0, or -1 with a
// message naming SOURCE and NAME.
int mxfp4_read_tensor_f32(const st_set *s, const char *name, int mxfp4, float *dst, size_t n,
                          const char *source, char *err, size_t errlen);
