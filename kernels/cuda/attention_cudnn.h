// kernels/cuda/attention_cudnn.h — cuDNN's fused SDPA behind backend.h's attention ops, cuDNN
// opened at run time (kernels/cudnn_load.h).  attention.cu offers each call here first; a call
// cuDNN does not take (kernels/cudnn_load.h's attention_cudnn_supports, rows holding several
// documents, a graph cuDNN declines) returns 0 and runs quarry's kernel.
#pragma once
#include "cuda_ops.h"

// Sets be->set_attention (the --attention choice) on the CUDA backend.
void cuda_attention_cudnn_install(backend *be);
// Frees the cuDNN handle, graphs and workspace (backend destroy).
void cuda_attention_cudnn_destroy(backend *be);

// backend.h's attention_forward / attention_backward through cuDNN: 1 when done, 0 when the caller
// must run quarry's kernel.
int cuda_attention_cudnn_forward(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                                 const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                 float scale, int window, const float *sinks);
int cuda_attention_cudnn_backward(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                                  const float *lse, const void *q, const void *k, const void *v,
                                  const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                  float scale, int window, const float *sinks);
