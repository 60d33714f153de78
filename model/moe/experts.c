// model/moe/experts.c — see experts.h.
#include "experts.h"
#include "../../kernels/nf4_format.h"

// Element index·elems of an act buffer: row `index` of a matrix of `elems` columns, or expert
// `index`'s matrix of `elems` elements.
static void *act_at(const backend *be, const void *base, size_t index, size_t elems) {
    return (char *)base + index * elems * dtype_size(be->act_dtype);
}

static float *f32_at(float *base, int e, size_t elems) {
    return base ? base + (size_t)e * elems : NULL;
}

// Expert e's bias (gpt-oss's variant), or NULL.
static const void *bias_at(const backend *be, const void *base, int e, size_t elems) {
    return base ? act_at(be, base, (size_t)e, elems) : NULL;
}

// out (rows, OC) = x·W[e]ᵀ + bias, expert e's W from the act stack (E, OC, IC) or, under QLoRA,
// its NF4 tensor q[e] (dequantised by the backend into w->nf4_ws).
static void expert_linear_forward(backend *be, const moe_expert_weights *w, const void *stack,
                                  const nf4_tensor *q, int e, void *out, const void *x, const void *bias, int rows,
                                  int IC, int OC) {
    if (q) be->nf4_linear_forward(be, out, x, &q[e], bias, rows, IC, OC, 1.0f, 0, w->nf4_ws);
    else be->linear_forward(be, out, x, act_at(be, stack, e, (size_t)IC * OC), bias, rows, IC, OC, 1.0f, 0);
}

// linear_backward of expert e's W (stack or q[e] as above); an NF4 W is frozen (dw, db NULL).
static void expert_linear_backward(backend *be, const moe_expert_weights *w, const void *stack,
                                   const nf4_tensor *q, int e, void *dx, float *dw, float *db, const void *dout,
                                   const void *x, int rows, int IC, int OC, int accumulate) {
    if (q) be->nf4_linear_backward(be, dx, dout, &q[e], rows, IC, OC, 1.0f, accumulate, w->nf4_ws);
    else be->linear_backward(be, dx, dw, db, dout, x, act_at(be, stack, e, (size_t)IC * OC), rows, IC, OC, 1.0f,
                             accumulate);
}

// h = the experts' activation of (gate, up): SwiGLU, or gpt-oss's clamped SwiGLU.
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
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        const void *x_e = act_at(be, xp, r0, C);
        expert_linear_forward(be, w, w->gate, w->gate_q, e, act_at(be, gate, r0, I), x_e,
                              bias_at(be, w->gate_bias, e, I), rows, C, I);
        expert_linear_forward(be, w, w->up, w->up_q, e, act_at(be, up, r0, I), x_e, bias_at(be, w->up_bias, e, I),
                              rows, C, I);
    }
    if (w->lora) {   // per-expert LoRA of gate and up (adapters.h)
        moe_lora_forward(be, w->lora, MOE_LORA_GATE, offsets, E, xp, gate, C, I);
        moe_lora_forward(be, w->lora, MOE_LORA_UP, offsets, E, xp, up, C, I);
    }
    size_t M = (size_t)offsets[E];
    act_forward(be, d, h, gate, up, M * I);
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        expert_linear_forward(be, w, w->down, w->down_q, e, act_at(be, eo, r0, C), act_at(be, h, r0, I),
                              bias_at(be, w->down_bias, e, C), rows, I, C);
    }
    if (w->lora) moe_lora_forward(be, w->lora, MOE_LORA_DOWN, offsets, E, h, eo, I, C);
}

void moe_experts_backward(backend *be, const moe_dims *d, const int *offsets,
                          const moe_expert_weights *w, moe_expert_grads *g, const void *xp,
                          const void *gate, const void *up, const void *deo, void *dxp, void *h,
                          void *dh, void *dup) {
    int C = d->hidden, I = d->intermediate, E = d->n_experts;
    size_t wsz = (size_t)I * C, M = (size_t)offsets[E];
    act_forward(be, d, h, gate, up, M * I);
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        expert_linear_backward(be, w, w->down, w->down_q, e, act_at(be, dh, r0, I), f32_at(g->down, e, wsz),
                               f32_at(g->down_bias, e, C), act_at(be, deo, r0, C), act_at(be, h, r0, I), rows, I, C, 0);
    }
    // The down adapters read deo before dxp (possibly the same buffer) is written below.
    if (w->lora) moe_lora_backward(be, w->lora, MOE_LORA_DOWN, offsets, E, h, deo, dh, I, C);
    act_backward(be, d, dh, dup, dh, gate, up, M * I);   // dh becomes ∂/∂gate
    for (int e = 0; e < E; e++) {
        int r0 = offsets[e], rows = offsets[e + 1] - r0;
        if (rows == 0) continue;
        const void *x_e = act_at(be, xp, r0, C);
        void *dx_e = act_at(be, dxp, r0, C);
        expert_linear_backward(be, w, w->gate, w->gate_q, e, dx_e, f32_at(g->gate, e, wsz), f32_at(g->gate_bias, e, I),
                               act_at(be, dh, r0, I), x_e, rows, C, I, 0);
        expert_linear_backward(be, w, w->up, w->up_q, e, dx_e, f32_at(g->up, e, wsz), f32_at(g->up_bias, e, I),
                               act_at(be, dup, r0, I), x_e, rows, C, I, 1);
    }
    if (w->lora) {
        moe_lora_backward(be, w->lora, MOE_LORA_GATE, offsets, E, xp, dh, dxp, C, I);
        moe_lora_backward(be, w->lora, MOE_LORA_UP, offsets, E, xp, dup, dxp, C, I);
    }
}
