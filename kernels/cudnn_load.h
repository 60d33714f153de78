// kernels/cudnn_load.h — cuDNN found and opened at run time (dlopen), never linked, so one quarry
// binary runs where cuDNN is absent; and the choice of attention implementation (--attention).
// Public face: cudnn_load (search order, a dlsym'd table of the few entry points quarry calls
// itself), attention_mode_parse, attention_cudnn_supports (which calls cuDNN's SDPA may take).
// Host C only: compiled in every build, so the fallback and its messages are tested without a GPU.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// cuDNN's handle and status as opaque C types (cudnnHandle_t is a pointer, cudnnStatus_t an enum).
typedef struct {
    void *dl;                        // dlopen handle of libcudnn.so.9
    char path[640];                  // the file opened
    size_t version;                  // cudnnGetVersion(): 91900 for 9.19.0
    size_t (*GetVersion)(void);
    int (*Create)(void **handle);
    int (*Destroy)(void *handle);
    int (*SetStream)(void *handle, void *stream);
    const char *(*GetErrorString)(int status);
} cudnn_lib;

// Oldest cuDNN quarry uses: 9.0 (fused SDPA forward/backward with GQA in the graph API).
#define CUDNN_MIN_VERSION 90000

// Opens cuDNN, in this order: $CUDNN_PATH (its lib/, lib64/ or itself) and nothing else when it
// is set; the nvidia/cudnn/lib folder of the Python environment in $VIRTUAL_ENV or $CONDA_PREFIX;
// libcudnn.so.9 on the loader's path; /usr/local/cuda/lib64 and /usr/local/cuda/lib.  Returns 1
// with lib filled, or 0 with err naming every place tried (lib zeroed, nothing left open).
int cudnn_load(cudnn_lib *lib, char *err, size_t errlen);
void cudnn_unload(cudnn_lib *lib);

typedef enum { ATTENTION_AUTO = 0, ATTENTION_CUDNN = 1, ATTENTION_QUARRY = 2 } attention_mode;

// "auto", "cudnn" or "quarry" (NULL: auto).  Returns 0 for anything else.
int attention_mode_parse(const char *s, attention_mode *mode);
const char *attention_mode_name(attention_mode mode);

// Whether cuDNN's fused SDPA takes an attention call of this shape (backend.h's
// attention_forward arguments); 0 with the reason in why (may be NULL) when quarry's kernel must:
// head dim a multiple of 8 up to 128, Tq = Tk (training and scoring, not a KV cache), heads a
// multiple of kv heads, no sliding window and no sinks (gpt-oss keeps quarry's kernel), and rows
// of one document each (packed = 0: the op's host-known argument, never read from the device).
int attention_cudnn_supports(int Tq, int Tk, int n_heads, int n_kv_heads, int hd, int window,
                             int has_sinks, int packed, char *why, size_t whylen);

// QUARRY_ATTN_KERNEL (kernels/cuda/attention_fa2.h), quarry's own forward kernel: "v1", "v3" or
// "v4" sets version to 1, 3 or 4; NULL or "" to 0 (the default).  Returns 0 for anything else.
int attention_kernel_parse(const char *s, int *version);

#ifdef __cplusplus
}
#endif
