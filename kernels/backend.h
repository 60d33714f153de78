// kernels/backend.h — the device interface: memory functions and one function pointer per op.
// The model is written once against this table; kernels/cpu implements it in plain C (fp32,
// OpenMP) as the reference, kernels/cuda with CUDA kernels and cuBLAS(Lt) (bf16 storage, fp32
// accumulation).
//
// Conventions for every op:
// - Pointers are device pointers of this backend. "act" marks a buffer in the backend's
//   activation dtype (be->act_dtype: F32 on cpu, BF16 on cuda); "f32" is always float;
//   "i32" int32_t. Frozen weights are stored in act dtype; trained tensors keep an f32 master
//   copy, f32 gradients and f32 AdamW moments, and an act copy that the forward reads.
// - N = number of token rows (B*T). Row-major everywhere; a weight W of a linear layer is
//   (OC, IC) as in PyTorch, so y = x·Wᵀ.
// - Backward ops ACCUMULATE into parameter gradients (dw, dbias: +=); callers zero them once per
//   optimizer step. Gradients w.r.t. activations follow the flag or the comment of each op.
// - A NULL gradient pointer means "not needed" (frozen weight): the op skips that work.
// - Ops are asynchronous on devices that queue work; synchronize() waits for all of them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DTYPE_F32 = 0, DTYPE_BF16 = 1, DTYPE_F16 = 2 } dtype;

static inline size_t dtype_size(dtype t) { return t == DTYPE_F32 ? 4 : 2; }
const char *dtype_name(dtype t);

// Rotary embedding table: inv_freq[i] for i < head_dim/2, already scaled (linear or llama3),
// kept on the device by the model. HF rotate-half layout: pairs (i, i + head_dim/2).
typedef struct {
    const float *inv_freq;   // f32 (head_dim/2), device pointer
    int head_dim;
    float attention_scaling; // multiplies cos and sin (1.0 for none/linear/llama3)
} rope_table;

typedef struct backend backend;
enum { BACKEND_SIDE_TAGS = 8 };
struct nf4_tensor;   // kernels/nf4_format.h: a 4-bit NF4 weight (codes, absmax, double quant)
struct mxfp4_tensor; // kernels/mxfp4_format.h: an MXFP4 weight (FP4 E2M1 codes, E8M0 scales)

struct backend {
    const char *name;       // "cpu" or "cuda:0"
    dtype act_dtype;        // storage dtype of activations and frozen weights
    int device_index;       // -1 for cpu
    char pci_bus_id[32];    // "0000:65:00.0": how NVML finds the same GPU (trainer/gpu_energy); "" on cpu
    void *impl;             // backend-private state (cuBLAS handles, stream, workspace)

    // Memory. alloc returns NULL (and sets be->error) when out of memory; never aborts.
    void *(*alloc)(backend *be, size_t bytes);
    void (*free)(backend *be, void *p);
    void (*copy_to_device)(backend *be, void *dst, const void *src_host, size_t bytes);
    void (*copy_to_host)(backend *be, void *dst_host, const void *src, size_t bytes);
    void (*copy)(backend *be, void *dst, const void *src, size_t bytes);   // device to device
    void (*memset_zero)(backend *be, void *p, size_t bytes);
    void (*synchronize)(backend *be);
    // Bytes of device memory free and total (cpu: physical memory).
    void (*memory_info)(backend *be, size_t *free_bytes, size_t *total_bytes);
    void (*destroy)(backend *be);
    // Pinned host memory and copies beside the compute (activation offload, model/llama.c).
    // host_alloc's memory is page-locked (cuda: cudaHostAlloc) so that copies to and from it run
    // while kernels do; NULL (and be->error) when refused. side_copy queues a copy of bytes
    // between device memory and such host memory (to_host: device → host) on a copy stream, after
    // all the work queued so far; side_wait makes the work queued after it wait for the last
    // side_copy of the same tag (0 ≤ tag < BACKEND_SIDE_TAGS). synchronize waits for the copies
    // too. The cpu backend: plain memory, the copy done at once, side_wait nothing.
    void *(*host_alloc)(backend *be, size_t bytes);
    void (*host_free)(backend *be, void *p);
    void (*side_copy)(backend *be, void *dst, const void *src, size_t bytes, int to_host, int tag);
    void (*side_wait)(backend *be, int tag);

    // Casts between f32 and act (a plain copy when act is f32).
    void (*cast_f32_to_act)(backend *be, void *dst_act, const float *src, size_t n);
    void (*cast_act_to_f32)(backend *be, float *dst, const void *src_act, size_t n);

    // out[i,:] = table[ids[i],:].  out: act (N, C); ids: i32 (N); table: act (V, C).
    void (*embedding_forward)(backend *be, void *out, const int32_t *ids, const void *table,
                              int N, int C);
    // dtable[ids[i],:] += dout[i,:], deterministic (same bits for any thread schedule).
    // dtable: f32 (V, C); dout: act (N, C).
    void (*embedding_backward)(backend *be, float *dtable, const void *dout, const int32_t *ids,
                               int N, int C, int V);

    // out = x / rms(x) * w; rstd saved for the backward.  x, out: act (N, C); w: act (C);
    // rstd: f32 (N).
    void (*rmsnorm_forward)(backend *be, void *out, float *rstd, const void *x, const void *w,
                            int N, int C, float eps);
    // dx += d/dx, dw += d/dw (dw f32 (C), may be NULL).  dx, dout, x: act (N, C).
    void (*rmsnorm_backward)(backend *be, void *dx, float *dw, const void *dout, const void *x,
                             const void *w, const float *rstd, int N, int C);

    // Residual add + RMSNorm in one pass: sum = a + b (stored), out = sum / rms(sum) · w, rstd
    // saved: the bits of add then rmsnorm_forward on the stored sum.  sum, out, a, b: act (N, C);
    // w: act (C); rstd: f32 (N).  out and sum may alias a or b, not each other.  (Its backward
    // is rmsnorm_backward, whose dx += already adds the norm's share to the residual's gradient.)
    void (*add_rmsnorm_forward)(backend *be, void *sum, void *out, float *rstd, const void *a,
                                const void *b, const void *w, int N, int C, float eps);

    // out = (accumulate ? out : 0) + scale * (inp·wᵀ + bias).
    // out: act (N, OC); inp: act (N, IC); w: act (OC, IC); bias: act (OC) or NULL.
    void (*linear_forward)(backend *be, void *out, const void *inp, const void *w,
                           const void *bias, int N, int IC, int OC, float scale, int accumulate);
    // dinp = (accumulate ? dinp : 0) + scale * dout·w        (dinp may be NULL: skipped)
    // dw += scale * doutᵀ·inp  (f32 (OC, IC), may be NULL);  dbias += scale * Σ_rows dout
    // (f32 (OC), may be NULL).  dout: act (N, OC).
    void (*linear_backward)(backend *be, void *dinp, float *dw, float *dbias, const void *dout,
                            const void *inp, const void *w, int N, int IC, int OC, float scale,
                            int accumulate);

    // LoRA of G projections that read the same input x (attention's q, k, v; the MLP's gate, up)
    // with their A matrices stacked in one buffer a: act (G·r, IC), projection g's A at rows g·r.
    // Forward, one GEMM over x: h = x·aᵀ (act (N, G·r), kept for the backward; columns g·r.. are
    // projection g's dropout-free x·A_gᵀ), then y[g] += scale · h_g·b[g]ᵀ for each g.
    // y[g]: act (N, out[g]); b[g]: act (out[g], r).  Each result equals linear_forward's.
    void (*lora_group_forward)(backend *be, void *const *y, void *h, const void *x, const void *a,
                               const void *const *b, const int *out, int G, int N, int IC, int r,
                               float scale);
    // Backward: dh_g = scale · dy[g]·b[g] into dh (act (N, G·r) scratch, overwritten);
    // db[g] += scale · dy[g]ᵀ·h_g (f32 (out[g], r); db or db[g] NULL: skipped); then one GEMM each
    // da += dhᵀ·x (f32 (G·r, IC), the stacked A's gradients; NULL: skipped) and dx += dh·a (act
    // (N, IC), always accumulated: the frozen W's share is already there; NULL: skipped).  The CPU
    // sums dx's share block by block, g in order, so that it equals G linear_backward calls bit
    // for bit; CUDA runs it as one GEMM over G·r.
    void (*lora_group_backward)(backend *be, void *dx, float *da, float *const *db, void *dh,
                                const void *const *dy, const void *x, const void *h, const void *a,
                                const void *const *b, const int *out, int G, int N, int IC, int r,
                                float scale);

    // In place on x: act (N, n_heads, head_dim); pos: i32 (N) position of each row in its
    // document.  forward rotates by +θ, backward (on gradients) by −θ.
    void (*rope_forward)(backend *be, void *x, const int32_t *pos, const rope_table *rope,
                         int N, int n_heads);
    void (*rope_backward)(backend *be, void *dx, const int32_t *pos, const rope_table *rope,
                          int N, int n_heads);
    // RoPE of attention's q and k in one launch, each head RMS-normed first when wq, wk are given
    // (the qk-norm families, Qwen3: q_norm, k_norm of weight (hd)): q = rope(rmsnorm(q_in)·wq),
    // k likewise, the per-head rstd saved for the backward.  The values (cpu: the bits) of
    // rmsnorm_forward over the (N·H, hd) rows, then rope_forward on q and on k.  Without the norm
    // (wq = wk = NULL; rstd, eps unused) q = rope(q_in).  q, q_in: act (N, Hq, hd); k, k_in: act
    // (N, Hk, hd), hd = rope->head_dim; rstd_q: f32 (N·Hq); rstd_k: f32 (N·Hk); wq, wk: act (hd).
    // q_in may be q and k_in k (in place).
    void (*rope_qk_forward)(backend *be, void *q, void *k, float *rstd_q, float *rstd_k, const void *q_in,
                            const void *k_in, const void *wq, const void *wk, const int32_t *pos,
                            const rope_table *rope, int N, int Hq, int Hk, float eps);
    // Its backward, in place: dq, dk hold ∂loss/∂q, ∂loss/∂k on entry and ∂loss/∂q_in, ∂loss/∂k_in
    // on return (overwritten): rope_backward, then with the norm rmsnorm_backward onto zeros, each
    // head row read before it is written.  dwq, dwk: f32 (hd) += the norm weights' gradients (NULL:
    // frozen).  q_in, k_in, rstd_q, rstd_k as the forward saved them (unread without the norm).
    void (*rope_qk_backward)(backend *be, void *dq, void *dk, float *dwq, float *dwk, const void *q_in,
                             const void *k_in, const void *wq, const void *wk, const float *rstd_q,
                             const float *rstd_k, const int32_t *pos, const rope_table *rope, int N,
                             int Hq, int Hk);

    // Causal attention with GQA, document masks, an optional sliding window and optional learned
    // sinks (gpt-oss), never materialising a (T × T) matrix.
    // Rows are grouped B batches of Tq query rows and Tk key rows (Tk ≥ Tq; query row i of a batch
    // sits at key position i + Tk − Tq, which lets decoding append to a KV cache).
    // q, out: act (B*Tq, n_heads*hd); k, v: act (B*Tk, n_kv_heads*hd); query head h reads kv
    // head h / (n_heads / n_kv_heads).  doc_start: i32 (B*Tk): for key position t, the position
    // where t's document begins; query at position p sees keys j with doc_start[p] ≤ j ≤ p.
    // window > 0 further limits that to p − j < window (the query and window − 1 keys before
    // it), as transformers' sliding_window_overlay does (kv_idx > q_idx − sliding_window);
    // window = 0: no window.
    // sinks: f32 (n_heads) logits, NULL = none: per head one extra logit joins the softmax's
    // denominator and takes no value (modeling_gpt_oss.py's eager_attention_forward), so
    // out = Σ_j e^{s_j} v_j / (Σ_j e^{s_j} + e^{sink_h}).
    // lse: f32 (B, n_heads, Tq) logsumexp of the scaled scores and the sink, kept for the backward.
    // packed: what the caller knows on the host about doc_start, so that no implementation reads
    // it back from the device: 0 = every doc_start is 0 (one document per row; cuDNN may take the
    // call), 1 = rows may pack several documents (attention_rows_packed computes it once per
    // batch).  Not a mask: a call with packed = 0 and a non-zero doc_start is a caller's bug (the
    // CPU backend stops on it).
    void (*attention_forward)(backend *be, void *out, float *lse, const void *q, const void *k,
                              const void *v, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                              int n_heads, int n_kv_heads, int hd, float scale, int window,
                              const float *sinks);
    // dq, dk, dv overwritten (not accumulated).  Shapes, packed, window and sinks as the forward.
    // dsinks: f32 (n_heads), accumulated (+=) ∂loss/∂sinks, NULL when not wanted (or no sinks):
    // dsinks[h] = −Σ_rows p_sink · (dout·out), p_sink = e^{sink_h − lse}.
    void (*attention_backward)(backend *be, void *dq, void *dk, void *dv, const void *dout,
                               const void *out, const float *lse, const void *q, const void *k,
                               const void *v, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                               int n_heads, int n_kv_heads, int hd, float scale, int window,
                               const float *sinks, float *dsinks);

    // out = silu(gate) * up.  All act (n).
    void (*swiglu_forward)(backend *be, void *out, const void *gate, const void *up, size_t n);
    // dgate, dup overwritten.
    void (*swiglu_backward)(backend *be, void *dgate, void *dup, const void *dout,
                            const void *gate, const void *up, size_t n);

    // gpt-oss's clamped SwiGLU (the experts' activation): g = min(gate, limit),
    // u = clamp(up, −limit, limit), out = (u + 1) · g · σ(alpha · g).  All act (n).
    void (*swiglu_clamped_forward)(backend *be, void *out, const void *gate, const void *up, size_t n,
                                   float alpha, float limit);
    // dgate, dup overwritten (zero where the clamp cut the input; may alias dout).
    void (*swiglu_clamped_backward)(backend *be, void *dgate, void *dup, const void *dout,
                                    const void *gate, const void *up, size_t n, float alpha, float limit);

    // out = a + b (out may alias a or b).  All act (n).
    void (*add)(backend *be, void *out, const void *a, const void *b, size_t n);

    // Inverted dropout with a counter-based hash (kernels/rng.h), so both backends drop the same
    // elements for the same (seed, index).  out = inp * keep / (1 − p).  act (n).
    void (*dropout_forward)(backend *be, void *out, const void *inp, size_t n, float p,
                            uint64_t seed);
    // dinp += dout * keep / (1 − p).
    void (*dropout_backward)(backend *be, void *dinp, const void *dout, size_t n, float p,
                             uint64_t seed);

    // Fused lm_head + cross-entropy, processed in chunks: never the full (N × V) logits.
    // h: act (N, C) final-normed hidden; w: act (V, C); targets: i32 (N), −1 = not trained.
    // losses: f32 (N), −log softmax(h·wᵀ)[target] (0 where not trained).
    // When dh != NULL: dh = grad_scale * ∂loss/∂h (act (N, C), overwritten) and, when
    // dw != NULL, dw += grad_scale * ∂loss/∂w (f32 (V, C)).  grad_scale is 1/(trained tokens
    // of the whole accumulated batch).
    void (*lm_head_loss)(backend *be, float *losses, void *dh, float *dw, const void *h,
                         const void *w, const int32_t *targets, int N, int C, int V,
                         float grad_scale);

    // AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW):
    //   g = grad * grad_scale; m = b1 m + (1−b1) g; v = b2 v + (1−b2) g²
    //   param -= lr * (m/(1−b1^t) / (sqrt(v/(1−b2^t)) + eps) + weight_decay * param)
    // param, grad, m, v: f32 (n); param_act: act copy refreshed from param (NULL or == param
    // when act is f32 and they share storage).  step t ≥ 1.
    void (*adamw_update)(backend *be, float *param, void *param_act, const float *grad,
                         float *m, float *v, size_t n, float lr, float beta1, float beta2,
                         float eps, float weight_decay, int step, float grad_scale);

    // *out += Σ x[i]², x: f32 (n); out: f32 (1) on the device.  Deterministic.
    void (*sum_squares)(backend *be, float *out, const float *x, size_t n);
    // x *= s, f32 (n).
    void (*scale_f32)(backend *be, float *x, float s, size_t n);
    // out += x, f32 (n): ZeRO-2 adds each micro-batch's reduced gradient shard to its sum.
    void (*add_f32)(backend *be, float *out, const float *x, size_t n);
    // Nonzero if any of x: f32 (n) is NaN or ±inf.  Synchronous; returns to the host.
    int (*has_nonfinite)(backend *be, const float *x, size_t n);

    // Mixture of experts (model/moe/: router → dispatch → experts → combine), dropless: each
    // of the N rows goes to k of E experts, M = N·k assignments; assignment a = n·k + j is row
    // n's j-th choice. The grouping by expert (a counting sort, stable in a) is made on the host
    // from idx; the experts' GEMMs are linear ops over each expert's contiguous rows.
    //
    // Router, as transformers' Qwen3-MoE and Mixtral: probs = softmax(logits) in f32 over all
    // E; idx = the k most probable experts by descending prob (ties: the lower index first);
    // weights = their probs, divided by their sum when renorm.  logits: act (N, E);
    // probs: f32 (N, E); idx: i32 (N, k); weights: f32 (N, k).
    void (*moe_router_forward)(backend *be, int32_t *idx, float *weights, float *probs,
                               const void *logits, int N, int E, int k, int renorm);
    // dlogits (act (N, E), overwritten) = ∂/∂logits, through the renormalisation and the
    // softmax, of Σ_{n,j} dweights[n,j]·weights[n,j]
    // + Σ_{n: mask[n] != 0} Σ_e dprob[e]·probs[n,e]: the dprob term skips the rows that
    // moe_router_stats skips (padding), so padding rows get only their dweights' gradient.
    // dweights: f32 (N, k); dprob: f32 (E), the load-balancing loss's gradient per expert (the
    // same for every row), or NULL; mask: i32 (N), or NULL for every row.
    void (*moe_router_backward)(backend *be, void *dlogits, const float *dweights,
                                const float *dprob, const int32_t *mask, const float *probs,
                                const int32_t *idx, const float *weights, int N, int E, int k,
                                int renorm);
    // Load-balancing statistics (transformers' load_balancing_loss_func): prob_sum[e] +=
    // Σ_n probs[n,e] and count[e] += #{(n, j): idx[n,j] = e}, over rows with mask[n] != 0
    // (mask: i32 (N), or NULL for every row).  prob_sum, count: f32 (E).  Deterministic.
    void (*moe_router_stats)(backend *be, float *prob_sum, float *count, const float *probs,
                             const int32_t *idx, const int32_t *mask, int N, int E, int k);
    // Dispatch: out[i,:] = x[src[i] / k, :] for the M permuted rows.  src: i32 (M), the
    // assignment each permuted row carries; out: act (M, C); x: act (N, C).
    void (*moe_permute)(backend *be, void *out, const void *x, const int32_t *src, int M, int k,
                        int C);
    // dx[n,:] = (accumulate ? dx[n,:] : 0) + Σ_j dout[pos[n·k + j], :], j in order, f32 sums.
    // pos: i32 (N·k), the permuted row of each assignment (src's inverse); dout: act (M, C).
    void (*moe_permute_backward)(backend *be, void *dx, const void *dout, const int32_t *pos,
                                 int N, int k, int C, int accumulate);
    // Combine: y[n,:] = Σ_j weights[n,j] · eo[pos[n·k + j], :], j in order, f32 sums.
    // eo: act (M, C) the experts' outputs; y: act (N, C) overwritten.
    void (*moe_unpermute)(backend *be, void *y, const void *eo, const float *weights,
                          const int32_t *pos, int N, int k, int C);
    // deo[pos[a],:] = weights[a] · dy[a / k,:] (act (M, C), overwritten);
    // dweights[a] = Σ_c dy[a / k, c] · eo[pos[a], c] (f32 (N, k), overwritten).
    void (*moe_unpermute_backward)(backend *be, void *deo, float *dweights, const void *dy,
                                   const void *eo, const float *weights, const int32_t *pos,
                                   int N, int k, int C);

    // The experts' GEMMs (model/moe/experts.c, adapters.c): linear_forward/backward over G row
    // groups at once, group g being rows [offsets[g], offsets[g+1]) of inp, out (the permuted
    // rows of expert g) with its own weight w[g].  Row indices are absolute (offsets[0] may be
    // > 0); a group without rows costs nothing and its weight is not read.
    //   out_g = (accumulate ? out_g : 0) + scale * (inp_g·w[g]ᵀ + bias[g]).
    // out: act (M, OC); inp: act (M, IC); w: host array of G device pointers, each act (OC, IC)
    // (an expert-major stack, or one adapter per expert); bias: host array of G act (OC), or NULL;
    // offsets: host int (G + 1).
    void (*grouped_linear_forward)(backend *be, void *out, const void *inp, const void *const *w,
                                   const void *const *bias, const int *offsets, int G, int IC,
                                   int OC, float scale, int accumulate);
    // Per group as linear_backward: dinp_g = (accumulate ? dinp_g : 0) + scale * dout_g·w[g]
    // (dinp NULL: skipped); dw[g] += scale * dout_gᵀ·inp_g (f32 (OC, IC)); dbias[g] += scale *
    // Σ_rows dout_g (f32 (OC)); dw, dbias: host arrays of G device pointers, or NULL (frozen),
    // as is any entry.  dout: act (M, OC).
    void (*grouped_linear_backward)(backend *be, void *dinp, float *const *dw, float *const *dbias,
                                    const void *dout, const void *inp, const void *const *w,
                                    const int *offsets, int G, int IC, int OC, float scale,
                                    int accumulate);

    // QLoRA's frozen 4-bit weights.  w: an NF4 tensor of OC·IC weights (kernels/nf4_format.h:
    // blocks of 64 over the flat row-major (OC, IC) matrix, absmax plain or double-quantised),
    // its pointers device memory of this backend, the struct itself on the host.
    // out: act (OC, IC) = the weights, each the f32 product code·absmax rounded once to act
    // (bitsandbytes' dequantize_4bit bit for bit).
    void (*nf4_dequantize)(backend *be, void *out, const struct nf4_tensor *w, int OC, int IC);
    // linear_forward with the NF4 weight w (OC, IC) in place of an act one:
    // out = (accumulate ? out : 0) + scale * (inp·Wᵀ + bias).  out: act (N, OC); inp: act
    // (N, IC); bias: act (OC) or NULL.  workspace: act (OC, IC) where the backend dequantises
    // the whole weight before its GEMM (cuda; contents undefined after); the cpu backend
    // dequantises 256 rows at a time into its own scratch and takes NULL.
    void (*nf4_linear_forward)(backend *be, void *out, const void *inp,
                               const struct nf4_tensor *w, const void *bias, int N, int IC,
                               int OC, float scale, int accumulate, void *workspace);
    // dinp = (accumulate ? dinp : 0) + scale * dout·W; dout: act (N, OC), dinp: act (N, IC).
    // The weight is frozen (no dw) and dequantised again rather than kept from the forward.
    void (*nf4_linear_backward)(backend *be, void *dinp, const void *dout,
                                const struct nf4_tensor *w, int N, int IC, int OC, float scale,
                                int accumulate, void *workspace);

    // gpt-oss's frozen MXFP4 experts (model_options.experts_mxfp4).  w: an MXFP4 matrix (OC, IC)
    // (kernels/mxfp4_format.h: its pointers device memory of this backend, the struct on the
    // host), IC a multiple of 32.  out: act (OC, IC) = fp4(code) · 2^(scale − 127), exact in f32
    // and rounded once to act (exact in bf16 unless it overflows): mxfp4_dequantize_host's values
    // (transformers' convert_moe_packed_tensors) bit for bit, untransposed.  The model runs the
    // act linear over the result (model/moe/experts.c), as the dequantised-at-load weights.
    void (*mxfp4_dequantize)(backend *be, void *out, const struct mxfp4_tensor *w, int OC, int IC);

    // Which attention implementation runs (--attention; kernels/cudnn_load.h): set once after
    // opening through backend_set_attention.  NULL: the backend has only its own kernel (cpu).
    // mode: an attention_mode.  Returns 0 with a message in err (cudnn asked for, not loadable).
    int (*set_attention)(backend *be, int mode, char *err, size_t errlen);
    char attention_impl[256];  // what runs, for the log and run.json ("quarry", "cudnn 9.19.0 ...")

    char error[256];  // last failure of alloc, for the caller's message
};

// The CPU backend: always available.  threads <= 0: OpenMP's default.
backend *backend_cpu(int threads);

// The CUDA backend on GPU device_index.  Returns NULL with a message in err when CUDA was not
// compiled in, no driver or device is present, or the index is out of range.
backend *backend_cuda(int device_index, char *err, size_t errlen);

// "cpu", "cuda", "cuda:N", or "auto" (cuda:0 when a GPU is present, else cpu).
backend *backend_open(const char *spec, char *err, size_t errlen);

// The attention ops' packed argument for a host doc_start (n positions): 1 when some row holds a
// document that does not start at its position 0 (several documents packed), else 0.
int attention_rows_packed(const int32_t *doc_start, size_t n);

// --attention auto|cudnn|quarry (NULL: auto) for be; fills be->attention_impl.  Returns 0 with a
// message in err for an unknown mode or cudnn where it cannot be used.
int backend_set_attention(backend *be, const char *mode, char *err, size_t errlen);

// What the CUDA side can report without a GPU being usable (for `quarry info`).
typedef struct {
    char name[256];
    size_t total_memory;
    int cc_major, cc_minor;
    int multiprocessors;
} gpu_info;

typedef struct {
    int cuda_compiled;        // 1 when the binary has the CUDA backend
    int nccl_compiled;        // 1 with the NCCL communicator; its version: cuda_libs_describe (cuda_libs.h)
    int runtime_version;      // e.g. 13000; 0 unknown
    int driver_version;       // 0 when no driver
    int device_count;
    gpu_info devices[16];
    char message[256];        // "no CUDA device", a driver error, ...
} cuda_report;

void cuda_query(cuda_report *r);

#ifdef __cplusplus
}
#endif
