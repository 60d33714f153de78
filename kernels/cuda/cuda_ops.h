// kernels/cuda/cuda_ops.h — state shared by the CUDA op files, the installer of the table, and
// the helpers the op files share (scratch memory, the cuBLASLt matmul, launch sizes).
#pragma once
#include "../backend.h"
#include "check.h"

typedef struct {
    char name[32];
    cudaStream_t stream;
    cublasHandle_t cublas;
    cublasLtHandle_t lt;
    void *workspace;            // cuBLAS(Lt) workspace
    size_t workspace_bytes;
    cudaDeviceProp props;
    void *scratch;              // op-private temporaries (partial sums, logits chunks), grown on demand
    size_t scratch_bytes;
    int *host_flag;             // pinned int for has_nonfinite
    void *lt_cache;             // linear.cu: cuBLASLt algorithms chosen per shape (host memory)
    void *grouped;              // grouped_linear.cu: pointer-array staging (NULL until first use)
    void *offload;              // offload.cu: the copy stream and its events (NULL until a side copy)
    void *attn_cudnn;           // attention_cudnn.cu: cuDNN handle, graphs (NULL until --attention)
} cuda_state;

static inline cuda_state *cuda_state_of(backend *be) { return (cuda_state *)be->impl; }

#ifdef __cplusplus
extern "C" {
#endif
// Fills every op pointer of be with its CUDA implementation.
void cuda_ops_install(backend *be);
#ifdef __cplusplus
}

// Scratch of at least bytes (256-byte aligned), valid until the next call on this backend. Growing
// waits for the stream first, so earlier kernels still reading the old buffer finish.
void *cuda_scratch(backend *be, size_t bytes);

// D = alpha·op(A)·op(B) + beta·D in cuBLAS column-major terms (m × n result, k inner), A and B
// bf16, D bf16 or f32 (dtype_d), fp32 compute; bias (bf16, length m) added by the epilogue when
// non-NULL (bias is not scaled by alpha).  ta/tb: 1 = transposed.
void cuda_matmul(backend *be, int m, int n, int k, const void *A, int lda, int ta, const void *B,
                 int ldb, int tb, void *D, int ldd, cudaDataType dtype_d, float alpha, float beta,
                 const void *bias);

// dst[c] += scale · Σ_r src[r, c] for src act (rows, cols), deterministic (fixed two-pass order).
void cuda_colsum_acc(backend *be, float *dst, const void *src, int rows, int cols, float scale);

// The op files' entry points (one group per .cu, same names as kernels/cpu).
void cuda_cast_install(backend *be);
void cuda_embedding_install(backend *be);
void cuda_rmsnorm_install(backend *be);
void cuda_linear_install(backend *be);
void cuda_grouped_linear_install(backend *be);
// Frees grouped_linear.cu's staging (the backend's destroy).
void cuda_grouped_linear_destroy(backend *be);
void cuda_rope_install(backend *be);
void cuda_rope_qk_install(backend *be);
void cuda_attention_install(backend *be);
void cuda_swiglu_install(backend *be);
void cuda_swiglu_clamped_install(backend *be);
void cuda_add_install(backend *be);
void cuda_dropout_install(backend *be);
void cuda_lm_head_loss_install(backend *be);
void cuda_adamw_install(backend *be);
void cuda_reduce_install(backend *be);
void cuda_moe_install(backend *be);
void cuda_nf4_install(backend *be);
void cuda_mxfp4_install(backend *be);
void cuda_lora_install(backend *be);
void cuda_add_rmsnorm_install(backend *be);
void cuda_offload_install(backend *be);
// offload.cu: waits for the copy stream (synchronize, host_free); frees it and its events.
void cuda_offload_synchronize(backend *be);
void cuda_offload_destroy(backend *be);
#endif
