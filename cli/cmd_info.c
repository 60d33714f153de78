// cli/cmd_info.c — `quarry info [--json]`: what this build and this machine can do.
#include "args.h"
#include "commands.h"
#include "version.h"
#include "../kernels/backend.h"
#include "../kernels/cuda_libs.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static void version_string(char *buf, size_t n, int v) {
    if (!v) snprintf(buf, n, "none");
    else snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
}

// "13.1.0 (/usr/local/cuda/lib64/libcublas.so.13)", or the loader's message with its hint line
// indented under the value.
static void print_lib(const char *label, const cuda_lib_info *l) {
    if (l->version[0]) {
        printf("%-14s%s (%s)\n", label, l->version, l->path);
        return;
    }
    printf("%-14snot usable: ", label);
    for (const char *p = l->error; *p; p++) {
        putchar(*p);
        if (*p == '\n') printf("%14s", "");
    }
    putchar('\n');
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    const arg_spec specs[] = {{"json", ARG_FLAG, &json, NULL, "print one JSON document"}};
    const arg_parser p = {"info", "quarry info [--json]",
                          "Shows the backends compiled into this binary, CUDA runtime and driver versions,\n"
                          "the NCCL version and the GPUs this machine has (or `no CUDA device`).",
                          specs, 1, 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;

    cuda_report r;
    cuda_query(&r);
    char rt[32], drv[32];
    version_string(rt, sizeof rt, r.runtime_version);
    version_string(drv, sizeof drv, r.driver_version);
    // cuBLAS and NCCL are opened at run time (kernels/cuda_libs.h): loading them is the check.
    cuda_lib_info blas, nccl;
    int libs = cuda_libs_describe(&blas, &nccl);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "version", QUARRY_VERSION);
        cJSON_AddStringToObject(o, "commit", QUARRY_GIT_COMMIT);
        cJSON *b = cJSON_AddArrayToObject(o, "backends");
        cJSON_AddItemToArray(b, cJSON_CreateString("cpu"));
        if (r.cuda_compiled) cJSON_AddItemToArray(b, cJSON_CreateString("cuda"));
        cJSON_AddBoolToObject(o, "cuda_compiled", r.cuda_compiled);
        cJSON_AddBoolToObject(o, "nccl_compiled", r.nccl_compiled);
        cJSON_AddStringToObject(o, "cuda_runtime", rt);
        cJSON_AddStringToObject(o, "cuda_driver", drv);
        cJSON_AddStringToObject(o, "nccl", libs && nccl.version[0] ? nccl.version : "none");
        if (libs) {
            cJSON_AddStringToObject(o, "nccl_file", nccl.path);
            cJSON_AddStringToObject(o, "nccl_error", nccl.error);
            cJSON_AddStringToObject(o, "cublas", blas.version[0] ? blas.version : "none");
            cJSON_AddStringToObject(o, "cublas_file", blas.path);
            cJSON_AddStringToObject(o, "cublaslt_file", blas.path_lt);
            cJSON_AddStringToObject(o, "cublas_error", blas.error);
        }
        cJSON *g = cJSON_AddArrayToObject(o, "gpus");
        for (int i = 0; i < r.device_count && i < 16; i++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "index", i);
            cJSON_AddStringToObject(d, "name", r.devices[i].name);
            cJSON_AddNumberToObject(d, "memory_bytes", (double)r.devices[i].total_memory);
            char cc[16];
            snprintf(cc, sizeof cc, "%d.%d", r.devices[i].cc_major, r.devices[i].cc_minor);
            cJSON_AddStringToObject(d, "compute_capability", cc);
            cJSON_AddNumberToObject(d, "multiprocessors", r.devices[i].multiprocessors);
            cJSON_AddItemToArray(g, d);
        }
        cJSON_AddStringToObject(o, "message", r.device_count ? "" : r.message);
        char *s = cJSON_Print(o);
        if (!s) { fprintf(stderr, "quarry info: error: out of memory\n"); cJSON_Delete(o); return 1; }
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return 0;
    }
    printf("quarry %s (commit %s)\n", QUARRY_VERSION, QUARRY_GIT_COMMIT);
    printf("backends:     cpu%s\n", r.cuda_compiled ? ", cuda" : "");
    printf("CUDA runtime: %s\n", r.cuda_compiled ? rt : "not compiled in");
    printf("CUDA driver:  %s\n", drv);
    if (libs) {
        print_lib("cuBLAS:", &blas);
        print_lib("NCCL:", &nccl);
    } else {
        printf("NCCL:         not compiled in\n");
    }
    if (!r.device_count) printf("GPUs:         %s\n", r.message);
    for (int i = 0; i < r.device_count && i < 16; i++)
        printf("GPU %d:        %s, %.1f GiB, compute capability %d.%d, %d SMs\n", i, r.devices[i].name,
               r.devices[i].total_memory / 1073741824.0, r.devices[i].cc_major, r.devices[i].cc_minor,
               r.devices[i].multiprocessors);
    return 0;
}
