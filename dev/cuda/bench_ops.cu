// dev/cuda/bench_ops.cu — times the CUDA backend's hot ops through the op table: median of
// repeats measured with CUDA events on the backend's stream, reported as ms and TFLOP/s or GB/s.
// Usage: bench_ops [--quick]   (exit 77 without a GPU).  Inputs are random bf16; the numbers
// are checked for correctness by tests/ops_cuda, not here.
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/mxfp4_format.h"
#include "lab_common.cuh"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include <algorithm>

static backend *be;
static int reps = 20;

static void *dev_alloc(size_t bytes) {
    void *p = be->alloc(be, bytes);
    if (!p) {
        fprintf(stderr, "bench_ops: %s\n", be->error);
        exit(1);
    }
    return p;
}

// Random bf16 values in [-a, a] (a cheap LCG on the host, cast on the device).
static void *rand_act(size_t n, float a) {
    std::vector<float> h(n);
    unsigned long long s = 0x9e3779b97f4a7c15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = ((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * a;
    }
    float *tmp = (float *)dev_alloc(n * sizeof(float));
    be->copy_to_device(be, tmp, h.data(), n * sizeof(float));
    void *out = dev_alloc(n * 2);
    be->cast_f32_to_act(be, out, tmp, n);
    be->synchronize(be);
    be->free(be, tmp);
    return out;
}

static float *zeros_f32(size_t n) {
    float *p = (float *)dev_alloc(n * sizeof(float));
    be->memset_zero(be, p, n * sizeof(float));
    return p;
}

template <class F> static double median_ms(F f) { return lab_median_ms(be, reps, f); }

struct row {
    char op[48], shape[64], metric[32];
    double ms;
};
static std::vector<row> rows;

static void report(const char *op, const char *shape, double ms, double flops, double bytes) {
    row r;
    snprintf(r.op, sizeof r.op, "%s", op);
    snprintf(r.shape, sizeof r.shape, "%s", shape);
    if (flops > 0) snprintf(r.metric, sizeof r.metric, "%.1f TFLOP/s", flops / (ms * 1e-3) / 1e12);
    else snprintf(r.metric, sizeof r.metric, "%.0f GB/s", bytes / (ms * 1e-3) / 1e9);
    r.ms = ms;
    rows.push_back(r);
    printf("%-24s %-36s %9.3f ms  %s\n", r.op, r.shape, ms, r.metric);
    fflush(stdout);
}

static void bench_linear(int N, int IC, int OC) {
    void *x = rand_act((size_t)N * IC, 1.0f), *w = rand_act((size_t)OC * IC, 0.05f);
    void *y = dev_alloc((size_t)N * OC * 2), *dy = rand_act((size_t)N * OC, 1.0f), *dx = dev_alloc((size_t)N * IC * 2);
    float *dw = zeros_f32((size_t)OC * IC);
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d", N, IC, OC);
    double f = 2.0 * N * IC * OC;
    report("linear fwd", shape, median_ms([&] { be->linear_forward(be, y, x, w, NULL, N, IC, OC, 1.0f, 0); }), f, 0);
    report("linear bwd (dx+dW)", shape,
           median_ms([&] { be->linear_backward(be, dx, dw, NULL, dy, x, w, N, IC, OC, 1.0f, 0); }), 2 * f, 0);
    report("linear bwd frozen (dx)", shape,
           median_ms([&] { be->linear_backward(be, dx, NULL, NULL, dy, x, w, N, IC, OC, 1.0f, 0); }), f, 0);
    be->free(be, x); be->free(be, w); be->free(be, y); be->free(be, dy); be->free(be, dx); be->free(be, dw);
}

// window > 0: gpt-oss' sliding layer (window and sinks; the flops count only the visible band).
static void bench_attention(int B, int H, int KVH, int T, int hd, int window) {
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * KVH * hd;
    void *q = rand_act(nq, 1.0f), *k = rand_act(nk, 1.0f), *v = rand_act(nk, 1.0f), *dout = rand_act(nq, 1.0f);
    void *out = dev_alloc(nq * 2), *dq = dev_alloc(nq * 2), *dk = dev_alloc(nk * 2), *dv = dev_alloc(nk * 2);
    float *lse = (float *)dev_alloc((size_t)B * H * T * sizeof(float));
    std::vector<int32_t> docs((size_t)B * T, 0);  // one document per row: plain causal
    int32_t *doc = (int32_t *)dev_alloc(docs.size() * sizeof(int32_t));
    be->copy_to_device(be, doc, docs.data(), docs.size() * sizeof(int32_t));
    float scale = 1.0f / sqrtf((float)hd);
    float *sinks = window > 0 ? zeros_f32((size_t)H) : NULL, *dsinks = window > 0 ? zeros_f32((size_t)H) : NULL;
    char shape[96];
    snprintf(shape, sizeof shape, "B=%d H=%d KVH=%d T=%d hd=%d%s", B, H, KVH, T, hd, window > 0 ? " W+sinks" : "");
    // Visible (query, key) pairs: causal half, or the band of the window.
    double pairs = window > 0 && window < T ? (double)T * window - (double)window * (window - 1) / 2.0
                                             : (double)T * T / 2.0;
    double f = 4.0 * B * H * pairs * hd;
    report("attention fwd", shape, median_ms([&] {
               be->attention_forward(be, out, lse, q, k, v, doc, 0, B, T, T, H, KVH, hd, scale, window, sinks);
           }), f, 0);
    report("attention bwd", shape, median_ms([&] {
               be->attention_backward(be, dq, dk, dv, dout, out, lse, q, k, v, doc, 0, B, T, T, H, KVH, hd, scale, window,
                                      sinks, dsinks);
           }), 2.5 * f, 0);
    if (sinks) {
        be->free(be, sinks);
        be->free(be, dsinks);
    }
    be->free(be, q); be->free(be, k); be->free(be, v); be->free(be, dout); be->free(be, out);
    be->free(be, dq); be->free(be, dk); be->free(be, dv); be->free(be, lse); be->free(be, doc);
}

static void bench_rmsnorm(int N, int C) {
    void *x = rand_act((size_t)N * C, 1.0f), *w = rand_act((size_t)C, 1.0f), *out = dev_alloc((size_t)N * C * 2);
    void *dout = rand_act((size_t)N * C, 1.0f), *dx = rand_act((size_t)N * C, 1.0f);
    float *rstd = (float *)dev_alloc((size_t)N * sizeof(float)), *dw = zeros_f32((size_t)C);
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d C=%d", N, C);
    double n = (double)N * C;
    report("rmsnorm fwd", shape, median_ms([&] { be->rmsnorm_forward(be, out, rstd, x, w, N, C, 1e-5f); }), 0, 4 * n);
    be->synchronize(be);
    report("rmsnorm bwd", shape, median_ms([&] { be->rmsnorm_backward(be, dx, dw, dout, x, w, rstd, N, C); }), 0, 8 * n);
    be->free(be, x); be->free(be, w); be->free(be, out); be->free(be, dout); be->free(be, dx);
    be->free(be, rstd); be->free(be, dw);
}

// RoPE of q and k, fused (rope_qk_*: one launch each way) against the separate ops model/llama.c
// runs with MODEL_FUSE_ROPE_QK off: 2 rope (+ 2 rmsnorm) forward; 2 rope (+ 2 memset + 2
// rmsnorm_backward) backward.  norm: Qwen3's per-head q/k norms (frozen, as in LoRA: no dw).
// Bytes: what each side must move at least (bf16 in and out per pass).
static void bench_rope_qk(int N, int Hq, int Hk, int hd, int norm) {
    size_t nq = (size_t)N * Hq * hd, nk = (size_t)N * Hk * hd;
    void *q = rand_act(nq, 1.0f), *k = rand_act(nk, 1.0f), *qr = rand_act(nq, 1.0f), *kr = rand_act(nk, 1.0f);
    void *wq = rand_act((size_t)hd, 1.0f), *wk = rand_act((size_t)hd, 1.0f), *tmp = dev_alloc(nq * 2);
    float *rq = (float *)dev_alloc((size_t)N * Hq * 4), *rk = (float *)dev_alloc((size_t)N * Hk * 4);
    float *inv = (float *)dev_alloc((size_t)hd / 2 * 4);
    std::vector<float> ih(hd / 2);
    for (int i = 0; i < hd / 2; i++) ih[i] = powf(500000.0f, -2.0f * (float)i / (float)hd);
    be->copy_to_device(be, inv, ih.data(), ih.size() * 4);
    int32_t *pos = (int32_t *)dev_alloc((size_t)N * 4);
    std::vector<int32_t> ph(N);
    for (int i = 0; i < N; i++) ph[i] = i;
    be->copy_to_device(be, pos, ph.data(), (size_t)N * 4);
    rope_table rt = {inv, hd, 1.0f};
    const void *wqn = norm ? wq : NULL, *wkn = norm ? wk : NULL;
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d H=%d+%d hd=%d%s", N, Hq, Hk, hd, norm ? " qk-norm" : "");
    double b = 2.0 * (double)(nq + nk);   // one bf16 pass over q and k
    report("rope q,k fwd (separate)", shape, median_ms([&] {
               if (norm) {
                   be->rmsnorm_forward(be, q, rq, qr, wq, N * Hq, hd, 1e-6f);
                   be->rmsnorm_forward(be, k, rk, kr, wk, N * Hk, hd, 1e-6f);
               }
               be->rope_forward(be, q, pos, &rt, N, Hq);
               be->rope_forward(be, k, pos, &rt, N, Hk);
           }), 0, 2 * b);
    report("rope_qk fwd (fused)", shape, median_ms([&] {
               be->rope_qk_forward(be, q, k, rq, rk, norm ? qr : q, norm ? kr : k, wqn, wkn, pos, &rt, N, Hq, Hk, 1e-6f);
           }), 0, 2 * b);
    report("rope q,k bwd (separate)", shape, median_ms([&] {
               be->rope_backward(be, q, pos, &rt, N, Hq);
               be->rope_backward(be, k, pos, &rt, N, Hk);
               if (norm) {
                   be->memset_zero(be, tmp, nq * 2);
                   be->rmsnorm_backward(be, tmp, NULL, q, qr, wq, rq, N * Hq, hd);
                   be->memset_zero(be, tmp, nk * 2);
                   be->rmsnorm_backward(be, tmp, NULL, k, kr, wk, rk, N * Hk, hd);
               }
           }), 0, (norm ? 3 : 2) * b);
    report("rope_qk bwd (fused)", shape, median_ms([&] {
               be->rope_qk_backward(be, q, k, NULL, NULL, qr, kr, wqn, wkn, rq, rk, pos, &rt, N, Hq, Hk);
           }), 0, (norm ? 3 : 2) * b);
    be->free(be, q); be->free(be, k); be->free(be, qr); be->free(be, kr); be->free(be, wq); be->free(be, wk);
    be->free(be, tmp); be->free(be, rq); be->free(be, rk); be->free(be, inv); be->free(be, pos);
}

static void bench_lm_head(int N, int C, int V) {
    void *h = rand_act((size_t)N * C, 1.0f), *w = rand_act((size_t)V * C, 0.02f), *dh = dev_alloc((size_t)N * C * 2);
    float *dw = zeros_f32((size_t)V * C), *losses = (float *)dev_alloc((size_t)N * sizeof(float));
    std::vector<int32_t> t((size_t)N);
    for (int i = 0; i < N; i++) t[i] = (int32_t)((i * 7919u) % (unsigned)V);
    int32_t *tg = (int32_t *)dev_alloc((size_t)N * sizeof(int32_t));
    be->copy_to_device(be, tg, t.data(), (size_t)N * sizeof(int32_t));
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d C=%d V=%d", N, C, V);
    double f = 2.0 * N * C * V;
    report("lm_head_loss fwd", shape,
           median_ms([&] { be->lm_head_loss(be, losses, NULL, NULL, h, w, tg, N, C, V, 1.0f / N); }), f, 0);
    report("lm_head_loss fwd+bwd", shape,
           median_ms([&] { be->lm_head_loss(be, losses, dh, dw, h, w, tg, N, C, V, 1.0f / N); }), 3 * f, 0);
    be->free(be, h); be->free(be, w); be->free(be, dh); be->free(be, dw); be->free(be, losses); be->free(be, tg);
}

static void bench_elementwise(size_t n) {
    void *a = rand_act(n, 1.0f), *b = rand_act(n, 1.0f), *o = dev_alloc(n * 2), *o2 = dev_alloc(n * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "n=%zu", n);
    report("swiglu fwd", shape, median_ms([&] { be->swiglu_forward(be, o, a, b, n); }), 0, 6.0 * n);
    report("swiglu bwd", shape, median_ms([&] { be->swiglu_backward(be, o, o2, a, a, b, n); }), 0, 10.0 * n);
    float *p = zeros_f32(n), *g = zeros_f32(n), *m = zeros_f32(n), *v = zeros_f32(n), *ss = zeros_f32(1);
    report("adamw", shape, median_ms([&] {
               be->adamw_update(be, p, o, g, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 10, 1.0f);
           }), 0, 30.0 * n);
    report("sum_squares", shape, median_ms([&] { be->sum_squares(be, ss, g, n); }), 0, 4.0 * n);
    be->free(be, a); be->free(be, b); be->free(be, o); be->free(be, o2);
    be->free(be, p); be->free(be, g); be->free(be, m); be->free(be, v); be->free(be, ss);
}

// The MoE ops at a model's shape: the router on random logits, then the dispatch ops over the
// grouping its idx gives (a stable counting sort by expert, as the model makes on the host).
// GB/s counts the bytes each op must move at least (kernels/cuda/moe.cu states the prediction).
static void bench_moe(int N, int E, int k, int C) {
    int M = N * k;
    void *logits = rand_act((size_t)N * E, 2.0f), *dlogits = dev_alloc((size_t)N * E * 2);
    float *probs = (float *)dev_alloc((size_t)N * E * sizeof(float)), *wts = (float *)dev_alloc((size_t)M * sizeof(float));
    float *dw = zeros_f32((size_t)M), *ps = zeros_f32((size_t)E), *cnt = zeros_f32((size_t)E);
    int32_t *idx = (int32_t *)dev_alloc((size_t)M * sizeof(int32_t));
    be->moe_router_forward(be, idx, wts, probs, logits, N, E, k, 1);
    std::vector<int32_t> ih((size_t)M), src((size_t)M), pos((size_t)M);
    be->copy_to_host(be, ih.data(), idx, (size_t)M * sizeof(int32_t));
    int i = 0;
    for (int e = 0; e < E; e++)
        for (int a = 0; a < M; a++)
            if (ih[a] == e) { src[i] = a; pos[a] = i++; }
    int32_t *srcd = (int32_t *)dev_alloc((size_t)M * sizeof(int32_t)), *posd = (int32_t *)dev_alloc((size_t)M * sizeof(int32_t));
    be->copy_to_device(be, srcd, src.data(), (size_t)M * sizeof(int32_t));
    be->copy_to_device(be, posd, pos.data(), (size_t)M * sizeof(int32_t));
    void *x = rand_act((size_t)N * C, 1.0f), *dx = dev_alloc((size_t)N * C * 2), *xp = dev_alloc((size_t)M * C * 2);
    void *eo = rand_act((size_t)M * C, 1.0f), *deo = dev_alloc((size_t)M * C * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "N=%d E=%d k=%d C=%d", N, E, k, C);
    double ne = (double)N * E, mc = (double)M * C, nc = (double)N * C;
    report("moe_router fwd", shape, median_ms([&] { be->moe_router_forward(be, idx, wts, probs, logits, N, E, k, 1); }),
           0, 6 * ne + 8.0 * M);
    report("moe_router bwd", shape, median_ms([&] {
               be->moe_router_backward(be, dlogits, dw, ps, NULL, probs, idx, wts, N, E, k, 1);
           }), 0, 6 * ne + 12.0 * M);
    report("moe_router_stats", shape, median_ms([&] { be->moe_router_stats(be, ps, cnt, probs, idx, NULL, N, E, k); }),
           0, 4 * ne + 4.0 * M);
    report("moe_permute", shape, median_ms([&] { be->moe_permute(be, xp, x, srcd, M, k, C); }), 0, 4 * mc);
    report("moe_permute bwd", shape, median_ms([&] { be->moe_permute_backward(be, dx, xp, posd, N, k, C, 0); }), 0,
           2 * mc + 2 * nc);
    report("moe_unpermute", shape, median_ms([&] { be->moe_unpermute(be, dx, eo, wts, posd, N, k, C); }), 0,
           2 * mc + 2 * nc);
    report("moe_unpermute bwd", shape, median_ms([&] {
               be->moe_unpermute_backward(be, deo, dw, dx, eo, wts, posd, N, k, C);
           }), 0, 4 * mc + 2 * nc);
    be->free(be, logits); be->free(be, dlogits); be->free(be, probs); be->free(be, wts); be->free(be, dw);
    be->free(be, ps); be->free(be, cnt); be->free(be, idx); be->free(be, srcd); be->free(be, posd);
    be->free(be, x); be->free(be, dx); be->free(be, xp); be->free(be, eo); be->free(be, deo);
}

// gpt-oss's MXFP4 experts (model/moe/experts.c): one expert matrix (OC, IC) dequantised into the
// bf16 workspace (GB/s: the n/2 + n/32 packed bytes read and 2n written), and the per-expert
// pair the model runs, dequantise + linear over `rows` routed rows, beside the linear alone on a
// bf16 weight (the dequantised-at-load experts): the overhead docs/BENCHMARKS.md predicts.
static void bench_mxfp4(int OC, int IC, int rows) {
    size_t n = (size_t)OC * IC;
    std::vector<uint8_t> hb(n / 2 + n / 32);
    unsigned long long s = 0x3779b97full;
    for (size_t i = 0; i < hb.size(); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        hb[i] = i < n / 2 ? (uint8_t)(s >> 56) : (uint8_t)(118 + (s >> 60) % 6);
    }
    uint8_t *packed = (uint8_t *)dev_alloc(hb.size());
    be->copy_to_device(be, packed, hb.data(), hb.size());
    mxfp4_tensor w = {packed, packed + n / 2};
    void *ws = dev_alloc(n * 2), *x = rand_act((size_t)rows * IC, 1.0f), *y = dev_alloc((size_t)rows * OC * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "OC=%d IC=%d", OC, IC);
    report("mxfp4_dequantize", shape, median_ms([&] { be->mxfp4_dequantize(be, ws, &w, OC, IC); }), 0,
           (double)(n / 2 + n / 32) + 2.0 * n);
    snprintf(shape, sizeof shape, "rows=%d OC=%d IC=%d", rows, OC, IC);
    double f = 2.0 * rows * IC * OC;
    report("mxfp4 dequant + linear", shape, median_ms([&] {
               be->mxfp4_dequantize(be, ws, &w, OC, IC);
               be->linear_forward(be, y, x, ws, NULL, rows, IC, OC, 1.0f, 0);
           }), f, 0);
    report("linear (bf16 expert)", shape, median_ms([&] { be->linear_forward(be, y, x, ws, NULL, rows, IC, OC, 1.0f, 0); }),
           f, 0);
    be->free(be, packed); be->free(be, ws); be->free(be, x); be->free(be, y);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    if (quick) reps = 5;
    char err[256] = "";
    be = backend_cuda(0, err, sizeof err);
    if (!be) {
        printf("SKIP: %s\n", err);
        return 77;
    }
    cudaDeviceProp &p = cuda_state_of(be)->props;
    printf("bench_ops on %s (sm_%d%d, %d SMs, %.1f GiB), median of %d runs\n", p.name, p.major, p.minor,
           p.multiProcessorCount, p.totalGlobalMem / 1073741824.0, reps);
    bench_linear(8192, 4096, 4096);
    bench_linear(8192, 2048, 8192);
    bench_attention(1, 32, 8, 2048, 128, 0);
    bench_attention(1, 32, 8, 2048, 64, 0);
    bench_attention(1, 64, 8, 2048, 64, 0);    // gpt-oss-20b's full layer (with no sinks)
    bench_attention(1, 64, 8, 2048, 64, 128);  // gpt-oss-20b's sliding layer: window 128, sinks
    bench_rmsnorm(8192, 4096);
    bench_rope_qk(2048, 32, 8, 128, 0);   // Llama-3.1-8B, micro-batch 1 × 2048
    bench_rope_qk(2048, 32, 8, 128, 1);   // Qwen3-8B
    bench_lm_head(4096, 2048, 128256);
    bench_elementwise((size_t)64 << 20);
    bench_moe(8192, 128, 8, 2048);  // Qwen3-30B-A3B
    bench_moe(8192, 8, 2, 4096);    // Mixtral-8x7B
    bench_mxfp4(2880, 2880, 64);    // one gpt-oss expert at micro-batch 1 (2048 tokens × top-4 / 128 experts)
    bench_mxfp4(2880, 2880, 512);   // ... at micro-batch 8

    printf("\n| op | shape | median ms | rate |\n|---|---|---:|---:|\n");
    for (const row &r : rows) printf("| %s | %s | %.3f | %s |\n", r.op, r.shape, r.ms, r.metric);
    be->destroy(be);
    return 0;
}
