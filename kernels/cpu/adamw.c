// kernels/cpu/adamw.c — AdamW step, written as torch.optim.AdamW's single-tensor path does it:
//   param *= 1 − lr·wd;  m = lerp(m, g, 1 − β1);  v = β2 v + (1 − β2) g²
//   param += −(lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// with the scalars computed in double (Python floats) and the element math in f32.
#include "cpu_ops.h"
#include <math.h>
#include <string.h>

void cpu_adamw_update(backend *be, float *param, void *param_act, const float *grad, float *m,
                      float *v, size_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, int step, float grad_scale) {
    (void)be;
    double bc1 = 1.0 - pow((double)beta1, step);
    double bc2 = 1.0 - pow((double)beta2, step);
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float w1 = (float)(1.0 - (double)beta1);
    float b2 = beta2, w2 = (float)(1.0 - (double)beta2);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float p = param[i] * decay;
        float mi = m[i] + w1 * (g - m[i]);
        float vi = v[i] * b2 + w2 * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + (-step_size) * mi / denom;
    }
    if (param_act && param_act != (void *)param) memcpy(param_act, param, n * sizeof(float));
}
