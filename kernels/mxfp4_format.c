// kernels/mxfp4_format.c — MXFP4 dequantisation on the host, bit-exact with transformers.
// transformers fills a (rows, 2B) buffer from the LUT in the output dtype, low nibbles to the
// even columns, then torch.ldexp in place: ldexp is exact (a power of two times a code with two
// significant bits), so ldexpf in f32 and one rounding to bf16 give the same bits.
#include "mxfp4_format.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

int mxfp4_shape_of(mxfp4_shape *s, const char *name, int blocks_ndim, const int64_t *blocks_shape,
                   int scales_ndim, const int64_t *scales_shape, char *err, size_t errlen) {
    char bs[96], ss[96];
    shape_str(bs, sizeof bs, blocks_ndim, blocks_shape);
    shape_str(ss, sizeof ss, scales_ndim, scales_shape);
    if (blocks_ndim != 4) {
        snprintf(err, errlen, "%s_blocks has shape %s; MXFP4 blocks are 4-D (experts, rows, blocks, bytes)",
                 name, bs);
        return -1;
    }
    int same = scales_ndim == 3;
    for (int d = 0; same && d < 3; d++) same = scales_shape[d] == blocks_shape[d];
    if (!same) {
        snprintf(err, errlen, "%s_scales has shape %s; %s_blocks %s needs one scale per block: %s_scales (%lld, %lld, %lld)",
                 name, ss, name, bs, name, (long long)blocks_shape[0], (long long)blocks_shape[1],
                 (long long)blocks_shape[2]);
        return -1;
    }
    for (int d = 0; d < 4; d++)
        if (blocks_shape[d] <= 0) {
            snprintf(err, errlen, "%s_blocks has shape %s; every dimension must be positive", name, bs);
            return -1;
        }
    *s = (mxfp4_shape){blocks_shape[0], blocks_shape[1], blocks_shape[2], blocks_shape[3]};
    return 0;
}

// Round to nearest even, as torch's .to(bfloat16) (NaN kept NaN).
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int mxfp4_dequantize_host(void *out, dtype ot, const uint8_t *blocks, const uint8_t *scales,
                          const mxfp4_shape *s, char *err, size_t errlen) {
    if (ot != DTYPE_F32 && ot != DTYPE_BF16) {
        snprintf(err, errlen, "mxfp4: output dtype must be F32 or BF16");
        return -1;
    }
    size_t R = (size_t)s->r, K = (size_t)(s->g * s->b * 2), G = (size_t)s->g, B = (size_t)s->b;
    for (size_t e = 0; e < (size_t)s->e; e++)
        for (size_t r = 0; r < R; r++)
            for (size_t g = 0; g < G; g++) {
                size_t row = (e * R + r) * G + g;   // one block: B bytes, one scale
                int ex = (int)scales[row] - 127;
                const uint8_t *blk = blocks + row * B;
                for (size_t j = 0; j < 2 * B; j++) {
                    int q = j % 2 ? blk[j / 2] >> 4 : blk[j / 2] & 15;
                    float v = ldexpf(mxfp4_code(q), ex);
                    size_t at = (e * K + g * 2 * B + j) * R + r;   // (E, K, R): transposed
                    if (ot == DTYPE_F32) ((float *)out)[at] = v;
                    else ((uint16_t *)out)[at] = to_bf16(v);
                }
            }
    return 0;
}
