// kernels/cuda/attention_fa2.h — the forward kernels promoted from the lab (dev/cuda/
// attention_forward.cu versions 3 and 4: FlashAttention-2's register design on mma.sync +
// ldmatrix) behind backend.h's attention_forward, with everything the production op keeps:
// document masks, GQA, KV caches (Tk > Tq), sliding windows and gpt-oss' sinks.  Which forward
// kernel runs is an internal setting, QUARRY_ATTN_KERNEL=v1|v3|v4 (read once per process; unset:
// v1, today's kernel), so that a GPU run can choose by measurement and the default flips with one
// line (ATTN_KERNEL_DEFAULT in attention_fa2.cu).  The backward stays v1 (it reads any version's lse).
#pragma once
#include "cuda_ops.h"

// The forward kernel this process runs: 1, 3 or 4 (QUARRY_ATTN_KERNEL, else the default).  A value
// that is not v1, v3 or v4 stops the process with an error naming the variable.
int cuda_attention_kernel(void);
// "quarry" for the default kernel, "quarry (forward v3)" otherwise: for be->attention_impl.
const char *cuda_attention_kernel_label(void);

// Runs forward version 3 or 4 (backend.h's attention_forward arguments); 0 when the call needs v1
// (head dim other than 64 or 128, a GPU before sm_80, tensors not 16-byte aligned).
int cuda_attention_forward_fa2(backend *be, int version, void *out, float *lse, const void *q, const void *k,
                               const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int n_heads,
                               int n_kv_heads, int hd, float scale, int window, const float *sinks);
// The kernel function of version 3 or 4 at head dim 64 or 128 (the lab's register report).
const void *cuda_attention_fa2_kernel(int version, int hd);
