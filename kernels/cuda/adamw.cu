// kernels/cuda/adamw.cu — AdamW (decoupled weight decay, torch.optim.AdamW) on f32 master
// weights and moments, refreshing the bf16 copy the forward reads.
#include "common.cuh"
#include <math.h>

__global__ void adamw_kernel(float *param, bf16 *param_act, const float *grad, float *m, float *v, size_t n,
                             float lr, float b1, float b2, float eps, float wd, float bc1, float bc2,
                             float grad_scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i];
        p -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p);
        param[i] = p;
        if (param_act) param_act[i] = __float2bfloat16_rn(p);
    }
}

static void cu_adamw_update(backend *be, float *param, void *param_act, const float *grad, float *m, float *v,
                            size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int step,
                            float grad_scale) {
    if (!n) return;
    // Bias corrections on the host in double: 1 − β^t loses digits in float for large t.
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    if ((void *)param_act == (void *)param) param_act = NULL;  // only an f32 backend shares storage
    adamw_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(
        param, (bf16 *)param_act, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale);
    CUDA_CHECK_LAST();
}

void cuda_adamw_install(backend *be) { be->adamw_update = cu_adamw_update; }
