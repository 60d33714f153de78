// kernels/cpu/mxfp4.c — gpt-oss's frozen MXFP4 experts on the CPU: a matrix dequantised into
// f32, row by row, with the host decoder's arithmetic (kernels/mxfp4_format.c: ldexpf of the FP4
// code by scale − 127, exact), so the result equals mxfp4_dequantize_host's bit for bit, only
// not transposed.  The model then runs the f32 linear of linear.c over it, the same GEMM the
// dequantised-at-load experts run.
#include "cpu_ops.h"
#include "../mxfp4_format.h"
#include <math.h>

void cpu_mxfp4_dequantize(backend *be, void *out_, const struct mxfp4_tensor *w, int OC, int IC) {
    (void)be;
    float *out = out_;
    int G = IC / MXFP4_BLOCK;   // blocks a row
#pragma omp parallel for schedule(static) if ((long)OC * IC > 65536)
    for (int o = 0; o < OC; o++)
        for (int g = 0; g < G; g++) {
            size_t blk = (size_t)o * G + g;
            int ex = (int)w->scales[blk] - 127;
            const uint8_t *b = w->blocks + blk * (MXFP4_BLOCK / 2);
            float *dst = out + (size_t)o * IC + (size_t)g * MXFP4_BLOCK;
            for (int j = 0; j < MXFP4_BLOCK / 2; j++) {
                dst[2 * j] = ldexpf(mxfp4_code(b[j] & 15), ex);
                dst[2 * j + 1] = ldexpf(mxfp4_code(b[j] >> 4), ex);
            }
        }
}
