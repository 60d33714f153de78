// kernels/cuda/ops_install.cu — wires the CUDA op files into the table.
#include "cuda_ops.h"

extern "C" void cuda_ops_install(backend *be) {
    (void)be;  // filled as ops land (see backend.h for the table)
}
