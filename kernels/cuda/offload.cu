// kernels/cuda/offload.cu — activation offload's memory on the CUDA backend: page-locked host
// memory (cudaHostAlloc) and copies on a second stream, ordered against the compute stream by
// events, so that a layer's activations travel to the host (and back) while the next layer
// computes. side_copy: the copy stream waits for an event recorded on the compute stream (the
// copy starts after everything queued so far), copies, and records the tag's event;
// side_wait: the compute stream waits for that event.
#include "cuda_ops.h"
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    cudaStream_t copies;                   // the copy stream (created on first use)
    cudaEvent_t queued;                    // recorded on the compute stream before each copy
    cudaEvent_t done[BACKEND_SIDE_TAGS];   // the last copy of each tag
} offload_state;

static offload_state *offload_of(backend *be) {
    cuda_state *s = cuda_state_of(be);
    if (s->offload) return (offload_state *)s->offload;
    offload_state *o = (offload_state *)calloc(1, sizeof *o);
    if (!o) {
        fprintf(stderr, "quarry: error: out of host memory for the offload copy stream\n");
        exit(1);
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&o->copies, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&o->queued, cudaEventDisableTiming));
    for (int i = 0; i < BACKEND_SIDE_TAGS; i++) CUDA_CHECK(cudaEventCreateWithFlags(&o->done[i], cudaEventDisableTiming));
    s->offload = o;
    return o;
}

static void *cu_host_alloc(backend *be, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 16, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear the sticky-free error so later calls work
        snprintf(be->error, sizeof be->error, "cudaHostAlloc of %zu bytes of pinned host memory failed: %s", bytes,
                 cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cu_host_free(backend *be, void *p) {
    if (!p) return;
    cuda_offload_synchronize(be);   // no copy may still read or write it
    CUDA_CHECK(cudaFreeHost(p));
}

static void cu_side_copy(backend *be, void *dst, const void *src, size_t bytes, int to_host, int tag) {
    offload_state *o = offload_of(be);
    if (tag < 0 || tag >= BACKEND_SIDE_TAGS) {
        fprintf(stderr, "quarry: internal error: side copy tag %d outside [0, %d)\n", tag, (int)BACKEND_SIDE_TAGS);
        exit(1);
    }
    CUDA_CHECK(cudaEventRecord(o->queued, cuda_state_of(be)->stream));
    CUDA_CHECK(cudaStreamWaitEvent(o->copies, o->queued, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice, o->copies));
    CUDA_CHECK(cudaEventRecord(o->done[tag], o->copies));
}

static void cu_side_wait(backend *be, int tag) {
    cuda_state *s = cuda_state_of(be);
    if (!s->offload || tag < 0 || tag >= BACKEND_SIDE_TAGS) return;   // no copy yet: nothing to wait for
    CUDA_CHECK(cudaStreamWaitEvent(s->stream, ((offload_state *)s->offload)->done[tag], 0));
}

void cuda_offload_synchronize(backend *be) {
    offload_state *o = (offload_state *)cuda_state_of(be)->offload;
    if (o) CUDA_CHECK(cudaStreamSynchronize(o->copies));
}

void cuda_offload_destroy(backend *be) {
    cuda_state *s = cuda_state_of(be);
    offload_state *o = (offload_state *)s->offload;
    if (!o) return;
    CUDA_CHECK(cudaStreamSynchronize(o->copies));
    for (int i = 0; i < BACKEND_SIDE_TAGS; i++) CUDA_CHECK(cudaEventDestroy(o->done[i]));
    CUDA_CHECK(cudaEventDestroy(o->queued));
    CUDA_CHECK(cudaStreamDestroy(o->copies));
    free(o);
    s->offload = NULL;
}

void cuda_offload_install(backend *be) {
    be->host_alloc = cu_host_alloc;
    be->host_free = cu_host_free;
    be->side_copy = cu_side_copy;
    be->side_wait = cu_side_wait;
}
