// dev/cuda/attention_cudnn_check.cu — cuDNN's fused SDPA through quarry (--attention cudnn) against
// quarry's kernel (--attention quarry), on one GPU through the op table:
//   1. correctness: forward (out, lse) and backward (dq, dk, dv) of both against the CPU backend
//      on small shapes (GQA, hd 64 and 128, one document per row, and packed rows, which the
//      cuDNN path leaves to quarry's kernel);
//   2. speed: fwd and bwd TFLOP/s (causal: fwd 2·B·H·T²·hd, bwd 2.5× that) at hd 64 and 128,
//      T 2048 and 8192, GQA 4 (32 heads, 8 kv heads), 16K tokens per call; a markdown table.
// Usage: attention_cudnn_check [--quick]   Exit: 0 pass, 1 a check failed, 77 no GPU; cuDNN
// absent: the quarry rows only, said so.  QUARRY_ATTN_KERNEL=v3|v4 checks and times that forward
// kernel in the quarry rows (named quarry-vN).
#include "kernels/backend.h"
#include "kernels/cuda/attention_fa2.h"
#include "kernels/cuda/cuda_ops.h"
#include "lab_common.cuh"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

static backend *gpu, *cpu;
static int failures = 0;

static void *alloc_on(backend *be, size_t bytes) {
    void *p = be->alloc(be, bytes);
    if (!p) {
        fprintf(stderr, "attention_cudnn_check: %s\n", be->error);
        exit(1);
    }
    return p;
}

static std::vector<float> random_vec(size_t n, float a, unsigned long long seed) {
    std::vector<float> h(n);
    unsigned long long s = 0x9e3779b97f4a7c15ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        h[i] = ((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * a;
    }
    return h;
}

// bf16 on the GPU from f32 values; h is replaced by the rounded values (the CPU's inputs).
static void *to_gpu_act(std::vector<float> &h) {
    size_t n = h.size();
    float *tmp = (float *)alloc_on(gpu, n * 4);
    void *act = alloc_on(gpu, n * 2);
    gpu->copy_to_device(gpu, tmp, h.data(), n * 4);
    gpu->cast_f32_to_act(gpu, act, tmp, n);
    gpu->cast_act_to_f32(gpu, tmp, act, n);
    gpu->copy_to_host(gpu, h.data(), tmp, n * 4);
    gpu->free(gpu, tmp);
    return act;
}

static std::vector<float> from_gpu_act(const void *act, size_t n) {
    std::vector<float> h(n);
    float *tmp = (float *)alloc_on(gpu, n * 4);
    gpu->cast_act_to_f32(gpu, tmp, act, n);
    gpu->copy_to_host(gpu, h.data(), tmp, n * 4);
    gpu->free(gpu, tmp);
    return h;
}

static void *to_cpu(const std::vector<float> &h) {
    void *p = alloc_on(cpu, h.size() * 4);
    cpu->copy_to_device(cpu, p, h.data(), h.size() * 4);
    return p;
}

static std::vector<float> from_cpu(const void *p, size_t n) {
    std::vector<float> h(n);
    cpu->copy_to_host(cpu, h.data(), p, n * 4);
    return h;
}

// max |a − b| / max |b|, the bf16 outputs' error relative to the tensor's scale.
static double rel_err(const std::vector<float> &a, const std::vector<float> &b) {
    double m = 0, s = 1e-30;
    for (size_t i = 0; i < a.size(); i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return m / s;
}

static void check_shape(int B, int T, int H, int KVH, int hd, int packed, int have_cudnn) {
    size_t nq = (size_t)B * T * H * hd, nkv = (size_t)B * T * KVH * hd, nl = (size_t)B * H * T;
    std::vector<float> q = random_vec(nq, 1.0f, 1), k = random_vec(nkv, 1.0f, 2), v = random_vec(nkv, 1.0f, 3),
                       dout = random_vec(nq, 1.0f, 4);
    std::vector<int32_t> doc((size_t)B * T, 0);
    if (packed)   // two documents per row: [0, T/3) and [T/3, T)
        for (int b = 0; b < B; b++)
            for (int t = T / 3; t < T; t++) doc[(size_t)b * T + t] = T / 3;
    void *gq = to_gpu_act(q), *gk = to_gpu_act(k), *gv = to_gpu_act(v), *gdo = to_gpu_act(dout);
    float scale = 1.0f / sqrtf((float)hd);
    // The CPU reference (f32) on the same bf16-rounded inputs.
    void *cq = to_cpu(q), *ck = to_cpu(k), *cv = to_cpu(v), *cdo = to_cpu(dout);
    int32_t *cdoc = (int32_t *)alloc_on(cpu, doc.size() * 4);
    cpu->copy_to_device(cpu, cdoc, doc.data(), doc.size() * 4);
    void *co = alloc_on(cpu, nq * 4), *cdq = alloc_on(cpu, nq * 4), *cdk = alloc_on(cpu, nkv * 4),
         *cdv = alloc_on(cpu, nkv * 4);
    float *clse = (float *)alloc_on(cpu, nl * 4);
    cpu->attention_forward(cpu, co, clse, cq, ck, cv, cdoc, packed, B, T, T, H, KVH, hd, scale, 0, NULL);
    cpu->attention_backward(cpu, cdq, cdk, cdv, cdo, co, clse, cq, ck, cv, cdoc, packed, B, T, T, H, KVH, hd, scale, 0, NULL,
                            NULL);
    std::vector<float> ro = from_cpu(co, nq), rlse = from_cpu(clse, nl), rdq = from_cpu(cdq, nq),
                       rdk = from_cpu(cdk, nkv), rdv = from_cpu(cdv, nkv);

    int32_t *gdoc = (int32_t *)alloc_on(gpu, doc.size() * 4);
    gpu->copy_to_device(gpu, gdoc, doc.data(), doc.size() * 4);
    void *go = alloc_on(gpu, nq * 2), *gdq = alloc_on(gpu, nq * 2), *gdk = alloc_on(gpu, nkv * 2),
         *gdv = alloc_on(gpu, nkv * 2);
    float *glse = (float *)alloc_on(gpu, nl * 4);
    const char *modes[] = {"quarry", "cudnn"};
    for (int mi = 0; mi < 1 + have_cudnn; mi++) {
        char err[2048];
        if (!backend_set_attention(gpu, modes[mi], err, sizeof err)) {
            printf("FAIL: --attention %s: %s\n", modes[mi], err);
            failures++;
            continue;
        }
        gpu->attention_forward(gpu, go, glse, gq, gk, gv, gdoc, packed, B, T, T, H, KVH, hd, scale, 0, NULL);
        gpu->attention_backward(gpu, gdq, gdk, gdv, gdo, go, glse, gq, gk, gv, gdoc, packed, B, T, T, H, KVH, hd, scale, 0,
                                NULL, NULL);
        gpu->synchronize(gpu);
        std::vector<float> lse(nl);
        gpu->copy_to_host(gpu, lse.data(), glse, nl * 4);
        double eo = rel_err(from_gpu_act(go, nq), ro), el = rel_err(lse, rlse), eq = rel_err(from_gpu_act(gdq, nq), rdq),
               ek = rel_err(from_gpu_act(gdk, nkv), rdk), ev = rel_err(from_gpu_act(gdv, nkv), rdv);
        // bf16 outputs (8 bits of mantissa) from f32 accumulation: 2e-2 of the tensor's scale.
        int ok = eo < 2e-2 && el < 1e-2 && eq < 2e-2 && ek < 2e-2 && ev < 2e-2;
        printf("%s %-6s B=%d T=%d H=%d KVH=%d hd=%d %s: rel err out %.1e lse %.1e dq %.1e dk %.1e dv %.1e\n",
               ok ? "ok  " : "FAIL", modes[mi], B, T, H, KVH, hd, packed ? "packed" : "1 doc/row", eo, el, eq, ek, ev);
        if (!ok) failures++;
    }
    void *gp[] = {gq, gk, gv, gdo, gdoc, go, gdq, gdk, gdv, glse};
    for (void *p : gp) gpu->free(gpu, p);
    void *cp[] = {cq, ck, cv, cdo, cdoc, co, cdq, cdk, cdv, clse};
    for (void *p : cp) cpu->free(cpu, p);
}

static void bench(int hd, int T, int have_cudnn) {
    int H = 32, KVH = 8, B = T >= 16384 ? 1 : 16384 / T;
    size_t nq = (size_t)B * T * H * hd, nkv = (size_t)B * T * KVH * hd, nl = (size_t)B * H * T;
    std::vector<float> q = random_vec(nq, 1.0f, 5), k = random_vec(nkv, 1.0f, 6), v = random_vec(nkv, 1.0f, 7),
                       dout = random_vec(nq, 1.0f, 8);
    void *gq = to_gpu_act(q), *gk = to_gpu_act(k), *gv = to_gpu_act(v), *gdo = to_gpu_act(dout);
    int32_t *gdoc = (int32_t *)alloc_on(gpu, (size_t)B * T * 4);
    gpu->memset_zero(gpu, gdoc, (size_t)B * T * 4);
    void *go = alloc_on(gpu, nq * 2), *gdq = alloc_on(gpu, nq * 2), *gdk = alloc_on(gpu, nkv * 2),
         *gdv = alloc_on(gpu, nkv * 2);
    float *glse = (float *)alloc_on(gpu, nl * 4);
    float scale = 1.0f / sqrtf((float)hd);
    double fwd_flops = 2.0 * B * H * (double)T * T * hd, bwd_flops = 2.5 * fwd_flops;
    const char *modes[] = {"quarry", "cudnn"};
    for (int mi = 0; mi < 1 + have_cudnn; mi++) {
        char err[2048];
        if (!backend_set_attention(gpu, modes[mi], err, sizeof err)) continue;
        double f = lab_median_ms(gpu, 10, [&] {
            gpu->attention_forward(gpu, go, glse, gq, gk, gv, gdoc, 0, B, T, T, H, KVH, hd, scale, 0, NULL);
        });
        double b = lab_median_ms(gpu, 10, [&] {
            gpu->attention_backward(gpu, gdq, gdk, gdv, gdo, go, glse, gq, gk, gv, gdoc, 0, B, T, T, H, KVH, hd, scale,
                                    0, NULL, NULL);
        });
        // quarry's rows name the forward kernel (QUARRY_ATTN_KERNEL; the backward is v1).
        char impl[32];
        snprintf(impl, sizeof impl, mi ? "cudnn" : "quarry-v%d", cuda_attention_kernel());
        printf("| %s | %d | %d | %d×%d/%d | %.3f | %.0f | %.3f | %.0f |\n", impl, hd, T, B, H, KVH, f,
               fwd_flops / (f * 1e9), b, bwd_flops / (b * 1e9));
    }
    void *gp[] = {gq, gk, gv, gdo, gdoc, go, gdq, gdk, gdv, glse};
    for (void *p : gp) gpu->free(gpu, p);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    char err[2048];
    gpu = backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("attention_cudnn_check: skipped: %s\n", err);
        return 77;
    }
    cpu = backend_cpu(0);
    int have_cudnn = backend_set_attention(gpu, "cudnn", err, sizeof err);
    printf("attention_cudnn_check: %s\n", have_cudnn ? gpu->attention_impl : err);
    check_shape(2, 128, 8, 2, 64, 0, have_cudnn);
    check_shape(2, 256, 8, 2, 128, 0, have_cudnn);
    check_shape(1, 200, 4, 1, 128, 0, have_cudnn);   // T not a multiple of the tiles, GQA 4
    check_shape(2, 192, 8, 2, 64, 1, have_cudnn);    // packed rows: quarry's kernel in both modes
    printf("\n| impl | hd | T | B×H/KVH | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |\n|---|---|---|---|---|---|---|---|\n");
    int hds[] = {64, 128}, Ts[] = {2048, 8192};
    for (int hd : hds)
        for (int T : Ts) {
            if (quick && T > 2048) continue;
            bench(hd, T, have_cudnn);
        }
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    printf("attention_cudnn_check: %s\n", failures ? "FAILED" : "checks pass");
    return failures ? 1 : 0;
}
