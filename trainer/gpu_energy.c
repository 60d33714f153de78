// trainer/gpu_energy.c — see gpu_energy.h.
#include "gpu_energy.h"
#include "dist.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

// NVML's C interface as nvml.h declares it: nvmlReturn_t is an int enum, NVML_SUCCESS 0;
// nvmlDevice_t an opaque pointer. The _v2 entry points are the ones current drivers export.
typedef int (*nvml_init_fn)(void);
typedef int (*nvml_shutdown_fn)(void);
typedef int (*nvml_by_bus_fn)(const char *bus_id, void **device);
typedef int (*nvml_energy_fn)(void *device, unsigned long long *mj);
typedef const char *(*nvml_error_fn)(int rc);

static const char *nvml_why(void *lib, int rc) {
    nvml_error_fn str = (nvml_error_fn)dlsym(lib, "nvmlErrorString");
    const char *s = str ? str(rc) : NULL;
    return s ? s : "unknown NVML error";
}

void gpu_energy_close(gpu_energy *e) {
    if (e->shutdown) e->shutdown();
    if (e->lib) dlclose(e->lib);
    memset(e, 0, sizeof *e);
}

int gpu_energy_start(gpu_energy *e, const char *library, const char *pci_bus_id, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    if (!library) library = "libnvidia-ml.so.1";
    e->lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!e->lib) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load %s (%s)", library, why ? why : "not found");
        return -1;
    }
    // Function pointers from dlsym: POSIX guarantees the conversion.
    nvml_init_fn init = (nvml_init_fn)dlsym(e->lib, "nvmlInit_v2");
    nvml_by_bus_fn by_bus = (nvml_by_bus_fn)dlsym(e->lib, "nvmlDeviceGetHandleByPciBusId_v2");
    e->read = (nvml_energy_fn)dlsym(e->lib, "nvmlDeviceGetTotalEnergyConsumption");
    nvml_shutdown_fn shutdown = (nvml_shutdown_fn)dlsym(e->lib, "nvmlShutdown");
    if (!init || !by_bus || !e->read || !shutdown) {
        snprintf(err, errlen, "%s lacks nvmlInit_v2, nvmlDeviceGetHandleByPciBusId_v2, "
                 "nvmlDeviceGetTotalEnergyConsumption or nvmlShutdown (driver too old)", library);
        gpu_energy_close(e);
        return -1;
    }
    int rc = init();
    if (rc) {
        snprintf(err, errlen, "nvmlInit: %s", nvml_why(e->lib, rc));
        gpu_energy_close(e);
        return -1;
    }
    e->shutdown = shutdown;
    rc = by_bus(pci_bus_id, &e->device);
    if (!rc) rc = e->read(e->device, &e->start_mj);
    if (rc) {
        snprintf(err, errlen, "GPU %s: %s", pci_bus_id, nvml_why(e->lib, rc));
        gpu_energy_close(e);
        return -1;
    }
    return 0;
}

int gpu_energy_stop(gpu_energy *e, double *joules, char *err, size_t errlen) {
    unsigned long long now = 0;
    int rc = e->read(e->device, &now);
    if (rc) snprintf(err, errlen, "reading the energy counter: %s", nvml_why(e->lib, rc));
    else if (now < e->start_mj) snprintf(err, errlen, "the energy counter went back (driver reloaded?)");
    else *joules = (double)(now - e->start_mj) / 1000.0;
    gpu_energy_close(e);
    return rc || now < e->start_mj ? -1 : 0;
}

int gpu_energy_total(gpu_energy *e, int started, char *why, size_t whylen, dist *d, double *joules, int *any_gpu) {
    double j = 0;
    int failed = !started && why[0];
    if (started && gpu_energy_stop(e, &j, why, whylen)) failed = 1;
    // {joules, ranks that could not measure, ranks with a GPU}
    int rank = dist_rank(d);
    double v[3] = {failed ? 0 : j, failed, started || failed};
    if (dist_all_reduce_host(d, v, 3)) return -1;
    *any_gpu = v[2] > 0;
    *joules = v[1] > 0 || !*any_gpu ? -1 : v[0];
    if (v[1] > 0 && !failed && rank == 0)
        snprintf(why, whylen, "%.0f rank%s could not read the GPU energy counter", v[1], v[1] > 1 ? "s" : "");
    else if (v[1] > 1 && failed && rank == 0) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, " (and %.0f other rank%s)", v[1] - 1, v[1] > 2 ? "s" : "");
    }
    return 0;
}
