// dev/cuda/expert_gemm.cu — the grouped expert GEMM lab (llm.c's dev/cuda manner): the forward
// GEMMs of a sparse MoE block's experts (model/moe/experts.c), a CPU reference (the CPU backend's
// linear op per expert, fp32), numbered versions, a check of each, and a benchmark.
//
//   expert_gemm [version] [--tokens 4096] [--experts 128] [--topk 8] [--C 2048] [--I 768]
//               [--repeats 20] [--no-bench]
//
// version 0 (default) runs every version.  Defaults: Qwen3-30B-A3B (E 128, top-8, C 2048, I 768);
// Mixtral-8x7B is --experts 8 --topk 2 --C 4096 --I 14336.  Exit status 1 when a checked version
// fails, 77 without a GPU.
//
// The work (per expert e with M_e routed rows, rows of expert e contiguous in xp as
// moe_dispatch lays them out; row-major, W as (OC, IC) as in PyTorch):
//   gate_e = xp_e · Wg_eᵀ, up_e = xp_e · Wu_eᵀ   (M_e, I)      — two products of the same shape
//   eo_e   = h_e  · Wd_eᵀ                        (M_e, C)      — h given (SwiGLU is not timed)
// FLOPs 6·M·C·I with M = tokens·topk.  Routing: each token's topk distinct experts drawn with
// uneven per-expert shares (1 + 3u, u uniform), so the M_e differ as real routing makes them, and
// expert E/2 gets no rows at all (the empty-group case).  Inputs uniform bf16 (xp, h in ±1,
// weights in ±0.05); the reference is the CPU backend's linear_forward on the same bf16 values in
// fp32; outputs poisoned (NaN) before every run.  Bound: ‖Δ‖/‖ref‖ ≤ 5e-3 per output and no
// non-finite element (bf16 outputs of fp32 sums: the rounding alone is ≤ 2^-9 ≈ 2e-3 relative).
//
// Versions
//  1. production (model/moe/experts.c since 2026-12-06): the CUDA backend's grouped_linear_forward
//     (kernels/cuda/grouped_linear.cu, version 2 promoted) once per projection: 3 grouped calls.
//  2. cublasGemmGroupedBatchedEx (cuBLAS ≥ 12.5; CUDA 13's cublas_api.h): bf16 A/B/C, fp32
//     compute (CUBLAS_COMPUTE_32F, float alpha/beta).  Two calls: gate and up as one call whose
//     group g is a non-empty expert holding its 2 problems (a group shares m, n, k), then down
//     with one problem per group.  Row-major out (rows, OC) = x·Wᵀ is, column-major,
//     out' (OC × rows, ld OC) = op_T(W' (IC × OC, ld IC)) · x' (IC × rows, ld IC): transa T,
//     transb N, m = OC, n = M_e, k = IC.  The pointer arrays live in device memory (cuBLAS reads
//     them there); their upload (one async copy per call from a ring of pinned slots, no stream
//     sync) is inside the timing, as production would pay it after each routing.
//  3. the former production (before 2026-12-06, "v1" in the prediction below): the backend's
//     linear_forward (cuBLASLt) once per non-empty expert and projection: 3 launches per expert.
//
// Prediction (written 2026-12-06 with no GPU, before the renumbering: "v1" there is version 3
// here; the calculation is in dev/cuda/README.md, "Grouped expert GEMM"): Qwen3-30B-A3B shapes →
// v1 7–15 ms at 2048 and 8192 tokens, host-bound (381
// cuBLASLt calls, ~254 distinct shapes thrashing linear.cu's 128-slot heuristic cache; on the GPU
// ~3–4 ms of under-filled GEMMs: 6 CTAs on 132 SMs for gate/up at 2048 tokens); v2 0.5–0.8 ms at
// 2048 tokens (bound by the 1.2 GB of expert weights: 0.44 ms at 3.35 TB/s), 1.0–1.6 ms at 8192.
// Mixtral-8x7B shapes: v1 2.1–2.6 ms at 2048 tokens (compute-bound, 24 full-wave GEMMs), v2
// within ±10 % of v1.  Production (version 1 now: gate and up as two calls, x_p read once more)
// within 10 % of version 2.
#include "lab_common.cuh"
#include <cublas_v2.h>

struct eg_shape {
    int only = 0, tokens = 4096, E = 128, k = 8, C = 2048, I = 768, repeats = 20, bench = 1;
};

static eg_shape eg_parse(int argc, char **argv, int n_versions) {
    eg_shape s;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--tokens")) s.tokens = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--experts")) s.E = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--topk")) s.k = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--C")) s.C = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--I")) s.I = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--repeats")) s.repeats = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--no-bench")) s.bench = 0;
        else if (o[0] >= '0' && o[0] <= '9') s.only = lab_int("version", o, 0);
        else {
            fprintf(stderr, "usage: expert_gemm [version] [--tokens 4096] [--experts 128] [--topk 8] [--C 2048] "
                    "[--I 768] [--repeats 20] [--no-bench]\n");
            exit(2);
        }
    }
    if (s.k > s.E || s.only > n_versions) {
        fprintf(stderr, "expert_gemm: need --topk <= --experts and version <= %d\n", n_versions);
        exit(2);
    }
#ifdef QUARRY_EMU
    s.bench = 0;  // the emulator checks logic only
#endif
    return s;
}

// Rows per expert: each token picks k distinct experts with probability ∝ its share; expert E/2
// (when E > 1) is never picked.  Returns offsets (E + 1).
static std::vector<int> eg_route(int tokens, int E, int k) {
    std::vector<double> share(E);
    unsigned long long s = 12345;
    auto next = [&s] {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return (double)(s >> 11) / 9007199254740992.0;
    };
    for (int e = 0; e < E; e++) share[e] = E > 1 && e == E / 2 ? 0.0 : 1.0 + 3.0 * next();
    std::vector<int> count(E, 0);
    for (int t = 0; t < tokens; t++) {
        std::vector<double> w = share;
        for (int j = 0; j < k; j++) {
            double tot = 0;
            for (double x : w) tot += x;
            double r = next() * tot;
            int e = 0;
            while (e < E - 1 && (r -= w[e]) > 0) e++;
            if (w[e] == 0) {   // rounding at the end of the walk: take the last expert with weight
                e = E - 1;
                while (w[e] == 0) e--;
            }
            count[e]++;
            w[e] = 0;
        }
    }
    std::vector<int> off(E + 1, 0);
    for (int e = 0; e < E; e++) off[e + 1] = off[e] + count[e];
    return off;
}

struct eg_bufs {
    const void *xp, *h, *wg, *wu, *wd;   // (M, C), (M, I), (E, I, C) ×2, (E, C, I)
    void *gate, *up, *eo;                // (M, I) ×2, (M, C)
};

static void *eg_at(const void *base, size_t index, size_t elems) {
    return (char *)base + index * elems * 2;
}

// v1: as model/moe/experts.c does (the op table's grouped linear, one call per projection).
static void eg_v1(backend *be, const eg_bufs &b, const std::vector<int> &off, int C, int I) {
    int E = (int)off.size() - 1;
    size_t wsz = (size_t)I * C;
    std::vector<const void *> wg(E), wu(E), wd(E);
    for (int e = 0; e < E; e++) wg[e] = eg_at(b.wg, e, wsz), wu[e] = eg_at(b.wu, e, wsz), wd[e] = eg_at(b.wd, e, wsz);
    be->grouped_linear_forward(be, b.gate, b.xp, wg.data(), NULL, off.data(), E, C, I, 1.0f, 0);
    be->grouped_linear_forward(be, b.up, b.xp, wu.data(), NULL, off.data(), E, C, I, 1.0f, 0);
    be->grouped_linear_forward(be, b.eo, b.h, wd.data(), NULL, off.data(), E, I, C, 1.0f, 0);
}

// v3: the former production, a linear op per expert and projection.
static void eg_v3(backend *be, const eg_bufs &b, const std::vector<int> &off, int C, int I) {
    int E = (int)off.size() - 1;
    size_t wsz = (size_t)I * C;
    for (int e = 0; e < E; e++) {
        int r0 = off[e], rows = off[e + 1] - r0;
        if (rows == 0) continue;
        const void *x = eg_at(b.xp, r0, C);
        be->linear_forward(be, eg_at(b.gate, r0, I), x, eg_at(b.wg, e, wsz), NULL, rows, C, I, 1.0f, 0);
        be->linear_forward(be, eg_at(b.up, r0, I), x, eg_at(b.wu, e, wsz), NULL, rows, C, I, 1.0f, 0);
    }
    for (int e = 0; e < E; e++) {
        int r0 = off[e], rows = off[e + 1] - r0;
        if (rows == 0) continue;
        be->linear_forward(be, eg_at(b.eo, r0, C), eg_at(b.h, r0, I), eg_at(b.wd, e, wsz), NULL, rows, I, C, 1.0f,
                           0);
    }
}

// v2's pointer arrays: cuBLAS reads them from device memory, so each call uploads them (3 × P
// pointers) from pinned staging.  A ring of slots, each freed by an event recorded after its copy,
// lets the host fill the next call's arrays while earlier copies are queued — no stream sync.
#define EG_SLOTS 4
struct eg_slot {
    const void **host = NULL;   // pinned: A[P], B[P], C[P]
    void **dev = NULL;
    cudaEvent_t copied = NULL;
    int cap = 0;
};
static eg_slot eg_slots[EG_SLOTS];
static int eg_next_slot;

static eg_slot &eg_slot_for(backend *be, int P) {
    eg_slot &sl = eg_slots[eg_next_slot++ % EG_SLOTS];
    if (sl.copied) CUDA_CHECK(cudaEventSynchronize(sl.copied));   // its last copy has left the staging
    else CUDA_CHECK(cudaEventCreateWithFlags(&sl.copied, cudaEventDisableTiming));
    if (P > sl.cap) {
        // The device array may still feed a queued GEMM: wait for the stream before freeing it.
        CUDA_CHECK(cudaStreamSynchronize(cuda_state_of(be)->stream));
        if (sl.host) CUDA_CHECK(cudaFreeHost(sl.host));
        if (sl.dev) be->free(be, sl.dev);
        CUDA_CHECK(cudaMallocHost((void **)&sl.host, (size_t)3 * P * sizeof(void *)));
        sl.dev = (void **)lab_alloc(be, (size_t)3 * P * sizeof(void *));
        sl.cap = P;
    }
    return sl;
}

static void eg_slots_free(backend *be) {
    for (eg_slot &sl : eg_slots) {
        if (sl.host) CUDA_CHECK(cudaFreeHost(sl.host));
        if (sl.dev) be->free(be, sl.dev);
        if (sl.copied) CUDA_CHECK(cudaEventDestroy(sl.copied));
        sl = eg_slot();
    }
}

// out_p = x_p · W_pᵀ for the problems listed: per group g (a non-empty expert) `per` problems
// (rows[g], ic) → (rows[g], oc); x/w/out pointers in problem order (group by group).
static void eg_grouped_call(backend *be, const std::vector<int> &rows, int per, int ic, int oc,
                            const std::vector<const void *> &x, const std::vector<const void *> &w,
                            const std::vector<void *> &out) {
    int G = (int)rows.size(), P = G * per;
    if (G == 0) return;
    cuda_state *s = cuda_state_of(be);
    eg_slot &sl = eg_slot_for(be, P);
    for (int p = 0; p < P; p++) {
        sl.host[p] = w[p];            // A: W as IC × OC column-major, transposed
        sl.host[P + p] = x[p];        // B: x as IC × rows column-major
        sl.host[2 * P + p] = out[p];  // C: out as OC × rows column-major
    }
    CUDA_CHECK(cudaMemcpyAsync(sl.dev, sl.host, (size_t)3 * P * sizeof(void *), cudaMemcpyHostToDevice, s->stream));
    CUDA_CHECK(cudaEventRecord(sl.copied, s->stream));
    std::vector<cublasOperation_t> ta(G, CUBLAS_OP_T), tb(G, CUBLAS_OP_N);
    std::vector<int> m(G, oc), kk(G, ic), lda(G, ic), ldb(G, ic), ldc(G, oc), size(G, per);
    std::vector<float> alpha(G, 1.0f), beta(G, 0.0f);
    CUBLAS_CHECK(cublasGemmGroupedBatchedEx(s->cublas, ta.data(), tb.data(), m.data(), rows.data(), kk.data(),
                                            alpha.data(), (const void *const *)sl.dev, CUDA_R_16BF, lda.data(),
                                            (const void *const *)(sl.dev + P), CUDA_R_16BF, ldb.data(), beta.data(),
                                            sl.dev + 2 * P, CUDA_R_16BF, ldc.data(), G, size.data(),
                                            CUBLAS_COMPUTE_32F));
}

static void eg_v2(backend *be, const eg_bufs &b, const std::vector<int> &off, int C, int I) {
    int E = (int)off.size() - 1;
    size_t wsz = (size_t)I * C;
    std::vector<int> rows;
    std::vector<const void *> x, w, x1, w1;
    std::vector<void *> out, out1;
    for (int e = 0; e < E; e++) {
        int r0 = off[e], n = off[e + 1] - r0;
        if (n == 0) continue;   // cuBLAS takes n = 0, but an empty group is work for nothing
        rows.push_back(n);
        x.push_back(eg_at(b.xp, r0, C));
        x.push_back(eg_at(b.xp, r0, C));
        w.push_back(eg_at(b.wg, e, wsz));
        w.push_back(eg_at(b.wu, e, wsz));
        out.push_back(eg_at(b.gate, r0, I));
        out.push_back(eg_at(b.up, r0, I));
        x1.push_back(eg_at(b.h, r0, I));
        w1.push_back(eg_at(b.wd, e, wsz));
        out1.push_back(eg_at(b.eo, r0, C));
    }
    eg_grouped_call(be, rows, 2, C, I, x, w, out);
    eg_grouped_call(be, rows, 1, I, C, x1, w1, out1);
}

typedef void (*eg_fn)(backend *, const eg_bufs &, const std::vector<int> &, int, int);
struct version {
    const char *name;
    eg_fn fn;
};
static const version versions[] = {
    {"production: grouped_linear_forward, 3 calls", eg_v1},
    {"cublasGemmGroupedBatchedEx, 2 calls", eg_v2},
    {"former production: linear_forward per expert", eg_v3},
};
static const int n_versions = sizeof versions / sizeof versions[0];

int main(int argc, char **argv) {
    const eg_shape sh = eg_parse(argc, argv, n_versions);
    const int E = sh.E, C = sh.C, I = sh.I;
    backend *gpu = lab_gpu(), *cpu = backend_cpu(0);
    std::vector<int> off = eg_route(sh.tokens, E, sh.k);
    const size_t M = (size_t)off[E], nw = (size_t)E * I * C;
    int maxr = 0, minr = 1 << 30;
    for (int e = 0; e < E; e++) {
        maxr = std::max(maxr, off[e + 1] - off[e]);
        if (off[e + 1] > off[e]) minr = std::min(minr, off[e + 1] - off[e]);
    }
    lab_print_card("expert_gemm", gpu);
    printf("tokens=%d experts=%d top-%d C=%d I=%d: M=%zu routed rows, %d..%d per non-empty expert\n", sh.tokens, E,
           sh.k, C, I, M, minr, maxr);

    std::vector<float> xp = lab_rand_bf(M * C, 1.0f, 1), h = lab_rand_bf(M * I, 1.0f, 2);
    std::vector<float> wg = lab_rand_bf(nw, 0.05f, 3), wu = lab_rand_bf(nw, 0.05f, 4), wd = lab_rand_bf(nw, 0.05f, 5);
    eg_bufs g = {lab_put(gpu, xp), lab_put(gpu, h), lab_put(gpu, wg), lab_put(gpu, wu), lab_put(gpu, wd),
                 lab_alloc(gpu, M * I * 2), lab_alloc(gpu, M * I * 2), lab_alloc(gpu, M * C * 2)};

    // The reference: the CPU backend's linear per expert, fp32, on the same bf16 values.
    void *xc = lab_put(cpu, xp), *hc = lab_put(cpu, h), *wgc = lab_put(cpu, wg), *wuc = lab_put(cpu, wu),
         *wdc = lab_put(cpu, wd);
    float *gate_c = (float *)lab_alloc(cpu, M * I * 4), *up_c = (float *)lab_alloc(cpu, M * I * 4),
          *eo_c = (float *)lab_alloc(cpu, M * C * 4);
    for (int e = 0; e < E; e++) {
        int r0 = off[e], rows = off[e + 1] - r0;
        if (rows == 0) continue;
        size_t wo = (size_t)e * I * C;
        cpu->linear_forward(cpu, gate_c + (size_t)r0 * I, (float *)xc + (size_t)r0 * C, (float *)wgc + wo, NULL, rows,
                            C, I, 1.0f, 0);
        cpu->linear_forward(cpu, up_c + (size_t)r0 * I, (float *)xc + (size_t)r0 * C, (float *)wuc + wo, NULL, rows,
                            C, I, 1.0f, 0);
        cpu->linear_forward(cpu, eo_c + (size_t)r0 * C, (float *)hc + (size_t)r0 * I, (float *)wdc + wo, NULL, rows,
                            I, C, 1.0f, 0);
    }
    cpu->synchronize(cpu);

    int failed = 0;
    std::vector<std::pair<int, double>> results;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (sh.only && vi != sh.only) continue;
        const version &ver = versions[vi - 1];
        cudaStream_t st = cuda_state_of(gpu)->stream;
        CUDA_CHECK(cudaMemsetAsync(g.gate, 0xff, M * I * 2, st));
        CUDA_CHECK(cudaMemsetAsync(g.up, 0xff, M * I * 2, st));
        CUDA_CHECK(cudaMemsetAsync(g.eo, 0xff, M * C * 2, st));
        ver.fn(gpu, g, off, C, I);
        gpu->synchronize(gpu);
        lab_err eg = lab_compare(lab_get_bf16(gpu, g.gate, M * I).data(), gate_c, M * I);
        lab_err eu = lab_compare(lab_get_bf16(gpu, g.up, M * I).data(), up_c, M * I);
        lab_err ed = lab_compare(lab_get_bf16(gpu, g.eo, M * C).data(), eo_c, M * C);
        int ok = eg.bad + eu.bad + ed.bad == 0 && eg.rel <= 5e-3 && eu.rel <= 5e-3 && ed.rel <= 5e-3;
        printf("%d %-50s check %s: gate rel %.2e, up rel %.2e, down rel %.2e, %zu non-finite\n", vi, ver.name,
               ok ? "ok" : "FAILED", eg.rel, eu.rel, ed.rel, eg.bad + eu.bad + ed.bad);
        fflush(stdout);
        if (!ok) {
            failed = 1;
            continue;
        }
        lab_bench(results, vi, gpu, sh.bench, sh.repeats, [&] { ver.fn(gpu, g, off, C, I); });
    }
#ifndef QUARRY_EMU
    if (!results.empty()) {
        double bytes = 2.0 * (3.0 * nw + 2.0 * M * C + 3.0 * M * I + M * C);
        printf("\nleast bytes (weights once, xp twice, gate/up written, h read, eo written): %.2f GB\n", bytes / 1e9);
        lab_table(gpu, results, 6.0 * (double)M * C * I, sh.repeats);
    }
#endif
    printf("expert_gemm: %s\n", failed ? "FAILED" : "all checked versions pass");
    eg_slots_free(gpu);
    for (const void *x : {g.xp, g.h, g.wg, g.wu, g.wd}) gpu->free(gpu, (void *)x);
    for (void *x : {g.gate, g.up, g.eo}) gpu->free(gpu, x);
    for (void *x : {xc, hc, wgc, wuc, wdc, (void *)gate_c, (void *)up_c, (void *)eo_c}) cpu->free(cpu, x);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
