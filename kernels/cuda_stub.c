// kernels/cuda_stub.c — linked instead of kernels/cuda/ when quarry is built without CUDA.
#include "backend.h"
#include "cuda_libs.h"
#include <stdio.h>
#include <string.h>

backend *backend_cuda(int device_index, char *err, size_t errlen) {
    (void)device_index;
    snprintf(err, errlen, "this quarry was built without CUDA (rebuild with -DQUARRY_CUDA=ON); use --device cpu");
    return NULL;
}

void cuda_query(cuda_report *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->message, sizeof r->message, "CUDA backend not compiled in");
}

int cuda_libs_describe(cuda_lib_info *blas, cuda_lib_info *nccl) {
    (void)blas;
    (void)nccl;
    return 0;
}
