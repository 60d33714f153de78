// kernels/cuda/backend_cuda.cu — the CUDA backend: device memory, one stream, cuBLAS and cuBLASLt
// handles, and the checks every CUDA call goes through.
#include "../backend.h"
#include "check.h"
#include "cuda_ops.h"
#include "attention_cudnn.h"
#include "../cuda_libs.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" void cuda_check(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "quarry: CUDA error at %s:%d: %s: %s\n", file, line, call, cudaGetErrorString(e));
    if (e == cudaErrorMemoryAllocation)
        fprintf(stderr, "hint: the GPU is out of memory; try --recompute full, a smaller --micro-batch, or --method lora\n");
    else if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice)
        fprintf(stderr, "hint: no usable NVIDIA driver/GPU; run `quarry info`, or use --device cpu\n");
    else
        fprintf(stderr, "hint: rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing kernel\n");
    exit(1);
}

extern "C" void cublas_check(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "quarry: cuBLAS error at %s:%d: %s: status %d\n", file, line, call, (int)s);
    fprintf(stderr, "hint: %s\n", s == CUBLAS_STATUS_ALLOC_FAILED ? "the GPU is out of memory for cuBLAS workspace"
                                  : s == CUBLAS_STATUS_NOT_SUPPORTED ? "this matrix shape/dtype is not supported by cuBLASLt on this GPU"
                                  : "check the shapes passed to the matmul");
    exit(1);
}

extern "C" void nccl_check(ncclResult_t r, const char *call, const char *file, int line) {
    if (r == ncclSuccess) return;
    fprintf(stderr, "quarry: NCCL error at %s:%d: %s: %s\n", file, line, call, ncclGetErrorString(r));
    fprintf(stderr, "hint: set NCCL_DEBUG=INFO for details; check that every rank started and the network between them\n");
    exit(1);
}

static cuda_state *state(backend *be) { return (cuda_state *)be->impl; }

void *cuda_scratch(backend *be, size_t bytes) {
    cuda_state *s = state(be);
    if (bytes <= s->scratch_bytes) return s->scratch;
    size_t grown = (bytes + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);  // whole MiB
    if (s->scratch) {
        CUDA_CHECK(cudaStreamSynchronize(s->stream));
        CUDA_CHECK(cudaFree(s->scratch));
        s->scratch = NULL;
        s->scratch_bytes = 0;
    }
    CUDA_CHECK(cudaMalloc(&s->scratch, grown));
    s->scratch_bytes = grown;
    return s->scratch;
}

static void *cu_alloc(backend *be, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free allocation error
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        snprintf(be->error, sizeof be->error, "out of GPU memory allocating %.2f GiB (%.2f GiB free of %.2f GiB)",
                 bytes / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
        return NULL;
    }
    return p;
}

static void cu_free(backend *be, void *p) { (void)be; if (p) CUDA_CHECK(cudaFree(p)); }

static void cu_copy_to_device(backend *be, void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, state(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(state(be)->stream));  // src may be freed by the caller next
}
static void cu_copy_to_host(backend *be, void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, state(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(state(be)->stream));
}
static void cu_copy(backend *be, void *dst, const void *src, size_t n) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, state(be)->stream));
}
static void cu_memset_zero(backend *be, void *p, size_t n) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, n, state(be)->stream));
}
static void cu_synchronize(backend *be) {
    CUDA_CHECK(cudaStreamSynchronize(state(be)->stream));
    cuda_offload_synchronize(be);   // activation offload's copies (offload.cu)
}
static void cu_memory_info(backend *be, size_t *fr, size_t *tot) { (void)be; CUDA_CHECK(cudaMemGetInfo(fr, tot)); }

static void cu_destroy(backend *be) {
    cuda_state *s = state(be);
    if (s) {
        if (s->stream) CUDA_CHECK(cudaStreamSynchronize(s->stream));
        cuda_attention_cudnn_destroy(be);
        cuda_grouped_linear_destroy(be);
        cuda_offload_destroy(be);
        if (s->workspace) CUDA_CHECK(cudaFree(s->workspace));
        if (s->scratch) CUDA_CHECK(cudaFree(s->scratch));
        if (s->host_flag) CUDA_CHECK(cudaFreeHost(s->host_flag));
        free(s->lt_cache);
        if (s->lt) CUBLAS_CHECK(cublasLtDestroy(s->lt));
        if (s->cublas) CUBLAS_CHECK(cublasDestroy(s->cublas));
        if (s->stream) CUDA_CHECK(cudaStreamDestroy(s->stream));
        free(s);
    }
    free(be);
}

extern "C" backend *backend_cuda(int device_index, char *err, size_t errlen) {
    // cuBLAS/cuBLASLt first (dlopen, kernels/cuda_libs.h): a machine without them hears so even
    // when it has no GPU either, and the test of that message runs on CPU-only machines.
    if (!cuda_libs_load_blas(err, errlen)) return NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        snprintf(err, errlen, "no CUDA device (%s); use --device cpu",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 GPUs");
        return NULL;
    }
    if (device_index < 0 || device_index >= count) {
        snprintf(err, errlen, "CUDA device %d does not exist (this machine has %d)", device_index, count);
        return NULL;
    }
    CUDA_CHECK(cudaSetDevice(device_index));
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    if (!be || !s) { snprintf(err, errlen, "out of host memory"); free(be); free(s); return NULL; }
    be->impl = s;
    snprintf(s->name, sizeof s->name, "cuda:%d", device_index);
    be->name = s->name;
    be->act_dtype = DTYPE_BF16;
    be->device_index = device_index;
    CUDA_CHECK(cudaGetDeviceProperties(&s->props, device_index));
    CUDA_CHECK(cudaDeviceGetPCIBusId(be->pci_bus_id, (int)sizeof be->pci_bus_id, device_index));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&s->cublas));
    CUBLAS_CHECK(cublasSetStream(s->cublas, s->stream));
    CUBLAS_CHECK(cublasLtCreate(&s->lt));
    s->workspace_bytes = 64u << 20;  // cuBLASLt's recommended workspace on Hopper is 32 MiB+
    CUDA_CHECK(cudaMalloc(&s->workspace, s->workspace_bytes));
    CUBLAS_CHECK(cublasSetWorkspace(s->cublas, s->workspace, s->workspace_bytes));
    CUDA_CHECK(cudaMallocHost((void **)&s->host_flag, sizeof(int)));
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->copy_to_device = cu_copy_to_device;
    be->copy_to_host = cu_copy_to_host;
    be->copy = cu_copy;
    be->memset_zero = cu_memset_zero;
    be->synchronize = cu_synchronize;
    be->memory_info = cu_memory_info;
    be->destroy = cu_destroy;
    cuda_ops_install(be);
    return be;
}

extern "C" void cuda_query(cuda_report *r) {
    memset(r, 0, sizeof *r);
    r->cuda_compiled = 1;
    r->nccl_compiled = 1;
    cudaRuntimeGetVersion(&r->runtime_version);
    if (cudaDriverGetVersion(&r->driver_version) != cudaSuccess) r->driver_version = 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (!r->driver_version) snprintf(r->message, sizeof r->message, "no CUDA device (no NVIDIA driver found)");
        else snprintf(r->message, sizeof r->message, "no CUDA device (%s)", cudaGetErrorString(e));
        return;
    }
    if (count == 0) { snprintf(r->message, sizeof r->message, "no CUDA device"); return; }
    r->device_count = count;
    for (int i = 0; i < count && i < 16; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) { cudaGetLastError(); continue; }
        snprintf(r->devices[i].name, sizeof r->devices[i].name, "%s", p.name);
        r->devices[i].total_memory = p.totalGlobalMem;
        r->devices[i].cc_major = p.major;
        r->devices[i].cc_minor = p.minor;
        r->devices[i].multiprocessors = p.multiProcessorCount;
    }
}
