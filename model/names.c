// model/names.c — see names.h.
#include "names.h"
#include "mxfp4_load.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const layer_suffix[] = {
    [TENSOR_ATTN_NORM] = "input_layernorm.weight",
    [TENSOR_Q] = "self_attn.q_proj.weight",
    [TENSOR_Q_BIAS] = "self_attn.q_proj.bias",
    [TENSOR_K] = "self_attn.k_proj.weight",
    [TENSOR_K_BIAS] = "self_attn.k_proj.bias",
    [TENSOR_V] = "self_attn.v_proj.weight",
    [TENSOR_V_BIAS] = "self_attn.v_proj.bias",
    [TENSOR_O] = "self_attn.o_proj.weight",
    [TENSOR_O_BIAS] = "self_attn.o_proj.bias",
    [TENSOR_SINKS] = "self_attn.sinks",
    [TENSOR_ROUTER_BIAS] = "mlp.router.bias",
    [TENSOR_EXPERTS_GATE_UP] = "mlp.experts.gate_up_proj",
    [TENSOR_EXPERTS_GATE_UP_BIAS] = "mlp.experts.gate_up_proj_bias",
    [TENSOR_EXPERTS_DOWN] = "mlp.experts.down_proj",
    [TENSOR_EXPERTS_DOWN_BIAS] = "mlp.experts.down_proj_bias",
    [TENSOR_EXPERT_GATE_BIAS] = "mlp.experts.gate_bias",
    [TENSOR_EXPERT_UP_BIAS] = "mlp.experts.up_bias",
    [TENSOR_EXPERT_DOWN_BIAS] = "mlp.experts.down_bias",
    [TENSOR_Q_NORM] = "self_attn.q_norm.weight",
    [TENSOR_K_NORM] = "self_attn.k_norm.weight",
    [TENSOR_MLP_NORM] = "post_attention_layernorm.weight",
    [TENSOR_GATE] = "mlp.gate_proj.weight",
    [TENSOR_UP] = "mlp.up_proj.weight",
    [TENSOR_DOWN] = "mlp.down_proj.weight",
};

void model_tensor_name(tensor_role role, int layer, char *buf, size_t n) {
    switch (role) {
    case TENSOR_EMBED: snprintf(buf, n, "model.embed_tokens.weight"); break;
    case TENSOR_FINAL_NORM: snprintf(buf, n, "model.norm.weight"); break;
    case TENSOR_LM_HEAD: snprintf(buf, n, "lm_head.weight"); break;
    default: snprintf(buf, n, "model.layers.%d.%s", layer, layer_suffix[role]); break;
    }
}

void model_tensor_name_of(const model_config *cfg, tensor_role role, int layer, int expert, char *buf, size_t n) {
    int mixtral = cfg->arch == ARCH_MIXTRAL;
    const char *block = mixtral ? "block_sparse_moe" : "mlp";
    // gate, up, down: Mixtral's w1, w3, w2.
    const char *proj = role == TENSOR_EXPERT_GATE ? (mixtral ? "w1" : "gate_proj")
                       : role == TENSOR_EXPERT_UP ? (mixtral ? "w3" : "up_proj")
                                                  : (mixtral ? "w2" : "down_proj");
    if (role == TENSOR_ROUTER && cfg->arch == ARCH_GPT_OSS)
        snprintf(buf, n, "model.layers.%d.mlp.router.weight", layer);
    else if (role == TENSOR_ROUTER)
        snprintf(buf, n, "model.layers.%d.%s.gate.weight", layer, block);
    else if (role == TENSOR_EXPERT_GATE || role == TENSOR_EXPERT_UP || role == TENSOR_EXPERT_DOWN)
        snprintf(buf, n, "model.layers.%d.%s.experts.%d.%s.weight", layer, block, expert, proj);
    else
        model_tensor_name(role, layer, buf, n);
}

int model_tensor_count(const model_config *cfg) {
    int attn = 6 + (cfg->attention_bias ? 3 : 0) + (cfg->qk_norm ? 2 : 0) + cfg->o_bias + cfg->attention_sinks;
    int n = 1 + cfg->num_layers * attn + 1 + (cfg->tie_word_embeddings ? 0 : 1);
    int fused = cfg->arch == ARCH_GPT_OSS;   // router, its bias and the four fused expert tensors
    for (int l = 0; l < cfg->num_layers; l++)
        n += !model_config_layer_is_moe(cfg, l) ? 3 : fused ? 6 : 1 + 3 * cfg->n_experts;
    return n;
}

static void put_x(const model_config *cfg, model_tensor_info *t, tensor_role role, int layer, int expert, int ndim,
                  int64_t d0, int64_t d1, int64_t d2) {
    memset(t, 0, sizeof *t);
    model_tensor_name_of(cfg, role, layer, expert, t->name, sizeof t->name);
    t->role = role;
    t->layer = layer;
    t->expert = expert;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->shape[2] = ndim > 2 ? d2 : 0;
    int norm = role == TENSOR_ATTN_NORM || role == TENSOR_MLP_NORM || role == TENSOR_FINAL_NORM ||
               role == TENSOR_Q_NORM || role == TENSOR_K_NORM;
    t->init = norm ? TENSOR_INIT_ONES
              : (role == TENSOR_Q_BIAS || role == TENSOR_K_BIAS || role == TENSOR_V_BIAS || role == TENSOR_O_BIAS ||
                 role == TENSOR_EXPERTS_GATE_UP_BIAS || role == TENSOR_EXPERTS_DOWN_BIAS)
                  ? TENSOR_INIT_ZEROS
                  : TENSOR_INIT_NORMAL;
}

#define put(t, role, layer, ndim, d0, d1) put_x(cfg, t, role, layer, -1, ndim, d0, d1, 0)

int model_tensor_list(const model_config *cfg, model_tensor_info *out) {
    const int64_t C = cfg->hidden_size, V = cfg->vocab_size, F = cfg->intermediate_size;
    const int64_t q = (int64_t)cfg->num_heads * cfg->head_dim, kv = (int64_t)cfg->num_kv_heads * cfg->head_dim;
    int n = 0;
    put(&out[n++], TENSOR_EMBED, -1, 2, V, C);
    for (int l = 0; l < cfg->num_layers; l++) {
        put(&out[n++], TENSOR_ATTN_NORM, l, 1, C, 0);
        put(&out[n++], TENSOR_Q, l, 2, q, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_Q_BIAS, l, 1, q, 0);
        put(&out[n++], TENSOR_K, l, 2, kv, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_K_BIAS, l, 1, kv, 0);
        put(&out[n++], TENSOR_V, l, 2, kv, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_V_BIAS, l, 1, kv, 0);
        put(&out[n++], TENSOR_O, l, 2, C, q);
        if (cfg->o_bias) put(&out[n++], TENSOR_O_BIAS, l, 1, C, 0);
        if (cfg->attention_sinks) put(&out[n++], TENSOR_SINKS, l, 1, cfg->num_heads, 0);
        if (cfg->qk_norm) {
            put(&out[n++], TENSOR_Q_NORM, l, 1, cfg->head_dim, 0);
            put(&out[n++], TENSOR_K_NORM, l, 1, cfg->head_dim, 0);
        }
        put(&out[n++], TENSOR_MLP_NORM, l, 1, C, 0);
        if (model_config_layer_is_moe(cfg, l)) {
            const int64_t I = cfg->moe_intermediate_size, E = cfg->n_experts;
            put(&out[n++], TENSOR_ROUTER, l, 2, cfg->n_experts, C);
            if (cfg->arch == ARCH_GPT_OSS) {
                put(&out[n++], TENSOR_ROUTER_BIAS, l, 1, E, 0);
                put_x(cfg, &out[n++], TENSOR_EXPERTS_GATE_UP, l, -1, 3, E, C, 2 * I);
                put(&out[n++], TENSOR_EXPERTS_GATE_UP_BIAS, l, 2, E, 2 * I);
                put_x(cfg, &out[n++], TENSOR_EXPERTS_DOWN, l, -1, 3, E, I, C);
                put(&out[n++], TENSOR_EXPERTS_DOWN_BIAS, l, 2, E, C);
                continue;
            }
            for (int e = 0; e < cfg->n_experts; e++) {   // the published order: expert by expert
                put_x(cfg, &out[n++], TENSOR_EXPERT_GATE, l, e, 2, I, C, 0);
                put_x(cfg, &out[n++], TENSOR_EXPERT_UP, l, e, 2, I, C, 0);
                put_x(cfg, &out[n++], TENSOR_EXPERT_DOWN, l, e, 2, C, I, 0);
            }
            continue;
        }
        put(&out[n++], TENSOR_GATE, l, 2, F, C);
        put(&out[n++], TENSOR_UP, l, 2, F, C);
        put(&out[n++], TENSOR_DOWN, l, 2, C, F);
    }
    put(&out[n++], TENSOR_FINAL_NORM, -1, 1, C, 0);
    if (!cfg->tie_word_embeddings) put(&out[n++], TENSOR_LM_HEAD, -1, 2, V, C);
    return n;
}

// Element i of a float tensor as f32 (the data may be unaligned).
static float st_elem(const st_tensor *t, size_t i) {
    const unsigned char *p = t->data;
    if (t->dtype == ST_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t->dtype == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// Expert e's matrix (rows, cols) of gpt-oss's fused tensor src as f32 in x: from the stored
// tensor, or (mxfp4) dequantised from src_blocks/src_scales, that expert's part alone (the
// packed pair is expert-major: blocks (E, R, G, B), scales (E, R, G)).
static int fused_expert_f32(const st_set *s, const char *src, int e, size_t E, size_t rows, size_t cols, int mxfp4,
                            float *x, const char *source, char *err, size_t errlen) {
    const st_tensor *t = st_find(s, src);
    size_t have = 1;
    for (int d = 0; t && d < t->ndim; d++) have *= (size_t)t->shape[d];
    if (t && t->dtype != ST_OTHER && have == E * rows * cols) {
        for (size_t k = 0; k < rows * cols; k++) x[k] = st_elem(t, (size_t)e * rows * cols + k);
        return 0;
    }
    mxfp4_pair p;
    int r = !t && mxfp4 ? mxfp4_pair_find(s, src, &p, source, err, errlen) : 0;
    if (r < 0) return -1;
    if (r == 0 || (size_t)p.shape.e != E || mxfp4_numel(&p.shape) != E * rows * cols) {
        snprintf(err, errlen, "%s: tensor \"%s\" %s; the config implies %zu × %zu × %zu values", source, src,
                 t ? "has another size or dtype" : r ? "(MXFP4) has another shape" : "is missing", E, rows, cols);
        return -1;
    }
    mxfp4_shape one = p.shape;
    one.e = 1;
    const uint8_t *blocks = (const uint8_t *)p.blocks->data + (size_t)e * (size_t)(p.shape.r * p.shape.g * p.shape.b);
    const uint8_t *scales = (const uint8_t *)p.scales->data + (size_t)e * (size_t)(p.shape.r * p.shape.g);
    char why[256];
    if (mxfp4_dequantize_host(x, DTYPE_F32, blocks, scales, &one, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s: %s", source, src, why);
        return -1;
    }
    return 0;
}

// gpt-oss: expert e's gate (I, C) = gate_up_proj[e, :, 0::2]ᵀ, up = [e, :, 1::2]ᵀ, down (C, I) =
// down_proj[e]ᵀ; the bias stacks gate (E, I) = gate_up_proj_bias[:, 0::2], up = [:, 1::2],
// down (E, C) = down_proj_bias. 1: not one of these names.
static int read_fused_expert(const model_config *cfg, const st_set *s, const char *name, int mxfp4, float *dst,
                             size_t n, const char *source, char *err, size_t errlen) {
    int l = -1, e = -1, used = 0;
    char what[16] = "";
    const size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->moe_intermediate_size, E = (size_t)cfg->n_experts;
    int weight = sscanf(name, "model.layers.%d.mlp.experts.%d.%15[a-z_].weight%n", &l, &e, what, &used) == 3 &&
                 name[used] == 0;
    int bias = !weight && sscanf(name, "model.layers.%d.mlp.experts.%15[a-z_]%n", &l, what, &used) == 2 &&
               name[used] == 0 && strstr(what, "_bias");
    if (!weight && !bias) return 1;
    int down = !strncmp(what, "down", 4), up = !strncmp(what, "up", 2);
    char src[96];
    snprintf(src, sizeof src, "model.layers.%d.mlp.experts.%s%s", l, down ? "down_proj" : "gate_up_proj",
             bias ? "_bias" : "");
    if (n != (weight ? I * C : E * (down ? C : I)) || (weight && (e < 0 || (size_t)e >= E))) {
        snprintf(err, errlen, "%s: %s: %zu values asked for, the config implies %zu", source, name, n,
                 weight ? I * C : E * (down ? C : I));
        return -1;
    }
    if (weight) {
        size_t rows = down ? I : C, cols = down ? C : 2 * I;   // gate_up_proj[e] (C, 2I), down_proj[e] (I, C)
        float *x = malloc(rows * cols * sizeof *x);
        if (!x) {
            snprintf(err, errlen, "%s: out of memory reading %s", source, src);
            return -1;
        }
        int rc = fused_expert_f32(s, src, e, E, rows, cols, mxfp4, x, source, err, errlen);
        if (rc == 0 && down) {          // dst (C, I) ← down_proj[e]ᵀ
            for (size_t c = 0; c < C; c++)
                for (size_t i = 0; i < I; i++) dst[c * I + i] = x[i * C + c];
        } else if (rc == 0) {           // dst (I, C) ← gate_up_proj[e][:, 2i (+1: up)]ᵀ
            for (size_t i = 0; i < I; i++)
                for (size_t c = 0; c < C; c++) dst[i * C + c] = x[c * 2 * I + 2 * i + (size_t)up];
        }
        free(x);
        return rc;
    }
    const st_tensor *t = st_find(s, src);
    size_t have = 1, want = E * (down ? C : 2 * I);
    for (int d = 0; t && d < t->ndim; d++) have *= (size_t)t->shape[d];
    if (!t || t->dtype == ST_OTHER || have != want) {
        snprintf(err, errlen, "%s: tensor \"%s\" %s (it holds %s; the config implies %zu values)", source, src,
                 t ? "has another size or dtype" : "is missing", name, want);
        return -1;
    }
    if (down) {
        for (size_t k = 0; k < E * C; k++) dst[k] = st_elem(t, k);
    } else {
        for (size_t x = 0; x < E; x++)
            for (size_t i = 0; i < I; i++) dst[x * I + i] = st_elem(t, x * 2 * I + 2 * i + (size_t)up);
    }
    return 0;
}

int model_expert_mxfp4_read(const model_config *cfg, const st_set *s, const char *name, uint8_t *blocks,
                            uint8_t *scales, const char *source, char *err, size_t errlen) {
    int l = -1, e = -1, used = 0;
    char what[16] = "";
    const int64_t C = cfg->hidden_size, I = cfg->moe_intermediate_size, E = cfg->n_experts;
    if (sscanf(name, "model.layers.%d.mlp.experts.%d.%15[a-z_].weight%n", &l, &e, what, &used) != 3 || name[used] ||
        e < 0 || e >= E) {
        snprintf(err, errlen, "%s: %s is not one of gpt-oss's expert matrices", source, name);
        return -1;
    }
    int down = !strcmp(what, "down_proj"), up = !strcmp(what, "up_proj");
    char src[96];
    snprintf(src, sizeof src, "model.layers.%d.mlp.experts.%s", l, down ? "down_proj" : "gate_up_proj");
    mxfp4_pair p;
    int r = mxfp4_pair_find(s, src, &p, source, err, errlen);
    if (r < 0) return -1;
    if (r == 0) {
        snprintf(err, errlen, "%s: %s_blocks/%s_scales are missing: the experts can be kept in MXFP4 only when the "
                 "checkpoint stores them so; use --experts-dtype bf16", source, src, src);
        return -1;
    }
    // gate_up_proj packs (E, 2I, C/32, 16): out rows 2i (gate), 2i + 1 (up) of C values each;
    // down_proj (E, C, I/32, 16): out rows c of I values.
    int64_t rows = down ? C : 2 * I, in = down ? I : C;
    if (p.shape.b != MXFP4_BLOCK / 2 || p.shape.e != E || p.shape.r != rows || p.shape.g * MXFP4_BLOCK != in) {
        snprintf(err, errlen, "%s: %s_blocks has shape (%lld, %lld, %lld, %lld); MXFP4 experts kept on the device "
                 "need (%lld, %lld, %lld, %d) (blocks of %d values); use --experts-dtype bf16", source, src,
                 (long long)p.shape.e, (long long)p.shape.r, (long long)p.shape.g, (long long)p.shape.b,
                 (long long)E, (long long)rows, (long long)(in / MXFP4_BLOCK), MXFP4_BLOCK / 2, MXFP4_BLOCK);
        return -1;
    }
    size_t rb = (size_t)in / 2, rs = (size_t)in / MXFP4_BLOCK, out = down ? (size_t)C : (size_t)I;
    const uint8_t *b0 = (const uint8_t *)p.blocks->data + (size_t)e * (size_t)rows * rb;
    const uint8_t *s0 = (const uint8_t *)p.scales->data + (size_t)e * (size_t)rows * rs;
    for (size_t o = 0; o < out; o++) {
        size_t from = down ? o : 2 * o + (size_t)up;   // the interleaved gate/up rows
        memcpy(blocks + o * rb, b0 + from * rb, rb);
        memcpy(scales + o * rs, s0 + from * rs, rs);
    }
    return 0;
}

int model_tensor_read(const model_config *cfg, const st_set *s, const char *name, int mxfp4, float *dst, size_t n,
                      const char *source, char *err, size_t errlen) {
    if (cfg->arch == ARCH_GPT_OSS) {
        int r = read_fused_expert(cfg, s, name, mxfp4, dst, n, source, err, errlen);
        if (r <= 0) return r;
    }
    return mxfp4_read_tensor_f32(s, name, mxfp4, dst, n, source, err, errlen);
}

// The inverse of read_fused_expert: gpt-oss's fused tensor t from the decoder's expert-major
// tensors in s. 1: t is not one of the fused tensors.
static int pack_fused_expert(const model_config *cfg, const st_set *s, const model_tensor_info *t, float *dst,
                             char *err, size_t errlen) {
    if (t->role != TENSOR_EXPERTS_GATE_UP && t->role != TENSOR_EXPERTS_GATE_UP_BIAS && t->role != TENSOR_EXPERTS_DOWN &&
        t->role != TENSOR_EXPERTS_DOWN_BIAS)
        return 1;
    const size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->moe_intermediate_size, E = (size_t)cfg->n_experts;
    int nparts = t->role == TENSOR_EXPERTS_GATE_UP ? (int)(2 * E) : t->role == TENSOR_EXPERTS_DOWN ? (int)E
                 : t->role == TENSOR_EXPERTS_GATE_UP_BIAS ? 2 : 1;
    for (int k = 0; k < nparts; k++) {
        char name[128];
        int e = t->role == TENSOR_EXPERTS_GATE_UP ? k / 2 : k, up = t->role == TENSOR_EXPERTS_GATE_UP ? k % 2 : k;
        if (t->role == TENSOR_EXPERTS_GATE_UP)
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s_proj.weight", t->layer, e, up ? "up" : "gate");
        else if (t->role == TENSOR_EXPERTS_DOWN)
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.down_proj.weight", t->layer, e);
        else if (t->role == TENSOR_EXPERTS_GATE_UP_BIAS)
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%s_bias", t->layer, up ? "up" : "gate");
        else
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_bias", t->layer);
        const st_tensor *p = st_find(s, name);
        size_t want = t->role == TENSOR_EXPERTS_GATE_UP || t->role == TENSOR_EXPERTS_DOWN ? I * C
                      : t->role == TENSOR_EXPERTS_GATE_UP_BIAS ? E * I : E * C, have = 1;
        for (int d = 0; p && d < p->ndim; d++) have *= (size_t)p->shape[d];
        if (!p || p->dtype == ST_OTHER || have != want) {
            snprintf(err, errlen, "tensor %s (part of %s) is missing, not F32/F16/BF16 or not of %zu elements", name,
                     t->name, want);
            return -1;
        }
        if (t->role == TENSOR_EXPERTS_GATE_UP) {   // (C, 2I)[c][2i + up] ← (I, C)[i][c]
            for (size_t i = 0; i < I; i++)
                for (size_t c = 0; c < C; c++) dst[((size_t)e * C + c) * 2 * I + 2 * i + (size_t)up] = st_elem(p, i * C + c);
        } else if (t->role == TENSOR_EXPERTS_DOWN) {   // (I, C)[i][c] ← (C, I)[c][i]
            for (size_t c = 0; c < C; c++)
                for (size_t i = 0; i < I; i++) dst[((size_t)e * I + i) * C + c] = st_elem(p, c * I + i);
        } else if (t->role == TENSOR_EXPERTS_GATE_UP_BIAS) {
            for (size_t x = 0; x < E; x++)
                for (size_t i = 0; i < I; i++) dst[x * 2 * I + 2 * i + (size_t)up] = st_elem(p, x * I + i);
        } else {
            for (size_t k2 = 0; k2 < E * C; k2++) dst[k2] = st_elem(p, k2);
        }
    }
    return 0;
}

int model_tensor_pack(const model_config *cfg, const st_set *s, const model_tensor_info *t, float *dst,
                      const char *source, char *err, size_t errlen) {
    const st_tensor *st = st_find(s, t->name);
    if (cfg->arch == ARCH_GPT_OSS && !st) {
        // A published checkpoint: the fused tensor as its MXFP4 pair, dequantised whole.
        mxfp4_pair p;
        int r = mxfp4_pair_find(s, t->name, &p, source, err, errlen);
        if (r < 0) return -1;
        size_t n = (size_t)t->shape[0] * (t->ndim > 1 ? (size_t)t->shape[1] : 1) * (t->ndim > 2 ? (size_t)t->shape[2] : 1);
        if (r == 1) return mxfp4_read_tensor_f32(s, t->name, 1, dst, n, source, err, errlen);
        char why[300];
        r = pack_fused_expert(cfg, s, t, dst, why, sizeof why);
        if (r < 0) snprintf(err, errlen, "%s: %s", source, why);
        if (r <= 0) return r;
    }
    if (!st || st_read_f32(st, dst) != 0) {
        snprintf(err, errlen, "%s: tensor %s is missing or not F32/F16/BF16", source, t->name);
        return -1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int model_tensor_check(const model_config *cfg, const st_set *s, const char *source, char *err, size_t errlen) {
    int n = model_tensor_count(cfg);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    if (!list) {
        snprintf(err, errlen, "%s: out of memory", source);
        return -1;
    }
    model_tensor_list(cfg, list);
    int rc = -1, mxfp4 = mxfp4_checkpoint(source);
    const char **sorted = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(s, list[i].name);
        char want[80], got[80];
        shape_str(want, sizeof want, list[i].ndim, list[i].shape);
        if (!t && mxfp4) {   // stored as NAME_blocks + NAME_scales: check the dequantised shape
            mxfp4_pair pair;
            int r = mxfp4_pair_find(s, list[i].name, &pair, source, err, errlen);
            if (r < 0) goto done;
            if (r > 0) {
                int same = pair.ndim == list[i].ndim;
                for (int d = 0; same && d < pair.ndim; d++) same = pair.dq_shape[d] == list[i].shape[d];
                if (!same) {
                    shape_str(got, sizeof got, pair.ndim, pair.dq_shape);
                    snprintf(err, errlen, "%s: tensor \"%s\" dequantised from MXFP4 has shape %s; the config implies %s",
                             source, list[i].name, got, want);
                    goto done;
                }
                continue;
            }
        }
        if (!t) {
            char moe[96] = "";
            if (cfg->n_experts > 0)
                snprintf(moe, sizeof moe, ", %d experts in layer %d", cfg->n_experts, list[i].layer);
            snprintf(err, errlen, "%s: tensor \"%s\" %s is missing; the config (%s, %d layers%s%s%s) implies it", source,
                     list[i].name, want, cfg->architecture, cfg->num_layers,
                     cfg->attention_bias ? ", attention_bias" : "", cfg->qk_norm ? ", q/k norms" : "",
                     list[i].layer >= 0 && model_config_layer_is_moe(cfg, list[i].layer) ? moe : "");
            goto done;
        }
        int same = t->ndim == list[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == list[i].shape[d];
        if (!same) {
            shape_str(got, sizeof got, t->ndim, t->shape);
            snprintf(err, errlen, "%s: tensor \"%s\" has shape %s; the config implies %s%s", source, list[i].name, got, want,
                     list[i].role == TENSOR_ROUTER ? " (the router: num_experts × hidden_size)" : "");
            goto done;
        }
        if (t->dtype == ST_OTHER) {
            snprintf(err, errlen, "%s: tensor \"%s\" has dtype %s; supported: F32, F16, BF16", source, list[i].name,
                     t->dtype_name);
            goto done;
        }
    }
    // Nothing unexpected: every tensor of the file must be one of the list (sorted names and a
    // binary search: an MoE checkpoint has tens of thousands of tensors).
    sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted) {
        snprintf(err, errlen, "%s: out of memory", source);
        goto done;
    }
    for (int i = 0; i < n; i++) sorted[i] = list[i].name;
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        if (ends_with(t->name, ".rotary_emb.inv_freq")) continue;
        if (cfg->tie_word_embeddings && !strcmp(t->name, "lm_head.weight")) continue;
        char stem[512];
        const char *key = mxfp4 && mxfp4_pair_part(t->name, stem, sizeof stem) ? stem : t->name;
        int found = bsearch(&key, sorted, (size_t)n, sizeof *sorted, cmp_name) != NULL;
        if (!found) {
            snprintf(err, errlen, "%s: unexpected tensor \"%s\" for %s with %d layers%s", source, t->name,
                     cfg->architecture, cfg->num_layers,
                     strstr(t->name, "bias") && !cfg->attention_bias ? " (biases, but attention_bias is false)" : "");
            goto done;
        }
    }
    rc = 0;
done:
    free(sorted);
    free(list);
    return rc;
}
