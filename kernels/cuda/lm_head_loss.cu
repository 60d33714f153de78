// kernels/cuda/lm_head_loss.cu — fused lm_head + cross-entropy + gradient, in chunks of token rows:
// per chunk the logits (rows × V, f32) come from cuBLASLt into scratch, one block per row turns
// them into the loss and bf16 dlogits, and two more matmuls give dh and dw.  Never N × V at once.
#include "common.cuh"

#define CE_THREADS 512
// Scratch for one chunk: f32 logits + bf16 dlogits.
#define LM_HEAD_CHUNK_BYTES ((size_t)256 << 20)

// One block per row of logits (V, f32).  losses[row] = logsumexp − logit[target]; dlogits (when
// not NULL) = grad_scale · (softmax − onehot).  A target of −1 (or out of range, as the CPU
// backend treats it) is not trained: loss 0, zero gradient.
__global__ void cross_entropy_kernel(float *losses, bf16 *dlogits, const float *logits, const int32_t *targets, int V,
                                     float grad_scale) {
    __shared__ float red[32];
    int row = blockIdx.x;
    const float *x = logits + (size_t)row * V;
    int t = targets[row];
    bool trained = t >= 0 && t < V;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < V; c += CE_THREADS) m = fmaxf(m, x[c]);
    m = block_max(m, red);
    float s = 0.0f;
    for (int c = threadIdx.x; c < V; c += CE_THREADS) s += expf(x[c] - m);
    s = block_sum(s, red);
    float lse = m + logf(s);
    if (threadIdx.x == 0) losses[row] = trained ? lse - x[t] : 0.0f;
    if (!dlogits) return;
    bf16 *d = dlogits + (size_t)row * V;
    if (!trained) {
        for (int c = threadIdx.x; c < V; c += CE_THREADS) d[c] = __float2bfloat16_rn(0.0f);
        return;
    }
    for (int c = threadIdx.x; c < V; c += CE_THREADS) {
        float p = expf(x[c] - lse);
        d[c] = __float2bfloat16_rn(grad_scale * (p - (c == t ? 1.0f : 0.0f)));
    }
}

// Rows per chunk: what fits LM_HEAD_CHUNK_BYTES; QUARRY_LMHEAD_CHUNK_ROWS overrides it (tests use
// it to force several chunks and a ragged last one on small shapes).
static int chunk_rows(int N, int V, int with_grad) {
    size_t per_row = (size_t)V * (sizeof(float) + (with_grad ? sizeof(bf16) : 0));
    size_t rows = LM_HEAD_CHUNK_BYTES / per_row;
    const char *env = getenv("QUARRY_LMHEAD_CHUNK_ROWS");
    if (env && *env) {
        long r = strtol(env, NULL, 10);
        if (r > 0) rows = (size_t)r;
    }
    if (rows < 1) rows = 1;
    if (rows > (size_t)N) rows = (size_t)N;
    return (int)rows;
}

static void cu_lm_head_loss(backend *be, float *losses, void *dh, float *dw, const void *h, const void *w,
                            const int32_t *targets, int N, int C, int V, float grad_scale) {
    if (N <= 0) return;
    cuda_state *s = cuda_state_of(be);
    int with_grad = dh != NULL;
    int nc = chunk_rows(N, V, with_grad);
    size_t logits_bytes = ((size_t)nc * V * sizeof(float) + 255) & ~(size_t)255;
    size_t total = logits_bytes + (with_grad ? (size_t)nc * V * sizeof(bf16) : 0);
    char *scratch = (char *)cuda_scratch(be, total);
    float *logits = (float *)scratch;
    bf16 *dlogits = with_grad ? (bf16 *)(scratch + logits_bytes) : NULL;
    const bf16 *hb = (const bf16 *)h;
    for (int r0 = 0; r0 < N; r0 += nc) {
        int rows = N - r0 < nc ? N - r0 : nc;
        const bf16 *hc = hb + (size_t)r0 * C;
        // logits (V × rows col-major) = W-view(C × V)ᵀ · h(C × rows)
        cuda_matmul(be, V, rows, C, w, C, 1, hc, C, 0, logits, V, CUDA_R_32F, 1.0f, 0.0f, NULL);
        cross_entropy_kernel<<<rows, CE_THREADS, 0, s->stream>>>(losses + r0, dlogits, logits, targets + r0, V,
                                                                 grad_scale);
        CUDA_CHECK_LAST();
        if (!with_grad) continue;
        // dh (C × rows) = W-view(C × V) · dlogits(V × rows)
        cuda_matmul(be, C, rows, V, w, C, 0, dlogits, V, 0, (bf16 *)dh + (size_t)r0 * C, C, CUDA_R_16BF, 1.0f, 0.0f,
                    NULL);
        // dw (C × V) += h(C × rows) · dlogits(V × rows)ᵀ
        if (dw) cuda_matmul(be, C, V, rows, hc, C, 0, dlogits, V, 1, dw, C, CUDA_R_32F, 1.0f, 1.0f, NULL);
    }
}

void cuda_lm_head_loss_install(backend *be) { be->lm_head_loss = cu_lm_head_loss; }
