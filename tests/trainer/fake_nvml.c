// A stand-in for the driver's libnvidia-ml.so.1 with a scripted energy counter, for the tests
// of trainer/gpu_energy on machines without a GPU. Bus "0000:0K:00.0" (K = 1..9) is GPU K: its
// counter reads K·10⁹ + 1000 mJ first and grows by (K + 1) · 2500.5 J at every later read.
// Bus "0000:ff:00.0" is a GPU without a counter (NOT_SUPPORTED); any other bus is NOT_FOUND.
#include <stdio.h>
#include <string.h>

enum { NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6 };

typedef struct { int k; unsigned long long reads; } fake_gpu;
static fake_gpu gpus[10];
static int inits;

int nvmlInit_v2(void) { __atomic_add_fetch(&inits, 1, __ATOMIC_SEQ_CST); return NVML_SUCCESS; }
int nvmlShutdown(void) { return __atomic_sub_fetch(&inits, 1, __ATOMIC_SEQ_CST) < 0 ? NVML_ERROR_UNINITIALIZED : NVML_SUCCESS; }

int nvmlDeviceGetHandleByPciBusId_v2(const char *bus, void **device) {
    if (__atomic_load_n(&inits, __ATOMIC_SEQ_CST) <= 0) return NVML_ERROR_UNINITIALIZED;
    unsigned k;
    char tail[8];
    if (sscanf(bus, "0000:%2x:00.%1s", &k, tail) != 2 || strcmp(tail, "0")) return NVML_ERROR_NOT_FOUND;
    if (k == 0xff) { *device = &gpus[0]; return NVML_SUCCESS; }
    if (k < 1 || k > 9) return NVML_ERROR_NOT_FOUND;
    gpus[k].k = (int)k;
    *device = &gpus[k];
    return NVML_SUCCESS;
}

int nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *mj) {
    fake_gpu *g = device;
    if (g->k == 0) return NVML_ERROR_NOT_SUPPORTED;
    unsigned long long n = __atomic_fetch_add(&g->reads, 1, __ATOMIC_SEQ_CST);
    *mj = (unsigned long long)g->k * 1000000000ull + 1000 + n * (unsigned long long)(g->k + 1) * 2500500ull;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(int rc) {
    return rc == NVML_ERROR_NOT_SUPPORTED ? "Not Supported" : rc == NVML_ERROR_NOT_FOUND ? "Not Found" : "Unknown Error";
}
