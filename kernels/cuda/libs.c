// kernels/cuda/libs.c — cuBLAS, cuBLASLt and NCCL through dlopen (kernels/cuda_libs.h): the
// pointer tables, the loads with their version checks, and the entry points quarry calls,
// defined here with the headers' own prototypes as forwards through the tables.  CUDA builds
// only; host C (the emulator, dev/cuda/emu, has its own cuBLAS and never builds this file).
// cublas_v2.h maps cublasCreate to cublasCreate_v2 (and Destroy, SetStream, SetWorkspace): the
// forwards and dlsym use the _v2 names the library exports.
#include "../cuda_libs.h"
#include <cublas_v2.h>
#include <cublasLt.h>
#include <nccl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define CUBLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)
#define CUBLASLT_SONAME "libcublasLt.so." STR(CUBLAS_VER_MAJOR)
#define NCCL_SONAME "libnccl.so." STR(NCCL_MAJOR)

// The folders the build found them in (CMakeLists.txt sets these for this file only).
#ifndef QUARRY_CUBLAS_DIR
#define QUARRY_CUBLAS_DIR NULL
#endif
#ifndef QUARRY_NCCL_DIR
#define QUARRY_NCCL_DIR NULL
#endif

#define BLAS_PACKAGE "NVIDIA's libcublas-" STR(CUBLAS_VER_MAJOR) "-x package (or the CUDA " STR(CUBLAS_VER_MAJOR) " toolkit)"

static const cuda_lib_spec cublaslt_spec = {CUBLASLT_SONAME, "cuBLASLt " STR(CUBLAS_VER_MAJOR), QUARRY_CUBLAS_DIR, NULL,
                                            BLAS_PACKAGE};
static const cuda_lib_spec cublas_spec = {CUBLAS_SONAME, "cuBLAS " STR(CUBLAS_VER_MAJOR), QUARRY_CUBLAS_DIR, NULL,
                                          BLAS_PACKAGE};
static const cuda_lib_spec nccl_spec = {NCCL_SONAME, "NCCL " STR(NCCL_MAJOR), QUARRY_NCCL_DIR, "NCCL_ROOT",
                                        "NVIDIA's libnccl2 package (or pip's nvidia-nccl-cu" STR(CUBLAS_VER_MAJOR) ")"};

// X(library, symbol): every entry point quarry calls.  0 = libcublasLt, 1 = libcublas.
#define BLAS_SYMBOLS(X)                                                                                    \
    X(0, cublasLtGetVersion) X(0, cublasLtCreate) X(0, cublasLtDestroy) X(0, cublasLtMatmul)               \
    X(0, cublasLtMatmulAlgoGetHeuristic) X(0, cublasLtMatmulDescCreate) X(0, cublasLtMatmulDescDestroy)    \
    X(0, cublasLtMatmulDescSetAttribute) X(0, cublasLtMatmulPreferenceCreate)                              \
    X(0, cublasLtMatmulPreferenceDestroy) X(0, cublasLtMatmulPreferenceSetAttribute)                       \
    X(0, cublasLtMatrixLayoutCreate) X(0, cublasLtMatrixLayoutDestroy)                                     \
    X(1, cublasGetProperty) X(1, cublasCreate_v2) X(1, cublasDestroy_v2) X(1, cublasSetStream_v2)          \
    X(1, cublasSetWorkspace_v2) X(1, cublasGemmEx) X(1, cublasGemmGroupedBatchedEx)
#define NCCL_SYMBOLS(X)                                                                                    \
    X(0, ncclGetVersion) X(0, ncclGetUniqueId) X(0, ncclCommInitRankConfig) X(0, ncclCommFinalize)         \
    X(0, ncclCommDestroy) X(0, ncclCommAbort) X(0, ncclGetErrorString) X(0, ncclCommGetAsyncError)         \
    X(0, ncclReduce) X(0, ncclBroadcast) X(0, ncclAllReduce) X(0, ncclReduceScatter) X(0, ncclAllGather)   \
    X(0, ncclGroupStart) X(0, ncclGroupEnd)

#define DECLARE_POINTER(lib, name) __typeof__(name) *name;
static struct { BLAS_SYMBOLS(DECLARE_POINTER) } blas;
static struct { NCCL_SYMBOLS(DECLARE_POINTER) } nccl;

// One group of libraries: loaded once per process; a failure is kept and repeated.
typedef struct {
    atomic_int state;        // 0 not tried, 1 loaded, -1 failed (error says why)
    pthread_mutex_t lock;
    void *dl[2];
    char path[2][640];
    char version[32];
    char error[2600];
} lib_group;

static lib_group blas_group = {.lock = PTHREAD_MUTEX_INITIALIZER};
static lib_group nccl_group = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    int lib;
    const char *name;
    void **slot;
} symbol;

// dlsym of every symbol of the group; 0 with error naming the first one missing.
static int resolve(lib_group *g, const symbol *syms, size_t n, const char *const *what) {
    for (size_t i = 0; i < n; i++) {
        *syms[i].slot = dlsym(g->dl[syms[i].lib], syms[i].name);
        if (!*syms[i].slot) {
            snprintf(g->error, sizeof g->error,
                     "%.600s has no symbol %s: not the %s quarry was built with\n"
                     "hint: install a matching version, or point QUARRY_CUDA_LIBS or LD_LIBRARY_PATH at one",
                     g->path[syms[i].lib], syms[i].name, what[syms[i].lib]);
            return 0;
        }
    }
    return 1;
}

static void close_group(lib_group *g) {
    for (int i = 1; i >= 0; i--)
        if (g->dl[i]) dlclose(g->dl[i]);
    g->dl[0] = g->dl[1] = NULL;
}

static int load_blas_locked(void) {
    lib_group *g = &blas_group;
    // cuBLASLt first: libcublas needs it (DT_NEEDED), and the loader takes the copy already open
    // (matched by soname) even when it came from a folder outside its own search.
    if (!(g->dl[0] = cuda_lib_open(&cublaslt_spec, g->path[0], sizeof g->path[0], g->error, sizeof g->error))) return 0;
    if (!(g->dl[1] = cuda_lib_open(&cublas_spec, g->path[1], sizeof g->path[1], g->error, sizeof g->error))) {
        close_group(g);
        return 0;
    }
#define BLAS_ENTRY(lib, name) {lib, #name, (void **)&blas.name},
    static const symbol syms[] = {BLAS_SYMBOLS(BLAS_ENTRY)};
    const char *const what[] = {cublaslt_spec.what, cublas_spec.what};
    if (!resolve(g, syms, sizeof syms / sizeof syms[0], what)) {
        close_group(g);
        return 0;
    }
    // The soname carries the major version; a file renamed or linked by hand may still lie.
    int major = -1, minor = -1, patch = -1;
    size_t lt = blas.cublasLtGetVersion();
    if (blas.cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
        blas.cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
        blas.cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS || major != CUBLAS_VER_MAJOR ||
        lt / 10000 != CUBLAS_VER_MAJOR) {
        snprintf(g->error, sizeof g->error,
                 "%.600s is cuBLAS %d.%d.%d and %.600s is cuBLASLt %zu.%zu.%zu; quarry was built with cuBLAS %d.%d.%d "
                 "and needs major version %d\nhint: install %s, or point QUARRY_CUDA_LIBS or LD_LIBRARY_PATH at it",
                 g->path[1], major, minor, patch, g->path[0], lt / 10000, lt / 100 % 100, lt % 100, CUBLAS_VER_MAJOR,
                 CUBLAS_VER_MINOR, CUBLAS_VER_PATCH, CUBLAS_VER_MAJOR, BLAS_PACKAGE);
        close_group(g);
        return 0;
    }
    snprintf(g->version, sizeof g->version, "%d.%d.%d", major, minor, patch);
    return 1;
}

static int load_nccl_locked(void) {
    lib_group *g = &nccl_group;
    if (!(g->dl[0] = cuda_lib_open(&nccl_spec, g->path[0], sizeof g->path[0], g->error, sizeof g->error))) return 0;
#define NCCL_ENTRY(lib, name) {lib, #name, (void **)&nccl.name},
    static const symbol syms[] = {NCCL_SYMBOLS(NCCL_ENTRY)};
    const char *const what[] = {nccl_spec.what, nccl_spec.what};
    if (!resolve(g, syms, sizeof syms / sizeof syms[0], what)) {
        close_group(g);
        return 0;
    }
    // ncclGetVersion: major*10000 + minor*100 + patch since 2.9 (2.8 and older: major*1000 + ...,
    // which fails this check as it should: quarry needs the config API of 2.14+).
    int v = 0;
    if (nccl.ncclGetVersion(&v) != ncclSuccess || v / 10000 != NCCL_MAJOR) {
        snprintf(g->error, sizeof g->error,
                 "%.600s reports NCCL version code %d; quarry was built with NCCL %d.%d.%d and needs %d.x (2.14 or newer)\n"
                 "hint: install %s, or point QUARRY_CUDA_LIBS or LD_LIBRARY_PATH at it",
                 g->path[0], v, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH, NCCL_MAJOR, nccl_spec.package);
        close_group(g);
        return 0;
    }
    snprintf(g->version, sizeof g->version, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    return 1;
}

static int load(lib_group *g, int (*locked)(void), char *err, size_t errlen) {
    int s = atomic_load_explicit(&g->state, memory_order_acquire);
    if (!s) {
        pthread_mutex_lock(&g->lock);
        s = atomic_load_explicit(&g->state, memory_order_relaxed);
        if (!s) {
            s = locked() ? 1 : -1;
            atomic_store_explicit(&g->state, s, memory_order_release);
        }
        pthread_mutex_unlock(&g->lock);
    }
    if (s < 0 && err) snprintf(err, errlen, "%s", g->error);
    return s > 0;
}

int cuda_libs_load_blas(char *err, size_t errlen) { return load(&blas_group, load_blas_locked, err, errlen); }
int cuda_libs_load_nccl(char *err, size_t errlen) { return load(&nccl_group, load_nccl_locked, err, errlen); }

int cuda_libs_describe(cuda_lib_info *b, cuda_lib_info *n) {
    struct {
        cuda_lib_info *out;
        lib_group *g;
        int (*locked)(void);
        int path;   // the file shown: libcublas (not its Lt) and libnccl
    } each[] = {{b, &blas_group, load_blas_locked, 1}, {n, &nccl_group, load_nccl_locked, 0}};
    for (int i = 0; i < 2; i++) {
        memset(each[i].out, 0, sizeof *each[i].out);
        if (load(each[i].g, each[i].locked, each[i].out->error, sizeof each[i].out->error)) {
            snprintf(each[i].out->version, sizeof each[i].out->version, "%s", each[i].g->version);
            snprintf(each[i].out->path, sizeof each[i].out->path, "%s", each[i].g->path[each[i].path]);
            if (each[i].path) snprintf(each[i].out->path_lt, sizeof each[i].out->path_lt, "%s", each[i].g->path[0]);
        }
    }
    return 1;
}

// A call before cuda_libs_load_* (a program calling cuBLAS without a backend: the dev/cuda labs)
// loads here; there is no status to return a load failure through, so it ends the process.
static void require(lib_group *g, int (*locked)(void)) {
    if (atomic_load_explicit(&g->state, memory_order_acquire) > 0) return;
    char err[2600];
    if (!load(g, locked, err, sizeof err)) {
        fprintf(stderr, "quarry: %s\n", err);
        exit(1);
    }
}
#define BLAS(name) (require(&blas_group, load_blas_locked), blas.name)
#define NCCL(name) (require(&nccl_group, load_nccl_locked), nccl.name)

size_t CUBLASWINAPI cublasLtGetVersion(void) { return BLAS(cublasLtGetVersion)(); }
cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t *h) { return BLAS(cublasLtCreate)(h); }
cublasStatus_t CUBLASWINAPI cublasLtDestroy(cublasLtHandle_t h) { return BLAS(cublasLtDestroy)(h); }
cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha,
                                           const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
                                           cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
                                           cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
                                           const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                                           cudaStream_t stream) {
    return BLAS(cublasLtMatmul)(h, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace,
                                workspace_bytes, stream);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc,
                                                           cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                                           cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                                           cublasLtMatmulPreference_t pref, int requested,
                                                           cublasLtMatmulHeuristicResult_t results[], int *returned) {
    return BLAS(cublasLtMatmulAlgoGetHeuristic)(h, desc, Adesc, Bdesc, Cdesc, Ddesc, pref, requested, results, returned);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t compute,
                                                     cudaDataType_t scale) {
    return BLAS(cublasLtMatmulDescCreate)(desc, compute, scale);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    return BLAS(cublasLtMatmulDescDestroy)(desc);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                                           const void *buf, size_t bytes) {
    return BLAS(cublasLtMatmulDescSetAttribute)(desc, attr, buf, bytes);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    return BLAS(cublasLtMatmulPreferenceCreate)(pref);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    return BLAS(cublasLtMatmulPreferenceDestroy)(pref);
}
cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                                 cublasLtMatmulPreferenceAttributes_t attr,
                                                                 const void *buf, size_t bytes) {
    return BLAS(cublasLtMatmulPreferenceSetAttribute)(pref, attr, buf, bytes);
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                                       uint64_t cols, int64_t ld) {
    return BLAS(cublasLtMatrixLayoutCreate)(layout, type, rows, cols, ld);
}
cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    return BLAS(cublasLtMatrixLayoutDestroy)(layout);
}

cublasStatus_t CUBLASWINAPI cublasGetProperty(libraryPropertyType type, int *value) {
    return BLAS(cublasGetProperty)(type, value);
}
cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t *h) { return BLAS(cublasCreate_v2)(h); }
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t h) { return BLAS(cublasDestroy_v2)(h); }
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t h, cudaStream_t stream) {
    return BLAS(cublasSetStream_v2)(h, stream);
}
cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t h, void *workspace, size_t bytes) {
    return BLAS(cublasSetWorkspace_v2)(h, workspace, bytes);
}
cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                                         cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                                         cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    return BLAS(cublasGemmEx)(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo);
}
cublasStatus_t CUBLASWINAPI cublasGemmGroupedBatchedEx(cublasHandle_t h, const cublasOperation_t ta[],
                                                       const cublasOperation_t tb[], const int m[], const int n[],
                                                       const int k[], const void *alpha, const void *const A[],
                                                       cudaDataType_t at, const int lda[], const void *const B[],
                                                       cudaDataType_t bt, const int ldb[], const void *beta,
                                                       void *const C[], cudaDataType_t ct, const int ldc[],
                                                       int groups, const int group_size[], cublasComputeType_t compute) {
    return BLAS(cublasGemmGroupedBatchedEx)(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, groups,
                                            group_size, compute);
}

ncclResult_t ncclGetVersion(int *version) { return NCCL(ncclGetVersion)(version); }
ncclResult_t ncclGetUniqueId(ncclUniqueId *id) { return NCCL(ncclGetUniqueId)(id); }
ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config) {
    return NCCL(ncclCommInitRankConfig)(comm, nranks, id, rank, config);
}
ncclResult_t ncclCommFinalize(ncclComm_t comm) { return NCCL(ncclCommFinalize)(comm); }
ncclResult_t ncclCommDestroy(ncclComm_t comm) { return NCCL(ncclCommDestroy)(comm); }
ncclResult_t ncclCommAbort(ncclComm_t comm) { return NCCL(ncclCommAbort)(comm); }
const char *ncclGetErrorString(ncclResult_t r) { return NCCL(ncclGetErrorString)(r); }
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    return NCCL(ncclCommGetAsyncError)(comm, async_error);
}
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op, int root,
                        ncclComm_t comm, cudaStream_t stream) {
    return NCCL(ncclReduce)(send, recv, count, type, op, root, comm, stream);
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
    return NCCL(ncclBroadcast)(send, recv, count, type, root, comm, stream);
}
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
    return NCCL(ncclAllReduce)(send, recv, count, type, op, comm, stream);
}
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recv_count, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream) {
    return NCCL(ncclReduceScatter)(send, recv, recv_count, type, op, comm, stream);
}
ncclResult_t ncclAllGather(const void *send, void *recv, size_t send_count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
    return NCCL(ncclAllGather)(send, recv, send_count, type, comm, stream);
}
ncclResult_t ncclGroupStart(void) { return NCCL(ncclGroupStart)(); }
ncclResult_t ncclGroupEnd(void) { return NCCL(ncclGroupEnd)(); }
