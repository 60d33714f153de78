// model/moe/experts.h — the grouped SwiGLU experts of one MoE layer (Megatron-Core's
// "experts"): for each expert e with rows, over its contiguous permuted rows
// [offsets[e], offsets[e+1]) of xp (each projection one grouped_linear op over all experts):
// gate = xp·Wg[e]ᵀ, up = xp·Wu[e]ᵀ, h = silu(gate)·up, eo = h·Wd[e]ᵀ.  Experts without rows cost
// nothing.  Weights are expert-major: Wg, Wu act (E, I, C), Wd act (E, C, I), expert e's matrix
// contiguous at e·I·C (the published per-expert tensors stacked, transformers 5's gate_up_proj
// split in its gate and up halves).
#pragma once
#include "../../kernels/backend.h"
#include "adapters.h"
#include "router.h"

typedef struct {
    const void *gate, *up, *down;   // act (E, I, C), (E, I, C), (E, C, I)
    const moe_lora *lora;           // LoRA adapters (experts, router), NULL: none (adapters.h)
    // gpt-oss's variant (d->expert_bias): act (E, I), (E, I), (E, C); else NULL.
    const void *gate_bias, *up_bias, *down_bias;
    // QLoRA (--quantize nf4): expert e's frozen matrices in NF4 at gate_q[e], up_q[e], down_q[e]
    // (kernels/nf4_format.h; gate, up, down then NULL), bitsandbytes' per-expert Linear4bit of
    // transformers 4.x; nf4_ws act (I, C) where a bf16 backend dequantises one expert's matrix
    // before its GEMM (nf4_linear_*; NULL on the cpu backend).  NULL: the act stacks above.
    const struct nf4_tensor *gate_q, *up_q, *down_q;
    void *nf4_ws;
    // gpt-oss's published MXFP4 experts kept packed (model_options.experts_mxfp4): expert e's
    // frozen matrices at gate_mx[e], up_mx[e], down_mx[e] (kernels/mxfp4_format.h; gate, up,
    // down then NULL), each dequantised (mxfp4_dequantize, exact) into mx_ws, act (max(I·C)),
    // before the act linear its rows go through: on the CPU the very GEMM the grouped op runs
    // per expert, so the results equal the dequantised-at-load experts' bit for bit.
    const struct mxfp4_tensor *gate_mx, *up_mx, *down_mx;
    void *mx_ws;
    // Host scratch of MOE_EXPERT_PTRS(E) pointers, planned once by the caller: each expert's
    // matrices (weights, biases, gradients) as the grouped ops take them, refilled per call.
    void **ptrs;
} moe_expert_weights;

#define MOE_EXPERT_PTRS(E) ((size_t)12 * (size_t)(E))

typedef struct {
    float *gate, *up, *down;        // f32, the same shapes; NULL: that projection is frozen
    float *gate_bias, *up_bias, *down_bias;   // f32 (E, I), (E, I), (E, C); NULL: frozen or none
} moe_expert_grads;

// xp: act (M, C) routed rows; gate, up: act (M, I) kept for the backward; h: act (M, I)
// scratch (the backward recomputes it); eo: act (M, C) out.  offsets: host (E + 1).
void moe_experts_forward(backend *be, const moe_dims *d, const int *offsets,
                         const moe_expert_weights *w, const void *xp, void *gate, void *up,
                         void *h, void *eo);

// In: deo act (M, C) (∂/∂eo).  Out: dxp act (M, C) overwritten (may be the same buffer as
// deo: each expert's deo rows are consumed before its dxp rows are written); g += the weight
// gradients (those not NULL).  Scratch act (M, I) each: h (silu(gate)·up recomputed), dh (then
// ∂/∂gate in place), dup.
void moe_experts_backward(backend *be, const moe_dims *d, const int *offsets,
                          const moe_expert_weights *w, moe_expert_grads *g, const void *xp,
                          const void *gate, const void *up, const void *deo, void *dxp, void *h,
                          void *dh, void *dup);
