// kernels/cuda/cuda_ops.h — state shared by the CUDA op files, and the installer of the table.
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
} cuda_state;

static inline cuda_state *cuda_state_of(backend *be) { return (cuda_state *)be->impl; }

#ifdef __cplusplus
extern "C" {
#endif
// Fills every op pointer of be with its CUDA implementation.
void cuda_ops_install(backend *be);
#ifdef __cplusplus
}
#endif
