// tests/model/test_clamp_pin.c — clamp_pin.h (the CUDA fidelity check's pinning of gpt-oss's
// clamped SwiGLU near its limit) on two CPU backends standing for fp32 and bf16: a near-limit
// element that falls on the other side is given the reference's decision, one far beyond its
// row's deviation is counted as a clear flip and left alone, every other element is the op's own.
#include "clamp_pin.h"
#include "test.h"

enum { W = 4, N = 8 };

static void *put(backend *be, const float *host) {
    void *d = be->alloc(be, N * 4);
    be->copy_to_device(be, d, host, N * 4);
    return d;
}

// dgate, dup of `be`'s backward on (gate, up) with dout = 1.
static void backward(backend *be, const float *gate, const float *up, float *dgate, float *dup) {
    const float one[N] = {1, 1, 1, 1, 1, 1, 1, 1};
    void *g = put(be, gate), *u = put(be, up), *d = put(be, one), *dg = be->alloc(be, N * 4), *du = be->alloc(be, N * 4);
    be->swiglu_clamped_backward(be, dg, du, d, g, u, N, 1.702f, 0.5f);
    be->copy_to_host(be, dgate, dg, N * 4);
    be->copy_to_host(be, dup, du, N * 4);
    be->synchronize(be);
    void *bufs[] = {g, u, d, dg, du};
    for (int i = 0; i < 5; i++) be->free(be, bufs[i]);
}

int main(void) {
    backend *ref = backend_cpu(1), *q = backend_cpu(1);
    if (!ref || !q) { fprintf(stderr, "FAIL no cpu backend\n"); return 1; }
    clamp_pin_install(ref);
    clamp_pin_install(q);
    clamp_pin_reset();
    clamp_pin.row = W;
    // Row 0: gate 0 at 0.5004 (clamped) comes back 0.4998 (passes): a near-tie (the row's other
    // values are off up to 5e-4). Row 1: up 4 at −0.5003 (clamped) comes back −0.4999: a
    // near-tie; gate 6 at 0.6 comes back 0.45, far beyond its row's 4e-4: a clear flip.
    const float rg[N] = {0.5004f, 0.1f, -0.2f, 0.3f, 0.2f, 0.1f, 0.6f, -0.3f};
    const float ru[N] = {0.2f, 0.2f, 0.2f, 0.2f, -0.5003f, 0.3f, 0.1f, 0.7f};
    const float qg[N] = {0.4998f, 0.1003f, -0.2005f, 0.3004f, 0.2004f, 0.1003f, 0.45f, -0.3002f};
    const float qu[N] = {0.2f, 0.2003f, 0.2f, 0.2001f, -0.4999f, 0.3002f, 0.1f, 0.7003f};
    float own_g[N], own_u[N], dg[N], du[N], tmp[N];
    backward(q, qg, qu, own_g, own_u);   // no reference yet: the op's own gradients
    void *g = put(ref, rg), *u = put(ref, ru), *o = ref->alloc(ref, N * 4);
    clamp_pin.recording = 1;
    ref->swiglu_clamped_forward(ref, o, g, u, N, 1.702f, 0.5f);
    clamp_pin.recording = 0;
    clamp_pin.ref = clamp_pin.calls;
    clamp_pin.nref = clamp_pin.n;
    CHECK(clamp_pin.n == 1, "%d recorded calls, want 1", clamp_pin.n);
    backward(q, qg, qu, dg, du);
    CHECK(clamp_pin.elems == N, "%ld elements seen, want %d", clamp_pin.elems, N);
    CHECK(clamp_pin.pinned == 2, "%ld pinned, want 2 (gate 0, up 4)", clamp_pin.pinned);
    CHECK(clamp_pin.clear_flips == 1, "%ld clear flips, want 1 (gate 6)", clamp_pin.clear_flips);
    CHECK(own_g[0] != 0 && dg[0] == 0, "gate 0: the reference clamps it (dgate %g, unpinned %g)", dg[0], own_g[0]);
    CHECK(own_u[4] != 0 && du[4] == 0, "up 4: the reference clamps it (dup %g, unpinned %g)", du[4], own_u[4]);
    for (int i = 0; i < N; i++) {
        if (i == 0) continue;
        CHECK(dg[i] == own_g[i], "dgate %d: %g, the op's own %g", i, dg[i], own_g[i]);
        if (i != 4) CHECK(du[i] == own_u[i], "dup %d: %g, the op's own %g", i, du[i], own_u[i]);
    }
    // Without a reference nothing is rewritten.
    clamp_pin_reset();
    backward(q, qg, qu, dg, tmp);
    CHECK(dg[0] == own_g[0] && clamp_pin.pinned == 0, "no reference: dgate 0 %g, pinned %ld", dg[0], clamp_pin.pinned);
    ref->free(ref, g);
    ref->free(ref, u);
    ref->free(ref, o);
    ref->destroy(ref);
    q->destroy(q);
    return test_finish("test_clamp_pin");
}
