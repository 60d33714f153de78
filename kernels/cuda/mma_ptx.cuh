// kernels/cuda/mma_ptx.cuh — the warp-level tensor-core instructions of quarry's mma.sync kernels, through
// inline PTX, whose register layouts PTX documents (unlike WMMA's): ldmatrix.x4 (.trans) and
// mma.sync.m16n8k16 bf16 → fp32.  Under the CPU emulation (QUARRY_EMU) they are emu.h's
// implementations of the same documented layouts.  Lane l: g = l / 4, t = l % 4.
//   A (16×16, row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16×8, col):  b0 (rows 2t..2t+1, col g), b1 (rows 2t+8..2t+9, col g)
//   C (16×8, f32):  c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1)
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses (16-byte aligned) of 8×8 matrix i; r[i]
// gets row g, columns 2t, 2t+1 of matrix i (.trans: rows 2t, 2t+1 of column g).
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#ifdef QUARRY_EMU
static inline void v3_ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p) { emu_ldmatrix_x4(r, p, false); }
static inline void v3_ldsm_x4_t(uint32_t r[4], const __nv_bfloat16 *p) { emu_ldmatrix_x4(r, p, true); }
static inline void v3_mma(float d[4], const uint32_t a[4], const uint32_t b0, const uint32_t b1) {
    uint32_t b[2] = {b0, b1};
    emu_mma_m16n8k16_bf16(d, a, b);
}
#else
__device__ __forceinline__ void v3_ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
__device__ __forceinline__ void v3_ldsm_x4_t(uint32_t r[4], const __nv_bfloat16 *p) {
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
// d (16×8 f32) += A (16×16 bf16, row) · B (16×8 bf16, col).
__device__ __forceinline__ void v3_mma(float d[4], const uint32_t a[4], const uint32_t b0, const uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

// Two floats as a bf16 pair, lo in the low half (the lower-indexed element).
__device__ __forceinline__ uint32_t v3_pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

