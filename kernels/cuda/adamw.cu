// kernels/cuda/adamw.cu — AdamW on f32 master weights and moments, refreshing the bf16 copy the
// forward reads.  Written as torch.optim.AdamW's single-tensor path (and kernels/cpu) does it:
//   param *= 1 − lr·wd;  m = lerp(m, g, 1 − β1);  v = β2 v + (1 − β2) g²
//   param += −(lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// with the scalars computed in double on the host and the element math in f32.
#include "common.cuh"
#include <math.h>

__global__ void adamw_kernel(float *param, bf16 *param_act, const float *grad, float *m, float *v, size_t n,
                             float decay, float w1, float b2, float w2, float step_size, float bc2_sqrt, float eps,
                             float grad_scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float p = param[i] * decay;
        float mi = m[i] + w1 * (g - m[i]);
        float vi = v[i] * b2 + w2 * g * g;
        float denom = __fsqrt_rn(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p = p + (-step_size) * mi / denom;
        param[i] = p;
        if (param_act) param_act[i] = __float2bfloat16_rn(p);
    }
}

static void cu_adamw_update(backend *be, float *param, void *param_act, const float *grad, float *m, float *v,
                            size_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int step,
                            float grad_scale) {
    if (!n) return;
    double bc1 = 1.0 - pow((double)beta1, step);
    double bc2 = 1.0 - pow((double)beta2, step);
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float w1 = (float)(1.0 - (double)beta1);
    float w2 = (float)(1.0 - (double)beta2);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    if ((void *)param_act == (void *)param) param_act = NULL;  // only an f32 backend shares storage
    adamw_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(
        param, (bf16 *)param_act, grad, m, v, n, decay, w1, beta2, w2, step_size, bc2_sqrt, eps, grad_scale);
    CUDA_CHECK_LAST();
}

void cuda_adamw_install(backend *be) { be->adamw_update = cu_adamw_update; }
