// kernels/cpu/cpu_ops.h — the CPU implementations of the op table, one file per op.
#pragma once
#include "../backend.h"

// Fills every op pointer of be with its CPU implementation.
void cpu_ops_install(backend *be);
