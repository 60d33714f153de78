// kernels/cuda/ops_install.cu — wires the CUDA op files into the table.
#include "cuda_ops.h"

extern "C" void cuda_ops_install(backend *be) {
    cuda_cast_install(be);
    cuda_embedding_install(be);
    cuda_rmsnorm_install(be);
    cuda_add_rmsnorm_install(be);
    cuda_linear_install(be);
    cuda_grouped_linear_install(be);
    cuda_lora_install(be);
    cuda_rope_install(be);
    cuda_rope_qk_install(be);
    cuda_attention_install(be);
    cuda_swiglu_install(be);
    cuda_swiglu_clamped_install(be);
    cuda_add_install(be);
    cuda_dropout_install(be);
    cuda_lm_head_loss_install(be);
    cuda_adamw_install(be);
    cuda_reduce_install(be);
    cuda_moe_install(be);
    cuda_nf4_install(be);
    cuda_mxfp4_install(be);
    cuda_offload_install(be);
}
