// kernels/cudnn_load.c — see cudnn_load.h.
#define _GNU_SOURCE
#include "cudnn_load.h"
#include "cuda_libs.h"
#include <dlfcn.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUDNN_SONAME "libcudnn.so.9"

// dlopen of one candidate (kernels/cuda_libs.h's step), the file opened written to opened.
static void *try_open(const char *path, char *tried, size_t n, char *opened, size_t openedlen) {
    void *h = dl_try_open(path, path, tried, n);
    if (h) snprintf(opened, openedlen, "%s", path);
    return h;
}

static void *try_dir(const char *dir, char *tried, size_t n, char *opened, size_t openedlen) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, CUDNN_SONAME);
    return try_open(path, tried, n, opened, openedlen);
}

// nvidia/cudnn/lib of a Python environment (pip's nvidia-cudnn-cu12/cu13 wheels).
static void *try_python_env(const char *prefix, char *tried, size_t n, char *opened, size_t openedlen) {
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/lib/python3*/site-packages/nvidia/cudnn/lib/%s", prefix, CUDNN_SONAME);
    glob_t g;
    void *h = NULL;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && !h; i++) h = try_open(g.gl_pathv[i], tried, n, opened, openedlen);
        globfree(&g);
    } else {
        dl_tried_add(tried, n, pattern, "no match");
    }
    return h;
}

static void *open_library(char *opened, size_t openedlen, char *tried, size_t n, int *from_cudnn_path) {
    *from_cudnn_path = 0;
    const char *cp = getenv("CUDNN_PATH");
    if (cp && *cp) {
        // An explicit choice: not silently replaced by another cuDNN found elsewhere.
        *from_cudnn_path = 1;
        char dir[560];
        void *h;
        snprintf(dir, sizeof dir, "%s/lib", cp);
        if ((h = try_dir(dir, tried, n, opened, openedlen))) return h;
        snprintf(dir, sizeof dir, "%s/lib64", cp);
        if ((h = try_dir(dir, tried, n, opened, openedlen))) return h;
        return try_dir(cp, tried, n, opened, openedlen);
    }
    const char *envs[] = {"VIRTUAL_ENV", "CONDA_PREFIX"};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        const char *p = getenv(envs[i]);
        void *h;
        if (p && *p && (h = try_python_env(p, tried, n, opened, openedlen))) return h;
    }
    void *h = try_open(CUDNN_SONAME, tried, n, opened, openedlen);
    if (!h) h = try_dir("/usr/local/cuda/lib64", tried, n, opened, openedlen);
    if (!h) h = try_dir("/usr/local/cuda/lib", tried, n, opened, openedlen);
    return h;
}

int cudnn_load(cudnn_lib *lib, char *err, size_t errlen) {
    memset(lib, 0, sizeof *lib);
    char tried[1400] = "";
    int from_cudnn_path;
    void *h = open_library(lib->path, sizeof lib->path, tried, sizeof tried, &from_cudnn_path);
    if (!h) {
        snprintf(err, errlen, "cuDNN not found%s: tried %s", from_cudnn_path ? " under $CUDNN_PATH" : "", tried);
        return 0;
    }
    struct {
        const char *name;
        void **slot;
    } table[] = {
        {"cudnnGetVersion", (void **)&lib->GetVersion},
        {"cudnnCreate", (void **)&lib->Create},
        {"cudnnDestroy", (void **)&lib->Destroy},
        {"cudnnSetStream", (void **)&lib->SetStream},
        {"cudnnGetErrorString", (void **)&lib->GetErrorString},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        *table[i].slot = dlsym(h, table[i].name);
        if (!*table[i].slot) {
            snprintf(err, errlen, "%s has no symbol %s: not a usable cuDNN 9", lib->path, table[i].name);
            dlclose(h);
            memset(lib, 0, sizeof *lib);
            return 0;
        }
    }
    lib->dl = h;
    lib->version = lib->GetVersion();
    if (lib->version < CUDNN_MIN_VERSION) {
        snprintf(err, errlen, "%s is cuDNN %zu.%zu.%zu; quarry needs 9.0 or newer", lib->path, lib->version / 10000,
                 lib->version / 100 % 100, lib->version % 100);
        cudnn_unload(lib);
        return 0;
    }
    return 1;
}

void cudnn_unload(cudnn_lib *lib) {
    if (lib->dl) dlclose(lib->dl);
    memset(lib, 0, sizeof *lib);
}

int attention_mode_parse(const char *s, attention_mode *mode) {
    if (!s || !strcmp(s, "auto")) *mode = ATTENTION_AUTO;
    else if (!strcmp(s, "cudnn")) *mode = ATTENTION_CUDNN;
    else if (!strcmp(s, "quarry")) *mode = ATTENTION_QUARRY;
    else return 0;
    return 1;
}

const char *attention_mode_name(attention_mode mode) {
    return mode == ATTENTION_CUDNN ? "cudnn" : mode == ATTENTION_QUARRY ? "quarry" : "auto";
}

int attention_kernel_parse(const char *s, int *version) {
    if (!s || !*s) *version = 0;
    else if (!strcmp(s, "v1")) *version = 1;
    else if (!strcmp(s, "v3")) *version = 3;
    else if (!strcmp(s, "v4")) *version = 4;
    else return 0;
    return 1;
}

int attention_cudnn_supports(int Tq, int Tk, int n_heads, int n_kv_heads, int hd, int window, int has_sinks,
                             int packed, char *why, size_t whylen) {
    const char *r = NULL;
    char buf[96];
    if (packed) r = "rows packing several documents";
    else if (has_sinks) r = "attention sinks";
    else if (window > 0) r = "a sliding window";
    else if (Tq != Tk) r = "a KV cache (Tq != Tk)";
    else if (hd <= 0 || hd % 8 || hd > 128) {
        snprintf(buf, sizeof buf, "head dim %d (cuDNN path: a multiple of 8 up to 128)", hd);
        r = buf;
    } else if (n_kv_heads <= 0 || n_heads % n_kv_heads) r = "heads not a multiple of kv heads";
    if (r && why) snprintf(why, whylen, "%s", r);
    return r == NULL;
}
