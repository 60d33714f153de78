// dev/cuda/emu/emu_runtime.cpp — the emulated launch, the few CUDA runtime calls the op files make
// (host memory stands in for device memory), the checks, and backend_cuda() built on them, so
// tests/ops_cuda/test_ops_cuda.c runs unchanged against the emulated kernels.  cuBLASLt is
// replaced by a plain column-major GEMM with cuBLAS's semantics (emu_gemm), which checks the
// row-major ↔ column-major mappings of linear.cu and lm_head_loss.cu.
#include "emu.h"
#include "kernels/cuda/cuda_ops.h"
#include <cstdint>

thread_local emu_dim threadIdx, blockIdx;
emu_dim blockDim, gridDim;
thread_local emu_block *emu_ctx;

void emu_launch(emu_dim grid, emu_dim block, size_t smem_bytes, const std::function<void()> &f) {
    gridDim = grid;
    blockDim = block;
    unsigned nt = block.x;
    if (nt == 0 || nt > 1024 || nt % 32 || block.y != 1 || block.z != 1 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        fprintf(stderr, "emu: bad launch config grid (%u,%u,%u) block (%u,%u,%u)\n", grid.x, grid.y, grid.z, block.x,
                block.y, block.z);
        abort();
    }
    if (smem_bytes > 227 * 1024) {
        fprintf(stderr, "emu: %zu bytes of dynamic shared memory is more than an H100 block may have\n", smem_bytes);
        abort();
    }
    std::vector<unsigned char> smem(smem_bytes + 256, 0xff);
    unsigned char *base = (unsigned char *)(((uintptr_t)smem.data() + 255) & ~(uintptr_t)255);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                memset(base, 0xff, smem_bytes);
                emu_block ctx;
                std::barrier<> bar(nt);
                std::vector<std::barrier<> *> wb;
                for (unsigned w = 0; w < nt / 32; w++) wb.push_back(new std::barrier<>(32));
                ctx.bar = &bar;
                ctx.wbar = wb;
                ctx.smem = base;
                std::vector<std::thread> th;
                for (unsigned t = 0; t < nt; t++)
                    th.emplace_back([&, t, x, y, z] {
                        threadIdx.x = t;
                        blockIdx.x = x;
                        blockIdx.y = y;
                        blockIdx.z = z;
                        emu_ctx = &ctx;
                        f();
                        if (!emu_cp_batches.empty() || !emu_cp_open.empty()) {
                            // Copies still in flight could land in shared memory reused after the
                            // thread's last wait: a kernel must wait for all its cp.async.
                            fprintf(stderr, "emu: thread %u of block (%u,%u,%u) exits with cp.async pending\n", t, x,
                                    y, z);
                            abort();
                        }
                        // An exited CUDA thread no longer holds back barriers.
                        ctx.wbar[t / 32]->arrive_and_drop();
                        bar.arrive_and_drop();
                    });
                for (auto &t : th) t.join();
                for (auto *b : wb) delete b;
            }
}

static float ld(const void *p, size_t i, cudaDataType t) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

// cuBLAS semantics, column-major: D = alpha·op(A)·op(B) + beta·D (+ bias[i] per row), fp32 math.
void emu_gemm(int m, int n, int k, const void *A, int lda, int ta, const void *B, int ldb, int tb, void *D, int ldd,
              cudaDataType dtype_d, float alpha, float beta, const void *bias) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float a = ld(A, ta ? (size_t)i * lda + p : (size_t)p * lda + i, CUDA_R_16BF);
                float b = ld(B, tb ? (size_t)p * ldb + j : (size_t)j * ldb + p, CUDA_R_16BF);
                s += (double)a * b;
            }
            size_t di = (size_t)j * ldd + i;
            float r = alpha * (float)s + (beta != 0.0f ? beta * ld(D, di, dtype_d) : 0.0f);
            if (bias) r += __bfloat162float(((const __nv_bfloat16 *)bias)[i]);
            if (dtype_d == CUDA_R_32F) ((float *)D)[di] = r;
            else ((__nv_bfloat16 *)D)[di] = __float2bfloat16_rn(r);
        }
}

extern "C" {
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaFuncSetAttribute(const void *, enum cudaFuncAttribute, int value) {
    if (value > 227 * 1024) { fprintf(stderr, "emu: cudaFuncSetAttribute(%d) over the H100 limit\n", value); abort(); }
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, enum cudaMemcpyKind, cudaStream_t) {
    memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) & ~(size_t)255);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
// Classic cuBLAS (grouped_linear.cu's f32 dW per expert): bf16 A/B, bf16 or f32 C, fp32 compute.
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
    if (at != CUDA_R_16BF || bt != CUDA_R_16BF || (ct != CUDA_R_16BF && ct != CUDA_R_32F) ||
        compute != CUBLAS_COMPUTE_32F) {
        fprintf(stderr, "emu: cublasGemmEx: only bf16 inputs with CUBLAS_COMPUTE_32F are emulated\n");
        abort();
    }
    emu_gemm(m, n, k, A, lda, ta != CUBLAS_OP_N, B, ldb, tb != CUBLAS_OP_N, C, ldc, ct, *(const float *)alpha,
             *(const float *)beta, NULL);
    return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS's grouped GEMM (dev/cuda/expert_gemm.cu): group g's size[g] problems share its op, m, n,
// k, ld and scalars; the pointer arrays are read where cuBLAS reads them (device memory, here the
// host).  bf16 A/B/C with fp32 compute only, as the lab calls it.
cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t, const cublasOperation_t ta[], const cublasOperation_t tb[],
                                          const int m[], const int n[], const int k[], const void *alpha,
                                          const void *const A[], cudaDataType at, const int lda[],
                                          const void *const B[], cudaDataType bt, const int ldb[], const void *beta,
                                          void *const C[], cudaDataType ct, const int ldc[], int groups,
                                          const int size[], cublasComputeType_t compute) {
    if (at != CUDA_R_16BF || bt != CUDA_R_16BF || ct != CUDA_R_16BF || compute != CUBLAS_COMPUTE_32F) {
        fprintf(stderr, "emu: cublasGemmGroupedBatchedEx: only bf16 with CUBLAS_COMPUTE_32F is emulated\n");
        abort();
    }
    for (int g = 0, p = 0; g < groups; g++)
        for (int i = 0; i < size[g]; i++, p++)
            emu_gemm(m[g], n[g], k[g], A[p], lda[g], ta[g] != CUBLAS_OP_N, B[p], ldb[g], tb[g] != CUBLAS_OP_N, C[p],
                     ldc[g], CUDA_R_16BF, ((const float *)alpha)[g], ((const float *)beta)[g], NULL);
    return CUBLAS_STATUS_SUCCESS;
}
cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
// Work runs when it is issued: every event has completed.
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    *e = (cudaEvent_t)malloc(1);
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { free((void *)e); return cudaSuccess; }
// Activation offload's copy stream (kernels/cuda/offload.cu): work runs when issued, so a second
// stream and waits on events are nothing; pinned host memory is plain memory.
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) { return cudaMalloc(p, n); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = (cudaStream_t)malloc(1);
    return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { free((void *)s); return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }

void cuda_check(cudaError_t e, const char *call, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "emu: CUDA error at %s:%d: %s\n", file, line, call);
    exit(1);
}
void cublas_check(cublasStatus_t s, const char *call, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "emu: cuBLAS error at %s:%d: %s: %d\n", file, line, call, (int)s);
    exit(1);
}
void nccl_check(ncclResult_t, const char *, const char *, int) {}

static void *e_alloc(backend *be, size_t bytes) {
    void *p = aligned_alloc(256, ((bytes ? bytes : 16) + 255) & ~(size_t)255);
    if (!p) snprintf(be->error, sizeof be->error, "out of memory");
    return p;
}
static void e_free(backend *, void *p) { free(p); }
static void e_copy(backend *, void *d, const void *s, size_t n) { memmove(d, s, n); }
static void e_zero(backend *, void *p, size_t n) { memset(p, 0, n); }
static void e_sync(backend *) {}
static void e_meminfo(backend *, size_t *f, size_t *t) { *f = *t = (size_t)1 << 34; }
static void e_destroy(backend *be) {
    cuda_state *s = cuda_state_of(be);
    cuda_grouped_linear_destroy(be);
    cuda_offload_destroy(be);   // offload.cu's copy stream and events
    free(s->scratch);
    free(s->host_flag);
    free(s->lt_cache);
    free(s);
    free(be);
}

backend *backend_cuda(int device_index, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_state *s = (cuda_state *)calloc(1, sizeof *s);
    be->impl = s;
    snprintf(s->name, sizeof s->name, "emu:%d", device_index);
    be->name = s->name;
    be->act_dtype = DTYPE_BF16;
    be->device_index = device_index;
    s->props.multiProcessorCount = 2;  // few blocks: every thread is an OS thread here
    s->props.major = 9;
    s->props.sharedMemPerBlockOptin = 227 * 1024;
    s->host_flag = (int *)calloc(1, sizeof(int));
    be->alloc = e_alloc;
    be->free = e_free;
    be->copy_to_device = e_copy;
    be->copy_to_host = e_copy;
    be->copy = e_copy;
    be->memset_zero = e_zero;
    be->synchronize = e_sync;
    be->memory_info = e_meminfo;
    be->destroy = e_destroy;
    cuda_ops_install(be);
    return be;
}

void cuda_query(cuda_report *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->message, sizeof r->message, "emulated");
}
}

void *cuda_scratch(backend *be, size_t bytes) {
    cuda_state *s = cuda_state_of(be);
    if (bytes <= s->scratch_bytes) return s->scratch;
    free(s->scratch);
    s->scratch = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
    memset(s->scratch, 0xff, (bytes + 255) & ~(size_t)255);
    s->scratch_bytes = bytes;
    return s->scratch;
}
