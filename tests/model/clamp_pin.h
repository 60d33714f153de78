// tests/model/clamp_pin.h — gpt-oss's clamped SwiGLU near its limit, between the fp32 reference
// and the bf16 CUDA path, for tests/model/test_model_fidelity.c (the elementwise sibling of
// route_pin.h).  The clamps min(gate, L) and clamp(up, −L, L) pass the whole gradient on one side
// of L and none on the other: an element whose fp32 value lies within bf16's rounding of the
// limit can fall on the other side under bf16, and each such flip adds or removes an element's
// full gradient.  The gpt_oss fixture (L = 0.5, so that 22 % of the gates and 46 % of the ups are
// clamped) has ~20 elements of 8192 that bf16 rounding alone moves across L on batch 0; spread
// over the 8 expert matrices of a layer, they move the experts' gradients by several percent.
//
// clamp_pin wraps a backend's swiglu_clamped ops (one global state, single-threaded tests):
//   - recording: each forward call's gate and up (as f32) are kept, in call order;
//   - pinning (ref set): each backward call is matched with the recorded call of the same size
//     whose gate values are nearest (the same layer, the same permuted rows: routing is pinned
//     first by route_pin.h); an element whose pass/stop decision differs is PINNED to the
//     reference's decision (its gradient recomputed from this backend's own values) when the
//     reference value lies within 2·dev of L, dev the largest deviation from the reference of the
//     OTHER values of that routed row (a near-tie: this element is off no more than its row), and
//     counted as `clear_flips` otherwise — an element off far beyond its row's rounding, a bug.
//     Only flipped elements are rewritten: a kernel that decides wrongly elsewhere still fails.
#pragma once
#include "kernels/backend.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CLAMP_PIN_MAX_CALLS 64

typedef void (*clamp_forward_fn)(backend *, void *, const void *, const void *, size_t, float, float);
typedef void (*clamp_backward_fn)(backend *, void *, void *, const void *, const void *, const void *, size_t,
                                  float, float);

typedef struct {
    size_t n;
    float *gate, *up;   // host (n)
} clamp_call;

static struct {
    clamp_call calls[CLAMP_PIN_MAX_CALLS];
    int n, recording;
    const clamp_call *ref;   // pin against these (nref calls), or NULL
    int nref;
    int row;                 // elements per routed row (the experts' intermediate size)
    long elems, pinned, clear_flips;
    double worst_match;      // largest gate deviation of a matched call from its reference
    double worst_ratio;      // largest margin / dev among the pinned elements
    struct {
        const backend *be;
        clamp_forward_fn fwd;
        clamp_backward_fn bwd;
    } inner[2];
} clamp_pin;

static int clamp_pin_slot(const backend *be) {
    for (int i = 0; i < 2; i++)
        if (clamp_pin.inner[i].be == be) return i;
    abort();
}

static void clamp_pin_to_host(backend *be, float *dst, const void *src, size_t n) {
    size_t a = dtype_size(be->act_dtype);
    void *raw = malloc(n * a);
    be->copy_to_host(be, raw, src, n * a);
    be->synchronize(be);
    if (be->act_dtype == DTYPE_F32) {
        memcpy(dst, raw, n * 4);
    } else {
        const uint16_t *h = raw;   // bf16: the high half of an f32
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)h[i] << 16;
            memcpy(&dst[i], &u, 4);
        }
    }
    free(raw);
}

// One element written back in the backend's act dtype (bf16: round to nearest even).
static void clamp_pin_store(backend *be, void *dst, size_t i, float v) {
    if (be->act_dtype == DTYPE_F32) {
        be->copy_to_device(be, (char *)dst + i * 4, &v, 4);
        return;
    }
    uint32_t u;
    memcpy(&u, &v, 4);
    uint16_t h = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    be->copy_to_device(be, (char *)dst + i * 2, &h, 2);
}

static void clamp_pin_forward(backend *be, void *out, const void *gate, const void *up, size_t n, float alpha,
                              float limit) {
    clamp_pin.inner[clamp_pin_slot(be)].fwd(be, out, gate, up, n, alpha, limit);
    if (!clamp_pin.recording || clamp_pin.n >= CLAMP_PIN_MAX_CALLS) return;
    clamp_call c = {n, malloc(n * 4), malloc(n * 4)};
    clamp_pin_to_host(be, c.gate, gate, n);
    clamp_pin_to_host(be, c.up, up, n);
    clamp_pin.calls[clamp_pin.n++] = c;
}

static const clamp_call *clamp_pin_match(const float *g, size_t n, double *dist) {
    const clamp_call *best = NULL;
    *dist = INFINITY;
    for (int c = 0; c < clamp_pin.nref; c++) {
        const clamp_call *r = &clamp_pin.ref[c];
        if (r->n != n) continue;
        double d = 0;
        for (size_t i = 0; i < n; i++) d = fmax(d, fabs(g[i] - r->gate[i]));
        if (d < *dist) {
            *dist = d;
            best = r;
        }
    }
    return best;
}

static void clamp_pin_backward(backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                               const void *up, size_t n, float alpha, float limit) {
    const clamp_call *r = NULL;
    float *g = NULL, *u = NULL, *d = NULL;
    double dist = 0;
    if (clamp_pin.ref && n > 0) {
        // Read before the op runs: dgate or dup may alias dout.
        g = malloc(n * 4), u = malloc(n * 4), d = malloc(n * 4);
        clamp_pin_to_host(be, g, gate, n);
        clamp_pin_to_host(be, u, up, n);
        clamp_pin_to_host(be, d, dout, n);
        r = clamp_pin_match(g, n, &dist);
    }
    clamp_pin.inner[clamp_pin_slot(be)].bwd(be, dgate, dup, dout, gate, up, n, alpha, limit);
    if (r) {
        clamp_pin.worst_match = fmax(clamp_pin.worst_match, dist);
        size_t W = clamp_pin.row > 0 && n % (size_t)clamp_pin.row == 0 ? (size_t)clamp_pin.row : n;
        for (size_t r0 = 0; r0 < n; r0 += W) {
            // The two largest deviations of the row's elements (an element's own, each the larger
            // of its gate's and its up's), so each element is judged by the others'.
            double dev1 = 0, dev2 = 0;
            for (size_t i = r0; i < r0 + W; i++) {
                double v = fmax(fabs(g[i] - r->gate[i]), fabs(u[i] - r->up[i]));
                if (v > dev1) {
                    dev2 = dev1;
                    dev1 = v;
                } else if (v > dev2) {
                    dev2 = v;
                }
            }
            for (size_t i = r0; i < r0 + W; i++) {
                clamp_pin.elems++;
                int gq = g[i] <= limit, gr = r->gate[i] <= limit;
                int uq = u[i] >= -limit && u[i] <= limit, ur = r->up[i] >= -limit && r->up[i] <= limit;
                if (gq == gr && uq == ur) continue;
                double own = fmax(fabs(g[i] - r->gate[i]), fabs(u[i] - r->up[i]));
                double dev = own == dev1 ? dev2 : dev1;
                double mg = gq != gr ? fabs(r->gate[i] - limit) : 0;
                double mu = uq != ur ? fabs(fabs(r->up[i]) - limit) : 0;
                if (fmax(mg, mu) > 2 * dev) {
                    clamp_pin.clear_flips++;
                    continue;
                }
                clamp_pin.worst_ratio = fmax(clamp_pin.worst_ratio, dev > 0 ? fmax(mg, mu) / dev : 0);
                clamp_pin.pinned++;
                // The reference's decisions on this backend's values (clamped where it clamps).
                float gc = fminf(g[i], limit), uc = fminf(fmaxf(u[i], -limit), limit);
                float s = 1.0f / (1.0f + expf(-(gc * alpha)));
                if (gq != gr)
                    clamp_pin_store(be, dgate, i, gr ? d[i] * (uc + 1.0f) * (s + alpha * gc * s * (1.0f - s)) : 0.0f);
                if (uq != ur) clamp_pin_store(be, dup, i, ur ? d[i] * gc * s : 0.0f);
            }
        }
        be->synchronize(be);
    }
    free(g);
    free(u);
    free(d);
}

// Wraps be's clamped SwiGLU ops (once per backend, two backends at most).
static void clamp_pin_install(backend *be) {
    int i = clamp_pin.inner[0].be ? 1 : 0;
    clamp_pin.inner[i].be = be;
    clamp_pin.inner[i].fwd = be->swiglu_clamped_forward;
    clamp_pin.inner[i].bwd = be->swiglu_clamped_backward;
    be->swiglu_clamped_forward = clamp_pin_forward;
    be->swiglu_clamped_backward = clamp_pin_backward;
}

// Frees the recorded calls and clears the counters; recording and ref off.
static void clamp_pin_reset(void) {
    for (int c = 0; c < clamp_pin.n; c++) {
        free(clamp_pin.calls[c].gate);
        free(clamp_pin.calls[c].up);
    }
    clamp_pin.n = clamp_pin.recording = clamp_pin.nref = 0;
    clamp_pin.ref = NULL;
    clamp_pin.elems = clamp_pin.pinned = clamp_pin.clear_flips = 0;
    clamp_pin.worst_match = clamp_pin.worst_ratio = 0;
}
