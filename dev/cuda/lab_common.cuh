// dev/cuda/lab_common.cuh — host helpers shared by the kernel lab programs of dev/cuda (one
// standalone .cu per op, llm.c's manner): bf16 rounding on the host, seeded random inputs that
// are exact in bf16, checked allocation, the backends, option parsing, the version table, the
// attention labs' inputs and document layouts, error statistics against an fp32 reference, the
// card's dense bf16 peak, and median timing with CUDA events.
// Under the CPU emulation (QUARRY_EMU, dev/cuda/emu/run_lab.sh) there is no timing.
#pragma once
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

static inline uint16_t lab_f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float lab_bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// n values uniform in [-a, a], rounded to bf16: the same numbers on the CPU and the GPU side.
static inline std::vector<float> lab_rand_bf(size_t n, float a, unsigned long long seed) {
    std::vector<float> x(n);
    unsigned long long s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lab_bf2f(lab_f2bf(((float)(s >> 40) / 16777216.0f * 2.0f - 1.0f) * a));
    }
    return x;
}

static inline void *lab_alloc(backend *be, size_t bytes) {
    void *p = be->alloc(be, bytes ? bytes : 4);
    if (!p) {
        fprintf(stderr, "lab: %s: %s\n", be->name, be->error);
        exit(1);
    }
    return p;
}

// A device copy of x: bf16 on a bf16 backend, f32 otherwise.
static inline void *lab_put(backend *be, const std::vector<float> &x) {
    size_t n = x.size();
    void *p;
    if (be->act_dtype == DTYPE_BF16) {
        std::vector<uint16_t> t(n);
        for (size_t i = 0; i < n; i++) t[i] = lab_f2bf(x[i]);
        p = lab_alloc(be, n * 2);
        be->copy_to_device(be, p, t.data(), n * 2);
    } else {
        p = lab_alloc(be, n * 4);
        be->copy_to_device(be, p, x.data(), n * 4);
    }
    return p;
}

// The CUDA backend of device 0.  Without a GPU the lab prints SKIP and exits 77 (ctest's skip).
static inline backend *lab_gpu(void) {
    char err[256] = "";
    backend *gpu = backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("SKIP: no CUDA device (%s)\n", err);
        exit(77);
    }
    return gpu;
}

// Prints "LAB: CARD (N SMs), " (no newline): the start of a lab's first line, its shape follows.
static inline void lab_print_card(const char *lab, backend *gpu) {
    const cudaDeviceProp &props = cuda_state_of(gpu)->props;
    printf("%s: %s (%d SMs), ", lab, props.name[0] ? props.name : gpu->name, props.multiProcessorCount);
}

static inline int lab_int(const char *opt, const char *val, int lo) {
    char *end;
    long x = val ? strtol(val, &end, 10) : 0;
    if (!val || *end || x < lo || x > (1 << 24)) {
        fprintf(stderr, "lab: %s needs an integer >= %d (got %s)\n", opt, lo, val ? val : "nothing");
        exit(2);
    }
    return (int)x;
}

// The attention labs' command line: [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32]
// [--kv-heads 8] [--batch 1] [--docs 1] [--repeats 20] [--no-bench]; exits 2 with the usage.
struct lab_shape {
    int only = 0, B = 1, T = 2048, Tk = -1, hd = 128, H = 32, KVH = 8, docs = 1, repeats = 20, bench = 1;
};

static inline lab_shape lab_parse_shape(int argc, char **argv, const char *prog, int n_versions) {
    lab_shape s;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--T")) s.T = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--Tk")) s.Tk = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--hd")) s.hd = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--heads")) s.H = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--kv-heads")) s.KVH = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--batch")) s.B = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--docs")) s.docs = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--repeats")) s.repeats = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--no-bench")) s.bench = 0;
        else if (o[0] >= '0' && o[0] <= '9') s.only = lab_int("version", o, 0);
        else {
            fprintf(stderr, "usage: %s [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32] [--kv-heads 8] "
                    "[--batch 1] [--docs 1] [--repeats 20] [--no-bench]\n", prog);
            exit(2);
        }
    }
    if (s.Tk < 0) s.Tk = s.T;
    if (s.Tk < s.T || s.H % s.KVH || s.only > n_versions || s.docs > s.Tk) {
        fprintf(stderr, "%s: need --Tk >= --T, heads a multiple of kv-heads, docs <= Tk, version <= %d\n", prog,
                n_versions);
        exit(2);
    }
#ifdef QUARRY_EMU
    s.bench = 0;  // the emulator checks logic only
#endif
    return s;
}

// The attention labs' first line: the card and the shape.
static inline void lab_print_attention(const char *lab, backend *gpu, const lab_shape &s) {
    lab_print_card(lab, gpu);
    printf("B=%d T=%d Tk=%d heads=%d kv-heads=%d hd=%d docs=%d\n", s.B, s.T, s.Tk, s.H, s.KVH, s.hd, s.docs);
}

// A lab's numbered version: its name, its entry (F: the lab's function type) and the head dims
// it runs (the attention labs; NULL: every shape).
template <class F> struct lab_version {
    const char *name;
    F fn;
    int (*supports)(int hd);
};
static inline int lab_hd_64_128(int hd) { return hd == 64 || hd == 128; }

// doc_start (B·Tk) for `docs` documents per batch row, boundaries at uneven positions (never on a
// tile edge when docs > 1).
static inline std::vector<int32_t> lab_docs(int B, int Tk, int docs) {
    std::vector<int32_t> doc((size_t)B * Tk);
    for (int b = 0; b < B; b++) {
        int start = 0, d = 0;
        for (int t = 0; t < Tk; t++) {
            long next = (long)Tk * (d + 1) / docs + (d + 1 < docs ? 7 * (d + 1) % 13 - 6 : 0);
            if (d + 1 < docs && t >= next) start = t, d++;
            doc[(size_t)b * Tk + t] = start;
        }
    }
    return doc;
}

// The attention labs' inputs: q (B·T, H·hd), k and v (B·Tk, KVH·hd), uniform and exact in bf16
// (q, k in ±1.5, v in ±1), the documents' doc_start (B·Tk), the sizes and the softmax scale.
struct lab_attn_inputs {
    size_t nq, nk, nl;  // elements of q (out, dq), of k (v, dk, dv) and of lse
    std::vector<float> q, k, v;
    std::vector<int32_t> doc;
    float scale;  // 1/√hd
};
static inline lab_attn_inputs lab_attention_inputs(const lab_shape &s) {
    lab_attn_inputs in;
    in.nq = (size_t)s.B * s.T * s.H * s.hd;
    in.nk = (size_t)s.B * s.Tk * s.KVH * s.hd;
    in.nl = (size_t)s.B * s.H * s.T;
    in.q = lab_rand_bf(in.nq, 1.5f, 1);
    in.k = lab_rand_bf(in.nk, 1.5f, 2);
    in.v = lab_rand_bf(in.nk, 1.0f, 3);
    in.doc = lab_docs(s.B, s.Tk, s.docs);
    in.scale = 1.0f / sqrtf((float)s.hd);
    return in;
}

// The inputs on a backend (lab_put: bf16 on a bf16 backend, f32 on the CPU); lab_attention_free.
struct lab_attn_bufs {
    void *q, *k, *v;
    int32_t *doc;
};
static inline lab_attn_bufs lab_attention_put(backend *be, const lab_attn_inputs &in) {
    lab_attn_bufs d = {lab_put(be, in.q), lab_put(be, in.k), lab_put(be, in.v),
                       (int32_t *)lab_alloc(be, in.doc.size() * 4)};
    be->copy_to_device(be, d.doc, in.doc.data(), in.doc.size() * 4);
    return d;
}
static inline void lab_attention_free(backend *be, const lab_attn_bufs &d) {
    for (void *x : {d.q, d.k, d.v, (void *)d.doc}) be->free(be, x);
}

// ‖got − ref‖/‖ref‖, max |got − ref| and the count of non-finite results (unwritten: the outputs
// are poisoned with NaN before each run).
struct lab_err {
    double rel, max;
    size_t bad;
};
static inline lab_err lab_compare(const float *got, const float *ref, size_t n) {
    double se = 0, sr = 0, mx = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= 1e30)) {
            bad++;
            continue;
        }
        se += d * d;
        sr += (double)ref[i] * ref[i];
        mx = std::max(mx, d);
    }
    return {sr > 0 ? sqrt(se / sr) : sqrt(se), mx, bad};
}
static inline std::vector<float> lab_get_bf16(backend *be, const void *p, size_t n) {
    std::vector<uint16_t> t(n);
    be->copy_to_host(be, t.data(), p, n * 2);
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = lab_bf2f(t[i]);
    return f;
}

// The card's dense bf16 tensor peak (datasheet; 0 when unknown).
static inline double lab_peak(backend *gpu) {
    const char *n = cuda_state_of(gpu)->props.name;
    return strstr(n, "H100") || strstr(n, "H200") ? 989e12 : 0.0;
}

#ifndef QUARRY_EMU
// Median of `repeats` timings (ms) of f on the backend's stream, after 3 warm-up runs.
template <class F> static double lab_median_ms(backend *be, int repeats, F f) {
    cudaStream_t st = cuda_state_of(be)->stream;
    for (int i = 0; i < 3; i++) f();
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    std::vector<float> ts;
    for (int i = 0; i < repeats; i++) {
        CUDA_CHECK(cudaEventRecord(a, st));
        f();
        CUDA_CHECK(cudaEventRecord(b, st));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        ts.push_back(ms);
    }
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}
#endif

// Appends (version, median ms of f over `repeats`) to res when bench is set; under the emulation
// nothing (no timing there).
template <class F>
static void lab_bench(std::vector<std::pair<int, double>> &res, int version, backend *gpu, int bench, int repeats,
                      F f) {
#ifndef QUARRY_EMU
    if (bench) res.push_back({version, lab_median_ms(gpu, repeats, f)});
#else
    (void)res, (void)version, (void)gpu, (void)bench, (void)repeats, (void)f;
#endif
}

// Prints the markdown table of (version, ms) against v1 and the card's peak.
static inline void lab_table(backend *gpu, const std::vector<std::pair<int, double>> &res, double flops, int repeats) {
    double peak = lab_peak(gpu), base = 0;
    for (auto &r : res)
        if (r.first == 1) base = r.second;
    printf("\n| version | ms (median of %d) | TFLOP/s | of 989 dense peak | vs v1 |\n|---|---|---|---|---|\n", repeats);
    for (auto &r : res) {
        double tf = flops / (r.second * 1e-3) / 1e12;
        char pk[32] = "n/a", sp[32] = "";
        if (peak > 0) snprintf(pk, sizeof pk, "%.1f%%", 100.0 * tf * 1e12 / peak);
        if (base > 0) snprintf(sp, sizeof sp, "%.2fx", base / r.second);
        printf("| %d | %.3f | %.1f | %s | %s |\n", r.first, r.second, tf, pk, sp);
    }
}
