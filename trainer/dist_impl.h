// trainer/dist_impl.h — what an implementation of trainer/dist.h fills in (private to
// trainer/dist*.c and trainer/dist_nccl.cu).
#pragma once
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *kind;
    int (*all_reduce)(dist *d, float *buf, size_t n);
    int (*reduce_scatter)(dist *d, float *buf, size_t n);
    int (*all_gather)(dist *d, void *buf, size_t n, size_t elem_bytes);
    int (*broadcast)(dist *d, void *buf, size_t bytes, int root);
    int (*barrier)(dist *d);
    // Optional (NULL: the blocking calls above, tickets all 0, wait and finish no-ops).
    int (*all_reduce_start)(dist *d, float *buf, size_t n);
    int (*reduce_scatter_start)(dist *d, float *buf, size_t n);
    int (*wait)(dist *d, int ticket);
    int (*finish)(dist *d);
    int (*all_reduce_host)(dist *d, double *v, int n);
    int (*broadcast_host)(dist *d, void *buf, size_t bytes, int root);
    void (*abort)(dist *d, const char *why);
    void (*close)(dist *d);
} dist_ops;

struct dist {
    const dist_ops *ops;
    int rank, world;
    backend *be;
    double timeout_s;
    void *impl;
    void *host_scratch;       // host temporaries of the CPU implementations (dist_host_scratch)
    size_t host_scratch_bytes;
    char error[512];
};

// At least bytes of host memory owned by d, valid until the next call; NULL when out of memory.
void *dist_host_scratch(dist *d, size_t bytes);

#ifdef __cplusplus
}
#endif
