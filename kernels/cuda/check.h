// kernels/cuda/check.h — checked CUDA, cuBLAS and NCCL calls: file:line, the error and a hint.
#pragma once
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <nccl.h>

#ifdef __cplusplus
extern "C" {
#endif
void cuda_check(cudaError_t e, const char *call, const char *file, int line);
void cublas_check(cublasStatus_t s, const char *call, const char *file, int line);
void nccl_check(ncclResult_t r, const char *call, const char *file, int line);
#ifdef __cplusplus
}
#endif

#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) cublas_check((call), #call, __FILE__, __LINE__)
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)
// After every kernel launch: launch errors (bad configuration) surface here, not later.
#define CUDA_CHECK_LAST() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
