// kernels/cpu/cast.c — f32 <-> act casts; act is f32 on the CPU, so a copy (none when aliased).
#include "cpu_ops.h"
#include <string.h>

void cpu_cast_f32_to_act(backend *be, void *dst, const float *src, size_t n) {
    (void)be;
    if (dst != (const void *)src && n) memmove(dst, src, n * sizeof(float));
}

void cpu_cast_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    (void)be;
    if ((const void *)dst != src && n) memmove(dst, src, n * sizeof(float));
}
