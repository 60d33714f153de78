// trainer/dist_nccl.cu — the NCCL implementation of trainer/dist.h (CUDA builds only).
// The communicator is non-blocking: every call is followed by polling ncclCommGetAsyncError and
// the collective's stream, so a dead or stuck rank ends in an error after --dist-timeout (the
// watchdog aborts the communicator) instead of a hang. Collectives run on the communicator's own
// stream. The blocking ones start after the backend's queue has drained (be->synchronize). The
// started ones (dist_*_start) are ordered by events instead: the communicator's stream waits for
// an event recorded on the backend's stream, the collective's ticket is an event recorded after
// it, and dist_wait blocks the host until that event (the device still runs the work queued
// before), so a layer's gradient travels while the backward of the layers below it runs.
#include "dist_impl.h"
#include "rendezvous.h"
#include "../kernels/cuda/check.h"
#include "../kernels/cuda/cuda_ops.h"
#include "../kernels/cuda_libs.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    void *scratch;            // device staging for host values (64 doubles) and the barrier
    size_t scratch_bytes;
    int aborted;
    cudaEvent_t queued;       // recorded on the backend's stream before each started collective
    cudaEvent_t *done;        // done[t]: recorded on the communicator's stream after ticket t
    int started, cap;         // tickets handed out since the last dist_finish; events created
} nccl_impl;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static nccl_impl *impl(dist *d) { return (nccl_impl *)d->impl; }

static int fail(dist *d, const char *what, const char *why) {
    nccl_impl *n = impl(d);
    snprintf(d->error, sizeof d->error, "rank %d: NCCL %s: %s; set NCCL_DEBUG=INFO for details, and check that every "
             "rank is alive and the network between them", d->rank, what, why);
    if (!n->aborted) {
        ncclCommAbort(n->comm);
        n->aborted = 1;
    }
    return -1;
}

enum { UNTIL_ENQUEUED, UNTIL_DONE };

// Polls the communicator's asynchronous error until NCCL has enqueued the call (a non-blocking
// communicator may still be launching it after returning ncclInProgress: an event recorded
// next must come after it) or, UNTIL_DONE, until it has finished on the stream (with ev: until
// the event has happened). Past --dist-timeout the communicator is aborted, which ends its
// kernels, so nothing waits forever.
static int poll_nccl(dist *d, ncclResult_t issued, const char *what, int until, cudaEvent_t ev) {
    nccl_impl *n = impl(d);
    if (issued != ncclSuccess && issued != ncclInProgress) return fail(d, what, ncclGetErrorString(issued));
    double deadline = now_s() + d->timeout_s;
    for (;;) {
        ncclResult_t st = ncclSuccess;
        ncclResult_t q = ncclCommGetAsyncError(n->comm, &st);
        if (q != ncclSuccess) return fail(d, what, ncclGetErrorString(q));
        if (st != ncclSuccess && st != ncclInProgress) return fail(d, what, ncclGetErrorString(st));
        if (st == ncclSuccess) {
            if (until == UNTIL_ENQUEUED) return 0;
            cudaError_t c = ev ? cudaEventQuery(ev) : cudaStreamQuery(n->stream);
            if (c == cudaSuccess) return 0;
            if (c != cudaErrorNotReady) return fail(d, what, cudaGetErrorString(c));
        }
        if (now_s() > deadline) {
            char why[160];
            snprintf(why, sizeof why, "not %s after %.0f s (--dist-timeout): a rank is stuck or dead",
                     until == UNTIL_ENQUEUED ? "enqueued" : "finished", d->timeout_s);
            return fail(d, what, why);
        }
        struct timespec t = {0, 50 * 1000};
        nanosleep(&t, NULL);
    }
}

static int wait_done(dist *d, ncclResult_t issued, const char *what) { return poll_nccl(d, issued, what, UNTIL_DONE, NULL); }

static int ready(dist *d) {
    if (impl(d)->aborted) {
        if (!d->error[0]) snprintf(d->error, sizeof d->error, "rank %d: the NCCL communicator was aborted", d->rank);
        return -1;
    }
    d->be->synchronize(d->be);   // the inputs are written
    return 0;
}

static ncclResult_t issue_all_reduce(dist *d, float *buf, size_t n) {
    return ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, impl(d)->comm, impl(d)->stream);
}

// Shards as dist_shard: world equal parts of q elements (NCCL's in-place reduce-scatter and
// all-gather), the remainder going to the last rank by a reduce / broadcast in the same group.
static ncclResult_t issue_reduce_scatter(dist *d, float *buf, size_t n) {
    nccl_impl *x = impl(d);
    size_t q = n / (size_t)d->world, tail = n - q * (size_t)d->world;
    ncclResult_t r = ncclGroupStart();
    if (r == ncclSuccess && q) r = ncclReduceScatter(buf, buf + q * (size_t)d->rank, q, ncclFloat, ncclSum, x->comm, x->stream);
    if (r == ncclSuccess && tail) {
        float *t = buf + q * (size_t)d->world;
        r = ncclReduce(t, t, tail, ncclFloat, ncclSum, d->world - 1, x->comm, x->stream);
    }
    ncclResult_t e = ncclGroupEnd();
    return r != ncclSuccess ? r : e;
}

static int n_all_reduce(dist *d, float *buf, size_t n) {
    if (ready(d)) return -1;
    return wait_done(d, issue_all_reduce(d, buf, n), "all-reduce");
}

static int n_reduce_scatter(dist *d, float *buf, size_t n) {
    if (ready(d)) return -1;
    return wait_done(d, issue_reduce_scatter(d, buf, n), "reduce-scatter");
}

// A started collective: after the backend's queued work, its ticket an event after it.
static int start(dist *d, ncclResult_t (*issue)(dist *, float *, size_t), float *buf, size_t n, const char *what) {
    nccl_impl *x = impl(d);
    if (x->aborted) return ready(d);
    if (x->started == x->cap) {
        int cap = x->cap ? 2 * x->cap : 64;
        cudaEvent_t *ev = (cudaEvent_t *)realloc(x->done, sizeof *ev * (size_t)cap);
        if (!ev) return fail(d, what, "out of host memory for events");
        x->done = ev;
        for (; x->cap < cap; x->cap++)
            if (cudaEventCreateWithFlags(&x->done[x->cap], cudaEventDisableTiming) != cudaSuccess)
                return fail(d, what, "cannot create a CUDA event");
    }
    cudaStream_t compute = cuda_state_of(d->be)->stream;
    if (cudaEventRecord(x->queued, compute) != cudaSuccess || cudaStreamWaitEvent(x->stream, x->queued, 0) != cudaSuccess)
        return fail(d, what, "cannot order the communicator's stream after the backward");
    if (poll_nccl(d, issue(d, buf, n), what, UNTIL_ENQUEUED, NULL)) return -1;
    if (cudaEventRecord(x->done[x->started], x->stream) != cudaSuccess) return fail(d, what, "cannot record a CUDA event");
    return x->started++;
}

static int n_all_reduce_start(dist *d, float *buf, size_t n) { return start(d, issue_all_reduce, buf, n, "all-reduce"); }
static int n_reduce_scatter_start(dist *d, float *buf, size_t n) {
    return start(d, issue_reduce_scatter, buf, n, "reduce-scatter");
}

// The host waits (the device goes on with the work queued before): were the backend's stream
// made to wait for the event instead, a dead peer would hang its next synchronize.
static int n_wait(dist *d, int ticket) {
    nccl_impl *x = impl(d);
    if (x->aborted) return ready(d);
    if (ticket < 0 || ticket >= x->started) return fail(d, "wait", "no such collective started");
    return poll_nccl(d, ncclSuccess, "gradient reduction", UNTIL_DONE, x->done[ticket]);
}

static int n_finish(dist *d) {
    nccl_impl *x = impl(d);
    if (x->aborted) return ready(d);
    int rc = x->started ? wait_done(d, ncclSuccess, "gradient reduction") : 0;
    x->started = 0;
    return rc;
}

static int n_all_gather(dist *d, void *buf, size_t n, size_t es) {
    if (ready(d)) return -1;
    nccl_impl *x = impl(d);
    size_t q = n / (size_t)d->world * es, tail = n * es - q * (size_t)d->world;
    char *b = (char *)buf;
    ncclResult_t r = ncclGroupStart();
    if (r == ncclSuccess && q) r = ncclAllGather(b + q * (size_t)d->rank, b, q, ncclUint8, x->comm, x->stream);
    if (r == ncclSuccess && tail) {
        char *t = b + q * (size_t)d->world;
        r = ncclBroadcast(t, t, tail, ncclUint8, d->world - 1, x->comm, x->stream);
    }
    ncclResult_t e = ncclGroupEnd();
    return wait_done(d, r != ncclSuccess ? r : e, "all-gather");
}

static int n_broadcast(dist *d, void *buf, size_t bytes, int root) {
    if (ready(d)) return -1;
    return wait_done(d, ncclBroadcast(buf, buf, bytes, ncclUint8, root, impl(d)->comm, impl(d)->stream), "broadcast");
}

static int n_barrier(dist *d) {
    if (ready(d)) return -1;
    nccl_impl *x = impl(d);
    return wait_done(d, ncclAllReduce(x->scratch, x->scratch, 1, ncclFloat, ncclSum, x->comm, x->stream), "barrier");
}

static int stage(dist *d, size_t bytes) {
    nccl_impl *x = impl(d);
    if (bytes <= x->scratch_bytes) return 0;
    if (x->scratch) cudaFree(x->scratch);
    x->scratch = NULL;
    x->scratch_bytes = 0;
    if (cudaMalloc(&x->scratch, bytes) != cudaSuccess) return fail(d, "staging", "out of GPU memory");
    x->scratch_bytes = bytes;
    return 0;
}

static int n_all_reduce_host(dist *d, double *v, int n) {
    size_t bytes = sizeof(double) * (size_t)n;
    if (ready(d) || stage(d, bytes)) return -1;
    nccl_impl *x = impl(d);
    if (cudaMemcpy(x->scratch, v, bytes, cudaMemcpyHostToDevice) != cudaSuccess) return fail(d, "staging", "copy failed");
    if (wait_done(d, ncclAllReduce(x->scratch, x->scratch, (size_t)n, ncclDouble, ncclSum, x->comm, x->stream), "all-reduce"))
        return -1;
    if (cudaMemcpy(v, x->scratch, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) return fail(d, "staging", "copy failed");
    return 0;
}

static int n_broadcast_host(dist *d, void *buf, size_t bytes, int root) {
    if (ready(d) || stage(d, bytes)) return -1;
    nccl_impl *x = impl(d);
    if (cudaMemcpy(x->scratch, buf, bytes, cudaMemcpyHostToDevice) != cudaSuccess) return fail(d, "staging", "copy failed");
    if (wait_done(d, ncclBroadcast(x->scratch, x->scratch, bytes, ncclUint8, root, x->comm, x->stream), "broadcast"))
        return -1;
    if (cudaMemcpy(buf, x->scratch, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) return fail(d, "staging", "copy failed");
    return 0;
}

static void n_abort(dist *d, const char *why) {
    nccl_impl *x = impl(d);
    if (!x->aborted) {
        snprintf(d->error, sizeof d->error, "rank %d failed: %s", d->rank, why);
        ncclCommAbort(x->comm);   // the peers' collectives fail or time out
        x->aborted = 1;
    }
}

static void n_close(dist *d) {
    nccl_impl *x = impl(d);
    if (!x->aborted) {
        ncclResult_t st = ncclCommFinalize(x->comm);
        if (wait_done(d, st, "finalize") == 0) ncclCommDestroy(x->comm);
    }
    if (x->scratch) cudaFree(x->scratch);
    for (int i = 0; i < x->cap; i++) cudaEventDestroy(x->done[i]);
    free(x->done);
    cudaEventDestroy(x->queued);
    cudaStreamDestroy(x->stream);
    free(x);
    free(d);
}

static const dist_ops nccl_ops = {
    "nccl", n_all_reduce, n_reduce_scatter, n_all_gather, n_broadcast, n_barrier,
    n_all_reduce_start, n_reduce_scatter_start, n_wait, n_finish,
    n_all_reduce_host, n_broadcast_host, n_abort, n_close};

extern "C" dist *dist_open_nccl(const dist_env *e, backend *be, double timeout_s, char *err, size_t errlen) {
    if (be->device_index < 0) {
        snprintf(err, errlen, "NCCL needs a GPU backend; with --device cpu the ranks talk over TCP");
        return NULL;
    }
    if (!cuda_libs_load_nccl(err, errlen)) return NULL;   // dlopen (kernels/cuda_libs.h)
    CUDA_CHECK(cudaSetDevice(be->device_index));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (e->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (e->world > 1) {
        // Rank 0 hands its id to everyone over TCP at MASTER_ADDR:MASTER_PORT.
        rendezvous *rv = rendezvous_open(e->master_addr, e->master_port, e->rank, e->world, timeout_s, err, errlen);
        if (!rv) return NULL;
        int rc = 0;
        if (e->rank == 0)
            for (int p = 1; p < e->world && !rc; p++) rc = rendezvous_send(rv, p, &id, sizeof id, err, errlen);
        else
            rc = rendezvous_recv(rv, 0, &id, sizeof id, err, errlen);
        rendezvous_close(rv);
        if (rc) return NULL;
    }
    dist *d = (dist *)calloc(1, sizeof *d);
    nccl_impl *x = (nccl_impl *)calloc(1, sizeof *x);
    if (!d || !x) { free(d); free(x); snprintf(err, errlen, "out of memory"); return NULL; }
    d->ops = &nccl_ops;
    d->rank = e->rank;
    d->world = e->world;
    d->be = be;
    d->timeout_s = timeout_s;
    d->impl = x;
    CUDA_CHECK(cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&x->queued, cudaEventDisableTiming));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&x->comm, e->world, id, e->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        snprintf(err, errlen, "rank %d: NCCL communicator setup failed: %s (NCCL_DEBUG=INFO tells more)", e->rank,
                 ncclGetErrorString(r));
        cudaEventDestroy(x->queued);
        cudaStreamDestroy(x->stream);
        free(x);
        free(d);
        return NULL;
    }
    double deadline = now_s() + timeout_s;
    for (;;) {
        ncclResult_t st = ncclInProgress;
        ncclCommGetAsyncError(x->comm, &st);
        if (st == ncclSuccess) break;
        if (st != ncclInProgress || now_s() > deadline) {
            snprintf(err, errlen, "rank %d: NCCL communicator setup %s: %s", e->rank,
                     st == ncclInProgress ? "timed out (--dist-timeout)" : "failed", ncclGetErrorString(st));
            ncclCommAbort(x->comm);
            cudaEventDestroy(x->queued);
            cudaStreamDestroy(x->stream);
            free(x);
            free(d);
            return NULL;
        }
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (stage(d, 64 * sizeof(double))) {
        snprintf(err, errlen, "%s", d->error);
        n_close(d);
        return NULL;
    }
    cudaMemset(x->scratch, 0, 64 * sizeof(double));
    return d;
}
