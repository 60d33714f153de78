// kernels/cpu/ops_install.c — wires the CPU op files into the table.
#include "cpu_ops.h"

void cpu_ops_install(backend *be) {
    be->host_alloc = cpu_host_alloc;
    be->host_free = cpu_host_free;
    be->side_copy = cpu_side_copy;
    be->side_wait = cpu_side_wait;
    be->cast_f32_to_act = cpu_cast_f32_to_act;
    be->cast_act_to_f32 = cpu_cast_act_to_f32;
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->rmsnorm_forward = cpu_rmsnorm_forward;
    be->rmsnorm_backward = cpu_rmsnorm_backward;
    be->add_rmsnorm_forward = cpu_add_rmsnorm_forward;
    be->linear_forward = cpu_linear_forward;
    be->linear_backward = cpu_linear_backward;
    be->lora_group_forward = cpu_lora_group_forward;
    be->lora_group_backward = cpu_lora_group_backward;
    be->rope_forward = cpu_rope_forward;
    be->rope_backward = cpu_rope_backward;
    be->rope_qk_forward = cpu_rope_qk_forward;
    be->rope_qk_backward = cpu_rope_qk_backward;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->swiglu_forward = cpu_swiglu_forward;
    be->swiglu_backward = cpu_swiglu_backward;
    be->swiglu_clamped_forward = cpu_swiglu_clamped_forward;
    be->swiglu_clamped_backward = cpu_swiglu_clamped_backward;
    be->add = cpu_add;
    be->add_f32 = cpu_add_f32;
    be->dropout_forward = cpu_dropout_forward;
    be->dropout_backward = cpu_dropout_backward;
    be->lm_head_loss = cpu_lm_head_loss;
    be->adamw_update = cpu_adamw_update;
    be->sum_squares = cpu_sum_squares;
    be->scale_f32 = cpu_scale_f32;
    be->has_nonfinite = cpu_has_nonfinite;
    be->moe_router_forward = cpu_moe_router_forward;
    be->moe_router_backward = cpu_moe_router_backward;
    be->moe_router_stats = cpu_moe_router_stats;
    be->moe_permute = cpu_moe_permute;
    be->moe_permute_backward = cpu_moe_permute_backward;
    be->moe_unpermute = cpu_moe_unpermute;
    be->moe_unpermute_backward = cpu_moe_unpermute_backward;
    be->grouped_linear_forward = cpu_grouped_linear_forward;
    be->grouped_linear_backward = cpu_grouped_linear_backward;
    be->nf4_dequantize = cpu_nf4_dequantize;
    be->nf4_linear_forward = cpu_nf4_linear_forward;
    be->nf4_linear_backward = cpu_nf4_linear_backward;
    be->mxfp4_dequantize = cpu_mxfp4_dequantize;
}
