// kernels/cuda/attention_cudnn.cu — see attention_cudnn.h.  cuDNN's fused flash attention (SDPA)
// as llm.c's cudnn_att.cpp builds it: one cudnn-frontend graph per shape and direction, built on
// first use and cached, bf16 in and out, fp32 softmax and stats.
//
// Layouts are the op's own, described to cuDNN as strided (B, heads, T, hd) views, so nothing is
// transposed: q, out, dq (B*T, H*hd) → dims (B, H, T, hd), strides (T·H·hd, hd, H·hd, 1); k, v,
// dk, dv the same with KVH (GQA: cuDNN maps query head h to kv head h / (H/KVH), as quarry does).
// lse (B, H, T) f32 is cuDNN's Stats (B, H, T, 1): the natural-log logsumexp of the scaled scores,
// quarry's definition, so either implementation's backward reads the other's forward.
//
// Packed documents: a row holding several documents needs a block-diagonal mask, which cuDNN
// expresses as ragged offsets (one cuDNN "batch" entry per document, their count fixed when the
// graph is built).  quarry's document count changes every micro-batch, so this path takes the
// rows that hold one document each and leaves packed rows to quarry's kernel.  Which is which the
// caller says (the op's packed argument, known on the host where the batch is built): nothing
// is read back from the device and the stream is never synchronised on the hot path.
//
// The frontend is compiled with NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING: every cuDNN backend call
// it makes goes through dlsym on cudnn_frontend::cudnn_dlhandle, the library cudnn_load opened;
// the handle calls (create, stream, destroy) go through cudnn_load's table.  Without the
// frontend headers at build time (CMake: QUARRY_HAVE_CUDNN_FRONTEND unset) this file still
// builds, and --attention cudnn says why it is unavailable.
#include "attention_cudnn.h"
#include "attention_fa2.h"
#include "../cudnn_load.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if QUARRY_HAVE_CUDNN_FRONTEND
#include <cudnn_frontend.h>
#include <dlfcn.h>
#include <stdint.h>
#include <memory>
#include <unordered_map>
#include <vector>

namespace cudnn_frontend {
void *cudnn_dlhandle = nullptr;   // read by the frontend's dlsym shim
}
namespace fe = cudnn_frontend;

// Workspace a cuDNN plan may use: memory outside quarry's plan (model_plan), kept small.
#define CUDNN_WORKSPACE_CAP (256 << 20)

enum { UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_DO, UID_DQ, UID_DK, UID_DV };

struct sdpa_graph {
    int bwd, B, T, H, KVH, hd;
    int ok;                              // 0: cuDNN declined this shape (said once)
    std::shared_ptr<fe::graph::Graph> g;
    int64_t workspace;
};

struct cudnn_attn {
    attention_mode mode;
    cudnn_lib lib;
    void *handle;                        // cudnnHandle_t
    std::vector<sdpa_graph> graphs;
    void *workspace;
    size_t workspace_bytes;
    int said_packed, said_unsupported;
};

static cudnn_attn *attn_state(backend *be) { return (cudnn_attn *)cuda_state_of(be)->attn_cudnn; }

// (B, heads, T, hd) view of a (B*T, heads*hd) row-major tensor.
static std::shared_ptr<fe::graph::Tensor_attributes> view(fe::graph::Graph &g, const char *name, int64_t uid, int64_t B,
                                                          int64_t heads, int64_t T, int64_t hd) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({B, heads, T, hd})
                        .set_stride({T * heads * hd, hd, heads * hd, 1}));
}

static void set_view(const std::shared_ptr<fe::graph::Tensor_attributes> &t, int64_t uid, int64_t B, int64_t heads,
                     int64_t T, int64_t hd) {
    t->set_output(true).set_uid(uid).set_dim({B, heads, T, hd}).set_stride({T * heads * hd, hd, heads * hd, 1});
}

// Builds the forward (bwd = 0) or backward graph of a shape; 0 with the failing step and cuDNN's
// message in why.
static int build_graph(cudnn_attn *st, sdpa_graph *e, char *why, size_t whylen) {
    char cap[32];
    snprintf(cap, sizeof cap, "%zu", (size_t)CUDNN_WORKSPACE_CAP);
    if (e->bwd) setenv("CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT", cap, 0);
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    int64_t B = e->B, T = e->T, H = e->H, KVH = e->KVH, hd = e->hd;
    auto Q = view(*g, "Q", UID_Q, B, H, T, hd);
    auto K = view(*g, "K", UID_K, B, KVH, T, hd);
    auto V = view(*g, "V", UID_V, B, KVH, T, hd);
    auto scale = g->tensor(fe::graph::Tensor_attributes()
                               .set_name("scale")
                               .set_uid(UID_SCALE)
                               .set_dim({1, 1, 1, 1})
                               .set_stride({1, 1, 1, 1})
                               .set_is_pass_by_value(true)
                               .set_data_type(fe::DataType_t::FLOAT));
    if (!e->bwd) {
        auto opt = fe::graph::SDPA_attributes().set_name("sdpa_fwd").set_generate_stats(true).set_causal_mask(true)
                       .set_attn_scale(scale);
        auto [O, stats] = g->sdpa(Q, K, V, opt);
        set_view(O, UID_O, B, H, T, hd);
        stats->set_output(true).set_uid(UID_STATS).set_data_type(fe::DataType_t::FLOAT).set_dim({B, H, T, 1})
            .set_stride({H * T, T, 1, 1});
    } else {
        auto O = view(*g, "O", UID_O, B, H, T, hd);
        auto dO = view(*g, "dO", UID_DO, B, H, T, hd);
        auto stats = g->tensor(fe::graph::Tensor_attributes()
                                   .set_name("stats")
                                   .set_uid(UID_STATS)
                                   .set_dim({B, H, T, 1})
                                   .set_stride({H * T, T, 1, 1})
                                   .set_data_type(fe::DataType_t::FLOAT));
        // quarry's training is bitwise repeatable; cuDNN's default backward adds dQ with atomics,
        // so the deterministic algorithm is asked for (a shape where cuDNN has none keeps
        // quarry's backward kernel).  On Hopper that algorithm keeps the whole dP (B·H·T·T bf16)
        // in the workspace unless the frontend may take its ordered-dQ route (cuDNN ≥ 9.25),
        // which it does above CUDNN_FRONTEND_ATTN_DP_WORKSPACE_LIMIT bytes: set to quarry's cap
        // unless the user set it.  A workspace still above the cap is declined (below).
        auto opt = fe::graph::SDPA_backward_attributes().set_name("sdpa_bwd").set_causal_mask(true)
                       .set_attn_scale(scale).set_deterministic_algorithm(true);
        auto [dQ, dK, dV] = g->sdpa_backward(Q, K, V, O, dO, stats, opt);
        set_view(dQ, UID_DQ, B, H, T, hd);
        set_view(dK, UID_DK, B, KVH, T, hd);
        set_view(dV, UID_DV, B, KVH, T, hd);
    }
    fe::error_t r;
    const char *step = "validate";
    try {
        (void)(r = g->validate());
        if (r.is_good()) { step = "build_operation_graph"; (void)(r = g->build_operation_graph((cudnnHandle_t)st->handle)); }
        if (r.is_good()) { step = "create_execution_plans"; (void)(r = g->create_execution_plans({fe::HeurMode_t::A})); }
        if (r.is_good()) { step = "check_support"; (void)(r = g->check_support((cudnnHandle_t)st->handle)); }
        if (r.is_good()) { step = "build_plans"; (void)(r = g->build_plans((cudnnHandle_t)st->handle)); }
        if (r.is_good()) { step = "get_workspace_size"; (void)(r = g->get_workspace_size(e->workspace)); }
    } catch (const std::exception &ex) {
        snprintf(why, whylen, "cudnn-frontend %s threw: %s", step, ex.what());
        return 0;
    }
    if (!r.is_good()) {
        snprintf(why, whylen, "cudnn-frontend %s: %s", step, r.get_message().c_str());
        return 0;
    }
    if (e->workspace > (int64_t)CUDNN_WORKSPACE_CAP) {
        snprintf(why, whylen, "its plan needs %.0f MiB of workspace, over quarry's %d MiB cap (the deterministic "
                 "backward keeps dP there before cuDNN 9.25)", e->workspace / 1048576.0, CUDNN_WORKSPACE_CAP >> 20);
        return 0;
    }
    e->g = g;
    return 1;
}

static sdpa_graph *graph_for(backend *be, cudnn_attn *st, int bwd, int B, int T, int H, int KVH, int hd) {
    for (auto &e : st->graphs)
        if (e.bwd == bwd && e.B == B && e.T == T && e.H == H && e.KVH == KVH && e.hd == hd) return &e;
    sdpa_graph e = {bwd, B, T, H, KVH, hd, 0, nullptr, 0};
    char why[512];
    e.ok = build_graph(st, &e, why, sizeof why);
    if (!e.ok)
        fprintf(stderr, "quarry: attention: cuDNN declined the %s of B=%d T=%d heads=%d kv_heads=%d head_dim=%d (%s); "
                "quarry's kernel runs it\n", bwd ? "backward" : "forward", B, T, H, KVH, hd, why);
    if (e.ok && (size_t)e.workspace > st->workspace_bytes) {
        CUDA_CHECK(cudaStreamSynchronize(cuda_state_of(be)->stream));
        if (st->workspace) CUDA_CHECK(cudaFree(st->workspace));
        CUDA_CHECK(cudaMalloc(&st->workspace, (size_t)e.workspace));
        st->workspace_bytes = (size_t)e.workspace;
    }
    st->graphs.push_back(e);
    return &st->graphs.back();
}

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// The checks both directions share (out: out or dout's buffers, lse as given); the graph to run,
// or NULL for quarry's kernel.
static sdpa_graph *take(backend *be, int bwd, const void *q, const void *k, const void *v, const void *out,
                        const float *lse, int packed, int B, int Tq, int Tk, int H, int KVH, int hd, int window,
                        const float *sinks) {
    cudnn_attn *st = attn_state(be);
    if (!st || !st->handle || st->mode == ATTENTION_QUARRY) return NULL;
    char why[128];
    if (!attention_cudnn_supports(Tq, Tk, H, KVH, hd, window, sinks != NULL, packed, why, sizeof why)) {
        if (!(packed ? st->said_packed++ : st->said_unsupported++))
            fprintf(stderr, "quarry: attention: %s: quarry's kernel runs these calls (cuDNN the others)\n", why);
        return NULL;
    }
    if (!aligned16(q) || !aligned16(k) || !aligned16(v) || !aligned16(out) || !aligned16(lse)) return NULL;
    sdpa_graph *e = graph_for(be, st, bwd, B, Tq, H, KVH, hd);
    return e->ok ? e : NULL;
}

static void run(backend *be, sdpa_graph *e, std::unordered_map<int64_t, void *> &pack) {
    cudnn_attn *st = attn_state(be);
    fe::error_t r;
    try {
        (void)(r = e->g->execute((cudnnHandle_t)st->handle, pack, st->workspace));
    } catch (const std::exception &ex) {
        fprintf(stderr, "quarry: attention: cudnn-frontend execute (%s) threw: %s\n", e->bwd ? "backward" : "forward",
                ex.what());
        exit(1);
    }
    if (!r.is_good()) {
        fprintf(stderr, "quarry: attention: cudnn-frontend execute (%s): %s\n", e->bwd ? "backward" : "forward",
                r.get_message().c_str());
        exit(1);
    }
}

int cuda_attention_cudnn_forward(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                                 const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                 float scale, int window, const float *sinks) {
    (void)doc_start;   // packed says all the cuDNN path needs to know about it
    sdpa_graph *e = take(be, 0, q, k, v, out, lse, packed, B, Tq, Tk, n_heads, n_kv_heads, hd, window, sinks);
    if (!e) return 0;
    std::unordered_map<int64_t, void *> pack = {{UID_Q, (void *)q},   {UID_K, (void *)k},     {UID_V, (void *)v},
                                                {UID_O, out},         {UID_STATS, (void *)lse}, {UID_SCALE, &scale}};
    run(be, e, pack);
    return 1;
}

int cuda_attention_cudnn_backward(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                                  const float *lse, const void *q, const void *k, const void *v,
                                  const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                  float scale, int window, const float *sinks) {
    if (!aligned16(dq) || !aligned16(dk) || !aligned16(dv) || !aligned16(dout)) return 0;
    (void)doc_start;
    sdpa_graph *e = take(be, 1, q, k, v, out, lse, packed, B, Tq, Tk, n_heads, n_kv_heads, hd, window, sinks);
    if (!e) return 0;
    std::unordered_map<int64_t, void *> pack = {
        {UID_Q, (void *)q},   {UID_K, (void *)k},     {UID_V, (void *)v},     {UID_O, (void *)out},
        {UID_DO, (void *)dout}, {UID_STATS, (void *)lse}, {UID_SCALE, &scale}, {UID_DQ, dq},
        {UID_DK, dk},         {UID_DV, dv}};
    run(be, e, pack);
    return 1;
}

// The frontend (dynamic loading) queries the device through a shared libcudart it dlopens by
// soname; quarry links cudart statically, and a bare CUDA image may not have it on the loader's
// path.  Tell the frontend where one is (unless the user did: CUDNN_FRONTEND_CUDART_LIB_NAME);
// none found: graph builds throw, are caught, and quarry's kernel runs (said once per shape).
static void point_frontend_at_cudart(void) {
    const char *user = getenv("CUDNN_FRONTEND_CUDART_LIB_NAME");
    if (user && *user) return;
    const char *candidates[] = {"libcudart.so.13", "/usr/local/cuda/lib64/libcudart.so.13",
                                "/usr/local/cuda/targets/x86_64-linux/lib/libcudart.so.13"};
    for (const char *c : candidates) {
        void *h = dlopen(c, RTLD_NOW | RTLD_LOCAL);
        if (h) {
            dlclose(h);
            setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", c, 0);
            return;
        }
    }
}

// Opens cuDNN and a handle on the backend's stream; 0 with the failing call named in err.
static int open_cudnn(backend *be, cudnn_attn *st, char *err, size_t errlen) {
    if (!cudnn_load(&st->lib, err, errlen)) return 0;
    int rc = st->lib.Create(&st->handle);
    if (rc != 0) {
        snprintf(err, errlen, "cudnnCreate (%s): %s", st->lib.path, st->lib.GetErrorString(rc));
        st->handle = NULL;
        cudnn_unload(&st->lib);
        return 0;
    }
    rc = st->lib.SetStream(st->handle, (void *)cuda_state_of(be)->stream);
    if (rc != 0) {
        snprintf(err, errlen, "cudnnSetStream: %s", st->lib.GetErrorString(rc));
        st->lib.Destroy(st->handle);
        st->handle = NULL;
        cudnn_unload(&st->lib);
        return 0;
    }
    fe::cudnn_dlhandle = st->lib.dl;
    point_frontend_at_cudart();
    return 1;
}

static int cu_set_attention(backend *be, int mode, char *err, size_t errlen) {
    cuda_state *s = cuda_state_of(be);
    cuda_attention_cudnn_destroy(be);
    cudnn_attn *st = new cudnn_attn();
    st->mode = (attention_mode)mode;
    s->attn_cudnn = st;
    if (mode == ATTENTION_QUARRY) {
        snprintf(be->attention_impl, sizeof be->attention_impl, "%s", cuda_attention_kernel_label());
        return 1;
    }
    char why[1600];
    if (!open_cudnn(be, st, why, sizeof why)) {
        if (mode == ATTENTION_CUDNN) {
            snprintf(err, errlen, "--attention cudnn: %s; install cuDNN 9 (pip install nvidia-cudnn-cu12, or the "
                     "system package) or point CUDNN_PATH at it, or use --attention quarry", why);
            return 0;
        }
        snprintf(be->attention_impl, sizeof be->attention_impl, "%s (auto; %.200s)", cuda_attention_kernel_label(), why);
        return 1;
    }
    size_t ver = st->lib.version;
    snprintf(be->attention_impl, sizeof be->attention_impl,
             "cudnn %zu.%zu.%zu (%.150s; quarry's kernel for sinks, windows, KV caches, packed rows)", ver / 10000,
             ver / 100 % 100, ver % 100, st->lib.path);
    return 1;
}

void cuda_attention_cudnn_destroy(backend *be) {
    cuda_state *s = cuda_state_of(be);
    cudnn_attn *st = (cudnn_attn *)s->attn_cudnn;
    if (!st) return;
    if (s->stream) CUDA_CHECK(cudaStreamSynchronize(s->stream));
    st->graphs.clear();
    if (st->handle) {
        int rc = st->lib.Destroy(st->handle);
        if (rc != 0) fprintf(stderr, "quarry: attention: cudnnDestroy: %s\n", st->lib.GetErrorString(rc));
    }
    if (st->workspace) CUDA_CHECK(cudaFree(st->workspace));
    // The library stays open: the frontend's static state may still hold symbols from it.
    delete st;
    s->attn_cudnn = NULL;
}

#else   // built without the cudnn-frontend headers

int cuda_attention_cudnn_forward(backend *, void *, float *, const void *, const void *, const void *,
                                 const int32_t *, int, int, int, int, int, int, int, float, int, const float *) {
    return 0;
}
int cuda_attention_cudnn_backward(backend *, void *, void *, void *, const void *, const void *, const float *,
                                  const void *, const void *, const void *, const int32_t *, int, int, int, int, int,
                                  int, int, float, int, const float *) {
    return 0;
}

static int cu_set_attention(backend *be, int mode, char *err, size_t errlen) {
    const char *why = "this quarry was built without the cudnn-frontend headers (scripts/setup.sh fetches them; "
                      "reconfigure the build)";
    if (mode == ATTENTION_CUDNN) {
        snprintf(err, errlen, "--attention cudnn: %s; or use --attention quarry", why);
        return 0;
    }
    snprintf(be->attention_impl, sizeof be->attention_impl, "%s%s", cuda_attention_kernel_label(),
             mode == ATTENTION_AUTO ? " (auto; built without cudnn-frontend)" : "");
    return 1;
}

void cuda_attention_cudnn_destroy(backend *) {}

#endif

void cuda_attention_cudnn_install(backend *be) {
    be->set_attention = cu_set_attention;
    snprintf(be->attention_impl, sizeof be->attention_impl, "%s", cuda_attention_kernel_label());
}
