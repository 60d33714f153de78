// model/moe/adapters.h — LoRA inside a sparse MoE block: one adapter per expert on each of the
// experts' three projections (gate, up, down; Mixtral's w1, w3, w2), as PEFT puts one on each
// expert's nn.Linear in transformers 4.x, and optionally one on the router's linear. Expert e's
// adapter of projection j runs over e's contiguous permuted rows [offsets[e], offsets[e+1]):
//   y_e += scale · (dropout(x_e)·A_eᵀ)·B_eᵀ,   A_e (r, in), B_e (out, r),
// with the dropout mask drawn once over all M rows of the projection's input (one mask per
// projection and layer, as the dense layers draw one per linear). Everything goes through the
// op table's grouped_linear (each product one call over all experts) and dropout ops: no op of
// its own, so it runs on every backend.
//
// gpt-oss (gate_up set): gate and up share one A per expert, as PEFT's ParamWrapper on the fused
// gate_up_proj has it (model/lora_peft.h): A_e (r, C), B_e (2I, r) = [B_gate; B_up] (gate's I rows,
// then up's), held in the GATE slot; the UP slot is empty.
//
// The experts (experts.c) and the router (block.c) call these after their frozen base GEMMs,
// in separate blocks, so the base path stays as it is when no adapter is present.
#pragma once
#include "../../kernels/backend.h"
#include <stdint.h>

// The adapter of one linear: device act copies and f32 gradients (NULL: not trained).
typedef struct {
    const void *a, *b;          // act (r, in), (out, r)
    float *ga, *gb;             // f32 (r, in), (out, r)
} moe_lora_pair;

enum { MOE_LORA_GATE = 0, MOE_LORA_UP, MOE_LORA_DOWN, MOE_LORA_ROUTER, MOE_LORA_SLOTS };

typedef struct {
    int rank;                   // r
    float scale;                // alpha / r (or alpha / sqrt(r))
    float dropout;              // p; applied only when train is set (a training forward)
    int train;
    int gate_up;                // GATE slot: one A for gate and up, B (2I, r) (moe_lora_forward_gate_up)
    uint64_t seed[MOE_LORA_SLOTS];   // dropout stream of each projection of this layer
    // Host arrays of the adapters: E per expert projection, 1 for the router; NULL: not adapted.
    const moe_lora_pair *pair[MOE_LORA_SLOTS];
    // What the forward keeps for the backward: h = dropout(x)·Aᵀ, act (M, r) per expert
    // projection, (N, r) for the router.
    void *h[MOE_LORA_SLOTS];
    // Scratch shared by the layers: dh act (M, r); xdrop, dxdrop act (M, max(C, I)) (dropout only).
    void *dh, *xdrop, *dxdrop;
    // Host scratch of MOE_LORA_PTRS(E) pointers, planned once by the caller: the groups' A, B
    // and their gradients as the grouped ops take them, refilled per call.
    void **ptrs;
} moe_lora;

#define MOE_LORA_PTRS(E) ((size_t)4 * (size_t)(E))

// y (act (M, out)) += the adapters of `slot` on x (act (M, in)) over the groups of rows
// [offsets[g], offsets[g+1]), g < groups (the experts; the router: one group of N rows).
void moe_lora_forward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                      const void *x, void *y, int in, int out);

// From dy (act (M, out)): the adapters' gradients accumulate (ga, gb), and dx (act (M, in)) +=
// the adapters' share of ∂/∂x. x is the forward's input (the dropout mask is drawn again).
void moe_lora_backward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                       const void *x, const void *dy, void *dx, int in, int out);

// gate_up: gate (act (M, out)) += the shared-A adapters' gate half, up (act (M, out)) their up
// half: h = dropout(x)·Aᵀ once, gate += s·h·B[:out]ᵀ, up += s·h·B[out:]ᵀ (B (2·out, r)).
void moe_lora_forward_gate_up(backend *be, const moe_lora *lo, const int *offsets, int groups, const void *x,
                              void *gate, void *up, int in, int out);

// Its backward: dA, dB accumulate; dx (act (M, in)) += the share of ∂/∂x through both halves.
void moe_lora_backward_gate_up(backend *be, const moe_lora *lo, const int *offsets, int groups, const void *x,
                               const void *dgate, const void *dup, void *dx, int in, int out);
