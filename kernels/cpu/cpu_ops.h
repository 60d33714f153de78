// kernels/cpu/cpu_ops.h — the CPU implementations of the op table, one file per op.
// On the CPU the activation dtype is f32, so every "act" pointer of backend.h is a float *.
#pragma once
#include "../backend.h"

// Fills every op pointer of be with its CPU implementation.
void cpu_ops_install(backend *be);

// offload.c: pinned host memory and side copies (plain memory, a memcpy).
void *cpu_host_alloc(backend *be, size_t bytes);
void cpu_host_free(backend *be, void *p);
void cpu_side_copy(backend *be, void *dst, const void *src, size_t bytes, int to_host, int tag);
void cpu_side_wait(backend *be, int tag);

// C (M, N) = beta·C + alpha·A·B in f32, blocked and packed, OpenMP over output tiles.
// Element (i, k) of A is a[i*a_rs + k*a_cs] and (k, j) of B is b[k*b_rs + j*b_cs], so either
// operand can be read transposed in place; C is row-major with leading dimension ldc.
// beta is 0 (C is overwritten and never read) or 1 (accumulate).  Every element of C is summed
// by one thread in a fixed order over k: the result does not depend on the thread count.
void cpu_gemm(int M, int N, int K, float alpha, const float *a, long a_rs, long a_cs,
              const float *b, long b_rs, long b_cs, float beta, float *c, long ldc);
// The same with a chosen micro-kernel, for tests: 0 = best available, 1 = portable 6×8,
// 2 = AVX2+FMA 6×16, 3 = AVX-512 6×32 (each falls back to the next simpler one the CPU has).
void cpu_gemm_with(int kernel_choice, int M, int N, int K, float alpha, const float *a,
                   long a_rs, long a_cs, const float *b, long b_rs, long b_cs, float beta,
                   float *c, long ldc);
// The same on one thread, for small tiles inside parallel code (attention): the packed panels
// go to scratch, which holds cpu_gemm_serial_scratch(M, N, K) floats.
size_t cpu_gemm_serial_scratch(int M, int N, int K);
void cpu_gemm_serial(int M, int N, int K, float alpha, const float *a, long a_rs, long a_cs,
                     const float *b, long b_rs, long b_cs, float beta, float *c, long ldc,
                     float *scratch);

// The ops, one file each (see backend.h for the contract of each).
void cpu_cast_f32_to_act(backend *be, void *dst, const float *src, size_t n);
void cpu_cast_act_to_f32(backend *be, float *dst, const void *src, size_t n);
void cpu_embedding_forward(backend *be, void *out, const int32_t *ids, const void *table, int N,
                           int C);
void cpu_embedding_backward(backend *be, float *dtable, const void *dout, const int32_t *ids,
                            int N, int C, int V);
void cpu_rmsnorm_forward(backend *be, void *out, float *rstd, const void *x, const void *w, int N,
                         int C, float eps);
void cpu_rmsnorm_backward(backend *be, void *dx, float *dw, const void *dout, const void *x,
                          const void *w, const float *rstd, int N, int C);
void cpu_add_rmsnorm_forward(backend *be, void *sum, void *out, float *rstd, const void *a, const void *b,
                             const void *w, int N, int C, float eps);
// One row of RMSNorm (rmsnorm.c): out = x · r · w, returns r.  out may alias x.
float cpu_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps);
// One row of its backward: dx = (accumulate ? dx : 0) + ∂/∂x for the row's gradient g and
// saved r (dx may be g); and dw += Σ_rows g·x·r (column blocks, rows in order).
void cpu_rmsnorm_dx_row(float *dx, const float *g, const float *x, const float *w, float r, int C, int accumulate);
void cpu_rmsnorm_dw(float *dw, const float *dout, const float *x, const float *rstd, int N, int C);
void cpu_linear_forward(backend *be, void *out, const void *inp, const void *w, const void *bias,
                        int N, int IC, int OC, float scale, int accumulate);
void cpu_linear_backward(backend *be, void *dinp, float *dw, float *dbias, const void *dout,
                         const void *inp, const void *w, int N, int IC, int OC, float scale,
                         int accumulate);
void cpu_lora_group_forward(backend *be, void *const *y, void *h, const void *x, const void *a,
                            const void *const *b, const int *out, int G, int N, int IC, int r, float scale);
void cpu_lora_group_backward(backend *be, void *dx, float *da, float *const *db, void *dh,
                             const void *const *dy, const void *x, const void *h, const void *a,
                             const void *const *b, const int *out, int G, int N, int IC, int r, float scale);
void cpu_rope_forward(backend *be, void *x, const int32_t *pos, const rope_table *rope, int N,
                      int n_heads);
void cpu_rope_backward(backend *be, void *dx, const int32_t *pos, const rope_table *rope, int N,
                       int n_heads);
// rope.c's pieces, shared with rope_qk.c so that the fused op gives the same bits: one
// position's cos and sin (half = head_dim/2 ≤ CPU_ROPE_MAX_HALF each, sn times sign), and one
// head (2·half) rotated in place by them.
enum { CPU_ROPE_MAX_HALF = 512 };
void cpu_rope_angles(float *cs, float *sn, int32_t pos, const rope_table *rope, float sign);
void cpu_rope_head(float *xh, const float *cs, const float *sn, int half);
void cpu_rope_qk_forward(backend *be, void *q, void *k, float *rstd_q, float *rstd_k, const void *q_in,
                         const void *k_in, const void *wq, const void *wk, const int32_t *pos,
                         const rope_table *rope, int N, int Hq, int Hk, float eps);
void cpu_rope_qk_backward(backend *be, void *dq, void *dk, float *dwq, float *dwk, const void *q_in,
                          const void *k_in, const void *wq, const void *wk, const float *rstd_q,
                          const float *rstd_k, const int32_t *pos, const rope_table *rope, int N, int Hq,
                          int Hk);
void cpu_attention_forward(backend *be, void *out, float *lse, const void *q, const void *k,
                           const void *v, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                           int n_heads, int n_kv_heads, int hd, float scale, int window,
                           const float *sinks);
void cpu_attention_backward(backend *be, void *dq, void *dk, void *dv, const void *dout,
                            const void *out, const float *lse, const void *q, const void *k,
                            const void *v, const int32_t *doc_start, int packed, int B, int Tq, int Tk,
                            int n_heads, int n_kv_heads, int hd, float scale, int window,
                            const float *sinks, float *dsinks);
void cpu_swiglu_clamped_forward(backend *be, void *out, const void *gate, const void *up, size_t n,
                                float alpha, float limit);
void cpu_swiglu_clamped_backward(backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                                 const void *up, size_t n, float alpha, float limit);
void cpu_swiglu_forward(backend *be, void *out, const void *gate, const void *up, size_t n);
void cpu_swiglu_backward(backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                         const void *up, size_t n);
void cpu_add(backend *be, void *out, const void *a, const void *b, size_t n);
void cpu_add_f32(backend *be, float *out, const float *x, size_t n);
void cpu_dropout_forward(backend *be, void *out, const void *inp, size_t n, float p,
                         uint64_t seed);
void cpu_dropout_backward(backend *be, void *dinp, const void *dout, size_t n, float p,
                          uint64_t seed);
void cpu_lm_head_loss(backend *be, float *losses, void *dh, float *dw, const void *h,
                      const void *w, const int32_t *targets, int N, int C, int V,
                      float grad_scale);
void cpu_adamw_update(backend *be, float *param, void *param_act, const float *grad, float *m,
                      float *v, size_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, int step, float grad_scale);
void cpu_sum_squares(backend *be, float *out, const float *x, size_t n);
void cpu_scale_f32(backend *be, float *x, float s, size_t n);
int cpu_has_nonfinite(backend *be, const float *x, size_t n);
void cpu_moe_router_forward(backend *be, int32_t *idx, float *weights, float *probs,
                            const void *logits, int N, int E, int k, int renorm);
void cpu_moe_router_backward(backend *be, void *dlogits, const float *dweights,
                             const float *dprob, const int32_t *mask, const float *probs,
                             const int32_t *idx, const float *weights, int N, int E, int k,
                             int renorm);
void cpu_moe_router_stats(backend *be, float *prob_sum, float *count, const float *probs,
                          const int32_t *idx, const int32_t *mask, int N, int E, int k);
void cpu_moe_permute(backend *be, void *out, const void *x, const int32_t *src, int M, int k,
                     int C);
void cpu_moe_permute_backward(backend *be, void *dx, const void *dout, const int32_t *pos, int N,
                              int k, int C, int accumulate);
void cpu_moe_unpermute(backend *be, void *y, const void *eo, const float *weights,
                       const int32_t *pos, int N, int k, int C);
void cpu_moe_unpermute_backward(backend *be, void *deo, float *dweights, const void *dy,
                                const void *eo, const float *weights, const int32_t *pos, int N,
                                int k, int C);
void cpu_grouped_linear_forward(backend *be, void *out, const void *inp, const void *const *w,
                                const void *const *bias, const int *offsets, int G, int IC, int OC,
                                float scale, int accumulate);
void cpu_grouped_linear_backward(backend *be, void *dinp, float *const *dw, float *const *dbias,
                                 const void *dout, const void *inp, const void *const *w,
                                 const int *offsets, int G, int IC, int OC, float scale, int accumulate);
void cpu_mxfp4_dequantize(backend *be, void *out, const struct mxfp4_tensor *w, int OC, int IC);
void cpu_nf4_dequantize(backend *be, void *out, const struct nf4_tensor *w, int OC, int IC);
void cpu_nf4_linear_forward(backend *be, void *out, const void *inp, const struct nf4_tensor *w,
                            const void *bias, int N, int IC, int OC, float scale, int accumulate,
                            void *workspace);
void cpu_nf4_linear_backward(backend *be, void *dinp, const void *dout,
                             const struct nf4_tensor *w, int N, int IC, int OC, float scale,
                             int accumulate, void *workspace);
