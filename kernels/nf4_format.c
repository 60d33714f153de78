// kernels/nf4_format.c — NF4 quantise and dequantise on the host, bit-exact with bitsandbytes.
// The arithmetic follows bitsandbytes 0.50 on the CPU step by step:
// - 4-bit (backends/default/ops.py quantize_4bit, torch in f32): absmax = max |x| per block;
//   scaled = clamp(x · (1 / max(absmax, 1e-38)), −1, 1) for whole blocks but x / max(absmax,
//   1e-38) for a ragged last block; q = the number of midpoints of adjacent codes below scaled
//   (torch.bucketize: a value on a midpoint takes the lower code).
// - offset = mean of the absmax values (torch: the f32 sum divided by the count; the sum in
//   torch's order, torch_sum_f32).
// - 8-bit absmax (csrc/cpu_ops.cpp quantize_cpu_impl): per block of 256, m = max |a| (0 gives
//   index 0 everywhere), v = a · (1 / m) clamped, then a 65536-entry table: index
//   (uint16)((v + 1) · 0.5 · 65535 + 0.5) → the code whose midpoint interval holds the table
//   entry's value −1 + 2i/65535.  This is not the nearest code for every v, which is why it is
//   reproduced rather than replaced by a nearest search.
#include "nf4_format.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LUT_SIZE = 65536 };

static float load(const void *x, dtype xt, size_t i) {
    if (xt == DTYPE_F32) return ((const float *)x)[i];
    uint32_t u = (uint32_t)((const uint16_t *)x)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, as torch's .to(bfloat16) and bitsandbytes' float_to_bf16.
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static int check_len(const char *field, const void *p, size_t have, size_t want, char *err,
                     size_t errlen) {
    if (!p) {
        snprintf(err, errlen, "nf4: %s is missing (%zu expected)", field, want);
        return -1;
    }
    if (have != want) {
        snprintf(err, errlen, "nf4: %s has %zu entries, %zu expected", field, have, want);
        return -1;
    }
    return 0;
}

int nf4_tensor_check(const nf4_tensor *t, size_t n, char *err, size_t errlen) {
    size_t nb = nf4_n_blocks(n);
    if (n == 0) {
        snprintf(err, errlen, "nf4: an empty tensor has no blocks");
        return -1;
    }
    if (check_len("packed", t->packed, t->packed_bytes, nf4_packed_bytes(n), err, errlen))
        return -1;
    if (!t->qabsmax) return check_len("absmax", t->absmax, t->n_absmax, nb, err, errlen);
    if (t->absmax) {
        snprintf(err, errlen, "nf4: both absmax and qabsmax are set; a tensor has one of them");
        return -1;
    }
    if (check_len("qabsmax", t->qabsmax, t->n_qabsmax, nb, err, errlen)) return -1;
    return check_len("nested_absmax", t->nested_absmax, t->n_nested, nf4_n_nested(n), err,
                     errlen);
}

// Index of the NF4 code for a scaled value s in [−1, 1]: the count of midpoints below s.
static int nf4_index(float s) {
    int q = 0;
    while (q < 15 && (nf4_code(q) + nf4_code(q + 1)) / 2.0f < s) q++;
    return q;
}

static void quantize_4bit(nf4_tensor *t, float *absmax, const void *x, dtype xt, size_t n) {
    size_t nb = nf4_n_blocks(n), full = n / NF4_BLOCK;
    memset(t->packed, (NF4_PAD_CODE << 4) | NF4_PAD_CODE, t->packed_bytes);
    // Blocks are independent (64 weights = 32 whole bytes of their own): threads change no bit,
    // and a Llama-3.1-8B load quantises 7e9 weights (~3 minutes on one core).
#pragma omp parallel for schedule(static) if (nb > 4096)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * NF4_BLOCK, i1 = i0 + NF4_BLOCK < n ? i0 + NF4_BLOCK : n;
        float m = 0.0f;
        for (size_t i = i0; i < i1; i++) m = fmaxf(m, fabsf(load(x, xt, i)));
        absmax[b] = m;
        float d = fmaxf(m, 1e-38f), r = 1.0f / d;
        for (size_t i = i0; i < i1; i++) {
            float s = b < full ? load(x, xt, i) * r : load(x, xt, i) / d;
            s = fminf(fmaxf(s, -1.0f), 1.0f);
            int q = nf4_index(s);
            uint8_t *byte = &t->packed[i / 2];
            *byte = i % 2 ? (uint8_t)((*byte & 0xf0) | q) : (uint8_t)((*byte & 0x0f) | (q << 4));
        }
    }
}

// The 65536-entry table from a scaled value's bin to its dynamic-map index (build_quantize_lut).
static void build_lut(uint8_t *lut) {
    float mid[255];
    for (int i = 0; i < 255; i++) mid[i] = 0.5f * (nf4_dynamic_code(i) + nf4_dynamic_code(i + 1));
    int q = 0;
    for (int i = 0; i < LUT_SIZE; i++) {
        float v = -1.0f + (2.0f * (float)i) / (float)(LUT_SIZE - 1);
        while (q < 255 && mid[q] < v) q++;
        lut[i] = (uint8_t)q;
    }
}

// torch.sum of a contiguous f32 vector as ATen's CPU kernel orders it on one thread
// (SumKernel.cpp: vectorized_inner_sum → row_sum → multi_row_sum) with 8-float vectors (what
// torch 2.11 uses on x86, AVX-512 machines included: checked against torch.sum on random
// lengths): lane l sums x[l], x[l + 8], ... in a 4-way interleave of 4-level cascades; the
// scalar tail, then the 8 lanes in order, make the total.  Past 32768 values torch splits the
// sum over threads, and its last bit then depends on the thread count.
enum { TORCH_VEC = 8, TORCH_ILP = 4, TORCH_LEVELS = 4 };

// multi_row_sum for one lane: rows r of the (size, TORCH_ILP) view, element at(i, r).
static void torch_cascade(const float *x, size_t size, size_t lane, float out[TORCH_ILP]) {
    int ceil_log2 = 0;
    while (((size_t)1 << ceil_log2) < size) ceil_log2++;
    int power = ceil_log2 / TORCH_LEVELS > 4 ? ceil_log2 / TORCH_LEVELS : 4;
    size_t step = (size_t)1 << power, mask = step - 1;
    float acc[TORCH_LEVELS][TORCH_ILP] = {{0}};
    size_t i = 0;
    while (i + step <= size) {
        for (size_t j = 0; j < step; j++, i++)
            for (int k = 0; k < TORCH_ILP; k++)
                acc[0][k] += x[(i * TORCH_ILP + (size_t)k) * TORCH_VEC + lane];
        for (int j = 1; j < TORCH_LEVELS; j++) {
            for (int k = 0; k < TORCH_ILP; k++) acc[j][k] += acc[j - 1][k], acc[j - 1][k] = 0.0f;
            if (i & (mask << (j * power))) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < TORCH_ILP; k++)
            acc[0][k] += x[(i * TORCH_ILP + (size_t)k) * TORCH_VEC + lane];
    for (int j = 1; j < TORCH_LEVELS; j++)
        for (int k = 0; k < TORCH_ILP; k++) acc[0][k] += acc[j][k];
    for (int k = 0; k < TORCH_ILP; k++) out[k] = acc[0][k];
}

static float torch_sum_f32(const float *x, size_t n) {
    size_t vecs = n / TORCH_VEC, ilp = vecs / TORCH_ILP;
    float lanes[TORCH_VEC];
    for (size_t l = 0; l < TORCH_VEC; l++) {
        float p[TORCH_ILP];
        torch_cascade(x, ilp, l, p);
        for (size_t v = ilp * TORCH_ILP; v < vecs; v++) p[0] += x[v * TORCH_VEC + l];
        for (int k = 1; k < TORCH_ILP; k++) p[0] += p[k];
        lanes[l] = p[0];
    }
    float total = 0.0f;
    for (size_t i = vecs * TORCH_VEC; i < n; i++) total += x[i];
    for (int l = 0; l < TORCH_VEC; l++) total += lanes[l];
    return total;
}

static int quantize_absmax(nf4_tensor *t, float *absmax, size_t nb, char *err, size_t errlen) {
    uint8_t *lut = malloc(LUT_SIZE);
    if (!lut) {
        snprintf(err, errlen, "nf4: out of memory for the absmax table");
        return -1;
    }
    build_lut(lut);
    t->offset = torch_sum_f32(absmax, nb) / (float)nb;
    for (size_t b = 0; b < nb; b++) absmax[b] -= t->offset;
    for (size_t j = 0; j * NF4_NESTED_BLOCK < nb; j++) {
        size_t b0 = j * NF4_NESTED_BLOCK;
        size_t b1 = b0 + NF4_NESTED_BLOCK < nb ? b0 + NF4_NESTED_BLOCK : nb;
        float m = 0.0f;
        for (size_t b = b0; b < b1; b++) m = fmaxf(m, fabsf(absmax[b]));
        t->nested_absmax[j] = m;
        float r = m == 0.0f ? 0.0f : 1.0f / m;
        for (size_t b = b0; b < b1; b++) {
            if (m == 0.0f) {
                t->qabsmax[b] = 0;
                continue;
            }
            float v = fminf(fmaxf(absmax[b] * r, -1.0f), 1.0f);
            float h = (v + 1.0f) * 0.5f;
            float p = h * (float)(LUT_SIZE - 1);
            t->qabsmax[b] = lut[(uint16_t)(p + 0.5f)];
        }
    }
    free(lut);
    return 0;
}

int nf4_quantize(nf4_tensor *t, const void *x, dtype xt, size_t n, char *err, size_t errlen) {
    if (xt != DTYPE_F32 && xt != DTYPE_BF16) {
        snprintf(err, errlen, "nf4: quantise takes f32 or bf16 input, not %s", dtype_name(xt));
        return -1;
    }
    if (nf4_tensor_check(t, n, err, errlen)) return -1;
    size_t nb = nf4_n_blocks(n);
    if (!nf4_is_double_quant(t)) {
        quantize_4bit(t, t->absmax, x, xt, n);
        return 0;
    }
    float *absmax = malloc(nb * sizeof(float));
    if (!absmax) {
        snprintf(err, errlen, "nf4: out of memory for %zu absmax values", nb);
        return -1;
    }
    quantize_4bit(t, absmax, x, xt, n);
    int rc = quantize_absmax(t, absmax, nb, err, errlen);
    free(absmax);
    return rc;
}

int nf4_dequantize_host(void *out, dtype ot, const nf4_tensor *t, size_t n, char *err,
                        size_t errlen) {
    if (ot != DTYPE_F32 && ot != DTYPE_BF16) {
        snprintf(err, errlen, "nf4: dequantise writes f32 or bf16, not %s", dtype_name(ot));
        return -1;
    }
    if (nf4_tensor_check(t, n, err, errlen)) return -1;
    enum { CHUNK = 4096 };
    float w[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        nf4_decode_range(w, t, i0, i1);
        for (size_t i = i0; i < i1; i++) {
            if (ot == DTYPE_F32) ((float *)out)[i] = w[i - i0];
            else ((uint16_t *)out)[i] = to_bf16(w[i - i0]);
        }
    }
    return 0;
}
