// kernels/cuda_libs.h — cuBLAS, cuBLASLt and NCCL opened at run time (dlopen), never linked: the
// CUDA binary starts, and runs its CPU commands, on a machine without them, and `quarry --version`
// does not pay for relocating ~800 MB of libraries.  The CUDA backend opens cuBLAS/cuBLASLt when
// it is created, the NCCL communicator opens NCCL; kernels/cuda/libs.c defines the entry points
// quarry calls as forwards through the dlsym'd pointers, so call sites use the headers unchanged.
// cuda_lib_open (the search and its message) is host C in every build: tested without CUDA.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *soname;      // "libcublas.so.13": the file name looked for everywhere
    const char *what;        // "cuBLAS 13", for messages
    const char *build_dir;   // the folder the build found it in (configure time), or NULL
    const char *root_env;    // "NCCL_ROOT": $NCCL_ROOT/lib and lib64 are tried too; or NULL
    const char *package;     // what to install: "NVIDIA's libcublas-13-x package or the CUDA 13 toolkit"
} cuda_lib_spec;

// Opens spec->soname (RTLD_NOW | RTLD_LOCAL), in this order: when $QUARRY_CUDA_LIBS is set, the
// folders it lists (':'-separated) and nothing else (an explicit choice is never replaced by a
// copy found elsewhere); otherwise the soname on the loader's own path (LD_LIBRARY_PATH,
// ldconfig's cache), spec->build_dir, $CUDA_HOME/lib64 and $CUDA_HOME/lib, then $root_env/lib and
// $root_env/lib64.  Returns the handle with the file opened in path, or NULL with err saying what
// is missing, every place tried, and a hint line (install / LD_LIBRARY_PATH / --device cpu).
void *cuda_lib_open(const cuda_lib_spec *spec, char *path, size_t pathlen, char *err, size_t errlen);

// Loads cuBLAS and cuBLASLt (the CUDA backend) or NCCL (the communicator) once per process and
// checks their major version against the headers quarry was built with.  Returns 1, or 0 with
// err (the same message every later call); thread-safe.  CUDA builds only (kernels/cuda/libs.c).
int cuda_libs_load_blas(char *err, size_t errlen);
int cuda_libs_load_nccl(char *err, size_t errlen);

// The search's steps, shared with cuDNN's (kernels/cudnn_load.c): dl_try_open dlopens file
// (RTLD_NOW | RTLD_LOCAL) and on failure appends "label (why)" to tried (n bytes, "; "-separated;
// why: dlerror()'s first line, or "no such file"); dl_tried_add appends "what (why)".
void *dl_try_open(const char *file, const char *label, char *tried, size_t n);
void dl_tried_add(char *tried, size_t n, const char *what, const char *why);

// For `quarry info`: loads the libraries and says, for each, its version and file or why not.
typedef struct {
    char version[32];        // "13.1.0", "2.28.9"; "" when not loaded
    char path[640];          // the file opened: libcublas.so.N, libnccl.so.N
    char path_lt[640];       // cuBLAS only: the libcublasLt.so.N opened with it
    char error[2600];        // cuda_libs_load_*'s message when not loaded
} cuda_lib_info;

// Returns 0 (nothing written) in a build without CUDA (kernels/cuda_stub.c).
int cuda_libs_describe(cuda_lib_info *blas, cuda_lib_info *nccl);

#ifdef __cplusplus
}
#endif
