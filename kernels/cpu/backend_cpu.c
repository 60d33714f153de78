// kernels/cpu/backend_cpu.c — the CPU backend: host memory and the reference ops (fp32, OpenMP).
#include "../backend.h"
#include "cpu_ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void *cpu_alloc(backend *be, size_t bytes) {
    // 64-byte alignment keeps vector loads aligned in every op.
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        snprintf(be->error, sizeof be->error, "out of host memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

static void cpu_free(backend *be, void *p) { (void)be; free(p); }
static void cpu_copy_to_device(backend *be, void *dst, const void *src, size_t n) { (void)be; memcpy(dst, src, n); }
static void cpu_copy_to_host(backend *be, void *dst, const void *src, size_t n) { (void)be; memcpy(dst, src, n); }
static void cpu_copy(backend *be, void *dst, const void *src, size_t n) { (void)be; memmove(dst, src, n); }
static void cpu_memset_zero(backend *be, void *p, size_t n) { (void)be; memset(p, 0, n); }
static void cpu_synchronize(backend *be) { (void)be; }

static void cpu_memory_info(backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    *total_bytes = pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
    *free_bytes = avail > 0 && size > 0 ? (size_t)avail * (size_t)size : 0;
}

static void cpu_destroy(backend *be) { free(be); }

backend *backend_cpu(int threads) {
    backend *be = calloc(1, sizeof *be);
    if (!be) return NULL;
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    be->name = "cpu";
    be->act_dtype = DTYPE_F32;
    be->device_index = -1;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_to_device = cpu_copy_to_device;
    be->copy_to_host = cpu_copy_to_host;
    be->copy = cpu_copy;
    be->memset_zero = cpu_memset_zero;
    be->synchronize = cpu_synchronize;
    be->memory_info = cpu_memory_info;
    be->destroy = cpu_destroy;
    cpu_ops_install(be);
    return be;
}
