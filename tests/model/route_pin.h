// tests/model/route_pin.h — MoE routing near-ties between the fp32 reference and the bf16 CUDA
// path, for tests/model/test_model_fidelity.c and dev/cuda/emu/moe_routes.c.  A top-k choice
// whose fp32 logit margin m = l_(k) − l_(k+1) is below 2·dev (dev: the largest deviation of that
// row's bf16 logits from the fp32 ones) can flip from rounding alone, and one token sent to
// another expert moves that expert's gradients far beyond bf16's bounds (measured on the
// emulator, 2026-12-06: qwen3_moe layer 0 row 11, margin 0.0018 against a deviation 0.012, took
// experts {6,0} for {6,4}: experts 0 and 4's gradients 14–26 % off, 3.3e-2 with that row pinned).
//
// route_pin wraps a backend's moe_router_forward op (the op table has no user pointer: one
// global state, single-threaded tests):
//   - recording: each call's logits (as f32) and top-k are kept, in call order;
//   - pinning (ref set): each call is matched with the recorded reference call of the same shape
//     whose logits are nearest (the same layer: recomputation may call the layers in any order);
//     a row whose choice differs is PINNED to the reference's experts (weights recomputed from
//     this backend's probs, renormalised as the op does) when m ≤ 2·dev — a near-tie — and
//     counted as `clear_flips` otherwise: a flip rounding cannot explain, a bug.
#pragma once
#include "kernels/backend.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_PIN_MAX_CALLS 64

typedef struct {
    int N, E, k;
    float *logits;   // host (N, E)
    int32_t *idx;    // host (N, k)
} route_call;

typedef void (*route_forward_fn)(backend *, int32_t *, float *, float *, const void *, int, int,
                                 int, int);

static struct {
    route_call calls[ROUTE_PIN_MAX_CALLS];
    int n, recording;
    const route_call *ref;   // pin against these (nref calls), or NULL
    int nref;
    long rows, pinned, clear_flips;
    double min_margin;
    struct {
        const backend *be;
        route_forward_fn fn;
    } inner[2];   // each wrapped backend's own op
} route_pin;

static route_forward_fn route_pin_inner(const backend *be) {
    for (int i = 0; i < 2; i++)
        if (route_pin.inner[i].be == be) return route_pin.inner[i].fn;
    abort();
}

static void route_pin_to_f32(const backend *be, float *dst, const void *src, size_t n) {
    if (be->act_dtype == DTYPE_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    const uint16_t *h = src;   // bf16: the high half of an f32
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

// l_(j): the j-th largest of the E logits (j from 0).
static float route_pin_sorted(const float *l, int E, int j) {
    float v[256];
    memcpy(v, l, (size_t)E * 4);
    for (int a = 0; a <= j; a++)
        for (int c = a + 1; c < E; c++)
            if (v[c] > v[a]) {
                float t = v[a];
                v[a] = v[c];
                v[c] = t;
            }
    return v[j];
}

static int route_pin_same_set(const int32_t *a, const int32_t *b, int k) {
    for (int j = 0; j < k; j++) {
        int found = 0;
        for (int i = 0; i < k; i++) found |= a[i] == b[j];
        if (!found) return 0;
    }
    return 1;
}

static const route_call *route_pin_match(const float *l, int N, int E, int k) {
    const route_call *best = NULL;
    double best_d = INFINITY;
    for (int c = 0; c < route_pin.nref; c++) {
        const route_call *r = &route_pin.ref[c];
        if (r->N != N || r->E != E || r->k != k) continue;
        double d = 0;
        for (size_t i = 0; i < (size_t)N * E; i++) d = fmax(d, fabs(l[i] - r->logits[i]));
        if (d < best_d) {
            best_d = d;
            best = r;
        }
    }
    return best;
}

static void route_pin_forward(backend *be, int32_t *idx, float *weights, float *probs,
                              const void *logits, int N, int E, int k, int renorm) {
    route_pin_inner(be)(be, idx, weights, probs, logits, N, E, k, renorm);
    if (!route_pin.recording && !route_pin.ref) return;
    size_t a = dtype_size(be->act_dtype), NE = (size_t)N * E, Nk = (size_t)N * k;
    route_call c = {N, E, k, malloc(NE * 4), malloc(Nk * 4)};
    void *raw = malloc(NE * a);
    be->copy_to_host(be, raw, logits, NE * a);
    be->copy_to_host(be, c.idx, idx, Nk * 4);
    be->synchronize(be);
    route_pin_to_f32(be, c.logits, raw, NE);
    free(raw);
    const route_call *r = route_pin.ref ? route_pin_match(c.logits, N, E, k) : NULL;
    if (r) {
        float *p = malloc(NE * 4), *w = malloc(Nk * 4);
        be->copy_to_host(be, p, probs, NE * 4);
        be->copy_to_host(be, w, weights, Nk * 4);
        be->synchronize(be);
        int changed = 0;
        for (int n = 0; n < N; n++) {
            const float *lr = r->logits + (size_t)n * E, *lq = c.logits + (size_t)n * E;
            double dev = 0, m = route_pin_sorted(lr, E, k - 1) - route_pin_sorted(lr, E, k);
            for (int e = 0; e < E; e++) dev = fmax(dev, fabs(lq[e] - lr[e]));
            route_pin.rows++;
            route_pin.min_margin = fmin(route_pin.min_margin, m);
            if (route_pin_same_set(c.idx + (size_t)n * k, r->idx + (size_t)n * k, k)) continue;
            if (m > 2 * dev) {
                route_pin.clear_flips++;
                continue;
            }
            route_pin.pinned++;
            changed = 1;
            float s = 0;
            for (int j = 0; j < k; j++) s += p[(size_t)n * E + r->idx[(size_t)n * k + j]];
            for (int j = 0; j < k; j++) {
                float pj = p[(size_t)n * E + r->idx[(size_t)n * k + j]];
                c.idx[(size_t)n * k + j] = r->idx[(size_t)n * k + j];
                w[(size_t)n * k + j] = renorm ? pj / s : pj;
            }
        }
        if (changed) {
            be->copy_to_device(be, idx, c.idx, Nk * 4);
            be->copy_to_device(be, weights, w, Nk * 4);
            be->synchronize(be);
        }
        free(p);
        free(w);
    }
    if (route_pin.recording && route_pin.n < ROUTE_PIN_MAX_CALLS) {
        route_pin.calls[route_pin.n++] = c;
    } else {
        free(c.logits);
        free(c.idx);
    }
}

// Wraps be's router op (once per backend, two backends at most).
static void route_pin_install(backend *be) {
    int i = route_pin.inner[0].be ? 1 : 0;
    route_pin.inner[i].be = be;
    route_pin.inner[i].fn = be->moe_router_forward;
    be->moe_router_forward = route_pin_forward;
}

// Frees the recorded calls and clears the counters; recording and ref off.
static void route_pin_reset(void) {
    for (int c = 0; c < route_pin.n; c++) {
        free(route_pin.calls[c].logits);
        free(route_pin.calls[c].idx);
    }
    route_pin.n = route_pin.recording = route_pin.nref = 0;
    route_pin.ref = NULL;
    route_pin.rows = route_pin.pinned = route_pin.clear_flips = 0;
    route_pin.min_margin = INFINITY;
}
