// kernels/mxfp4_format.h — the MXFP4 weight format of gpt-oss checkpoints (OCP microscaling FP4),
// dequantised exactly as transformers does (integrations/mxfp4.py convert_moe_packed_tensors,
// the path gpt-oss takes when it is loaded without the triton kernels):
// - blocks: u8 (E, R, G, B), two FP4 E2M1 codes a byte, element 2j in the LOW nibble of byte j
//   and 2j+1 in the high one (the opposite of NF4's order); a block is the B bytes (2·B values,
//   B = 16 in published checkpoints) that share one scale;
// - scales: u8 (E, R, G), E8M0 exponents with bias 127: value = fp4(code) · 2^(scale − 127),
//   computed as ldexp (exact: 2^128 overflows to inf, a zero stays a signed zero; E8M0's NaN
//   encoding 255 gets no special case, as in transformers);
// - the result is (E, G·B·2, R): each row r of the packed (E, R, ·) matrix becomes column r
//   (transformers transposes the last two axes, the (E, in, out) layout of GptOssExperts).
// The host decode is the loader's (model/mxfp4_load.h: `*_blocks`/`*_scales` dequantised at
// load); mxfp4_tensor is the form the backends' mxfp4_dequantize op reads (experts kept in
// MXFP4 on the device, model_options.experts_mxfp4).
#pragma once
#include "backend.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// FP4 E2M1's 16 values by code (transformers' FP4_VALUES): sign bit 3, then 0, 0.5 .. 6.
static inline float mxfp4_code(int q) {
    static const float code[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                   -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    return code[q & 15];
}

// The shapes of one packed pair: blocks (E, R, G, B), scales (E, R, G).  The dequantised tensor
// is (E, K, R) with K = G·B·2 values a row.
typedef struct mxfp4_shape {
    int64_t e, r, g, b;
} mxfp4_shape;

static inline size_t mxfp4_numel(const mxfp4_shape *s) { return (size_t)(s->e * s->r * s->g * s->b * 2); }

// Fills s from the two tensors' shapes; 0, or -1 with a message naming `name` (the tensor the
// pair dequantises into) and what does not match: blocks must be 4-D, scales 3-D equal to
// blocks' first three dimensions, every dimension positive.
int mxfp4_shape_of(mxfp4_shape *s, const char *name, int blocks_ndim, const int64_t *blocks_shape,
                   int scales_ndim, const int64_t *scales_shape, char *err, size_t errlen);

// out (mxfp4_numel values of dtype F32 or BF16 (uint16_t bits), (E, K, R) row-major) = the
// weights the pair holds; bit-exact with convert_moe_packed_tensors(blocks, scales, dtype).
// Every value is exact in f32 (ldexp of an FP4 code), and in bf16 when it does not overflow.
int mxfp4_dequantize_host(void *out, dtype ot, const uint8_t *blocks, const uint8_t *scales,
                          const mxfp4_shape *s, char *err, size_t errlen);

// One frozen (OC, IC) matrix kept packed on a device: row o is the checkpoint's packed row o
// unchanged (gpt-oss's blocks are (E, out, in/32, 16): each out row holds its in values), so
// the op's (OC, IC) result is the linear's W with no transpose.  Blocks of MXFP4_BLOCK values
// (16 bytes, the OCP block published checkpoints use); IC a multiple of it.
enum { MXFP4_BLOCK = 32 };
typedef struct mxfp4_tensor {
    uint8_t *blocks;   // (OC, IC/2): element 2j of a row in the low nibble of byte j
    uint8_t *scales;   // (OC, IC/32): E8M0, value = fp4(code) · 2^(scale − 127)
} mxfp4_tensor;

static inline size_t mxfp4_block_bytes(size_t n) { return n / 2; }             // n = OC·IC
static inline size_t mxfp4_scale_bytes(size_t n) { return n / MXFP4_BLOCK; }

#ifdef __cplusplus
}
#endif
