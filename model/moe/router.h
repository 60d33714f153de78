// model/moe/router.h — the MoE router of one layer (Megatron-Core's "router"): logits = x·Wgᵀ
// (the linear op over the gate weight, frozen or trained), softmax and top-k through the
// moe_router ops, the load-balancing statistics, and the auxiliary loss of transformers'
// load_balancing_loss_func with its gradient.
//
// The load-balancing loss, as quarry computes it per forward (one micro-batch) over ALL MoE
// layers at once — transformers concatenates every layer's router logits before taking means,
// so the statistics of the layers add up before the product:
//   R = (#MoE layers) · (#rows with mask ≠ 0),  count[e] = Σ_layers #{(n, j): idx[n,j] = e},
//   prob_sum[e] = Σ_layers Σ_n probs[n,e]   (rows with mask ≠ 0 only, padding excluded as the
//   attention_mask variant excludes it),
//   aux = E · Σ_e (count[e] / R) · (prob_sum[e] / R).
// count is piecewise constant, so ∂aux/∂probs_l[n,e] = E·count[e]/R² for every MoE layer l and
// every unmasked row n: ONE dprob vector (E), computed after the whole forward (it needs every
// layer's count), serves every layer's backward.  With a coefficient c the loss adds c·aux and
// dprob[e] = grad_scale · c · E · count[e] / R².
//
// Usage per micro-batch: zero prob_sum and count (device f32 (E) each); each MoE layer's
// forward calls moe_route_forward with them; then copy them to the host and call moe_aux_loss;
// copy dprob to the device; every layer's backward passes it to moe_route_backward.
#pragma once
#include "../../kernels/backend.h"
#include "adapters.h"
#include <stddef.h>
#include <stdint.h>

// The shape of a sparse MoE block (one per model: every MoE layer has the same).
typedef struct {
    int hidden;         // C
    int intermediate;   // I: moe_intermediate_size (Qwen3-MoE) / intermediate_size (Mixtral)
    int n_experts;      // E
    int top_k;          // k: num_experts_per_tok (≤ E)
    int renorm;         // norm_topk_prob (Qwen3-MoE's config; Mixtral, gpt-oss: always 1)
    // gpt-oss's variant. Its router takes the top-k of the logits and a softmax over those k: the
    // same weights as renormalising the full softmax over the chosen (renorm), so the router op
    // is shared; only the bias is added.
    int router_bias;    // the router's linear has a bias (E)
    int expert_bias;    // every expert's gate, up and down have biases
    float swiglu_alpha, swiglu_limit;   // limit > 0: the clamped SwiGLU (swiglu_clamped ops)
} moe_dims;

// 0 when d is a valid shape; else -1 with "what is wrong" in err (the caller adds the file).
int moe_dims_check(const moe_dims *d, char *err, size_t errlen);

// quarry trains without router jitter (Mixtral's router_jitter_noise multiplies the input by
// U(1 − j, 1 + j) in training): a non-zero value is refused, not silently ignored.
// 0 when jitter == 0; else -1 and "FILE: error: ... hint: ..." in err.
int moe_check_router_jitter(double jitter, const char *config_file, char *err, size_t errlen);

// What one layer's router keeps for the backward (device pointers).
typedef struct {
    float *probs;       // f32 (N, E)
    int32_t *idx;       // i32 (N, k): the chosen experts, descending probability
    float *weights;     // f32 (N, k): their combine weights
} moe_route;

// logits (act (N, E), scratch) = x·gateᵀ; r filled; when prob_sum and count are not NULL the
// rows with mask ≠ 0 (mask: device i32 (N), NULL = every row) are added to them.
// x: act (N, C); gate: act (E, C); bias: act (E) when d->router_bias, else NULL. lora: the
// router's LoRA (lora->pair[MOE_LORA_ROUTER]) is added to the logits when both are set.
void moe_route_forward(backend *be, const moe_dims *d, moe_route *r, void *logits,
                       const void *x, const void *gate, const void *bias, const int32_t *mask,
                       float *prob_sum, float *count, int N, const moe_lora *lora);

// From the combine's dweights (f32 (N, k)) and the aux loss's dprob (device f32 (E) or NULL):
// dlogits (act (N, E), scratch, overwritten); dgate += dlogitsᵀ·x (f32 (E, C), NULL when the
// router is frozen); dx += dlogits·gate (act (N, C), accumulated: the router's share of x's
// gradient, present even with a frozen router); dbias += Σ_rows dlogits (f32 (E), NULL: frozen
// or no bias); the router's LoRA (as the forward) adds its gradients and its share of dx.
void moe_route_backward(backend *be, const moe_dims *d, const moe_route *r, void *dlogits,
                        const float *dweights, const float *dprob, const int32_t *mask,
                        const void *x, const void *gate, float *dgate, float *dbias, void *dx, int N,
                        const moe_lora *lora);

// The aux loss from the summed statistics (host f32 (E) each; rows = R above, > 0) and, when
// dprob is not NULL, dprob[e] = grad_scale · coef · E · count[e] / rows² (host f32 (E)).
// Returns aux (without coef); 0 when rows == 0 (and dprob zeroed).
double moe_aux_loss(const float *prob_sum, const float *count, int E, double rows, double coef,
                    double grad_scale, float *dprob);
