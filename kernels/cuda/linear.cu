// kernels/cuda/linear.cu — y = x·Wᵀ (+ bias) and its backward through cuBLASLt: bf16 inputs, fp32
// compute, bf16 activations out, f32 weight gradients accumulated in place (beta = 1).
#include "common.cuh"
#include <string.h>

static cublasLtMatrixLayout_t layout(cudaDataType t, int rows, int cols, int ld) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, (uint64_t)rows, (uint64_t)cols, (int64_t)ld));
    return l;
}

// Largest power of two (≤ 256) dividing the address.
static uint32_t alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

// The heuristic query costs tens of microseconds of host time, so each shape's algorithm is
// looked up once and kept (a training step repeats the same few shapes every layer).
#define LT_CACHE_SIZE 128
typedef struct {
    int key[13];
    int used;
    int found;
    cublasLtMatmulAlgo_t algo;
} lt_entry;
typedef struct {
    lt_entry e[LT_CACHE_SIZE];
    int next;  // round-robin replacement when full
} lt_cache;

// One cuBLASLt matmul; returns 0 (and does nothing) when no algorithm supports the combination,
// so the caller can fall back (the bias epilogue is not available for every type/shape).
static int try_matmul(backend *be, int m, int n, int k, const void *A, int lda, int ta, const void *B, int ldb,
                      int tb, void *D, int ldd, cudaDataType dtype_d, float alpha, float beta, const void *bias) {
    cuda_state *s = cuda_state_of(be);
    if (!s->lt_cache) {
        s->lt_cache = calloc(1, sizeof(lt_cache));
        if (!s->lt_cache) {
            fprintf(stderr, "quarry: out of host memory\n");
            exit(1);
        }
    }
    lt_cache *cache = (lt_cache *)s->lt_cache;
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType bt = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    cublasLtMatrixLayout_t la = ta ? layout(CUDA_R_16BF, k, m, lda) : layout(CUDA_R_16BF, m, k, lda);
    cublasLtMatrixLayout_t lb = tb ? layout(CUDA_R_16BF, n, k, ldb) : layout(CUDA_R_16BF, k, n, ldb);
    cublasLtMatrixLayout_t ld = layout(dtype_d, m, n, ldd);
    // The heuristic assumes 256-byte aligned buffers unless told; row slices (lm_head chunks,
    // LoRA halves) are not, so state each pointer's real alignment.
    uint32_t al_a = alignment(A), al_b = alignment(B), al_d = alignment(D);
    int key[13] = {m, n, k, lda, ldb, ldd, ta, tb, (int)dtype_d, bias != NULL, (int)al_a, (int)al_b, (int)al_d};
    lt_entry *hit = NULL;
    for (int i = 0; i < LT_CACHE_SIZE && !hit; i++)
        if (cache->e[i].used && !memcmp(cache->e[i].key, key, sizeof key)) hit = &cache->e[i];
    if (!hit) {
        hit = &cache->e[cache->next];
        cache->next = (cache->next + 1) % LT_CACHE_SIZE;
        memcpy(hit->key, key, sizeof key);
        hit->used = 1;
        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = s->workspace_bytes;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
        cublasLtMatmulHeuristicResult_t heur;
        int found = 0;
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, ld, ld, pref, 1, &heur, &found);
        // Any refusal (NOT_SUPPORTED, or INVALID_VALUE for layouts it will not take) sends the
        // caller to the classic cuBLAS path, which reports a real shape error itself.
        hit->found = st == CUBLAS_STATUS_SUCCESS && found > 0;
        if (hit->found) hit->algo = heur.algo;
        CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    }
    int ok = hit->found;
    if (ok)
        CUBLAS_CHECK(cublasLtMatmul(s->lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &hit->algo, s->workspace,
                                    s->workspace_bytes, s->stream));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(ld));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
    return ok;
}

// D[i, j] (column-major m × n, leading dimension ldd) += scale · bias[i].
__global__ void add_bias_kernel(bf16 *D, const bf16 *bias, int m, int n, int ldd, float scale) {
    size_t total = (size_t)m * n;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        size_t j = idx / m, i = idx % m;
        bf16 *d = D + j * (size_t)ldd + i;
        *d = __float2bfloat16_rn(__bfloat162float(*d) + scale * __bfloat162float(bias[i]));
    }
}

void cuda_matmul(backend *be, int m, int n, int k, const void *A, int lda, int ta, const void *B, int ldb, int tb,
                 void *D, int ldd, cudaDataType dtype_d, float alpha, float beta, const void *bias) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        fprintf(stderr, "quarry: cuda_matmul: inner dimension %d; the caller passed an empty matrix\n", k);
        exit(1);
    }
    if (try_matmul(be, m, n, k, A, lda, ta, B, ldb, tb, D, ldd, dtype_d, alpha, beta, bias)) return;
    // No cuBLASLt algorithm for this combination (the bias epilogue, or unusual leading
    // dimensions): without the epilogue, then classic cuBLAS, which takes any shape.
    if (!bias || !try_matmul(be, m, n, k, A, lda, ta, B, ldb, tb, D, ldd, dtype_d, alpha, beta, NULL)) {
        cuda_state *s = cuda_state_of(be);
        CUBLAS_CHECK(cublasGemmEx(s->cublas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                                  &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &beta, D, dtype_d, ldd,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (bias) {
        if (dtype_d != CUDA_R_16BF) {
            fprintf(stderr, "quarry: cuda_matmul: a bias needs a bf16 output\n");
            exit(1);
        }
        add_bias_kernel<<<grid_for(be, (size_t)m * n, 256), 256, 0, cuda_state_of(be)->stream>>>(
            (bf16 *)D, (const bf16 *)bias, m, n, ldd, 1.0f);
        CUDA_CHECK_LAST();
    }
}

#define COLSUM_ROWS 64

// partial[b, c] = Σ_{r in chunk b} src[r, c]: one thread per column, rows in order.
__global__ void colsum_partial_kernel(float *partial, const bf16 *src, int rows, int cols, int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
    for (int r = r0; r < r1; r++) acc += __bfloat162float(src[(size_t)r * cols + c]);
    partial[(size_t)blockIdx.y * cols + c] = acc;
}

__global__ void colsum_finish_kernel(float *dst, const float *partial, int nchunks, int cols, float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float acc = 0.0f;
    for (int b = 0; b < nchunks; b++) acc += partial[(size_t)b * cols + c];
    dst[c] += scale * acc;
}

void cuda_colsum_acc(backend *be, float *dst, const void *src, int rows, int cols, float scale) {
    if (rows <= 0 || cols <= 0) return;
    cudaStream_t st = cuda_state_of(be)->stream;
    int nchunks = (rows + COLSUM_ROWS - 1) / COLSUM_ROWS;
    if (nchunks > 1024) nchunks = 1024;
    int rows_per_chunk = (rows + nchunks - 1) / nchunks;
    nchunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
    float *partial = (float *)cuda_scratch(be, (size_t)nchunks * cols * sizeof(float));
    dim3 grid((unsigned)((cols + 255) / 256), (unsigned)nchunks);
    colsum_partial_kernel<<<grid, 256, 0, st>>>(partial, (const bf16 *)src, rows, cols, rows_per_chunk);
    CUDA_CHECK_LAST();
    colsum_finish_kernel<<<(cols + 255) / 256, 256, 0, st>>>(dst, partial, nchunks, cols, scale);
    CUDA_CHECK_LAST();
}

// Row-major (N, OC) = (N, IC)·(OC, IC)ᵀ is, column-major, (OC × N) = Wᵀ-view(IC × OC)ᵀ · x(IC × N).
static void cu_linear_forward(backend *be, void *out, const void *inp, const void *w, const void *bias, int N,
                              int IC, int OC, float scale, int accumulate) {
    if (N <= 0 || OC <= 0) return;
    float beta = accumulate ? 1.0f : 0.0f;
    // The epilogue adds an unscaled bias; with scale ≠ 1 it is added separately as scale·bias.
    const void *epi_bias = scale == 1.0f ? bias : NULL;
    cuda_matmul(be, OC, N, IC, w, IC, 1, inp, IC, 0, out, OC, CUDA_R_16BF, scale, beta, epi_bias);
    if (bias && !epi_bias) {
        add_bias_kernel<<<grid_for(be, (size_t)OC * N, 256), 256, 0, cuda_state_of(be)->stream>>>(
            (bf16 *)out, (const bf16 *)bias, OC, N, OC, scale);
        CUDA_CHECK_LAST();
    }
}

static void cu_linear_backward(backend *be, void *dinp, float *dw, float *dbias, const void *dout, const void *inp,
                               const void *w, int N, int IC, int OC, float scale, int accumulate) {
    if (N <= 0) return;
    // dinp (IC × N col-major) = W-view(IC × OC) · dout(OC × N)
    if (dinp) cuda_matmul(be, IC, N, OC, w, IC, 0, dout, OC, 0, dinp, IC, CUDA_R_16BF, scale, accumulate ? 1.0f : 0.0f, NULL);
    // dw (IC × OC col-major) += inp(IC × N) · dout(OC × N)ᵀ, f32 output
    if (dw) cuda_matmul(be, IC, OC, N, inp, IC, 0, dout, OC, 1, dw, IC, CUDA_R_32F, scale, 1.0f, NULL);
    if (dbias) cuda_colsum_acc(be, dbias, dout, N, OC, scale);
}

void cuda_linear_install(backend *be) {
    be->linear_forward = cu_linear_forward;
    be->linear_backward = cu_linear_backward;
}
