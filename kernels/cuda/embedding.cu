// kernels/cuda/embedding.cu — token embedding lookup and its deterministic backward.
#include "common.cuh"

// out[i,:] = table[ids[i],:], as 16-byte words when C allows.  One thread per word.
__global__ void embedding_forward_kernel(bf16 *out, const int32_t *ids, const bf16 *table, int N, int C, int vec) {
    int per_row = vec ? C / 8 : C;
    size_t total = (size_t)N * per_row;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t row = idx / per_row, w = idx % per_row;
        size_t src = (size_t)ids[row] * C, dst = row * (size_t)C;
        if (vec)
            reinterpret_cast<uint4 *>(out + dst)[w] = reinterpret_cast<const uint4 *>(table + src)[w];
        else
            out[dst + w] = table[src + w];
    }
}

#define EMB_THREADS 256
#define EMB_ROWS_PER_BLOCK 64

// dtable[ids[i],:] += dout[i,:] without atomics: block b owns vocabulary rows
// [b·64, b·64 + 64) and scans all N ids in order, adding the rows that fall in its range.  Each
// column of each row is updated by one fixed thread in increasing i, so the sum has one order.
__global__ void embedding_backward_kernel(float *dtable, const bf16 *dout, const int32_t *ids, int N, int C, int V,
                                          int vec) {
    __shared__ int list[EMB_THREADS];
    __shared__ int warp_count[EMB_THREADS / 32];
    int v0 = blockIdx.x * EMB_ROWS_PER_BLOCK;
    int v1 = min(V, v0 + EMB_ROWS_PER_BLOCK);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int base = 0; base < N; base += EMB_THREADS) {
        int i = base + threadIdx.x;
        int hit = 0;
        if (i < N) {
            int v = ids[i];
            hit = v >= v0 && v < v1;
        }
        // Order-preserving compaction of the hits of this chunk of ids.
        unsigned ballot = __ballot_sync(0xffffffffu, hit);
        if (lane == 0) warp_count[warp] = __popc(ballot);
        __syncthreads();
        int offset = 0, total = 0;
        for (int w = 0; w < EMB_THREADS / 32; w++) {
            if (w < warp) offset += warp_count[w];
            total += warp_count[w];
        }
        if (hit) list[offset + __popc(ballot & ((1u << lane) - 1u))] = i;
        __syncthreads();
        for (int k = 0; k < total; k++) {
            int row = list[k];
            float *drow = dtable + (size_t)ids[row] * C;
            const bf16 *grow = dout + (size_t)row * C;
            if (vec) {
                for (int c = threadIdx.x * 8; c < C; c += EMB_THREADS * 8) {
                    float g[8];
                    bf16x8_to_f32(*reinterpret_cast<const uint4 *>(grow + c), g);
                    float4 a = reinterpret_cast<float4 *>(drow + c)[0];
                    float4 b = reinterpret_cast<float4 *>(drow + c)[1];
                    a.x += g[0]; a.y += g[1]; a.z += g[2]; a.w += g[3];
                    b.x += g[4]; b.y += g[5]; b.z += g[6]; b.w += g[7];
                    reinterpret_cast<float4 *>(drow + c)[0] = a;
                    reinterpret_cast<float4 *>(drow + c)[1] = b;
                }
            } else {
                for (int c = threadIdx.x; c < C; c += EMB_THREADS) drow[c] += __bfloat162float(grow[c]);
            }
        }
        __syncthreads();  // list and warp_count are rewritten by the next chunk
    }
}

static void cu_embedding_forward(backend *be, void *out, const int32_t *ids, const void *table, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(out) && aligned16(table);
    size_t work = (size_t)N * (vec ? C / 8 : C);
    embedding_forward_kernel<<<grid_for(be, work, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, ids, (const bf16 *)table, N, C, vec);
    CUDA_CHECK_LAST();
}

static void cu_embedding_backward(backend *be, float *dtable, const void *dout, const int32_t *ids, int N, int C,
                                  int V) {
    if (N <= 0 || C <= 0 || V <= 0) return;
    int vec = C % 8 == 0 && aligned16(dtable) && aligned16(dout);
    unsigned blocks = (unsigned)((V + EMB_ROWS_PER_BLOCK - 1) / EMB_ROWS_PER_BLOCK);
    embedding_backward_kernel<<<blocks, EMB_THREADS, 0, cuda_state_of(be)->stream>>>(
        dtable, (const bf16 *)dout, ids, N, C, V, vec);
    CUDA_CHECK_LAST();
}

void cuda_embedding_install(backend *be) {
    be->embedding_forward = cu_embedding_forward;
    be->embedding_backward = cu_embedding_backward;
}
