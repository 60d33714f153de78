// model/moe/block.h — one sparse MoE block (the MLP of a Qwen3-MoE / Mixtral layer), x (N, C) →
// y (N, C): router → dispatch → experts → combine, forward and backward, over the op table.
// Nothing is allocated per call: the decoder plans the bytes with moe_block_sizes, allocates
// once, and hands the memory to moe_saved_carve / moe_scratch_carve.
//
// Memory, M = N·k routed rows (dropless: exactly N·k whatever the routing, so the worst case is
// the only case; the per-expert split varies, the total does not):
//   kept per layer for the backward (moe_saved), device:
//     probs f32 (N, E), idx i32 (N, k), weights f32 (N, k), src and pos i32 (M),
//     xp act (M, C) (routed input), gate and up act (M, I), eo act (M, C) (experts' outputs);
//   kept per layer, host: offsets int (E + 1);
//   shared by all layers (moe_scratch), device: logits act (N, E), dlogits act (N, E),
//     dweights f32 (N, k), h, dh, dup act (M, I) each, deo act (M, C) (also dxp);
//   shared, host: three i32 (M) for the sort.
// E.g. Qwen3-30B-A3B (C 2048, I 768, E 128, k 8) at N = 2048 rows, bf16: M = 16384, kept per
// layer ≈ 2·M·C·2 + 2·M·I·2 + N·E·4 + ... ≈ 134 MB + 50 MB + 1 MB ≈ 186 MB, ×48 layers.
#pragma once
#include "dispatch.h"
#include "experts.h"
#include "router.h"

typedef struct {
    const void *router;             // act (E, C)
    moe_expert_weights experts;
    const void *router_bias;        // act (E), gpt-oss's variant; else NULL
} moe_weights;

typedef struct {
    float *router;                  // f32 (E, C), NULL: frozen (the default under LoRA)
    moe_expert_grads experts;
    float *router_bias;             // f32 (E), NULL: frozen or none
} moe_grads;

// What one layer keeps from its forward for its backward.
typedef struct {
    moe_route route;                // probs, idx, weights
    moe_routing routing;            // offsets (host), src, pos
    void *xp, *gate, *up, *eo;
} moe_saved;

typedef struct {
    void *logits, *dlogits;
    float *dweights;
    void *h, *dh, *dup, *deo;
    moe_dispatch_host host;
} moe_scratch;

// Bytes of each part for N rows (each sub-buffer rounded up to 256 bytes, as the carve lays
// them out).
typedef struct {
    size_t saved_device;            // per MoE layer
    size_t saved_host;              // per MoE layer (offsets)
    size_t scratch_device;          // once
    size_t scratch_host;            // once
} moe_sizes;

void moe_block_sizes(const moe_dims *d, int N, dtype act, moe_sizes *out);
// Lay s / t out over memory of the planned sizes (device and host parts; 256-byte aligned).
void moe_saved_carve(const moe_dims *d, int N, dtype act, void *device, void *host, moe_saved *s);
void moe_scratch_carve(const moe_dims *d, int N, dtype act, void *device, void *host,
                       moe_scratch *t);

// y (act (N, C), overwritten) = the block on x (act (N, C)).  mask, prob_sum, count: as
// moe_route_forward (prob_sum/count NULL: no aux statistics).  Returns 0, or -1 with a message
// in err (a routing index out of range: corrupted memory, never expected).
int moe_block_forward(backend *be, const moe_dims *d, const moe_weights *w, moe_saved *s,
                      moe_scratch *t, const void *x, void *y, const int32_t *mask,
                      float *prob_sum, float *count, int N, char *err, size_t errlen);

// From dy (act (N, C)): dx = (accumulate ? dx : 0) + ∂/∂x (act (N, C)); g += weight gradients
// (NULL members skipped); dprob: the aux loss's gradient (device f32 (E), moe_aux_loss) or NULL.
// x is the forward's input (the router's linear backward reads it), s what the forward kept.
void moe_block_backward(backend *be, const moe_dims *d, const moe_weights *w, moe_grads *g,
                        const moe_saved *s, moe_scratch *t, const void *x, const void *dy,
                        void *dx, const float *dprob, const int32_t *mask, int N, int accumulate);
