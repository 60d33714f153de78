// kernels/cuda_libs.c — the search behind cuda_lib_open (see cuda_libs.h).
#define _GNU_SOURCE
#include "cuda_libs.h"
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dl_tried_add(char *tried, size_t n, const char *what, const char *why) {
    size_t len = strlen(tried);
    if (len + 1 < n) snprintf(tried + len, n - len, "%s%s (%s)", len ? "; " : "", what, why);
}

void *dl_try_open(const char *file, const char *label, char *tried, size_t n) {
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    const char *e = dlerror();
    char why[200];
    snprintf(why, sizeof why, "%s", e ? e : "not found");
    char *nl = strchr(why, '\n');
    if (nl) *nl = 0;
    dl_tried_add(tried, n, label, strstr(why, "No such file") ? "no such file" : why);
    return NULL;
}

static void *try_dir(const char *dir, const char *soname, char *tried, size_t n) {
    char file[700];
    snprintf(file, sizeof file, "%s/%s", dir, soname);
    return dl_try_open(file, file, tried, n);
}

// $QUARRY_CUDA_LIBS: folders separated by ':'; empty entries are skipped.
static void *try_list(const char *list, const char *soname, char *tried, size_t n) {
    char dir[600];
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && len < sizeof dir) {
            memcpy(dir, p, len);
            dir[len] = 0;
            void *h = try_dir(dir, soname, tried, n);
            if (h) return h;
        }
        if (!end) break;
        p = end + 1;
    }
    return NULL;
}

static void *try_env_dirs(const char *env, const char *soname, char *tried, size_t n) {
    const char *root = getenv(env);
    if (!root || !*root) return NULL;
    char dir[600];
    void *h;
    snprintf(dir, sizeof dir, "%s/lib64", root);
    if ((h = try_dir(dir, soname, tried, n))) return h;
    snprintf(dir, sizeof dir, "%s/lib", root);
    return try_dir(dir, soname, tried, n);
}

static void *search(const cuda_lib_spec *spec, char *tried, size_t n, int *explicit_list) {
    const char *list = getenv("QUARRY_CUDA_LIBS");
    *explicit_list = list && *list;
    if (*explicit_list) return try_list(list, spec->soname, tried, n);
    char label[160];
    snprintf(label, sizeof label, "%s on the loader's path: LD_LIBRARY_PATH, ldconfig", spec->soname);
    void *h = dl_try_open(spec->soname, label, tried, n);
    if (!h && spec->build_dir && *spec->build_dir) h = try_dir(spec->build_dir, spec->soname, tried, n);
    if (!h) h = try_env_dirs("CUDA_HOME", spec->soname, tried, n);
    if (!h && spec->root_env) h = try_env_dirs(spec->root_env, spec->soname, tried, n);
    return h;
}

void *cuda_lib_open(const cuda_lib_spec *spec, char *path, size_t pathlen, char *err, size_t errlen) {
    char tried[2000] = "";
    int explicit_list;
    if (pathlen) path[0] = 0;
    void *h = search(spec, tried, sizeof tried, &explicit_list);
    if (h) {
        // The file the loader picked (a bare soname resolves through its cache).
        struct link_map *lm = NULL;
        if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
            snprintf(path, pathlen, "%s", lm->l_name);
        else
            snprintf(path, pathlen, "%s", spec->soname);
        return h;
    }
    if (explicit_list)
        snprintf(err, errlen,
                 "%s (%s) not found in $QUARRY_CUDA_LIBS: tried %s\n"
                 "hint: put %s in one of the folders of QUARRY_CUDA_LIBS, or unset it to search the system; "
                 "CPU work needs no CUDA library (--device cpu)",
                 spec->what, spec->soname, tried, spec->soname);
    else
        snprintf(err, errlen,
                 "%s (%s) not found: tried %s\n"
                 "hint: install %s, or add the folder holding %s to LD_LIBRARY_PATH; "
                 "CPU work needs no CUDA library (--device cpu)",
                 spec->what, spec->soname, tried[0] ? tried : "nothing", spec->package, spec->soname);
    return NULL;
}
