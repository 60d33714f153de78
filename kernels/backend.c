// kernels/backend.c — choosing a backend by name.
#include "backend.h"
#include "cudnn_load.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dtype_name(dtype t) {
    switch (t) {
    case DTYPE_F32: return "float32";
    case DTYPE_BF16: return "bfloat16";
    case DTYPE_F16: return "float16";
    }
    return "unknown";
}

backend *backend_open(const char *spec, char *err, size_t errlen) {
    if (!spec || !strcmp(spec, "auto")) {
        cuda_report r;
        cuda_query(&r);
        if (r.device_count > 0) return backend_cuda(0, err, errlen);
        return backend_cpu(0);
    }
    if (!strcmp(spec, "cpu")) return backend_cpu(0);
    if (!strncmp(spec, "cuda", 4)) {
        int index = 0;
        if (spec[4] == ':') {
            char *end;
            long v = strtol(spec + 5, &end, 10);
            if (end == spec + 5 || *end || v < 0 || v > 1024) {
                snprintf(err, errlen, "bad device '%s': use cpu, cuda or cuda:N", spec);
                return NULL;
            }
            index = (int)v;
        } else if (spec[4]) {
            snprintf(err, errlen, "bad device '%s': use cpu, cuda or cuda:N", spec);
            return NULL;
        }
        return backend_cuda(index, err, errlen);
    }
    snprintf(err, errlen, "bad device '%s': use cpu, cuda, cuda:N or auto", spec);
    return NULL;
}

int attention_rows_packed(const int32_t *doc_start, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (doc_start[i] != 0) return 1;
    return 0;
}

int backend_set_attention(backend *be, const char *mode, char *err, size_t errlen) {
    attention_mode m;
    if (!attention_mode_parse(mode, &m)) {
        snprintf(err, errlen, "--attention '%s' is not auto, cudnn or quarry", mode);
        return 0;
    }
    if (be->set_attention) return be->set_attention(be, (int)m, err, errlen);
    if (m == ATTENTION_CUDNN) {
        snprintf(err, errlen, "--attention cudnn needs a CUDA device; this run uses %s (use --attention auto)", be->name);
        return 0;
    }
    snprintf(be->attention_impl, sizeof be->attention_impl, "quarry");
    return 1;
}
