// trainer/gpu_energy.h — the energy a training run's GPUs used, from their own counters: NVML's
// nvmlDeviceGetTotalEnergyConsumption (millijoules since the driver loaded; Volta and newer),
// read when training starts and when it ends, summed over the ranks.
//
// libnvidia-ml.so.1 comes with the NVIDIA driver, not with the CUDA toolkit: it is opened with
// dlopen when a run starts, so the binary needs no driver to load and machines without one
// (or with a GPU that has no counter) simply measure nothing; `quarry cost` then falls back to
// --gpu-watts. The GPU is found by its PCI bus id (backend.pci_bus_id), the one name CUDA and
// NVML share (their device indices differ under CUDA_VISIBLE_DEVICES).
#pragma once
#include <stddef.h>

struct dist;

typedef struct {
    void *lib;                    // dlopen handle
    void *device;                 // nvmlDevice_t
    unsigned long long start_mj;  // the counter when gpu_energy_start read it
    int (*read)(void *device, unsigned long long *mj);
    int (*shutdown)(void);
} gpu_energy;

// Opens NVML from library (NULL: "libnvidia-ml.so.1", found by the dynamic loader), finds the GPU
// at pci_bus_id ("0000:65:00.0") and reads its counter. 0, or -1 with why nothing is measured
// (no library, no such GPU, no counter...); e is then closed.
int gpu_energy_start(gpu_energy *e, const char *library, const char *pci_bus_id, char *err, size_t errlen);
// Joules since gpu_energy_start, then closes e. -1 with why.
int gpu_energy_stop(gpu_energy *e, double *joules, char *err, size_t errlen);
void gpu_energy_close(gpu_energy *e);

// Every rank calls it (d NULL: one rank) with its own meter (started: gpu_energy_start returned 0;
// stopped here) and why (its message when it did not start; "" when it has no GPU). *joules: the
// sum over the ranks, or -1 when a rank with a GPU could not measure; then (rank 0) why says
// which. *any_gpu: whether some rank had a GPU. -1 only when the ranks could not agree.
int gpu_energy_total(gpu_energy *e, int started, char *why, size_t whylen, struct dist *d, double *joules, int *any_gpu);
