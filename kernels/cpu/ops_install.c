// kernels/cpu/ops_install.c — wires the CPU op files into the table.
#include "cpu_ops.h"

void cpu_ops_install(backend *be) {
    (void)be;  // filled as ops land (see backend.h for the table)
}
