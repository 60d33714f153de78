// tests/model_io/test_names.c — the tensor list a config implies (counts for published configs),
// and model_tensor_check: a checkpoint with exactly those tensors passes; a missing, misshapen,
// unexpected or non-float tensor is refused by name.
#include "model/init.h"
#include "model/names.h"
#include "test.h"
#include <stdint.h>
#include <unistd.h>

static const char *tiny =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":24,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2}";

static const char *qwen3_moe_tiny =
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":24,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":6,\"num_experts\":4,"
    "\"num_experts_per_tok\":2,\"moe_intermediate_size\":8,\"mlp_only_layers\":[1]}";

static const char *mixtral_tiny =
    "{\"architectures\":[\"MixtralForCausalLM\"],\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":8,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"num_local_experts\":4}";

static const char *gptoss_tiny =
    "{\"architectures\":[\"GptOssForCausalLM\"],\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":8,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":4,"
    "\"num_local_experts\":4,\"num_experts_per_tok\":2}";

static const char *qwen3_tiny =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":24,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":6}";

// Writes the config's tensors (zeros, F32) to path with one change: without `drop`, with one row
// fewer in `reshape`, or with an `extra` F32 [2] tensor.
static int write_variant(const model_config *c, const char *path, const char *drop, const char *reshape,
                         const char *extra) {
    int n = model_tensor_count(c);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    float *zeros = calloc(4096, sizeof(float));
    st_writer *w = st_writer_begin();
    char err[512];
    if (!list || !zeros || !w) return -1;
    model_tensor_list(c, list);
    for (int i = 0; i < n; i++) {
        if (drop && !strcmp(list[i].name, drop)) continue;
        int64_t shape[3] = {list[i].shape[0], list[i].shape[1], list[i].shape[2]};
        if (reshape && !strcmp(list[i].name, reshape)) shape[0] -= 1;
        size_t ne = (size_t)shape[0] * (list[i].ndim > 1 ? (size_t)shape[1] : 1) * (list[i].ndim > 2 ? (size_t)shape[2] : 1);
        st_writer_add(w, list[i].name, ST_F32, list[i].ndim, shape, zeros, ne * 4);
    }
    int64_t two[1] = {2};
    if (extra) st_writer_add(w, extra, ST_F32, 1, two, zeros, 8);
    int rc = st_writer_finish(w, path, NULL, NULL, 0, err, sizeof err);
    st_writer_free(w);
    free(zeros);
    free(list);
    return rc;
}

static void expect(const model_config *c, const char *path, const char *want) {
    char err[1024] = "";
    st_set *s = st_open(path, err, sizeof err);
    CHECK(s != NULL, "open %s: %s", path, err);
    if (!s) return;
    int rc = model_tensor_check(c, s, "ckpt", err, sizeof err);
    if (!want) CHECK(rc == 0, "expected to pass: %s", err);
    else CHECK(rc == -1 && strstr(err, want), "expected \"%s\", got rc %d \"%s\"", want, rc, err);
    st_close(s);
}

static void check_set_dtype(void) {
    static const struct { const char *in, *out; } cases[] = {
        {"{\"a\":1,\"torch_dtype\":\"float16\",\"b\":2.0}", "{\"a\":1,\"torch_dtype\":\"bfloat16\",\"b\":2.0}"},
        {"{\n  \"torch_dtype\": null\n}\n", "{\n  \"torch_dtype\": \"bfloat16\"\n}\n"},
        {"{\"x\": {\"torch_dtype\": \"float16\"}, \"s\": \"a,}\\\"{\"}",
         "{\"x\": {\"torch_dtype\": \"float16\"}, \"s\": \"a,}\\\"{\",\n  \"torch_dtype\": \"bfloat16\"}"},
        {"{\n  \"dtype\": \"float32\",\n  \"l\": [1, {\"dtype\": 2}]\n}",
         "{\n  \"dtype\": \"bfloat16\",\n  \"l\": [1, {\"dtype\": 2}],\n  \"torch_dtype\": \"bfloat16\"\n}"},
        {"{}", "{\n  \"torch_dtype\": \"bfloat16\"\n}"},
        {" { \"torch_dtype\" : \"float32\" , \"dtype\" : \"float32\" } ", " { \"torch_dtype\" : \"bfloat16\" , \"dtype\" : \"bfloat16\" } "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = model_config_text_set_dtype(cases[i].in, "bfloat16");
        CHECK(got && !strcmp(got, cases[i].out), "set_dtype case %zu:\n  in:   %s\n  got:  %s\n  want: %s", i, cases[i].in,
              got ? got : "(null)", cases[i].out);
        free(got);
    }
    CHECK(model_config_text_set_dtype("[1]", "bfloat16") == NULL, "a non-object is refused");
}

// gpt-oss: the fused expert tensors; the byte count of the published MXFP4 checkpoint; a missing
// sinks tensor named; model_tensor_read's unpacking and model_tensor_pack's inverse.
static void check_gpt_oss(const char *src, const char *path) {
    char err[1024], cfgp[4096];
    model_config g;
    CHECK(model_config_parse(&g, gptoss_tiny, "gpt_oss", err, sizeof err) == 0, "%s", err);
    int n = model_tensor_count(&g);
    CHECK(n == 1 + 2 * 17 + 2, "gpt-oss tiny: %d tensors", n);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    if (!list) return;
    model_tensor_list(&g, list);
    write_variant(&g, path, NULL, NULL, NULL);
    expect(&g, path, NULL);
    write_variant(&g, path, "model.layers.1.self_attn.sinks", NULL, NULL);
    expect(&g, path, "tensor \"model.layers.1.self_attn.sinks\" [4] is missing; the config (GptOssForCausalLM, 2 layers");
    write_variant(&g, path, NULL, "model.layers.0.mlp.experts.gate_up_proj", NULL);
    expect(&g, path, "\"model.layers.0.mlp.experts.gate_up_proj\" has shape [3, 16, 16]; the config implies [4, 16, 16]");

    // Every element of a fused tensor distinct: expert e's gate row i is gate_up_proj[e, :, 2i]ᵀ.
    const size_t C = 16, I = 8, E = 4;
    st_writer *w = st_writer_begin();
    float *v[4];
    const char *fused[4] = {"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.gate_up_proj_bias",
                            "model.layers.0.mlp.experts.down_proj", "model.layers.0.mlp.experts.down_proj_bias"};
    int64_t shapes[4][3] = {{E, C, 2 * I}, {E, 2 * I, 0}, {E, I, C}, {E, C, 0}};
    int nd[4] = {3, 2, 3, 2};
    size_t ne[4] = {E * C * 2 * I, E * 2 * I, E * I * C, E * C};
    for (int k = 0; k < 4; k++) {
        v[k] = malloc(ne[k] * 4);
        for (size_t x = 0; x < ne[k]; x++) v[k][x] = (float)(k * 10000 + (int)x);
        st_writer_add(w, fused[k], ST_F32, nd[k], shapes[k], v[k], ne[k] * 4);
    }
    CHECK(st_writer_finish(w, path, NULL, NULL, 0, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    st_set *s = st_open(path, err, sizeof err);
    float got[4096], back[4096];
    CHECK(s && model_tensor_read(&g, s, "model.layers.0.mlp.experts.2.up_proj.weight", 0, got, I * C, "ckpt", err, sizeof err) == 0,
          "%s", err);
    CHECK(got[3 * C + 5] == v[0][(2 * C + 5) * 2 * I + 2 * 3 + 1], "up[e=2][i=3][c=5] = %g", (double)got[3 * C + 5]);
    CHECK(s && model_tensor_read(&g, s, "model.layers.0.mlp.experts.1.down_proj.weight", 0, got, C * I, "ckpt", err, sizeof err) == 0,
          "%s", err);
    CHECK(got[7 * I + 2] == v[2][(1 * I + 2) * C + 7], "down[e=1][c=7][i=2] = %g", (double)got[7 * I + 2]);
    CHECK(s && model_tensor_read(&g, s, "model.layers.0.mlp.experts.gate_bias", 0, got, E * I, "ckpt", err, sizeof err) == 0, "%s", err);
    CHECK(got[3 * I + 4] == v[1][3 * 2 * I + 8], "gate_bias[3][4] = %g", (double)got[3 * I + 4]);
    CHECK(s && model_tensor_read(&g, s, "model.layers.0.mlp.experts.gate_bias", 0, got, E * I + 1, "ckpt", err, sizeof err) == -1,
          "a wrong element count is refused");
    if (s) st_close(s);

    // Split every fused tensor into the decoder's tensors, write those, pack them back: the same bits.
    s = st_open(path, err, sizeof err);
    w = st_writer_begin();
    static float parts[64][256];
    int np = 0;
    char names[64][96];
    for (int e = 0; e < (int)E; e++)
        for (int j = 0; j < 3; j++) {
            snprintf(names[np], sizeof names[np], "model.layers.0.mlp.experts.%d.%s_proj.weight", e,
                     j == 0 ? "gate" : j == 1 ? "up" : "down");
            int64_t sh[2] = {j == 2 ? (int64_t)C : (int64_t)I, j == 2 ? (int64_t)I : (int64_t)C};
            model_tensor_read(&g, s, names[np], 0, parts[np], I * C, "ckpt", err, sizeof err);
            st_writer_add(w, names[np], ST_F32, 2, sh, parts[np], I * C * 4);
            np++;
        }
    for (int j = 0; j < 3; j++) {
        snprintf(names[np], sizeof names[np], "model.layers.0.mlp.experts.%s_bias", j == 0 ? "gate" : j == 1 ? "up" : "down");
        size_t cols = j == 2 ? C : I;
        int64_t sh[2] = {(int64_t)E, (int64_t)cols};
        model_tensor_read(&g, s, names[np], 0, parts[np], E * cols, "ckpt", err, sizeof err);
        st_writer_add(w, names[np], ST_F32, 2, sh, parts[np], E * cols * 4);
        np++;
    }
    char path2[300];
    snprintf(path2, sizeof path2, "%s.dec", path);
    CHECK(st_writer_finish(w, path2, NULL, NULL, 0, err, sizeof err) == 0, "%s", err);
    st_writer_free(w);
    if (s) st_close(s);
    s = st_open(path2, err, sizeof err);
    for (int k = 0; k < n && s; k++) {
        for (int f = 0; f < 4; f++) {
            if (strcmp(list[k].name, fused[f])) continue;
            int rc = model_tensor_pack(&g, s, &list[k], back, "ckpt", err, sizeof err);
            CHECK(rc == 0 && !memcmp(back, v[f], ne[f] * 4), "%s packed back: rc %d %s", fused[f], rc, rc ? err : "");
        }
    }
    if (s) st_close(s);
    unlink(path2);
    for (int k = 0; k < 4; k++) free(v[k]);
    free(list);

    // The published openai/gpt-oss-20b: model.safetensors.index.json's total_size is 13,761,264,768
    // bytes: bf16 everywhere but the fused expert weights, MXFP4 (a 4-bit value per weight and a
    // byte of scale per 32).
    snprintf(cfgp, sizeof cfgp, "%s/examples/configs/gpt-oss-20b.json", src);
    model_config big;
    CHECK(model_config_load(&big, cfgp, err, sizeof err) == 0, "%s", err);
    int nb = model_tensor_count(&big);
    model_tensor_info *lb = malloc(sizeof *lb * (size_t)nb);
    if (!lb) return;
    model_tensor_list(&big, lb);
    size_t bytes = 0;
    for (int k = 0; k < nb; k++) {
        size_t x = (size_t)lb[k].shape[0] * (lb[k].ndim > 1 ? (size_t)lb[k].shape[1] : 1) *
                   (lb[k].ndim > 2 ? (size_t)lb[k].shape[2] : 1);
        int mx = lb[k].role == TENSOR_EXPERTS_GATE_UP || lb[k].role == TENSOR_EXPERTS_DOWN;
        bytes += mx ? x / 2 + x / 32 : 2 * x;
    }
    CHECK(bytes == 13761264768ull, "gpt-oss-20b: %zu bytes as published in MXFP4, the index says 13761264768", bytes);
    free(lb);
}

int main(void) {
    check_set_dtype();
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    static const struct { const char *file; int count; } pub[] = {
        {"Llama-3.1-8B.json", 291}, {"Llama-3.2-1B.json", 146}, {"Llama-2-7b.json", 291},
        {"Mistral-7B-v0.3.json", 291}, {"Qwen2.5-0.5B.json", 290},
        // 48 × (8 + router + 128 × 3) + 3 and 32 × (6 + router + 8 × 3) + 3: the published indexes'.
        {"Qwen3-30B-A3B.json", 18867}, {"Mixtral-8x7B-v0.1.json", 995},
        // gpt-oss in bf16: 24 and 36 layers × 17 (q, k, v, o and their biases, sinks, 2 norms,
        // router and its bias, 4 fused expert tensors) + 3; the published MXFP4 index of 20b lists
        // 459 = 411 + 2 × 24 (each fused expert weight as _blocks and _scales).
        {"gpt-oss-20b.json", 411}, {"gpt-oss-120b.json", 615},
    };
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++) {
        char path[4096], err[1024];
        model_config c;
        snprintf(path, sizeof path, "%s/examples/configs/%s", src, pub[i].file);
        if (model_config_load(&c, path, err, sizeof err)) {
            CHECK(0, "%s", err);
            continue;
        }
        int n = model_tensor_count(&c);
        CHECK(n == pub[i].count, "%s: %d tensors, the published checkpoint has %d", pub[i].file, n, pub[i].count);
        model_tensor_info *list = malloc(sizeof *list * (size_t)n);
        if (!list) return 1;
        CHECK(model_tensor_list(&c, list) == n, "list count");
        size_t total = 0;
        for (int k = 0; k < n; k++)
            total += (size_t)list[k].shape[0] * (list[k].ndim > 1 ? (size_t)list[k].shape[1] : 1) *
                     (list[k].ndim > 2 ? (size_t)list[k].shape[2] : 1);
        CHECK(total == model_config_num_params(&c), "%s: list sums to %zu, num_params %zu", pub[i].file, total,
              model_config_num_params(&c));
        free(list);
    }
    char name[96];
    model_tensor_name(TENSOR_K_BIAS, 3, name, sizeof name);
    CHECK(!strcmp(name, "model.layers.3.self_attn.k_proj.bias"), "name %s", name);

    char dir[] = "/tmp/quarry_names_XXXXXX", path[256], err[1024];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    model_config c;
    CHECK(model_config_parse(&c, tiny, "tiny", err, sizeof err) == 0, "%s", err);
    CHECK(model_init_write(&c, dir, 1, ST_BF16, -1, 1u << 30, err, sizeof err) == 0, "init: %s", err);
    expect(&c, path, NULL);
    write_variant(&c, path, "model.layers.1.mlp.up_proj.weight", NULL, NULL);
    expect(&c, path, "\"model.layers.1.mlp.up_proj.weight\" [24, 16] is missing");
    write_variant(&c, path, NULL, "model.layers.0.self_attn.k_proj.weight", NULL);
    expect(&c, path, "\"model.layers.0.self_attn.k_proj.weight\" has shape [7, 16]; the config implies [8, 16]");
    write_variant(&c, path, NULL, NULL, "model.layers.0.self_attn.q_proj.bias");
    expect(&c, path, "unexpected tensor \"model.layers.0.self_attn.q_proj.bias\" for LlamaForCausalLM with 2 layers (biases, but attention_bias is false)");
    write_variant(&c, path, NULL, NULL, "model.layers.0.self_attn.rotary_emb.inv_freq");
    expect(&c, path, NULL);
    c.tie_word_embeddings = 0;
    write_variant(&c, path, NULL, NULL, NULL);
    c.tie_word_embeddings = 1;
    expect(&c, path, NULL);   // lm_head beside tied embeddings: unused, as transformers does
    c.tie_word_embeddings = 0;
    write_variant(&c, path, "lm_head.weight", NULL, NULL);
    expect(&c, path, "\"lm_head.weight\" [40, 16] is missing");

    // Qwen3: per-head q/k norms [head_dim] beside o_proj, initialised to ones by `quarry init`.
    model_config q3;
    CHECK(model_config_parse(&q3, qwen3_tiny, "qwen3", err, sizeof err) == 0, "%s", err);
    int n3 = model_tensor_count(&q3);
    CHECK(n3 == 1 + 2 * 11 + 2, "qwen3 tiny: %d tensors", n3);   // embed, 2 × 11, norm, lm_head
    model_tensor_info *l3 = malloc(sizeof *l3 * (size_t)n3);
    if (!l3) return 1;
    model_tensor_list(&q3, l3);
    int found = 0;
    size_t total3 = 0;
    for (int k = 0; k < n3; k++) {
        total3 += (size_t)l3[k].shape[0] * (l3[k].ndim > 1 ? (size_t)l3[k].shape[1] : 1);
        if (!strcmp(l3[k].name, "model.layers.1.self_attn.q_norm.weight") ||
            !strcmp(l3[k].name, "model.layers.1.self_attn.k_norm.weight"))
            found += l3[k].ndim == 1 && l3[k].shape[0] == 6 && l3[k].init == TENSOR_INIT_ONES;
    }
    CHECK(found == 2, "qwen3 q_norm/k_norm [6] with ones: %d of 2", found);
    CHECK(total3 == model_config_num_params(&q3), "qwen3 list sums to %zu, num_params %zu", total3,
          model_config_num_params(&q3));
    free(l3);
    model_tensor_name(TENSOR_K_NORM, 2, name, sizeof name);
    CHECK(!strcmp(name, "model.layers.2.self_attn.k_norm.weight"), "name %s", name);
    write_variant(&q3, path, NULL, NULL, NULL);
    expect(&q3, path, NULL);
    write_variant(&q3, path, "model.layers.0.self_attn.k_norm.weight", NULL, NULL);
    expect(&q3, path, "\"model.layers.0.self_attn.k_norm.weight\" [6] is missing; the config (Qwen3ForCausalLM, 2 layers, q/k norms)");
    write_variant(&q3, path, NULL, "model.layers.1.self_attn.q_norm.weight", NULL);
    expect(&q3, path, "\"model.layers.1.self_attn.q_norm.weight\" has shape [5]; the config implies [6]");
    write_variant(&c, path, NULL, NULL, "model.layers.0.self_attn.q_norm.weight");
    expect(&c, path, "unexpected tensor \"model.layers.0.self_attn.q_norm.weight\" for LlamaForCausalLM");

    // Sparse MoE: routers and per-expert names (Mixtral's w1/w3/w2), a dense mlp_only layer; a
    // missing expert and a router of the wrong shape are refused by name.
    model_config qm, mx;
    CHECK(model_config_parse(&qm, qwen3_moe_tiny, "qwen3_moe", err, sizeof err) == 0, "%s", err);
    CHECK(model_config_parse(&mx, mixtral_tiny, "mixtral", err, sizeof err) == 0, "%s", err);
    CHECK(model_tensor_count(&qm) == 1 + 2 * 8 + (1 + 4 * 3) + 3 + 2, "qwen3_moe tiny: %d tensors", model_tensor_count(&qm));
    CHECK(model_tensor_count(&mx) == 1 + 2 * (6 + 1 + 4 * 3) + 2, "mixtral tiny: %d tensors", model_tensor_count(&mx));
    model_tensor_name_of(&mx, TENSOR_EXPERT_UP, 1, 3, name, sizeof name);
    CHECK(!strcmp(name, "model.layers.1.block_sparse_moe.experts.3.w3.weight"), "name %s", name);
    model_tensor_name_of(&qm, TENSOR_EXPERT_DOWN, 0, 2, name, sizeof name);
    CHECK(!strcmp(name, "model.layers.0.mlp.experts.2.down_proj.weight"), "name %s", name);
    const model_config *moes[2] = {&qm, &mx};
    for (int i = 0; i < 2; i++) {
        const model_config *mc = moes[i];
        int nm = model_tensor_count(mc);
        model_tensor_info *lm = malloc(sizeof *lm * (size_t)nm);
        if (!lm) return 1;
        model_tensor_list(mc, lm);
        size_t tm = 0;
        for (int k = 0; k < nm; k++) tm += (size_t)lm[k].shape[0] * (lm[k].ndim > 1 ? (size_t)lm[k].shape[1] : 1);
        CHECK(tm == model_config_num_params(mc), "%s list sums to %zu, num_params %zu", mc->architecture, tm,
              model_config_num_params(mc));
        free(lm);
    }
    write_variant(&qm, path, NULL, NULL, NULL);
    expect(&qm, path, NULL);
    write_variant(&qm, path, "model.layers.0.mlp.experts.3.up_proj.weight", NULL, NULL);
    expect(&qm, path, "\"model.layers.0.mlp.experts.3.up_proj.weight\" [8, 16] is missing; the config "
                      "(Qwen3MoeForCausalLM, 2 layers, q/k norms, 4 experts in layer 0)");
    write_variant(&qm, path, NULL, "model.layers.0.mlp.gate.weight", NULL);
    expect(&qm, path, "\"model.layers.0.mlp.gate.weight\" has shape [3, 16]; the config implies [4, 16] (the router");
    write_variant(&mx, path, NULL, NULL, NULL);
    expect(&mx, path, NULL);
    write_variant(&mx, path, "model.layers.1.block_sparse_moe.experts.0.w2.weight", NULL, NULL);
    expect(&mx, path, "\"model.layers.1.block_sparse_moe.experts.0.w2.weight\" [16, 8] is missing");
    write_variant(&mx, path, NULL, NULL, "model.layers.0.mlp.gate_proj.weight");
    expect(&mx, path, "unexpected tensor \"model.layers.0.mlp.gate_proj.weight\" for MixtralForCausalLM");

    check_gpt_oss(src, path);

    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_finish("test_names");
}
