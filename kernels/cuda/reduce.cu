// kernels/cuda/reduce.cu — f32 reductions for the optimizer: Σx² (global grad norm), x *= s, and
// the NaN/inf check.  Deterministic: a fixed grid writes one partial per block, one block sums
// the partials in order.
#include "common.cuh"

#define REDUCE_THREADS 256
#define REDUCE_MAX_BLOCKS 1024

__global__ void sum_squares_partial_kernel(float *partial, const float *x, size_t n, int vec) {
    __shared__ float sh[32];
    float acc = 0.0f;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (vec) {
        size_t n4 = n / 4;
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        for (size_t i = tid; i < n4; i += stride) {
            float4 a = x4[i];
            acc += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
        for (size_t i = n4 * 4 + tid; i < n; i += stride) acc += x[i] * x[i];
    } else {
        for (size_t i = tid; i < n; i += stride) acc += x[i] * x[i];
    }
    float s = block_sum(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_partials_kernel(float *out, const float *partial, int count) {
    __shared__ float sh[32];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    float s = block_sum(acc, sh);
    if (threadIdx.x == 0) *out += s;
}

static unsigned reduce_blocks(backend *be, size_t n) {
    unsigned b = grid_for(be, (n + 3) / 4, REDUCE_THREADS);
    return b > REDUCE_MAX_BLOCKS ? REDUCE_MAX_BLOCKS : b;
}

static void cu_sum_squares(backend *be, float *out, const float *x, size_t n) {
    if (!n) return;
    cudaStream_t st = cuda_state_of(be)->stream;
    unsigned blocks = reduce_blocks(be, n);
    float *partial = (float *)cuda_scratch(be, blocks * sizeof(float));
    sum_squares_partial_kernel<<<blocks, REDUCE_THREADS, 0, st>>>(partial, x, n, aligned16(x));
    CUDA_CHECK_LAST();
    sum_partials_kernel<<<1, REDUCE_THREADS, 0, st>>>(out, partial, (int)blocks);
    CUDA_CHECK_LAST();
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] *= s;
}

static void cu_scale_f32(backend *be, float *x, float s, size_t n) {
    if (!n) return;
    scale_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(x, s, n);
    CUDA_CHECK_LAST();
}

// flag is set to 1 by any thread that sees a non-finite value (a benign race: all write 1).
__global__ void nonfinite_kernel(int *flag, const float *x, size_t n) {
    int bad = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        bad |= !isfinite(x[i]);
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

static int cu_has_nonfinite(backend *be, const float *x, size_t n) {
    if (!n) return 0;
    cuda_state *s = cuda_state_of(be);
    int *flag = (int *)cuda_scratch(be, sizeof(int));
    CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), s->stream));
    nonfinite_kernel<<<grid_for(be, n, 256), 256, 0, s->stream>>>(flag, x, n);
    CUDA_CHECK_LAST();
    CUDA_CHECK(cudaMemcpyAsync(s->host_flag, flag, sizeof(int), cudaMemcpyDeviceToHost, s->stream));
    CUDA_CHECK(cudaStreamSynchronize(s->stream));
    return *s->host_flag != 0;
}

void cuda_reduce_install(backend *be) {
    be->sum_squares = cu_sum_squares;
    be->scale_f32 = cu_scale_f32;
    be->has_nonfinite = cu_has_nonfinite;
}
