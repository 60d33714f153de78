// tests/model_io/test_mxfp4.c — gpt-oss's MXFP4 experts: the format (kernels/mxfp4_format.h)
// against transformers' convert_moe_packed_tensors from the fixture
// scripts/reference/make_mxfp4_fixtures.py wrote (tests/fixtures/mxfp4), bit for bit in f32 and
// bf16 (every E8M0 exponent 0..255 and every byte, the transpose to (E, in, out), blocks of other
// widths); malformed pairs refused naming the tensor; and the load hook (model/mxfp4_load.h):
// a checkpoint whose config says mxfp4 reads NAME from NAME_blocks/NAME_scales, one without
// does not, and a pair missing its scales, with mismatched shapes or a wrong dtype is an error;
// the gpt-oss decoder's per-expert read of an MXFP4 gate_up_proj (model_tensor_read).
#include "kernels/mxfp4_format.h"
#include "model/mxfp4_load.h"
#include "model/names.h"
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static const st_tensor *need(const st_set *s, const char *name) {
    const st_tensor *t = st_find(s, name);
    if (!t) {
        fprintf(stderr, "FAIL: fixture has no %s\n", name);
        exit(1);
    }
    return t;
}

static size_t count_diff(const void *a, const void *b, size_t n, size_t esize, size_t *first) {
    size_t bad = 0;
    for (size_t j = 0; j < n; j++)
        if (memcmp((const char *)a + j * esize, (const char *)b + j * esize, esize)) {
            if (!bad) *first = j;
            bad++;
        }
    return bad;
}

static void check_format(const st_set *fx) {
    int ncases = atoi(st_metadata(fx, "cases") ? st_metadata(fx, "cases") : "0");
    CHECK(ncases >= 4, "fixture has %d cases", ncases);
    for (int c = 0; c < ncases; c++) {
        char n[64];
        snprintf(n, sizeof n, "c%d.blocks", c);
        const st_tensor *b = need(fx, n);
        snprintf(n, sizeof n, "c%d.scales", c);
        const st_tensor *s = need(fx, n);
        snprintf(n, sizeof n, "c%d.dq_f32", c);
        const st_tensor *want32 = need(fx, n);
        snprintf(n, sizeof n, "c%d.dq_bf16", c);
        const st_tensor *want16 = need(fx, n);
        char err[512];
        mxfp4_shape sh;
        int rc = mxfp4_shape_of(&sh, "case", b->ndim, b->shape, s->ndim, s->shape, err, sizeof err);
        CHECK(rc == 0, "case %d: %s", c, err);
        if (rc) continue;
        size_t numel = mxfp4_numel(&sh);
        CHECK(want32->ndim == 3 && want32->shape[0] == sh.e && want32->shape[1] == sh.g * sh.b * 2 &&
                  want32->shape[2] == sh.r,
              "case %d: transformers' layout is (E, G*B*2, R)", c);
        CHECK(want32->nbytes == numel * 4, "case %d: sizes", c);
        float *got32 = malloc(numel * 4);
        uint16_t *got16 = malloc(numel * 2);
        CHECK(mxfp4_dequantize_host(got32, DTYPE_F32, b->data, s->data, &sh, err, sizeof err) == 0, "%s", err);
        CHECK(mxfp4_dequantize_host(got16, DTYPE_BF16, b->data, s->data, &sh, err, sizeof err) == 0, "%s", err);
        snprintf(n, sizeof n, "c%d.name", c);
        const char *cname = st_metadata(fx, n) ? st_metadata(fx, n) : "?";
        size_t i = 0, bad = count_diff(got32, want32->data, numel, 4, &i);
        CHECK(bad == 0, "case %d (%s) f32: %zu of %zu differ, first at %zu: %.9g, transformers %.9g", c,
              cname, bad, numel, i, got32[i], ((const float *)want32->data)[i]);
        bad = count_diff(got16, want16->data, numel, 2, &i);
        CHECK(bad == 0, "case %d bf16: %zu of %zu differ, first at %zu: %04x, transformers %04x", c, bad, numel, i,
              got16[i], ((const uint16_t *)want16->data)[i]);
        free(got32);
        free(got16);
    }
    // Malformed shapes: named, with what is expected.
    char err[512] = "";
    mxfp4_shape sh;
    int64_t b3[3] = {2, 4, 16}, b4[4] = {2, 4, 3, 16}, s3[3] = {2, 4, 2}, s2[2] = {2, 4};
    CHECK(mxfp4_shape_of(&sh, "x.down_proj", 3, b3, 2, s2, err, sizeof err) == -1 && strstr(err, "x.down_proj_blocks") &&
              strstr(err, "4-D"),
          "3-D blocks: %s", err);
    CHECK(mxfp4_shape_of(&sh, "x.down_proj", 4, b4, 3, s3, err, sizeof err) == -1 && strstr(err, "x.down_proj_scales") &&
              strstr(err, "(2, 4, 3)"),
          "block count mismatch: %s", err);
}

// A safetensors file from (name, dtype, shape, bytes) entries.
typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} entry;

static void write_st(const char *path, const entry *e, int n) {
    char hdr[4096];
    size_t k = (size_t)snprintf(hdr, sizeof hdr, "{"), off = 0;
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(hdr + k, sizeof hdr - k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", e[i].name,
                              e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++)
            k += (size_t)snprintf(hdr + k, sizeof hdr - k, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        k += (size_t)snprintf(hdr + k, sizeof hdr - k, "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].nbytes);
        off += e[i].nbytes;
    }
    k += (size_t)snprintf(hdr + k, sizeof hdr - k, "}");
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    uint64_t len = k;
    int ok = fwrite(&len, 8, 1, f) == 1 && fwrite(hdr, 1, k, f) == k;
    for (int i = 0; i < n; i++) ok = ok && fwrite(e[i].data, 1, e[i].nbytes, f) == e[i].nbytes;
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

// gpt-oss's decoder reads each expert of an MXFP4 gate_up_proj alone (model_tensor_read): expert
// e's gate row i is transformers' dequantised (E, in, out)[e, :, 2i], up row i [e, :, 2i + 1].
static void check_experts(const st_set *fx, const char *dir) {
    const st_tensor *b = need(fx, "c0.blocks"), *s = need(fx, "c0.scales"), *want = need(fx, "c0.dq_f32");
    const int64_t E = want->shape[0], C = want->shape[1], I = want->shape[2] / 2;
    char path[1024], err[512] = "", json[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    entry e[2] = {
        {"model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", 4, {b->shape[0], b->shape[1], b->shape[2], b->shape[3]}, b->data, b->nbytes},
        {"model.layers.0.mlp.experts.gate_up_proj_scales", "U8", 3, {s->shape[0], s->shape[1], s->shape[2]}, s->data, s->nbytes},
    };
    write_st(path, e, 2);
    snprintf(json, sizeof json, "{\"architectures\": [\"GptOssForCausalLM\"], \"vocab_size\": 8, \"hidden_size\": %lld, "
             "\"intermediate_size\": %lld, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
             "\"head_dim\": 4, \"num_local_experts\": %lld, \"num_experts_per_tok\": 1}", (long long)C, (long long)I, (long long)E);
    model_config cfg;
    CHECK(model_config_parse(&cfg, json, "config.json", err, sizeof err) == 0, "%s", err);
    st_set *st = st_open(dir, err, sizeof err);
    CHECK(st, "%s", err);
    if (!st) return;
    const float *dq = want->data;
    float *got = malloc((size_t)(I * C) * 4);
    int bad = 0;
    for (int x = 0; x < E; x++)
        for (int up = 0; up < 2; up++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.0.mlp.experts.%d.%s_proj.weight", x, up ? "up" : "gate");
            CHECK(model_tensor_read(&cfg, st, name, 1, got, (size_t)(I * C), dir, err, sizeof err) == 0, "%s", err);
            for (int64_t i = 0; i < I; i++)
                for (int64_t c = 0; c < C; c++) {
                    float w;
                    memcpy(&w, &dq[((size_t)x * C + c) * 2 * I + 2 * i + up], 4);
                    bad += memcmp(&got[i * C + c], &w, 4) != 0;
                }
        }
    CHECK(bad == 0, "%d expert weights differ from transformers' dequantised gate_up_proj", bad);
    CHECK(model_tensor_read(&cfg, st, "model.layers.0.mlp.experts.0.gate_proj.weight", 0, got, (size_t)(I * C), dir,
                            err, sizeof err) == -1 && strstr(err, "gate_up_proj\" is missing"),
          "without mxfp4 the pair is not read: %s", err);
    free(got);
    st_close(st);
}

static void check_hook(const st_set *fx, const char *dir) {
    const st_tensor *b = need(fx, "c0.blocks"), *s = need(fx, "c0.scales"), *want = need(fx, "c0.dq_f32");
    const char *name = "model.layers.0.mlp.experts.gate_up_proj";
    float bias[3] = {1, 2, 3};
    entry good[3] = {
        {"model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", 4, {b->shape[0], b->shape[1], b->shape[2], b->shape[3]}, b->data, b->nbytes},
        {"model.layers.0.mlp.experts.gate_up_proj_scales", "U8", 3, {s->shape[0], s->shape[1], s->shape[2]}, s->data, s->nbytes},
        {"model.layers.0.mlp.experts.gate_up_proj_bias", "F32", 1, {3}, bias, sizeof bias},
    };
    char path[1024], cfg[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    write_st(path, good, 3);
    size_t n = want->nbytes / 4;
    float *got = calloc(n, 4);

    write_text(cfg, "{\"architectures\": [\"GptOssForCausalLM\"], \"quantization_config\": "
                    "{\"modules_to_not_convert\": [], \"quant_method\": \"mxfp4\"}}");
    CHECK(mxfp4_checkpoint(dir) == 1, "config with quant_method mxfp4");
    st_set *st = st_open(dir, err, sizeof err);
    CHECK(st, "%s", err);
    if (!st) return;
    mxfp4_pair p;
    CHECK(mxfp4_pair_find(st, name, &p, dir, err, sizeof err) == 1 && p.dq_shape[0] == want->shape[0] &&
              p.dq_shape[1] == want->shape[1] && p.dq_shape[2] == want->shape[2],
          "the pair found with its dequantised shape: %s", err);
    CHECK(mxfp4_read_tensor_f32(st, name, 1, got, n, dir, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(got, want->data, n * 4), "the hook reads transformers' dequantised tensor bit for bit");
    CHECK(mxfp4_read_tensor_f32(st, name, 1, got, n + 1, dir, err, sizeof err) == -1 && strstr(err, name) &&
              strstr(err, "expects"),
          "a count mismatch named: %s", err);
    float b3[3] = {0};
    CHECK(mxfp4_read_tensor_f32(st, "model.layers.0.mlp.experts.gate_up_proj_bias", 1, b3, 3, dir, err, sizeof err) ==
                  0 && b3[2] == 3.0f,
          "a stored tensor reads as itself: %s", err);
    char stem[256];
    CHECK(mxfp4_pair_part(good[1].name, stem, sizeof stem) && !strcmp(stem, name), "scales' stem");
    CHECK(!mxfp4_pair_part(good[2].name, stem, sizeof stem), "bias is no pair part");
    CHECK(mxfp4_read_tensor_f32(st, name, 0, got, n, dir, err, sizeof err) == -1 && strstr(err, name),
          "without mxfp4 the pair is not read: %s", err);
    st_close(st);

    write_text(cfg, "{\"architectures\": [\"GptOssForCausalLM\"]}");
    CHECK(mxfp4_checkpoint(dir) == 0, "config without quantization_config");
    write_text(cfg, "{\"quantization_config\": {\"quant_method\": \"bitsandbytes\"}}");
    CHECK(mxfp4_checkpoint(dir) == 0, "another quant_method");

    // Malformed pairs: scales missing; a block count that does not match; a wrong dtype.
    int64_t bad_g = s->shape[2] + 1;
    entry cases[3][2] = {
        {good[0], good[2]},
        {good[0], {good[1].name, "U8", 3, {s->shape[0], s->shape[1], bad_g}, NULL, 0}},
        {{good[0].name, "I8", 4, {b->shape[0], b->shape[1], b->shape[2], b->shape[3]}, b->data, b->nbytes}, good[1]},
    };
    uint8_t *big = calloc((size_t)(s->shape[0] * s->shape[1] * bad_g), 1);
    cases[1][1].data = big;
    cases[1][1].nbytes = (size_t)(s->shape[0] * s->shape[1] * bad_g);
    const char *expect[3] = {"gate_up_proj_scales\" is missing", "gate_up_proj_scales has shape", "dtype I8"};
    for (int c = 0; c < 3; c++) {
        write_st(path, cases[c], 2);
        st = st_open(dir, err, sizeof err);
        CHECK(st, "%s", err);
        if (!st) continue;
        err[0] = 0;
        CHECK(mxfp4_read_tensor_f32(st, name, 1, got, n, dir, err, sizeof err) == -1 && strstr(err, expect[c]) &&
                  strstr(err, dir),
              "malformed pair %d: want \"%s\" in: %s", c, expect[c], err);
        st_close(st);
    }
    free(big);
    free(got);
}

int main(void) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/mxfp4/reference.safetensors", test_env("QUARRY_SOURCE_DIR", "."));
    st_set *fx = st_open(path, err, sizeof err);
    if (!fx) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    check_format(fx);
    char dir[] = "/tmp/quarry_mxfp4_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    check_hook(fx, dir);
    check_experts(fx, dir);
    char f[1100];
    snprintf(f, sizeof f, "%s/model.safetensors", dir);
    unlink(f);
    snprintf(f, sizeof f, "%s/config.json", dir);
    unlink(f);
    rmdir(dir);
    st_close(fx);
    return test_finish("test_mxfp4");
}
