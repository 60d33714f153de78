// kernels/nf4_format.h — the NF4 4-bit weight format of QLoRA, exactly as bitsandbytes stores
// it (bitsandbytes/functional.py quantize_4bit, dequantize_4bit; the format the loader reads from
// `-bnb-4bit` checkpoints and `--quantize nf4` writes, and that the exporter dequantises):
// - n weights (a (OC, IC) matrix read flat, row-major) in blocks of NF4_BLOCK = 64, each block
//   scaled by its absmax (f32): w = nf4_code(q) · absmax[i / 64];
// - q: 4-bit indices into 16 fixed values, two per byte, element 2j in the HIGH nibble of byte j
//   (an odd n pads the last low nibble with 7, the index of 0.0);
// - double quantisation (bnb_4bit_use_double_quant): the absmax values less their mean (offset)
//   are 8-bit quantised with bitsandbytes' dynamic map in blocks of NF4_NESTED_BLOCK = 256, with
//   one f32 nested absmax per block: absmax[b] = dyn(qabsmax[b]) · nested_absmax[b / 256] + offset,
//   a product and a sum each rounded to f32 (never fused).
// Host quantise/dequantise bit-exact with bitsandbytes 0.50 on the CPU; the ops over the format
// are nf4_dequantize and nf4_linear_* in backend.h.
#pragma once
#include "backend.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { NF4_BLOCK = 64, NF4_NESTED_BLOCK = 256, NF4_PAD_CODE = 7 };

// NF4's 16 values (get_4bit_type("nf4")): quantiles of N(0, 1) scaled to [-1, 1], sorted.
static inline float nf4_code(int q) {
    static const float code[16] = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };
    return code[q & 15];
}

// bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(), sorted, 256 values), the code of
// the double-quantised absmax.  Written out bit for bit: the map is built with torch.linspace in
// f32, which no C expression reproduces by construction.
static inline float nf4_dynamic_code(int q) {
    static const float code[256] = {
            -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f,
            -0x1.df999ap-1f, -0x1.d86666p-1f, -0x1.d13334p-1f, -0x1.cap-1f,
            -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f,
            -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f,
            -0x1.893334p-1f, -0x1.82p-1f, -0x1.7accccp-1f, -0x1.73999ap-1f,
            -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f,
            -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f,
            -0x1.32ccccp-1f, -0x1.2b999ap-1f, -0x1.246668p-1f, -0x1.1d3334p-1f,
            -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f,
            -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f,
            -0x1.b8ccccp-2f, -0x1.aa6666p-2f, -0x1.9cp-2f, -0x1.8d9998p-2f,
            -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f,
            -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f,
            -0x1.0cp-2f, -0x1.fb3332p-3f, -0x1.de6666p-3f, -0x1.c1999ap-3f,
            -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f,
            -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f,
            -0x1.93d70ap-4f, -0x1.8851eep-4f, -0x1.7ccccep-4f, -0x1.7147aep-4f,
            -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f,
            -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f,
            -0x1.09999ap-4f, -0x1.fc28f6p-5f, -0x1.e51ebap-5f, -0x1.ce147ap-5f,
            -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
            -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f,
            -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f, -0x1.a147aep-6f, -0x1.733334p-6f,
            -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
            -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f,
            -0x1.e978d4p-8f, -0x1.c49ba6p-8f, -0x1.9fbe76p-8f, -0x1.7ae148p-8f,
            -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
            -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f,
            -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f, -0x1.3dd982p-11f,
            -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
            -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f,
            -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0.0f,
            0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
            0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f,
            0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f,
            0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
            0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f,
            0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f,
            0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
            0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f,
            0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451ebap-6f, 0x1.733334p-6f,
            0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f,
            0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f,
            0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f,
            0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
            0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f,
            0x1.4eb854p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f,
            0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
            0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f,
            0x1.6b3334p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f,
            0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
            0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f,
            0x1.626666p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f,
            0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
            0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f,
            0x1.079998p-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f,
            0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
            0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f,
            0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f,
            0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
            0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f,
            0x1.b46666p-1f, 0x1.bb999ap-1f, 0x1.c2ccccp-1f, 0x1.cap-1f,
            0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f,
            0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1p+0f,
    };
    return code[q & 255];
}

static inline size_t nf4_n_blocks(size_t n) { return (n + NF4_BLOCK - 1) / NF4_BLOCK; }
static inline size_t nf4_n_nested(size_t n) {
    return (nf4_n_blocks(n) + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
}
static inline size_t nf4_packed_bytes(size_t n) { return (n + 1) / 2; }

// One NF4 tensor of n weights.  Plain: absmax set, qabsmax and nested_absmax NULL.  Double
// quantised: qabsmax, nested_absmax and offset set, absmax NULL.  The pointers are host memory
// for the functions below and device memory of the backend for the ops of backend.h.
typedef struct nf4_tensor {
    uint8_t *packed;        // (n + 1) / 2 bytes
    size_t packed_bytes;
    float *absmax;          // f32 (n_blocks)
    size_t n_absmax;
    uint8_t *qabsmax;       // u8 (n_blocks), indices into nf4_dynamic_code
    size_t n_qabsmax;
    float *nested_absmax;   // f32 (n_nested)
    size_t n_nested;
    float offset;           // the mean of the absmax values, added back
} nf4_tensor;

static inline int nf4_is_double_quant(const nf4_tensor *t) { return t->qabsmax != NULL; }

// The scale of block b (host memory).  The f32 product and sum are separate statements in a
// C11 build (no contraction), as torch computes them.
static inline float nf4_block_absmax(const nf4_tensor *t, size_t b) {
    if (!t->qabsmax) return t->absmax[b];
    float s = nf4_dynamic_code(t->qabsmax[b]) * t->nested_absmax[b / NF4_NESTED_BLOCK];
    return s + t->offset;
}

// out[i − i0] = weight i in f32, for i in [i0, i1) (host memory): the f32 product of code and
// block scale that bitsandbytes computes before any rounding to the output dtype.
static inline void nf4_decode_range(float *out, const nf4_tensor *t, size_t i0, size_t i1) {
    for (size_t b = i0 / NF4_BLOCK; b * NF4_BLOCK < i1; b++) {
        float s = nf4_block_absmax(t, b);
        size_t lo = b * NF4_BLOCK > i0 ? b * NF4_BLOCK : i0;
        size_t hi = (b + 1) * NF4_BLOCK < i1 ? (b + 1) * NF4_BLOCK : i1;
        for (size_t i = lo; i < hi; i++) {
            uint8_t byte = t->packed[i / 2];
            out[i - i0] = nf4_code(i % 2 ? byte & 15 : byte >> 4) * s;
        }
    }
}

// 0 when t has the buffers and lengths n weights need; else -1 with a one-line message in err
// naming the field, its length and the length expected.
int nf4_tensor_check(const nf4_tensor *t, size_t n, char *err, size_t errlen);

// Quantises x (n values, dtype F32 or BF16 (uint16_t bits)) into t, whose buffers the caller
// sized (nf4_tensor_check): double quantisation when t->qabsmax is set.  Bit-exact with
// bitsandbytes.functional.quantize_4bit(x, blocksize=64, quant_type="nf4",
// compress_statistics=double) on the CPU.  0, or -1 with a message in err.
int nf4_quantize(nf4_tensor *t, const void *x, dtype xt, size_t n, char *err, size_t errlen);

// out (n values of dtype F32 or BF16) = the weights t holds; bit-exact with
// bitsandbytes.functional.dequantize_4bit (f32 product, one rounding to bf16).  0, or -1.
int nf4_dequantize_host(void *out, dtype ot, const nf4_tensor *t, size_t n, char *err,
                        size_t errlen);

#ifdef __cplusplus
}
#endif
