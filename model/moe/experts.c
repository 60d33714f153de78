// model/moe/experts.c — see experts.h.  Each projection is one grouped_linear op over all the
// experts (CUDA: one cuBLAS grouped GEMM; cpu: the per-expert loop), fed host arrays of each
// expert's matrix.
#include "experts.h"
#include "../../kernels/mxfp4_format.h"
#include "../../kernels/nf4_format.h"
#include <stddef.h>

// Element index·elems of an act buffer: row `index` of a matrix of `elems` columns, or expert
// `index`'s matrix of `elems` elements.
static void *act_at(const backend *be, const void *base, size_t index, size_t elems) {
    return (char *)base + index * elems * dtype_size(be->act_dtype);
}

// Each expert's matrix of the stacks (weights act, gradients f32), as the grouped ops take them:
// host arrays of E device pointers; NULL where the stack is absent (no bias, frozen).
enum { P_GATE, P_UP, P_DOWN, P_N };
typedef struct {
    const void **w[P_N], **bias[P_N];
    float **dw[P_N], **dbias[P_N];
} expert_ptrs;

static const void **act_stack(const backend *be, const void **slot, const void *base, int E, size_t elems) {
    if (!base) return NULL;
    for (int e = 0; e < E; e++) slot[e] = act_at(be, base, (size_t)e, elems);
    return slot;
}

static float **f32_stack(float **slot, float *base, int E, size_t elems) {
    if (!base) return NULL;
    for (int e = 0; e < E; e++) slot[e] = base + (size_t)e * elems;
    return slot;
}

static expert_ptrs expert_ptrs_make(const backend *be, const moe_dims *d, const moe_expert_weights *w,
                                    const moe_expert_grads *g) {
    int C = d->hidden, I = d->intermediate, E = d->n_experts;
    size_t wsz = (size_t)I * C, bsz[P_N] = {(size_t)I, (size_t)I, (size_t)C};
    expert_ptrs p = {0};
    void **mem = w->ptrs;   // MOE_EXPERT_PTRS(E) = 4·P_N·E
    const void *ws[P_N] = {w->gate, w->up, w->down}, *bs[P_N] = {w->gate_bias, w->up_bias, w->down_bias};
    float *gs[P_N] = {g ? g->gate : NULL, g ? g->up : NULL, g ? g->down : NULL};
    float *gbs[P_N] = {g ? g->gate_bias : NULL, g ? g->up_bias : NULL, g ? g->down_bias : NULL};
    for (int j = 0; j < P_N; j++) {
        p.w[j] = act_stack(be, (const void **)mem + (size_t)(4 * j) * E, ws[j], E, wsz);
        p.bias[j] = act_stack(be, (const void **)mem + (size_t)(4 * j + 1) * E, bs[j], E, bsz[j]);
        p.dw[j] = f32_stack((float **)mem + (size_t)(4 * j + 2) * E, gs[j], E, wsz);
        p.dbias[j] = f32_stack((float **)mem + (size_t)(4 * j + 3) * E, gbs[j], E, bsz[j]);
    }
    return p;
}

// out (rows of each expert's group, OC) = x·W[e]ᵀ + bias for projection j of every expert: one
// grouped_linear op; under QLoRA (q: the experts' NF4 tensors) one NF4 linear per expert, each
// dequantised into w->nf4_ws first; with MXFP4 experts (mx) per expert with rows its matrix
// dequantised into w->mx_ws, then the linear op (the grouped op's per-group call on the cpu).
static void experts_project_forward(backend *be, const moe_expert_weights *w, const expert_ptrs *p, int j,
                                    const nf4_tensor *q, const mxfp4_tensor *mx, const int *offsets, int E,
                                    void *out, const void *x, int IC, int OC) {
    if (mx) {
        for (int e = 0; e < E; e++) {
            int r0 = offsets[e], rows = offsets[e + 1] - r0;
            if (rows == 0) continue;
            be->mxfp4_dequantize(be, w->mx_ws, &mx[e], OC, IC);
            be->linear_forward(be, act_at(be, out, r0, OC), act_at(be, x, r0, IC), w->mx_ws,
                               p->bias[j] ? p->bias[j][e] : NULL, rows, IC, OC, 1.0f, 0);
        }
        return;
    }
    if (!q) {
        be->grouped_linear_forward(be, out, x, p->w[j], p->bias[j], offsets, E, IC, OC, 1.0f, 0);
        return;
    }
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        be->nf4_linear_forward(be, act_at(be, out, r0, OC), act_at(be, x, r0, IC), &q[e],
                               p->bias[j] ? p->bias[j][e] : NULL, rows, IC, OC, 1.0f, 0, w->nf4_ws);
    }
}

// The backward of experts_project_forward: dx (and, unquantised, dW and dbias); an NF4 or MXFP4
// W is frozen (dequantised again rather than kept from the forward).
static void experts_project_backward(backend *be, const moe_expert_weights *w, const expert_ptrs *p, int j,
                                     const nf4_tensor *q, const mxfp4_tensor *mx, const int *offsets, int E,
                                     void *dx, const void *dout, const void *x, int IC, int OC, int accumulate) {
    if (mx) {
        for (int e = 0; e < E; e++) {
            int r0 = offsets[e], rows = offsets[e + 1] - r0;
            if (rows == 0) continue;
            be->mxfp4_dequantize(be, w->mx_ws, &mx[e], OC, IC);
            be->linear_backward(be, act_at(be, dx, r0, IC), NULL, p->dbias[j] ? p->dbias[j][e] : NULL,
                                act_at(be, dout, r0, OC), act_at(be, x, r0, IC), w->mx_ws, rows, IC, OC, 1.0f,
                                accumulate);
        }
        return;
    }
    if (!q) {
        be->grouped_linear_backward(be, dx, p->dw[j], p->dbias[j], dout, x, p->w[j], offsets, E, IC, OC, 1.0f,
                                    accumulate);
        return;
    }
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        be->nf4_linear_backward(be, act_at(be, dx, r0, IC), act_at(be, dout, r0, OC), &q[e], rows, IC, OC, 1.0f,
                                accumulate, w->nf4_ws);
    }
}

// h = the experts activation of (gate, up): SwiGLU, or gpt-oss's clamped SwiGLU.
static void act_forward(backend *be, const moe_dims *d, void *h, const void *gate, const void *up, size_t n) {
    if (d->swiglu_limit > 0) be->swiglu_clamped_forward(be, h, gate, up, n, d->swiglu_alpha, d->swiglu_limit);
    else be->swiglu_forward(be, h, gate, up, n);
}

static void act_backward(backend *be, const moe_dims *d, void *dgate, void *dup, const void *dh, const void *gate,
                         const void *up, size_t n) {
    if (d->swiglu_limit > 0)
        be->swiglu_clamped_backward(be, dgate, dup, dh, gate, up, n, d->swiglu_alpha, d->swiglu_limit);
    else be->swiglu_backward(be, dgate, dup, dh, gate, up, n);
}

void moe_experts_forward(backend *be, const moe_dims *d, const int *offsets,
                         const moe_expert_weights *w, const void *xp, void *gate, void *up,
                         void *h, void *eo) {
    int C = d->hidden, I = d->intermediate, E = d->n_experts;
    expert_ptrs p = expert_ptrs_make(be, d, w, NULL);
    experts_project_forward(be, w, &p, P_GATE, w->gate_q, w->gate_mx, offsets, E, gate, xp, C, I);
    experts_project_forward(be, w, &p, P_UP, w->up_q, w->up_mx, offsets, E, up, xp, C, I);
    if (w->lora && w->lora->gate_up) {   // per-expert LoRA of gate and up (adapters.h)
        moe_lora_forward_gate_up(be, w->lora, offsets, E, xp, gate, up, C, I);
    } else if (w->lora) {
        moe_lora_forward(be, w->lora, MOE_LORA_GATE, offsets, E, xp, gate, C, I);
        moe_lora_forward(be, w->lora, MOE_LORA_UP, offsets, E, xp, up, C, I);
    }
    size_t M = (size_t)offsets[E];
    act_forward(be, d, h, gate, up, M * I);
    experts_project_forward(be, w, &p, P_DOWN, w->down_q, w->down_mx, offsets, E, eo, h, I, C);
    if (w->lora) moe_lora_forward(be, w->lora, MOE_LORA_DOWN, offsets, E, h, eo, I, C);
}

void moe_experts_backward(backend *be, const moe_dims *d, const int *offsets,
                          const moe_expert_weights *w, moe_expert_grads *g, const void *xp,
                          const void *gate, const void *up, const void *deo, void *dxp, void *h,
                          void *dh, void *dup) {
    int C = d->hidden, I = d->intermediate, E = d->n_experts;
    size_t M = (size_t)offsets[E];
    expert_ptrs p = expert_ptrs_make(be, d, w, g);
    act_forward(be, d, h, gate, up, M * I);
    experts_project_backward(be, w, &p, P_DOWN, w->down_q, w->down_mx, offsets, E, dh, deo, h, I, C, 0);
    // The down adapters read deo before dxp (possibly the same buffer) is written below.
    if (w->lora) moe_lora_backward(be, w->lora, MOE_LORA_DOWN, offsets, E, h, deo, dh, I, C);
    act_backward(be, d, dh, dup, dh, gate, up, M * I);   // dh becomes ∂/∂gate
    experts_project_backward(be, w, &p, P_GATE, w->gate_q, w->gate_mx, offsets, E, dxp, dh, xp, C, I, 0);
    experts_project_backward(be, w, &p, P_UP, w->up_q, w->up_mx, offsets, E, dxp, dup, xp, C, I, 1);
    if (w->lora && w->lora->gate_up) {
        moe_lora_backward_gate_up(be, w->lora, offsets, E, xp, dh, dup, dxp, C, I);
    } else if (w->lora) {
        moe_lora_backward(be, w->lora, MOE_LORA_GATE, offsets, E, xp, dh, dxp, C, I);
        moe_lora_backward(be, w->lora, MOE_LORA_UP, offsets, E, xp, dup, dxp, C, I);
    }
}
