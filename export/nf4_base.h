// export/nf4_base.h — the base a QLoRA adapter was trained against, for `quarry export
// --merge-into dequantized`: a weight replaced by its NF4 round trip, quantised and dequantised
// in f32 exactly as bitsandbytes' quantize_4bit / dequantize_4bit (kernels/nf4_format.h), which
// are the weights quarry's QLoRA forward multiplies by.
// Also the base of a checkpoint that exists only in bitsandbytes' 4-bit layout (model/bnb4.h):
// its linear weights dequantised to f32 for a 16-bit package.
#pragma once
#include "../model/safetensors.h"
#include <stddef.h>
#include <stdint.h>

// w (n) ← dequantize_4bit(quantize_4bit(w)) in f32, NF4, blocks of 64, double-quantised absmax
// when double_quant. 0, or -1 with a message naming `name`.
int nf4_base_round_trip(float *w, size_t n, int double_quant, const char *name, char *err, size_t errlen);

// w (out × in) ← the f32 weights bitsandbytes' dequantize_4bit gives for the 4-bit tensors of
// `name` in s (model/bnb4.h's layout; source names s in messages). 0, or -1 with a message.
int nf4_base_dequantize(const st_set *s, const char *source, const char *name, int64_t out, int64_t in,
                        int double_quant, float *w, char *err, size_t errlen);
