// kernels/cuda/grouped_linear.cu — the experts' grouped linear (backend.h) through
// cublasGemmGroupedBatchedEx (cuBLAS ≥ 12.5; bf16 A/B/C, CUBLAS_COMPUTE_32F): one call computes
// a product for every expert with rows, where a loop of per-expert cuBLASLt matmuls paid a
// launch and, with ~254 distinct row counts per Qwen3-30B-A3B layer, a heuristic query each
// (linear.cu's 128-slot cache thrashes).  Version 2 of dev/cuda/expert_gemm.cu, chosen by the
// lab's prediction (dev/cuda/README.md, "Grouped expert GEMM"; version 1, the loop, stays there).
//
// Row-major out (rows, OC) = x·Wᵀ is, column-major, out' (OC × rows, ld OC) =
// op_T(W' (IC × OC, ld IC)) · x' (IC × rows, ld IC); each non-empty group is one cuBLAS group of
// one problem (m, k fixed, n = its rows).  The backward's dX has the same grouped form.  dW is
// f32 (the trained masters' gradients, accumulated with beta = 1), which the grouped call does not
// take (its C is bf16 with bf16 inputs), so dW stays one cublasGemmEx per expert — cuBLAS's own
// heuristic cache, not linear.cu's.  Biases (gpt-oss) are added per expert by a small kernel.
//
// cuBLAS reads the A/B/C pointer arrays from device memory: each call fills a pinned host slot
// and copies it on the stream.  A ring of slots, each reused only after the event recorded behind
// its last copy, lets the host fill the next call's arrays while earlier copies are queued (no
// stream sync); the device arrays are reused in stream order.
#include "common.cuh"
#include <string.h>

#define GL_SLOTS 4

typedef struct {
    const void **host;   // pinned: A[P], B[P], C[P]
    void **dev;          // device copy of the same
    cudaEvent_t copied;  // recorded behind the slot's last upload
    int cap;             // P the slot holds
} gl_slot;

typedef struct {
    gl_slot slot[GL_SLOTS];
    int next;
    // Host arrays of the grouped call (cuBLAS reads them on the host), grown on demand.
    int *ints;           // m, n, k, lda, ldb, ldc, size: 7 × cap
    float *alpha, *beta; // cap each
    cublasOperation_t *ta, *tb;
    int cap;
} gl_state;

static void *gl_host_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "quarry: out of host memory\n");
        exit(1);
    }
    return p;
}

static gl_state *gl_state_of(backend *be) {
    cuda_state *s = cuda_state_of(be);
    if (!s->grouped) {
        s->grouped = gl_host_alloc(sizeof(gl_state));
        memset(s->grouped, 0, sizeof(gl_state));
    }
    return (gl_state *)s->grouped;
}

// A slot for P problems whose staging the host may overwrite now.
static gl_slot *gl_slot_for(backend *be, int P) {
    cuda_state *s = cuda_state_of(be);
    gl_state *g = gl_state_of(be);
    gl_slot *sl = &g->slot[g->next];
    g->next = (g->next + 1) % GL_SLOTS;
    if (sl->copied) CUDA_CHECK(cudaEventSynchronize(sl->copied));
    else CUDA_CHECK(cudaEventCreateWithFlags(&sl->copied, cudaEventDisableTiming));
    if (P > sl->cap) {
        // The device array may still feed a queued GEMM: let the stream drain before freeing it.
        CUDA_CHECK(cudaStreamSynchronize(s->stream));
        if (sl->host) CUDA_CHECK(cudaFreeHost(sl->host));
        if (sl->dev) CUDA_CHECK(cudaFree(sl->dev));
        int cap = P < 64 ? 64 : P;
        CUDA_CHECK(cudaMallocHost((void **)&sl->host, (size_t)3 * cap * sizeof(void *)));
        CUDA_CHECK(cudaMalloc((void **)&sl->dev, (size_t)3 * cap * sizeof(void *)));
        sl->cap = cap;
    }
    return sl;
}

static void gl_reserve(gl_state *g, int P) {
    if (P <= g->cap) return;
    int cap = P < 64 ? 64 : P;
    free(g->ints);
    free(g->alpha);
    free(g->beta);
    free(g->ta);
    free(g->tb);
    g->ints = (int *)gl_host_alloc((size_t)7 * cap * sizeof(int));
    g->alpha = (float *)gl_host_alloc((size_t)cap * sizeof(float));
    g->beta = (float *)gl_host_alloc((size_t)cap * sizeof(float));
    g->ta = (cublasOperation_t *)gl_host_alloc((size_t)cap * sizeof(cublasOperation_t));
    g->tb = (cublasOperation_t *)gl_host_alloc((size_t)cap * sizeof(cublasOperation_t));
    g->cap = cap;
}

// C_p (m × n[p], ld ldc, bf16) = alpha · op(A_p) · op(B_p) + beta · C_p for the P problems listed
// (column-major cuBLAS terms, A_p, B_p bf16, fp32 compute).
static void gl_call(backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, const int *n, int k,
                    const void *const *A, int lda, const void *const *B, int ldb, void *const *C, int ldc, int P,
                    float alpha, float beta) {
    if (P == 0) return;
    cuda_state *s = cuda_state_of(be);
    gl_state *g = gl_state_of(be);
    gl_reserve(g, P);
    gl_slot *sl = gl_slot_for(be, P);
    int *pm = g->ints, *pn = pm + g->cap, *pk = pn + g->cap, *plda = pk + g->cap, *pldb = plda + g->cap,
        *pldc = pldb + g->cap, *psize = pldc + g->cap;
    for (int p = 0; p < P; p++) {
        sl->host[p] = A[p];
        sl->host[sl->cap + p] = B[p];
        sl->host[2 * sl->cap + p] = C[p];
        pm[p] = m, pn[p] = n[p], pk[p] = k, plda[p] = lda, pldb[p] = ldb, pldc[p] = ldc, psize[p] = 1;
        g->alpha[p] = alpha, g->beta[p] = beta, g->ta[p] = ta, g->tb[p] = tb;
    }
    CUDA_CHECK(cudaMemcpyAsync(sl->dev, sl->host, (size_t)3 * sl->cap * sizeof(void *), cudaMemcpyHostToDevice,
                               s->stream));
    CUDA_CHECK(cudaEventRecord(sl->copied, s->stream));
    CUBLAS_CHECK(cublasGemmGroupedBatchedEx(s->cublas, g->ta, g->tb, pm, pn, pk, g->alpha,
                                            (const void *const *)sl->dev, CUDA_R_16BF, plda,
                                            (const void *const *)(sl->dev + sl->cap), CUDA_R_16BF, pldb, g->beta,
                                            sl->dev + 2 * sl->cap, CUDA_R_16BF, pldc, P, psize, CUBLAS_COMPUTE_32F));
}

// out[r, :] += scale · bias (bf16), rows × OC.
__global__ void gl_bias_kernel(bf16 *out, const bf16 *bias, int rows, int OC, float scale) {
    size_t total = (size_t)rows * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        bf16 *o = out + i;
        *o = __float2bfloat16_rn(__bfloat162float(*o) + scale * __bfloat162float(bias[i % OC]));
    }
}

static char *gl_rows(const void *base, int row, int width) { return (char *)base + (size_t)row * width * sizeof(bf16); }

// The non-empty groups: their rows and pointers (x rows of width xw, y rows of width yw, weights).
typedef struct {
    int P;
    int *n;
    const void **w, **x;
    void **y;
} gl_list;

static gl_list gl_list_make(const int *offsets, int G, const void *const *w, const void *x, int xw, const void *y,
                            int yw) {
    gl_list l;
    l.P = 0;
    l.n = (int *)gl_host_alloc((size_t)G * sizeof(int));
    l.w = (const void **)gl_host_alloc((size_t)G * sizeof(void *));
    l.x = (const void **)gl_host_alloc((size_t)G * sizeof(void *));
    l.y = (void **)gl_host_alloc((size_t)G * sizeof(void *));
    for (int g = 0; g < G; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        l.n[l.P] = rows;
        l.w[l.P] = w[g];
        l.x[l.P] = gl_rows(x, r0, xw);
        l.y[l.P] = y ? gl_rows(y, r0, yw) : NULL;
        l.P++;
    }
    return l;
}

static void gl_list_free(gl_list *l) {
    free(l->n);
    free(l->w);
    free(l->x);
    free(l->y);
}

static void cu_grouped_linear_forward(backend *be, void *out, const void *inp, const void *const *w,
                                      const void *const *bias, const int *offsets, int G, int IC, int OC,
                                      float scale, int accumulate) {
    if (G <= 0 || OC <= 0 || offsets[G] == offsets[0]) return;
    gl_list l = gl_list_make(offsets, G, w, inp, IC, out, OC);
    gl_call(be, CUBLAS_OP_T, CUBLAS_OP_N, OC, l.n, IC, l.w, IC, l.x, IC, l.y, OC, l.P, scale,
            accumulate ? 1.0f : 0.0f);
    gl_list_free(&l);
    if (!bias) return;
    for (int g = 0; g < G; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0 || !bias[g]) continue;
        gl_bias_kernel<<<grid_for(be, (size_t)rows * OC, 256), 256, 0, cuda_state_of(be)->stream>>>(
            (bf16 *)gl_rows(out, r0, OC), (const bf16 *)bias[g], rows, OC, scale);
        CUDA_CHECK_LAST();
    }
}

static void cu_grouped_linear_backward(backend *be, void *dinp, float *const *dw, float *const *dbias,
                                       const void *dout, const void *inp, const void *const *w, const int *offsets,
                                       int G, int IC, int OC, float scale, int accumulate) {
    if (G <= 0 || offsets[G] == offsets[0]) return;
    cuda_state *s = cuda_state_of(be);
    // dinp' (IC × rows) = W' (IC × OC) · dout' (OC × rows), all experts in one call.
    if (dinp) {
        gl_list l = gl_list_make(offsets, G, w, dout, OC, dinp, IC);
        gl_call(be, CUBLAS_OP_N, CUBLAS_OP_N, IC, l.n, OC, l.w, IC, l.x, OC, l.y, IC, l.P, scale,
                accumulate ? 1.0f : 0.0f);
        gl_list_free(&l);
    }
    float one = 1.0f;
    for (int g = 0; g < G; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        // dw (IC × OC col-major, f32) += scale · inp' (IC × rows) · dout' (OC × rows)ᵀ
        if (dw && dw[g])
            CUBLAS_CHECK(cublasGemmEx(s->cublas, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, rows, &scale, gl_rows(inp, r0, IC),
                                      CUDA_R_16BF, IC, gl_rows(dout, r0, OC), CUDA_R_16BF, OC, &one, dw[g], CUDA_R_32F,
                                      IC, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        if (dbias && dbias[g]) cuda_colsum_acc(be, dbias[g], gl_rows(dout, r0, OC), rows, OC, scale);
    }
}

void cuda_grouped_linear_destroy(backend *be) {
    gl_state *g = (gl_state *)cuda_state_of(be)->grouped;
    if (!g) return;
    for (int i = 0; i < GL_SLOTS; i++) {
        gl_slot *sl = &g->slot[i];
        if (sl->host) CUDA_CHECK(cudaFreeHost(sl->host));
        if (sl->dev) CUDA_CHECK(cudaFree(sl->dev));
        if (sl->copied) CUDA_CHECK(cudaEventDestroy(sl->copied));
    }
    free(g->ints);
    free(g->alpha);
    free(g->beta);
    free(g->ta);
    free(g->tb);
    free(g);
    cuda_state_of(be)->grouped = NULL;
}

void cuda_grouped_linear_install(backend *be) {
    be->grouped_linear_forward = cu_grouped_linear_forward;
    be->grouped_linear_backward = cu_grouped_linear_backward;
}
