// kernels/cuda/attention.h — the part of attention.cu's backward that the kernel lab's versions
// (dev/cuda/attention_backward.cu) run as it is, so that they time the same first pass.
#pragma once
#include "cuda_ops.h"

// Dsum[b, h, i] = Σ_d dout · out over one head's row (f32, (B, H, Tq)): the D of the softmax
// backward, dS = P ∘ (dP − D).  dout, out: bf16 (B·Tq, H·hd).  On the backend's stream.
void cuda_attention_dsum(backend *be, float *Dsum, const void *dout, const void *out, int B, int Tq, int H, int hd);
