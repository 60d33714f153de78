// cli/cmd_info.c — `quarry info [--json]`: what this build and this machine can do.
#include "args.h"
#include "commands.h"
#include "version.h"
#include "../kernels/backend.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static void version_string(char *buf, size_t n, int v, int is_nccl) {
    if (!v) snprintf(buf, n, "none");
    else if (is_nccl) snprintf(buf, n, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);  // NCCL ≥ 2.9
    else snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
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
    char rt[32], drv[32], nccl[32];
    version_string(rt, sizeof rt, r.runtime_version, 0);
    version_string(drv, sizeof drv, r.driver_version, 0);
    version_string(nccl, sizeof nccl, r.nccl_version, 1);
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
        cJSON_AddStringToObject(o, "nccl", nccl);
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
    printf("NCCL:         %s\n", r.nccl_compiled ? nccl : "not compiled in");
    if (!r.device_count) printf("GPUs:         %s\n", r.message);
    for (int i = 0; i < r.device_count && i < 16; i++)
        printf("GPU %d:        %s, %.1f GiB, compute capability %d.%d, %d SMs\n", i, r.devices[i].name,
               r.devices[i].total_memory / 1073741824.0, r.devices[i].cc_major, r.devices[i].cc_minor,
               r.devices[i].multiprocessors);
    return 0;
}
