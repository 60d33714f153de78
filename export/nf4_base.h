// export/nf4_base.h — the base a QLoRA adapter was trained against, for `quarry export
// --merge-into dequantized`: a weight replaced by its NF4 round trip, quantised and dequantised
// in f32 exactly as bitsandbytes' quantize_4bit / dequantize_4bit (kernels/nf4_format.h), which
// are the weights quarry's QLoRA forward multiplies by.
#pragma once
#include <stddef.h>

// w (n) ← dequantize_4bit(quantize_4bit(w)) in f32, NF4, blocks of 64, double-quantised absmax
// when double_quant. 0, or -1 with a message naming `name`.
int nf4_base_round_trip(float *w, size_t n, int double_quant, const char *name, char *err, size_t errlen);
