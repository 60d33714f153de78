// dev/cuda/attention_backward.cu — the attention backward kernel lab (llm.c's dev/cuda manner):
// the CPU backend's op as the fp32 reference, numbered versions, a check of each, a benchmark.
//
//   attention_backward [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32] [--kv-heads 8]
//                      [--batch 1] [--docs 1] [--repeats 20] [--no-bench]
//
// Semantics (kernels/backend.h): dq, dk, dv overwritten from dout, the forward's out and lse, q,
// k, v; causal, GQA, documents via doc_start; bf16 tensors, f32 lse.  As tests/ops_cuda does, the
// forward's out (rounded to bf16) and lse come from the CPU backend and are given to both sides.
// Outputs are poisoned (NaN) before each run.  Bounds: for each of dq, dk, dv, ‖Δ‖/‖ref‖ ≤ 1e-2
// and max |Δ| ≤ 5e-2 · max |ref| (probabilities and dS pass through bf16 before the products).
// FLOPs counted as 2.5 × the causal forward (5 products of the same size instead of 2).
//
// Versions
//  1. the production kernels (kernels/cuda/attention.cu) through the op table: Dsum, then one
//     kernel per 64-key tile for dK/dV (looping over the query heads of its KV group, no atomics),
//     one per 64-query tile for dQ (recomputes S and dP): 29 TFLOP/s at hd 128, T 2048 on an H200.
//  Next (not written yet): FlashAttention-2's backward — one kernel per key tile holding dK, dV
//  in registers (mma.sync with documented fragment layouts, as forward v3), Q/dO tiles
//  double-buffered with cp.async, dQ accumulated per key tile into an fp32 buffer in a fixed order
//  (a second pass over key tiles per query tile, or ordered atomics) so it stays deterministic.
#include "common.cuh"
#include "lab_common.cuh"

typedef void (*attn_bwd_fn)(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v, const int32_t *doc_start,
                            int B, int Tq, int Tk, int H, int KVH, int hd, float scale);

static void run_v1(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                   const void *q, const void *k, const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int H,
                   int KVH, int hd, float scale) {
    be->attention_backward(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, hd, scale);
}

struct version {
    const char *name;
    attn_bwd_fn fn;
};
static const version versions[] = {
    {"v1 production (kernels/cuda/attention.cu)", run_v1},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

int main(int argc, char **argv) {
    int only = 0, B = 1, T = 2048, Tk = -1, hd = 128, H = 32, KVH = 8, docs = 1, repeats = 20, bench = 1;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--T")) T = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--Tk")) Tk = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--hd")) hd = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--heads")) H = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--kv-heads")) KVH = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--batch")) B = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--docs")) docs = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--repeats")) repeats = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--no-bench")) bench = 0;
        else if (o[0] >= '0' && o[0] <= '9') only = lab_int("version", o, 0);
        else {
            fprintf(stderr,
                    "usage: attention_backward [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32] [--kv-heads 8] "
                    "[--batch 1] [--docs 1] [--repeats 20] [--no-bench]\n");
            return 2;
        }
    }
    if (Tk < 0) Tk = T;
    if (Tk < T || H % KVH || only > n_versions || docs > Tk) {
        fprintf(stderr, "attention_backward: need --Tk >= --T, heads a multiple of kv-heads, docs <= Tk, version <= %d\n",
                n_versions);
        return 2;
    }
#ifdef QUARRY_EMU
    bench = 0;
#endif
    char err[256] = "";
    backend *gpu = backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("SKIP: no CUDA device (%s)\n", err);
        return 77;
    }
    backend *cpu = backend_cpu(0);
    const cudaDeviceProp &props = cuda_state_of(gpu)->props;
    printf("attention_backward: %s (%d SMs), B=%d T=%d Tk=%d heads=%d kv-heads=%d hd=%d docs=%d\n",
           props.name[0] ? props.name : gpu->name, props.multiProcessorCount, B, T, Tk, H, KVH, hd, docs);

    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * Tk * KVH * hd, nl = (size_t)B * H * T;
    std::vector<float> q = lab_rand_bf(nq, 1.5f, 1), k = lab_rand_bf(nk, 1.5f, 2), v = lab_rand_bf(nk, 1.0f, 3);
    std::vector<float> dout = lab_rand_bf(nq, 1.0f, 4);
    std::vector<int32_t> doc = lab_docs(B, Tk, docs);
    const float scale = 1.0f / sqrtf((float)hd);

    // CPU: the forward (its out rounded to bf16, and lse, feed both sides), then the reference.
    void *qc = lab_put(cpu, q), *kc = lab_put(cpu, k), *vc = lab_put(cpu, v), *doutc = lab_put(cpu, dout);
    float *outc = (float *)lab_alloc(cpu, nq * 4), *lsec = (float *)lab_alloc(cpu, nl * 4);
    int32_t *docc = (int32_t *)lab_alloc(cpu, doc.size() * 4);
    cpu->copy_to_device(cpu, docc, doc.data(), doc.size() * 4);
    cpu->attention_forward(cpu, outc, lsec, qc, kc, vc, docc, B, T, Tk, H, KVH, hd, scale);
    std::vector<float> out(outc, outc + nq), lse(lsec, lsec + nl);
    for (float &x : out) x = lab_bf2f(lab_f2bf(x));
    cpu->copy_to_device(cpu, outc, out.data(), nq * 4);
    float *dqc = (float *)lab_alloc(cpu, nq * 4), *dkc = (float *)lab_alloc(cpu, nk * 4);
    float *dvc = (float *)lab_alloc(cpu, nk * 4);
    cpu->attention_backward(cpu, dqc, dkc, dvc, doutc, outc, lsec, qc, kc, vc, docc, B, T, Tk, H, KVH, hd, scale);
    cpu->synchronize(cpu);

    void *qg = lab_put(gpu, q), *kg = lab_put(gpu, k), *vg = lab_put(gpu, v), *doutg = lab_put(gpu, dout);
    void *outg = lab_put(gpu, out);
    float *lseg = (float *)lab_alloc(gpu, nl * 4);
    gpu->copy_to_device(gpu, lseg, lse.data(), nl * 4);
    int32_t *docg = (int32_t *)lab_alloc(gpu, doc.size() * 4);
    gpu->copy_to_device(gpu, docg, doc.data(), doc.size() * 4);
    void *dqg = lab_alloc(gpu, nq * 2), *dkg = lab_alloc(gpu, nk * 2), *dvg = lab_alloc(gpu, nk * 2);

    int failed = 0;
    std::vector<std::pair<int, double>> results;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (only && vi != only) continue;
        const version &ver = versions[vi - 1];
        cudaStream_t st = cuda_state_of(gpu)->stream;
        CUDA_CHECK(cudaMemsetAsync(dqg, 0xff, nq * 2, st));
        CUDA_CHECK(cudaMemsetAsync(dkg, 0xff, nk * 2, st));
        CUDA_CHECK(cudaMemsetAsync(dvg, 0xff, nk * 2, st));
        ver.fn(gpu, dqg, dkg, dvg, doutg, outg, lseg, qg, kg, vg, docg, B, T, Tk, H, KVH, hd, scale);
        gpu->synchronize(gpu);
        const char *names[3] = {"dq", "dk", "dv"};
        const void *gs[3] = {dqg, dkg, dvg};
        const float *rs[3] = {dqc, dkc, dvc};
        size_t ns[3] = {nq, nk, nk};
        int ok = 1;
        char line[256] = "";
        for (int x = 0; x < 3; x++) {
            std::vector<float> g = lab_get_bf16(gpu, gs[x], ns[x]);
            lab_err e = lab_compare(g.data(), rs[x], ns[x]);
            double rmax = 0;
            for (size_t i = 0; i < ns[x]; i++) rmax = std::max(rmax, (double)fabsf(rs[x][i]));
            ok &= e.bad == 0 && e.rel <= 1e-2 && e.max <= 5e-2 * rmax;
            size_t len = strlen(line);
            snprintf(line + len, sizeof line - len, "%s%s rel %.2e max %.2e/%.2e (%zu non-finite)", x ? ", " : "",
                     names[x], e.rel, e.max, rmax, e.bad);
        }
        printf("%d %-44s check %s: %s\n", vi, ver.name, ok ? "ok" : "FAILED", line);
        fflush(stdout);
        if (!ok) {
            failed = 1;
            continue;
        }
#ifndef QUARRY_EMU
        if (bench)
            results.push_back({vi, lab_median_ms(gpu, repeats, [&] {
                                   ver.fn(gpu, dqg, dkg, dvg, doutg, outg, lseg, qg, kg, vg, docg, B, T, Tk, H, KVH, hd,
                                          scale);
                               })});
#endif
    }
    if (!results.empty()) lab_table(gpu, results, 2.5 * 4.0 * B * H * (double)T * Tk * hd / 2.0, repeats);
    printf("attention_backward: %s\n", failed ? "FAILED" : "all checked versions pass");
    void *gp[] = {qg, kg, vg, doutg, outg, lseg, docg, dqg, dkg, dvg};
    void *cp[] = {qc, kc, vc, doutc, outc, lsec, docc, dqc, dkc, dvc};
    for (void *x : gp) gpu->free(gpu, x);
    for (void *x : cp) cpu->free(cpu, x);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
